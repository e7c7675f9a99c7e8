"""One installed namespace: the wheel holds `ticketbench/` and the `bench` shim only, and a user's own
`models/`, `devices/` or `reports/` package in the working directory never shadows ours."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "README.md", "ticketbench", "bench", "models", "devices", "reports"]


@pytest.mark.peer
def test_wheel_installs_only_ticketbench_and_the_bench_shim(tmp_path):
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / name, src / name)
    out = tmp_path / "dist"
    code = f"from setuptools import build_meta; print(build_meta.build_wheel({str(out)!r}))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = out / proc.stdout.strip().splitlines()[-1]
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"ticketbench", "bench"}
    assert sorted(n for n in names if n.startswith("bench/")) == ["bench/__init__.py", "bench/__main__.py"]
    for sub in ("bench/cli.py", "models/compact.py", "devices/base.py", "reports/html.py", "bench/suites/quick.toml"):
        assert f"ticketbench/{sub}" in names
    assert "ticketbench/reports/templates/report.html.j2" in names
    assert not any(n.startswith(("ticketbench/tests", "benchmarks")) for n in names)


@pytest.mark.e2e
def test_a_users_own_models_package_does_not_shadow_ours(tmp_path):
    for pkg in ("models", "devices", "reports", "registry"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text(f"raise ImportError('the user\\'s own {pkg} was imported')\n")
    proc = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "usage" in proc.stdout
    code = "import ticketbench.models.zoo, ticketbench.devices, ticketbench.reports.html, ticketbench.registry"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _module_name(path: Path) -> str:
    """The README's rule, written once: `<folder>/<module>.py` is `ticketbench.<folder>.<module>` for the four
    layer folders, `ticketbench/<module>.py` is `ticketbench.<module>`."""
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts if parts[0] == "ticketbench" else ["ticketbench", *parts])


@pytest.mark.e2e
def test_every_module_is_where_its_import_path_says_from_the_checkout_root():
    files = [p for d in ("ticketbench", "bench", "models", "devices", "reports") for p in (REPO / d).rglob("*.py")]
    names = {_module_name(p): str(p) for p in files if "__pycache__" not in p.parts}
    code = (
        "import importlib.util, json, sys\n"
        "names = json.loads(sys.stdin.read())\n"
        "print(json.dumps({n: importlib.util.find_spec(n).origin for n in names}))\n"
    )
    # The checkout root on sys.path, as for `python -m bench` run there or PYTHONPATH=<root>.
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, input=json.dumps(sorted(names)),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout)
    assert len(found) > 70
    assert {n: found[n] for n in names} == names
