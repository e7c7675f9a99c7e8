"""benchmarks/gpu_check.sh on its CPU path (so the prepared first-contact script cannot rot), its preflight
failing within seconds where nothing sane can run, and its usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def run_script(*args: str, env: dict[str, str] | None = None, timeout: float = 400) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHON": sys.executable, **(env or {})}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=full, timeout=timeout)


@pytest.mark.e2e
def test_cpu_fallback_runs_every_step_and_writes_everything_under_outdir(tmp_path):
    out = tmp_path / "check"
    suite = str(REPO / "tests/data/tiny_suite.toml")
    res = run_script(str(out), "--cpu-fallback", "--light", env={"GPU_CHECK_SUITE": suite})
    summary = (out / "summary.txt").read_text()
    assert res.returncode == 0, summary + res.stderr
    for step in ("doctor", "quick", "eb_vgg16", "devices", "nvml", "layers"):
        assert f"gpu_check: {step} ok" in summary
    layers = json.loads((out / "layers" / "layers.json").read_text())
    assert layers["onnxruntime-cpu"]["status"] == "ok" and not layers["onnxruntime-cpu"]["unmapped_convs"]
    doctor = json.loads((out / "doctor" / "doctor.json").read_text())
    assert doctor["ok"] and any(c["name"] == "latency onnxruntime-cpu" for c in doctor["checks"])
    quick = pd.read_csv(out / "quick" / "results.csv")
    assert (quick["status"] == "ok").all() and (quick["train_device"] == "cpu").all()
    eb = pd.read_csv(out / "eb_vgg16" / "results.csv")
    assert (eb["method"] == "eb").all() and (eb["model"] == "vgg16").all() and eb["eb_epoch"].notna().all()
    artifacts = json.loads(next((out / "eb_vgg16" / "tickets").glob("*/artifacts.json")).read_text())
    assert len(artifacts["training_energy"]["per_epoch_j"]) == len(artifacts["mask_distance_epochs"]) + 2
    assert "-- EB training energy (J):" in summary and "all steps passed" in summary
    assert not list(out.rglob("ticket.pt")) and not list(out.rglob("model.onnx"))  # --light
    ticketbench = [ln for ln in (out / "env.txt").read_text().splitlines() if ln.startswith("ticketbench ")]
    assert ticketbench == [f"ticketbench {REPO / 'ticketbench' / '__init__.py'}"]  # this checkout, not an install


@pytest.mark.e2e
@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_gpu_mode_without_cuda_fails_in_the_preflight_with_the_reason(tmp_path):
    res = run_script(str(tmp_path / "check"), timeout=120)
    summary = (tmp_path / "check" / "summary.txt").read_text()
    assert res.returncode == 1
    assert "FAILED preflight:" in summary and "sees no CUDA device" in summary and "--cpu-fallback" in summary
    assert not (tmp_path / "check" / "doctor.log").exists()  # no step ran


def test_bad_usage_exits_2(tmp_path):
    assert run_script(timeout=30).returncode == 2
    assert run_script(str(tmp_path / "x"), "--frobnicate", timeout=30).returncode == 2
    assert run_script(str(tmp_path / "x"), env={"GPU_CHECK_BUDGET_S": "soon"}, timeout=30).returncode == 2
