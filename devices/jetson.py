"""NVIDIA Jetson adapter (TX2 and newer): on the board itself, or remote over SSH (`--host user@board`).

Two backends:
- `tensorrt` (local only): the TensorRT Python API with torch CUDA buffers (JetPack 5/6 with a CUDA torch);
  power is polled here from INA3221 sysfs, else jtop, else tegrastats; training epochs run on the board.
  It shares tensorrt_engine.load_tensorrt with the gpu adapter.
- `trtexec` (local or remote; the only choice for TX2's JetPack 4.6 / Python 3.6): the ONNX is copied to
  the board (cached by hash), engines are built by trtexec (cached per precision and shape), and each
  measurement is one run of devices/jetson_board.py on the board, which starts the power sampler, runs
  trtexec with every output line timestamped, and returns logs, the --exportTimes trace and the samples.
  The latency window is the trace's first H2D start to last D2H end, placed on the board's monotonic
  clock by the time trtexec printed 'Starting inference' (its trace origin). Board times are mapped to
  local monotonic time by one offset fixed at connection, so windows and samples stay aligned exactly.

Honest limits: with trtexec, latency inputs are trtexec's random values (eval epochs load the real ones),
the warm-up is trtexec's time-based --warmUp (ms), and an eval epoch runs one trtexec process per batch,
its energy summed over the per-batch inference windows only (process start-up excluded). No Jetson was
available: everything here was exercised against fakes (sysfs trees, a fake trtexec/tegrastats/nvpmodel,
an OpenSSH server on 127.0.0.1); see docs/devices.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

import numpy as np

from ticketbench.devices import jetson_board
from ticketbench.devices.base import DEVICES, Availability, DeviceAdapter, Session
from ticketbench.devices.int8_calibration import Int8Report, calibration_sha256, layer_precisions, write_trtexec_cache
from ticketbench.devices.layer_profile import (
    LayerProfile,
    OnnxGraph,
    read_layer_info,
    read_trtexec_profile,
    resolve_trt_layers,
)
from ticketbench.devices.measure import EvalResult, LatencyConfig, LatencyResult, detect_throttle
from ticketbench.devices.onnx_fp16 import convert_bytes
from ticketbench.devices.power import PowerReader, PowerSource, read_float
from ticketbench.devices.tensorrt_engine import (
    STRONGLY_TYPED_FROM,
    file_sha256,
    int8_refusal,
    load_tensorrt,
    max_opset_for,
    onnx_input,
    onnx_opset,
    static_dims,
    trt_major,
)
from ticketbench.devices.transport import LocalTransport, SshTransport, TransportError
from ticketbench.devices.trtexec import (
    build_argv,
    has_layer_info,
    infer_argv,
    parse_outputs,
    parse_summary,
    parse_times,
    parse_version,
    profile_argv,
    timing_argv,
    trace_latencies_ms,
    trace_window_ms,
)

BOARD_SOURCE = Path(jetson_board.__file__).read_text()
log = logging.getLogger("ticketbench.devices.jetson")


def jetson_model(root: Path = Path("/")) -> str | None:
    """The board model from the device tree, when this machine is a Jetson."""
    text = jetson_board.board_model(str(root))
    if text is None:
        return None
    return text if ("jetson" in text.lower() or (Path(root) / "etc/nv_tegra_release").exists()) else None


class Board:
    """A Jetson reached through a transport: runs jetson_board.py there, maps its clock to ours."""

    def __init__(self, transport: LocalTransport | SshTransport, root: str = "/", rate_hz: float = 50.0) -> None:
        self.transport, self.root, self.rate_hz = transport, root, rate_hz
        self.offset = 0.0  # board monotonic − local monotonic (0 locally: same clock)
        self.facts: dict[str, Any] = {}

    def call(self, spec: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
        spec = {"root": self.root, "rate_hz": self.rate_hz, **spec}
        if not self.transport.remote:
            return jetson_board.run_jobs(spec) if spec.get("cmd") == "run" else jetson_board.info(self.root)
        arg = base64.b64encode(json.dumps(spec).encode()).decode()
        out = self.transport.run(["python3", "-", arg], input=BOARD_SOURCE, timeout=timeout)
        return json.loads(out.strip().splitlines()[-1])

    def info(self) -> dict[str, Any]:
        facts = self.call({"cmd": "info"}, timeout=300)
        if self.transport.remote:
            self.offset = facts["clock"] - time.monotonic()
        self.facts = facts
        return facts

    def to_local(self, t_board: float) -> float:
        return t_board - self.offset

    def run(self, jobs: list[dict[str, Any]], sample: bool = True, **extra: Any) -> dict[str, Any]:
        return self.call({"cmd": "run", "jobs": jobs, "sample": sample, **extra})


class BoardPowerFeed(PowerReader):
    """Push reader: the board's power samples, delivered after each run of jetson_board on the board."""

    kind = "push"

    def __init__(self, board: Board, source: str) -> None:
        self.board, self.source = board, source
        self._sink: Callable[[float, float], None] | None = None

    def attach(self, sink: Callable[[float, float], None]) -> None:
        self._sink = sink

    def detach(self) -> None:
        self._sink = None

    def deliver(self, result: dict[str, Any]) -> None:
        if self._sink is None:
            return
        for t, watts in result.get("samples", []):
            self._sink(self.board.to_local(t), watts)

    def idle_window(self, seconds: float) -> tuple[float, float]:
        """Sample the idle board for `seconds` (no job running); the window in local monotonic time."""
        res = self.board.run([], idle_s=seconds)
        self.deliver(res)
        a, b = res["idle_window"]
        return self.board.to_local(a), self.board.to_local(b)


def _check(job: dict[str, Any], what: str) -> None:
    if job.get("rc", 0) != 0:
        tail = " | ".join(job.get("log", "").strip().splitlines()[-3:])
        raise RuntimeError(f"trtexec {what} failed (exit {job.get('rc')}): {tail}")


class TrtexecSession(Session):
    """An ONNX model on a Jetson, built and run with trtexec (locally or over SSH); it times itself."""

    backend = "tensorrt-trtexec"
    self_timed = True
    int8_report: Int8Report | None = None  # int8 only: the calibration cache sent, the layers that fell back

    def __init__(
        self,
        board: Board,
        onnx_path: Path,
        precision: str,
        feed: BoardPowerFeed | None,
        eval_batch: int = 256,
        calibration: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        if precision not in ("fp32", "fp16", "int8"):
            raise ValueError(f"trtexec path supports fp32, fp16 and calibrated int8 (asked for {precision})")
        if precision == "int8" and (calibration is None or len(calibration) == 0):
            raise ValueError("int8 with trtexec needs calibration= (the calibration set, float32 N×C×H×W)")
        self.board, self.precision, self.feed, self.eval_batch = board, precision, feed, eval_batch
        self.onnx_path = Path(onnx_path)  # what profile_layers maps trtexec's layer names back to
        exe = board.facts.get("trtexec")
        if not exe:
            raise RuntimeError("trtexec not found on the board (PATH or /usr/src/tensorrt/bin/trtexec)")
        self.exe = str(exe)
        self.trt_version = parse_version(board.facts.get("trtexec_banner") or "") or "unknown"
        # TensorRT 11's trtexec has no --fp16 (strongly typed networks): fp16 must be in the ONNX itself
        self.strongly_typed = trt_major(self.trt_version) >= STRONGLY_TYPED_FROM
        if precision == "int8" and self.strongly_typed:
            raise RuntimeError(f"trtexec of TensorRT {self.trt_version} has no --int8 (strongly typed networks only)")
        self.input_name, self.dims = onnx_input(onnx_path)
        self.dynamic = bool(self.dims) and self.dims[0] is None
        self.dir = f"{board.transport.workdir}/{file_sha256(onnx_path)[:16]}"
        fp16_graph = precision == "fp16" and self.strongly_typed
        self.onnx = f"{self.dir}/model-fp16.onnx" if fp16_graph else f"{self.dir}/model.onnx"
        if not board.transport.exists(self.onnx):
            with tempfile.TemporaryDirectory(prefix="tb-onnx-") as tmp:
                copy = Path(tmp) / Path(self.onnx).name
                blob = Path(onnx_path).read_bytes()
                copy.write_bytes(convert_bytes(blob) if fp16_graph else blob)
                board.transport.put([copy], self.dir)
        self.calib_sha = ""
        self.calib: str | None = None  # the calibration cache on the board (int8)
        if precision == "int8" and calibration is not None:  # int8 without a calibration set was refused above
            self.calib = self._send_calibration(Path(onnx_path), calibration)
        self.engines: dict[tuple[int, int, int], str] = {}
        self.last_run: dict[str, Any] = {}

    def _send_calibration(self, onnx_path: Path, calibration: np.ndarray) -> str:
        """Write the TensorRT calibration cache here (the controller) and copy it to the board: its path there.

        Ranges come from ONNX Runtime's entropy calibration of this ONNX on the calibration set; the file name
        holds the calibration set's sha256 and the board's TensorRT version, like the engines it feeds."""
        from ticketbench.devices.int8_quantize import CalibrationSet, activation_ranges

        x = np.ascontiguousarray(calibration, dtype=np.float32)
        self.calib_sha = calibration_sha256(x)[:16]
        name = f"calib-{self.calib_sha}-trt{self.trt_version}.cache"
        remote = f"{self.dir}/{name}"
        sent = self.board.transport.exists(remote)
        if not sent:
            with tempfile.TemporaryDirectory(prefix="tb-calib-") as tmp:
                ranges = activation_ranges(onnx_path, CalibrationSet(x, "", [], 0))
                self.board.transport.put([write_trtexec_cache(ranges, self.trt_version, Path(tmp) / name)], self.dir)
        self.int8_report = Int8Report(remote, sent, "onnxruntime entropy → trtexec --calib cache")
        return remote

    def _shape(self, batch: int) -> list[int] | None:
        return [batch, *static_dims(self.dims)] if self.dynamic else None

    def _engine(self, min_b: int, opt_b: int, max_b: int) -> str:
        """Path of the engine for a batch profile, built on the board unless already cached there."""
        key = (min_b, opt_b, max_b) if self.dynamic else (0, 0, 0)
        if key in self.engines:
            return self.engines[key]
        tag = f"int8-{self.calib_sha}" if self.calib else self.precision  # int8 engines follow their calibration
        path = f"{self.dir}/{tag}-b{min_b}-{opt_b}-{max_b}-trt{self.trt_version}.engine"
        shapes = (self._shape(min_b), self._shape(opt_b), self._shape(max_b)) if self.dynamic else (None,) * 3
        # the int8 layer report needs --exportLayerInfo (TensorRT >= 8.2); without it the precisions stay unreported
        layers = f"{path[: -len('.engine')]}.layers.json" if self.calib and has_layer_info(self.trt_version) else None
        argv = build_argv(
            self.exe,
            self.onnx,
            path,
            self.precision,
            self.input_name,
            *shapes,
            self.strongly_typed,
            self.calib,
            layers,
            self.trt_version,
        )
        jobs = [{"argv": argv, "skip_if_exists": path}]
        if layers:  # read the layer report whether the engine was built now or found cached
            jobs.append({"argv": ["true"], "read": [layers]})
        res = self.board.run(jobs, sample=False)
        _check(res["jobs"][0], "engine build")
        if layers and self.int8_report is not None:
            text = res["jobs"][1]["files"].get(layers)
            self.int8_report.layers = layer_precisions(text) if text else {}
        self.engines[key] = path
        return path

    def _deliver(self, res: dict[str, Any]) -> None:
        self.last_run = res
        if self.feed is not None:
            self.feed.deliver(res)

    def _window(self, job: dict[str, Any], trace: list[dict[str, float]]) -> tuple[float, float]:
        t_si = job["marks"].get("Starting inference")
        if t_si is None:
            raise RuntimeError("trtexec printed no 'Starting inference' line: cannot place the timing window")
        a, b = trace_window_ms(trace)
        return self.board.to_local(t_si + a / 1e3), self.board.to_local(t_si + b / 1e3)

    def timed_run(self, x: np.ndarray, cfg: LatencyConfig) -> LatencyResult:
        """trtexec's own timing loop on the board, every query's latency kept, power sampled alongside."""
        batch = int(x.shape[0])
        engine = self._engine(batch, batch, batch)
        times = f"{self.dir}/times-{self.precision}-b{batch}.json"
        warmup_ms = max(1.0, cfg.warmup_seconds * 1e3)
        argv = timing_argv(
            self.exe,
            engine,
            self.input_name,
            self._shape(batch),
            warmup_ms,
            cfg.min_iterations,
            cfg.min_seconds,
            times,
            self.trt_version,
        )
        res = self.board.run([{"argv": argv, "read": [times]}])
        job = res["jobs"][0]
        _check(job, "timing run")
        if not job["files"].get(times):
            raise RuntimeError(f"trtexec wrote no timing trace ({times})")
        trace = parse_times(job["files"][times], warmup_ms)
        if not trace:
            raise RuntimeError("trtexec's timing trace has no query after the warm-up")
        t0, t1 = self._window(job, trace)
        self._deliver(res)
        throttled, note = detect_throttle(res["snapshot_before"], res["snapshot_after"])
        extra = {"trtexec": parse_summary(job["log"]), "power_source": res["power_source"]}
        return LatencyResult(trace_latencies_ms(trace), batch, t0, t1, throttled, note, extra)

    def profile_layers(self, x: np.ndarray, calls: int) -> LayerProfile:
        """trtexec's per-layer profile of this batch's engine (--exportProfile, in a run apart from its timed one:
        --separateProfileRun), layer names resolved through --exportLayerInfo where the version has it (>= 8.2).
        `plain_ms` is the unprofiled run's median Latency from trtexec's own summary; trtexec does not report the
        profiled run's latency, so the profiler's overhead is left unmeasured here (profiled_ms None)."""
        batch = int(x.shape[0])
        engine = self._engine(batch, batch, batch)
        stem = f"{self.dir}/profile-{self.precision}-b{batch}-trt{self.trt_version}"
        prof, info = f"{stem}.json", f"{stem}.layers.json" if has_layer_info(self.trt_version) else None
        argv = profile_argv(
            self.exe, engine, self.input_name, self._shape(batch), 200, calls, prof, info, self.trt_version
        )
        res = self.board.run([{"argv": argv, "read": [prof] + ([info] if info else [])}], sample=False)
        job = res["jobs"][0]
        _check(job, "profile run")
        text = job["files"].get(prof)
        if not text:
            raise RuntimeError(f"trtexec wrote no profile ({prof})")
        layers, count = read_trtexec_profile(text)
        info_text = job["files"].get(info) if info else None
        resolve_trt_layers(layers, OnnxGraph.load(self.onnx_path), read_layer_info(info_text) if info_text else None)
        plain = parse_summary(job["log"]).get("latency_ms", {}).get("median")
        names = "layer names from --exportLayerInfo" if info_text else "no --exportLayerInfo before TensorRT 8.2"
        return LayerProfile(
            self.backend,
            batch,
            count,
            layers,
            None,
            plain,
            f"trtexec {self.trt_version} --exportProfile ({names})",
            "trtexec does not report the profiled run's latency: overhead not measured",
        )

    def _infer(self, xs: list[np.ndarray]) -> tuple[list[np.ndarray], list[tuple[float, float]]]:
        """One trtexec query per batch on the real inputs: outputs and per-batch inference windows."""
        top = max(self.eval_batch, *(int(x.shape[0]) for x in xs))
        engine = self._engine(1, top, top)  # one engine for every eval batch size up to `top`
        remote = f"{self.board.transport.workdir}/inputs"  # shared by every model: same data, one upload
        present = self.board.transport.listdir(remote)
        jobs, reads = [], []
        with tempfile.TemporaryDirectory(prefix="tb-eval-") as tmp:
            files = []
            for i, x in enumerate(xs):
                blob = np.ascontiguousarray(x, dtype=np.float32)
                name = f"{hashlib.sha256(blob.tobytes()).hexdigest()[:20]}.bin"
                if name not in present:
                    blob.tofile(Path(tmp) / name)
                    files.append(Path(tmp) / name)
                out, times = f"{self.dir}/out{i}.json", f"{self.dir}/times{i}.json"
                shape = self._shape(int(x.shape[0]))
                argv = infer_argv(
                    self.exe, engine, self.input_name, shape, f"{remote}/{name}", out, times, self.trt_version
                )
                jobs.append({"argv": argv, "read": [out, times]})
                reads.append((out, times))
            self.board.transport.put(files, remote)
        res = self.board.run(jobs)
        outputs, segments = [], []
        for job, (out, times) in zip(res["jobs"], reads):
            _check(job, "inference")
            tensors = parse_outputs(job["files"][out])
            outputs.append(next(iter(tensors.values())))
            segments.append(self._window(job, parse_times(job["files"][times])))
        self._deliver(res)
        return outputs, segments

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._infer([x])[0][0]

    def sync(self) -> None:  # every trtexec process has finished when its run returns
        pass

    def prepare(self, batch_size: int) -> None:
        self._engine(batch_size, batch_size, batch_size)  # the engine timed_run uses, built outside any window

    def eval_epoch(self, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> EvalResult:
        xs, ys = zip(*batches)
        outputs, segments = self._infer(list(xs))
        correct = sum(int((o.reshape(len(y), -1).argmax(1) == y).sum()) for o, y in zip(outputs, ys))
        n = sum(len(y) for y in ys)
        busy = sum(b - a for a, b in segments)
        return EvalResult(100.0 * correct / max(n, 1), busy, n, segments[0][0], segments[-1][1], segments)


def ina3221_limit_w(rail_spec: tuple) -> tuple[float | None, str]:
    """Critical current (mA) × rail voltage (mV) of the total rail, from the INA3221's own sysfs files
    (JetPack 4 iio: crit_current_limit_N / in_voltageN_input; JetPack 5+ hwmon: currN_crit / inN_input)."""
    if rail_spec[0] == "mw":
        power = Path(rail_spec[1])
        n = power.name[len("in_power") : -len("_input")]
        crit, volt = power.parent / f"crit_current_limit_{n}", power.parent / f"in_voltage{n}_input"
    else:
        volt, curr = Path(rail_spec[1]), Path(rail_spec[2])
        crit = curr.parent / curr.name.replace("_input", "_crit")
    ma, mv = read_float(crit), read_float(volt)
    if not ma or not mv:
        return None, ""
    return ma * mv / 1e6, "INA3221 critical current × rail voltage"


def _torch_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


@DEVICES.register("jetson")
class JetsonDevice(DeviceAdapter):
    name = "jetson"
    precisions: tuple[str, ...] = ("fp32", "fp16")  # plus int8 where the board's TensorRT can calibrate (__init__)

    def __init__(
        self,
        host: str | None = None,
        ssh_options: list[str] | None = None,
        workdir: str | None = None,
        root: str | None = None,
        backend: str = "auto",
        power: str = "auto",
        rate_hz: float = 50.0,
    ) -> None:
        self.root = root or os.environ.get("TICKETBENCH_JETSON_ROOT", "/")
        transport = SshTransport(host, ssh_options, workdir) if host else LocalTransport(workdir)
        self.board = Board(transport, self.root, rate_hz)
        self.power, self.rate_hz = power, rate_hz
        try:
            self.facts = self.board.info()
        except (TransportError, OSError, ValueError) as exc:
            transport.close()
            raise RuntimeError(f"cannot query the Jetson ({transport.where}): {exc}") from exc
        self.backend = self._choose_backend(backend)
        self.torch_device = "cuda" if not transport.remote and _torch_cuda() else None  # training epochs
        version = self.trt_version()
        self.max_onnx_opset = max_opset_for(version) if version else None
        self.int8_refusal = self._int8_refusal()
        if not self.int8_refusal:  # the fp32 ONNX plus the calibration set (entropy calibrator / trtexec --calib)
            self.precisions, self.int8_input = (*self.precisions, "int8"), "calibrator"
        self._reader: Any = None

    def trt_version(self) -> str | None:
        """TensorRT's version on the board: the Python module's (tensorrt backend) or trtexec's banner."""
        if self.backend == "tensorrt":
            import tensorrt

            return str(tensorrt.__version__)
        return parse_version(self.facts.get("trtexec_banner") or "")

    def _int8_refusal(self) -> str:
        """Why this board's TensorRT cannot build calibrated int8 ("" when it can)."""
        if self.backend == "tensorrt":
            import tensorrt

            return int8_refusal(tensorrt)
        version = self.trt_version() or "unknown"
        if trt_major(version) >= STRONGLY_TYPED_FROM:
            return f"trtexec of TensorRT {version} has no --int8 (strongly typed networks only)"
        return ""

    def _choose_backend(self, backend: str) -> str:
        if backend in ("auto", "tensorrt") and not self.board.transport.remote:
            try:
                import tensorrt  # noqa: F401

                if _torch_cuda():
                    return "tensorrt"
            except ImportError:
                pass
            if backend == "tensorrt":
                raise RuntimeError("tensorrt backend needs the tensorrt module and a CUDA torch on the board")
        if not self.facts.get("trtexec"):
            raise RuntimeError("trtexec not found on the board (PATH or /usr/src/tensorrt/bin/trtexec)")
        return "trtexec"

    @classmethod
    def probe(cls, host: str | None = None, **options: Any) -> Availability:
        root = options.get("root") or os.environ.get("TICKETBENCH_JETSON_ROOT", "/")
        if host is None:
            model = jetson_model(Path(root))
            if model is None:
                return Availability(False, "not a Jetson (no device-tree model naming one); remote mode needs --host")
            exe = jetson_board.find_trtexec()
            return Availability(True, f"{model}; trtexec: {exe or 'not found'}")
        transport = SshTransport(host, options.get("ssh_options"), options.get("workdir"))
        try:
            facts = Board(transport, root).info()
        except (TransportError, OSError, ValueError) as exc:
            return Availability(False, f"cannot reach {host}: {exc}")
        finally:
            transport.close()
        if not facts.get("model"):
            return Availability(False, f"{host} is not a Jetson (no /proc/device-tree/model)")
        if not facts.get("trtexec"):
            return Availability(False, f"{facts['model']} at {host} has no trtexec")
        return Availability(True, f"{facts['model']} at {host}, L4T {facts.get('l4t')}")

    def identity(self) -> dict[str, Any]:
        f = self.facts
        version = self.trt_version()
        return {
            "device": "jetson",
            "device_name": f.get("model"),
            "backend": "tensorrt" if self.backend == "tensorrt" else TrtexecSession.backend,
            "host": self.board.transport.where,
            "l4t": f.get("l4t"),
            "jetpack": f.get("jetpack"),
            "tensorrt": version,
            "nvpmodel": f.get("nvpmodel"),
            "jetson_clocks": f.get("jetson_clocks"),
            "power_source": f.get("power_source"),
            "power_reasons": f.get("power_reasons"),
            "board_python": f.get("python"),
            "max_onnx_opset": self.max_onnx_opset,
            "snapshot": f.get("snapshot"),
        }

    def snapshot(self) -> dict[str, Any]:
        return jetson_board.snapshot(self.root) if not self.board.transport.remote else {}

    def power_reader(self) -> tuple[PowerReader | None, str]:
        if self.backend == "trtexec":
            if self.facts.get("power_source", "none") == "none":
                return None, "; ".join(f"{k}: {v}" for k, v in (self.facts.get("power_reasons") or {}).items())
            self._reader = BoardPowerFeed(self.board, self.facts["power_source"])
            return self._reader, ""
        reader, reasons = jetson_board.open_power(self.root, self.power, self.rate_hz)
        self._reader = reader
        return reader, "; ".join(f"{k}: {v}" for k, v in reasons.items()) if reader is None else ""

    def power_sources(self) -> list[PowerSource]:
        """A local board: every total-board source, each opened on its own so they can be compared (INA3221 sysfs,
        the board's own rail read directly, is the reference), against the rail's critical current × voltage.
        A remote board: the adapter's own feed (the board samples itself), one source."""
        if self.board.transport.remote:
            reader, why = self.power_reader()
            return [PowerSource(reader.source if reader else "board", reader, why, owned=False)]
        jb, root = jetson_board, self.root
        rails = jb.find_ina3221_rails(root)
        name = jb.total_rail(rails)
        limit, what = ina3221_limit_w(rails[name]) if name else (None, "")
        out = []
        for source, opener in (
            ("ina3221-sysfs", lambda: jb.Ina3221Reader(root)),
            ("jtop", lambda: jb.JtopReader(root)),
            ("tegrastats", self._tegrastats),
        ):
            try:
                # jetson_board.py runs on the board without this package: its readers have PowerReader's attributes
                # (source, kind, read_watts, ...) without the base class
                out.append(PowerSource(source, cast(PowerReader, opener()), "", limit, what))
            except ImportError as exc:
                out.append(PowerSource(source, None, f"jetson-stats not installed ({exc})"))
            except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
                out.append(PowerSource(source, None, str(exc)))
        return out

    def _tegrastats(self) -> Any:
        if not jetson_board.find_tegrastats():
            raise OSError("tegrastats not on PATH")
        return jetson_board.TegrastatsStream(max(1, int(1000.0 / self.rate_hz)))

    @classmethod
    def torch_power(cls, torch_device: str) -> tuple[PowerReader | None, str] | None:
        """CUDA on a local Jetson is the board's integrated GPU: the board's total power (first usable source)."""
        if torch_device.split(":")[0] != "cuda" or not cls.probe().ok:
            return None
        reader, reasons = jetson_board.open_power(os.environ.get("TICKETBENCH_JETSON_ROOT", "/"))
        return reader, "; ".join(f"{k}: {v}" for k, v in reasons.items()) if reader is None else ""

    def load(
        self,
        onnx_path: Path,
        precision: str = "fp32",
        batch_size: int | None = None,
        module: Any | None = None,
        calibration: np.ndarray | None = None,
    ) -> Session:
        """`calibration` (float32 N×C×H×W) is the int8 calibration set; `module` is ignored (no torch backend)."""
        opset = onnx_opset(Path(onnx_path))
        if self.max_onnx_opset and opset and opset > self.max_onnx_opset:
            log.warning(
                "%s uses ONNX opset %d; TensorRT %s parses up to opset %d (export it with that opset)",
                onnx_path,
                opset,
                self.trt_version(),
                self.max_onnx_opset,
            )
        if self.backend == "trtexec":
            feed = self._reader if isinstance(self._reader, BoardPowerFeed) else None
            session: Session = TrtexecSession(self.board, Path(onnx_path), precision, feed, calibration=calibration)
            if batch_size is not None:
                session.prepare(batch_size)
            return session
        return load_tensorrt(
            Path(onnx_path),
            precision,
            self.torch_device or "cuda",
            self.facts.get("model") or "jetson",
            None,
            batch_size,
            self.snapshot,
            calibration=calibration,
        )

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self.board.transport.close()
