"""trtexec log, trace and output parsers against recorded TensorRT 8.2 / 10.x logs and trtexec-layout files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ticketbench.devices import trtexec as tx

FIX = Path(__file__).parent / "fixtures" / "trtexec"


def read(name: str) -> str:
    return (FIX / name).read_text()


def test_versions_from_banners():
    got = [tx.parse_version(line) for line in read("banners.txt").splitlines()]
    assert got == ["10.2.0", "8.2.1", "8.4.0", "8.0.1"]
    assert tx.parse_version("no banner here") is None


def test_summary_trt82_jetson_nano():
    s = tx.parse_summary(read("trt8201_nano_summary.log"))
    assert s["version"] == "8.2.1"
    assert s["throughput_qps"] == pytest.approx(72.2544)
    assert s["latency_ms"] == {"min": 13.7075, "max": 14.8861, "mean": 13.8259, "median": 13.7999, "p99": 14.8121}
    assert s["end_to_end_ms"]["median"] == pytest.approx(13.8109)  # 8.2 still prints End-to-End
    assert s["gpu_compute_ms"]["p99"] == pytest.approx(14.6803)
    assert s["d2h_ms"]["min"] == pytest.approx(0.00830078)
    assert s["host_walltime_s"] == pytest.approx(3.03096) and s["gpu_compute_total_s"] == pytest.approx(2.99948)


def test_summary_trt10():
    s = tx.parse_summary(read("trt10_summary.log"))
    assert s["latency_ms"]["p90"] == pytest.approx(10.2996)
    assert s["latency_ms"]["p95"] == pytest.approx(10.8698)
    assert s["latency_ms"]["p99"] == pytest.approx(12.9675)
    assert "end_to_end_ms" not in s  # 10.x dropped the End-to-End line
    assert s["enqueue_ms"]["max"] == pytest.approx(15.0201)
    assert s["throughput_qps"] == pytest.approx(130.298)


def test_prolog_lines():
    s = tx.parse_summary(read("trt86_prolog.log"))
    assert (s["warmup_queries"], s["warmup_ms"]) == (45, 200.0)
    assert (s["timed_queries"], s["timed_s"]) == (669, pytest.approx(3.01153))


def test_trace_trt8_drops_warmup_queries():
    trace = tx.parse_times(read("times_trt8.json"), warmup_ms=20)
    lat = tx.trace_latencies_ms(trace)
    np.testing.assert_allclose(lat, [4.2, 4.2, 5.2, 4.2])  # the 3 warm-up queries (compute < 20 ms) are gone
    assert tx.trace_window_ms(trace) == pytest.approx((20.0, 37.8))
    assert len(tx.parse_times(read("times_trt8.json"))) == 7  # without the rule they would count


def test_trace_trt10_has_no_warmup():
    trace = tx.parse_times(read("times_trt10.json"), warmup_ms=200)
    np.testing.assert_allclose(tx.trace_latencies_ms(trace), [2.1, 2.6, 2.1])
    assert tx.trace_window_ms(trace) == pytest.approx((201.0, 208.0))


def test_exported_outputs_with_nan_and_inf():
    out = tx.parse_outputs(read("output.json"))
    logits = out["logits"]
    assert logits.shape == (2, 3)
    np.testing.assert_array_equal(logits[0], [0.5, -1.25, 3.0])
    assert logits[1, 0] == 2 and np.isnan(logits[1, 1]) and logits[1, 2] == -np.inf


def test_command_lines():
    b = tx.build_argv("trtexec", "m.onnx", "m.engine", "fp16", "input", [1, 1, 8, 8], [32, 1, 8, 8], [256, 1, 8, 8])
    assert "--fp16" in b and "--minShapes=input:1x1x8x8" in b and "--maxShapes=input:256x1x8x8" in b
    assert b[-3:] == ["--iterations=1", "--warmUp=0", "--duration=0"]  # no 3-second default run after a build
    with pytest.raises(ValueError, match="int8"):
        tx.build_argv("trtexec", "m.onnx", "e", "int8", "input", None, None, None)
    t = tx.timing_argv("trtexec", "e", "input", [32, 1, 8, 8], 200, 50, 0.5, "t.json")
    assert "--duration=1" in t and "--iterations=50" in t and "--warmUp=200" in t  # whole seconds, rounded up
    i = tx.infer_argv("trtexec", "e", "input", [4, 1, 8, 8], "in.bin", "out.json", "t.json")
    assert "--loadInputs=input:in.bin" in i and "--exportOutput=out.json" in i


@pytest.mark.parametrize(
    "version, layer_info, comparable",
    [("8.0.1", False, []), ("8.2.1", True, []), ("10.3.0", True, []), ("unknown", False, []),
     ("11.0.0", True, ["--includeDataTransfers", "--noCudaGraph"])],
)  # fmt: skip
def test_options_follow_the_trtexec_version(version, layer_info, comparable):
    """trtexec stops on options its version lacks: the layer report needs 8.2; 11 needs two options to time what
    8.x/10.x time (H2D + compute + D2H, no CUDA graph), options that 8.x/10.x reject."""
    assert tx.has_layer_info(version) is layer_info
    t = tx.timing_argv("trtexec", "e", "input", None, 200, 50, 0.5, "t.json", version)
    i = tx.infer_argv("trtexec", "e", "input", None, "in.bin", "out.json", "t.json", version)
    for argv in (t, i):
        assert [a for a in argv if a in ("--includeDataTransfers", "--noCudaGraph")] == comparable
    args = ("trtexec", "m.onnx", "e", "int8", "input", None, None, None, False, "c.cache", "l.json", version)
    if layer_info:
        assert "--exportLayerInfo=l.json" in tx.build_argv(*args)
    else:
        with pytest.raises(ValueError, match="exportLayerInfo"):
            tx.build_argv(*args)
