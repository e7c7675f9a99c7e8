"""Bad input: one clear line on stderr, exit code 2, no traceback, nothing already written lost."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ticketbench.bench.cli import main

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["run", "--device", "tpu"], "unknown device 'tpu'"),
        (["run", "--suite", "nope"], "unknown suite 'nope'"),
        (["run", "--suite", "missing.toml"], "suite file not found"),
        (["run", "--data-root", "/does/not/exist"], "not a directory"),
        (["run", "--device", "gpu"], "device 'gpu' is not available"),
        (["run", "--device", "cpu", "--precision", "fp16"], "does not run fp16"),
        (["measure", "model.onnx", "--batch", "0"], "--batch must be a whole number in [1, 65536], got 0"),
        (["measure", "model.onnx", "--min-seconds", "-1"], "--min-seconds must be a finite number in [0, 3600]"),
        (["ticket", "--model", "small_cnn", "--method", "dense", "--sparsity", "0", "--epochs", "-1"], "--epochs"),
    ],
)
def test_bad_input_exit_2_one_line(args, needle, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0]


def test_out_dir_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("keep me")
    assert main(["run", "--out", str(f)]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert f.read_text() == "keep me"


def test_report_output_that_is_a_directory(tmp_path, capsys):
    (tmp_path / "results.csv").write_text("run_id\nx\n")
    assert main(["report", str(tmp_path), "--html", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: --html {tmp_path}: is a directory, expected a file path"
    assert main(["report", str(tmp_path), "--csv", str(tmp_path)]) == 2
    assert "--csv" in capsys.readouterr().err
    assert (tmp_path / "results.csv").read_text() == "run_id\nx\n"


def test_existing_run_needs_resume(tmp_path, capsys):
    (tmp_path / "results.csv").write_text("run_id\nx\n")
    assert main(["run", "--out", str(tmp_path)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (tmp_path / "results.csv").read_text() == "run_id\nx\n"


@pytest.mark.e2e
def test_unreadable_data_root_in_subprocess_has_no_traceback(tmp_path):
    res = run_cli("run", "--data-root", str(tmp_path / "nope"))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().startswith("error: --data-root")


def test_argparse_usage_error_is_exit_2():
    res = run_cli("run", "--precision", "fp64")
    assert res.returncode == 2 and "invalid choice" in res.stderr


def test_devices_lists_adapters_and_reasons(capsys):
    assert main(["devices", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["adapters"]) >= {"cpu", "gpu", "jetson"}
    assert report["adapters"]["cpu"]["available"] is True
    for section in ("adapters", "power_sources"):
        for name, entry in report[section].items():
            assert entry["available"] or entry["reason"], f"{name} unavailable without a reason"
    assert {"rapl", "nvml", "jtop", "ina3221-sysfs", "tegrastats"} <= set(report["power_sources"])
