"""The results.csv contract (docs/results.md, with units): column order, and one empty row to fill."""

from __future__ import annotations

from typing import Any

# Contract columns: add freely at the end of EXTRA_COLUMNS, never rename or drop these.
CONTRACT_COLUMNS = [
    "run_id",
    "case_id",
    "model",
    "dataset",
    "method",
    "target_sparsity",
    "weight_sparsity",
    "channel_sparsity",
    "kernel_sparsity",
    "params_dense",
    "params",
    "size_mb_dense",
    "size_mb",
    "macs_dense",
    "macs",
    "acceleration_rate",
    "device",
    "device_name",
    "backend",
    "precision",
    "batch_size",
    "latency_ms_p50",
    "latency_ms_p90",
    "latency_ms_p99",
    "latency_ms_mean",
    "latency_ms_std",
    "throughput_ips",
    "speedup",
    "realization",
    "power_w_mean",
    "energy_mj_per_inference",
    "energy_j_per_eval_epoch",
    "train_s_per_epoch",
    "energy_j_per_train_epoch",
    "power_source",
    "accuracy_top1",
    "eb_epoch",
    "status",
    "error",
]

EXTRA_COLUMNS = [
    "params_nonzero",  # non-zero parameters of the compacted model
    "macs_nonzero",  # MACs counting only non-zero weights
    "accuracy_top1_torch",  # top-1 (%) of the PyTorch ticket (accuracy_top1 is the exported model on the device)
    "onnx_max_abs_error",  # max |ONNX − PyTorch| on random inputs
    "channels_removed",  # output channels physically removed by compaction
    "channels_kept_for_alignment",  # removable channels kept so widths are multiples of the device's alignment
    "power_note",  # why energy is empty, when it is
    "latency_samples",  # number of timed iterations
    "samples_file",  # raw latency samples, relative to the run directory
    "throttled",  # clocks changed / throttle reason / temperature at limit during the latency window; empty = unknown
    "throttle_note",  # what changed, when throttled
    "power_w_idle",  # idle baseline (W), when measured; energy columns are never reduced by it
    "energy_mj_per_inference_above_idle",  # energy per inference minus idle power × window (mJ), when measured
    "structure",  # the ticket method's `structure` option (unstructured | kernel | group); empty when it has none
    "backend_note",  # the device's other backends and why they were skipped (e.g. no onnxruntime-gpu)
    "train_device",  # where the ticket was searched and trained (cpu, cuda)
    "energy_j_ticket_training",  # measured energy (J) of the ticket's own search/training, all phases
    "speedup_vs_fp32_dense",  # fp32 dense p50 / this p50, same model, data, device, backend, batch
    "int8_calibration",  # int8: calibrator, method, calibration set size, seed and sha256
    "int8_top1_agreement",  # int8: % of eval inputs whose int8 top-1 equals the fp32 ONNX's top-1
    "int8_max_abs_error",  # int8: max |int8 − fp32| logit over the eval split
    "int8_within_tolerance",  # int8: top-1 agreement ≥ the documented tolerance (devices/int8_quantize.py)
    "int8_fallback_layers",  # int8: compute layers not running int8 (ORT: left float; TensorRT: fp16/fp32 layers)
    "int8_note",  # int8: the agreement in words, and which layers fell back
    "latency_rounds",  # interleaved timing rounds the latency samples come from (adaptive: see docs/results.md)
    "latency_ms_round_cv",  # between-round spread: std / mean of the per-round median latencies
    "params_bias_maps",  # floats in the compacted model's bias maps (compaction's buffers): in the ONNX, not in params
    "speedup_lo",  # the slowest round's gain over the dense reference timed beside it (paired rows)
    "speedup_hi",  # the fastest round's gain over the dense reference timed beside it (paired rows)
    "speedup_round_cv",  # std / mean of the per-round ratios ticket ÷ dense reference (paired rows)
    "speedup_basis",  # paired | unpaired | reference: what `speedup` is relative to
    "mac_reduction",  # macs_dense / macs: the MAC reduction compaction made (realization's denominator)
    "threads",  # intra-op threads the row was measured with (ONNX Runtime, torch, BLAS); empty for a remote board
    "runtime_settings",  # other settings that change timing: where the thread count came from, session options
    "other_load_cores",  # CPU used by other processes on our CPUs during the case's timing windows (cores)
    "disturbed",  # rounds disagree beyond the bound, or other load crowded the threads; empty = not measured
    "disturbance_note",  # why the row is disturbed, with the figures
    "layers_file",  # per-layer table of the ticket beside its dense reference, relative to the run directory
    "layers_coverage",  # Σ per-layer times of the ticket's profile / latency_ms_p50 of the timed rounds
    "layers_profile_overhead",  # profiled / unprofiled per-call time − 1, measured in the profiling window
    "latency_windows",  # alternating timing windows over all rounds (ticket and reference take turns); empty: one each
    "latency_windows_preempted",  # of those, windows that lost CPU to other processes: left out of the round medians
]

COLUMNS = CONTRACT_COLUMNS + EXTRA_COLUMNS

# Columns that identify a results row: without them the table cannot be reported, compared or resumed.
RESULTS_KEY_COLUMNS = ("run_id", "case_id", "model", "dataset", "method", "device", "backend", "precision",
                       "batch_size", "status")  # fmt: skip
# Columns that hold text (everything else the contract names is a number; empty cells are allowed anywhere).
TEXT_COLUMNS = {"run_id", "case_id", "model", "dataset", "method", "device", "device_name", "backend", "precision",
                 "power_source", "status", "error", "power_note", "samples_file", "throttle_note",
                 "throttled", "structure", "backend_note", "train_device", "int8_calibration",
                "int8_within_tolerance", "int8_note", "speedup_basis", "runtime_settings", "disturbed",
                "disturbance_note", "layers_file"}  # fmt: skip

STATUSES = ("ok", "failed", "skipped")
POWER_SOURCES = ("nvml-energy", "nvml-power", "jtop", "ina3221-sysfs", "tegrastats", "rapl", "none")


def empty_row(**values: Any) -> dict[str, Any]:
    """A row with every column present (None = empty cell); unknown keys are an error."""
    unknown = set(values) - set(COLUMNS)
    if unknown:
        raise KeyError(f"not results columns: {sorted(unknown)}")
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(values)
    return row


def is_true(value: Any) -> bool:
    """A bool column (throttled, disturbed, int8_within_tolerance) as written and read back: True, "True" or
    "true" (pandas reads the column as bool, numpy bool or text, by its other cells); empty cells are False."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    if isinstance(value, bool):
        return value
    dtype = getattr(value, "dtype", None)  # numpy.bool_, from a column pandas read as bool
    return dtype is not None and dtype.kind == "b" and bool(value)
