"""CPU adapter: ONNX Runtime CPU execution provider with an explicit intra-op thread count; RAPL power."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np

from ticketbench import threads as thread_policy
from ticketbench.devices.base import DEVICES, Availability, DeviceAdapter, Session
from ticketbench.devices.layer_profile import LayerProfile, ort_profile
from ticketbench.devices.power import PowerReader, PowerSource, probe_rapl


def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def is_qdq(onnx_path: Path) -> bool:
    """Whether the graph holds QuantizeLinear nodes, i.e. was statically quantized (weights and activations)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return any(n.op_type == "QuantizeLinear" for n in graph.node)


# ONNX Runtime's pool threads spin for a while after a run returns, waiting for the next one. A benchmark holds
# several sessions (each ticket, its dense reference), so the session timed next competed for the cores with the
# last one's spinning threads: on 2 cores, batch-1 iterations of 4 ms in a 0.45 ms model, and per-round ratios to
# the reference with 20-30% spread instead of 1.4-1.9% (benchmarks/bench_regression_gate.py). Stopping the spin
# when a run returns keeps it within a run (between operators) and costs about 0.06 ms per batch-1 run of the
# quick suite's VGG-11 (0.47 -> 0.53 ms alone; batch 32 unchanged). allow_spinning=0 would cost 0.16 ms.
ORT_SESSION_CONFIG = {"session.force_spinning_stop": "1"}


class OrtCpuSession(Session):
    backend = "onnxruntime-cpu"
    host_cpu_bound = True

    def __init__(self, onnx_path: Path, threads: int) -> None:
        import onnxruntime as ort

        super().__init__()
        self.onnx_path, self.threads = Path(onnx_path), threads
        self.sess = ort.InferenceSession(str(onnx_path), self._options(), providers=["CPUExecutionProvider"])
        self.input_name = self.sess.get_inputs()[0].name

    def _options(self):
        """The session options every session of this model gets (the timed one and its profiling twin)."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        for key, value in ORT_SESSION_CONFIG.items():
            opts.add_session_config_entry(key, value)
        return opts

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.sess.run(None, {self.input_name: x})[0]

    def sync(self) -> None:  # CPU execution is synchronous
        pass

    def profile_layers(self, x: np.ndarray, calls: int) -> LayerProfile:
        """ONNX Runtime's node times from a profiling twin of this session (same options, same graph optimizations),
        timed beside this one in alternating windows."""
        return ort_profile(self.onnx_path, self._options(), ["CPUExecutionProvider"], self.run, x, calls, self.backend)


@DEVICES.register("cpu")
class CpuDevice(DeviceAdapter):
    name = "cpu"
    torch_device = "cpu"  # training epochs run here with PyTorch
    precisions = ("fp32", "int8")
    int8_input = "qdq"  # int8 = a QDQ ONNX from devices/int8_quantize.py; ORT fuses its QDQ pairs into int8 kernels

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or thread_policy.current() or thread_policy.physical_cores()

    @classmethod
    def probe(cls, host: str | None = None, **options: Any) -> Availability:
        if host:
            return Availability(False, "the cpu adapter measures this machine only (--host is for jetson)")
        try:
            import onnxruntime as ort
        except ImportError as exc:
            return Availability(False, f"onnxruntime not importable: {exc}")
        return Availability(True, f"onnxruntime {ort.__version__} CPUExecutionProvider")

    def identity(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            "device": "cpu",
            "device_name": cpu_model_name(),
            "backend": OrtCpuSession.backend,
            "onnxruntime": ort.__version__,
            "threads": self.threads,
            "session_config": dict(ORT_SESSION_CONFIG),
            "machine": platform.machine(),
        }

    def load(
        self,
        onnx_path: Path,
        precision: str = "fp32",
        batch_size: int | None = None,
        module: Any | None = None,
        calibration: np.ndarray | None = None,
    ) -> OrtCpuSession:
        """`module` and `calibration` are ignored: int8 here is a QDQ ONNX quantized beforehand (int8_input)."""
        if precision not in self.precisions:
            raise ValueError(f"cpu adapter runs {' and '.join(self.precisions)} (asked for {precision})")
        if precision == "int8" and not is_qdq(onnx_path):
            raise ValueError(f"{onnx_path}: int8 on the cpu needs a QDQ-quantized ONNX (devices/int8_quantize.py)")
        return OrtCpuSession(onnx_path, self.threads)

    def power_reader(self) -> tuple[PowerReader | None, str]:
        return probe_rapl()

    def power_sources(self) -> list[PowerSource]:
        """RAPL package energy, checked against the packages' own ceiling (max power, else PL2)."""
        reader, why = probe_rapl()
        if reader is None:
            return [PowerSource("rapl", None, why)]
        return [PowerSource("rapl", reader, "", *reader.max_power_w())]

    @classmethod
    def torch_power(cls, torch_device: str) -> tuple[PowerReader | None, str] | None:
        return probe_rapl() if torch_device.split(":")[0] == "cpu" else None
