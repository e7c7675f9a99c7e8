"""The results.csv contract (../shared/DESIGN.md): column order, and one empty row to fill."""

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
    "latency_rounds",  # interleaved timing rounds (windows) the latency samples come from
    "latency_ms_round_cv",  # between-round spread: std / mean of the per-round median latencies
]

COLUMNS = CONTRACT_COLUMNS + EXTRA_COLUMNS

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
