"""Runs a suite on one device: ticket → compact → export → cost → measure → one results row per batch size.

Every finished case is written to results.csv immediately (atomically), so an interrupted run keeps
its work and `--resume` skips it. A failing case becomes a `status=failed` row and the run goes on.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import stat
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ticketbench import threads as thread_policy
from ticketbench.bench.configs import MeasureConfig
from ticketbench.bench.layers import layer_rows, profile_summary, to_csv
from ticketbench.bench.provenance import git_sha, host_info, package_versions
from ticketbench.bench.rundir import RunDir
from ticketbench.bench.suite import Case, Suite
from ticketbench.bench.training import start_meter
from ticketbench.devices.base import DeviceAdapter, Session
from ticketbench.devices.int8_quantize import (
    CalibrationSet,
    QuantizeConfig,
    calibration_set,
    compare_outputs,
    ort_outputs,
    quantize_onnx,
)
from ticketbench.devices.layer_profile import LayerProfileUnavailable
from ticketbench.devices.measure import (
    LatencyConfig,
    RoundedLatency,
    inference_energy_columns,
    measure_rounds,
    ratio_interval,
    round_cv,
    run_eval_epoch,
)
from ticketbench.devices.power_meter import Measurement, PowerMeter
from ticketbench.files import DISK_FULL, atomic_write_text, one_line
from ticketbench.models.cost import LayerCost, analyze
from ticketbench.models.data import DataBundle, load_dataset
from ticketbench.models.export import OPSET, onnx_layer_map
from ticketbench.models.masks import apply_masks
from ticketbench.models.pipeline import DenseExport, compact_and_export, export_dense, find, load_saved
from ticketbench.models.tickets import OptionsError, Ticket, TicketConfig, TicketContext, method_options
from ticketbench.models.train import resolve_train_device, train
from ticketbench.results import empty_row

log = logging.getLogger("ticketbench.bench.runner")
# Tracebacks of failed cases go to the run's log file only (RUN_DIR/run.log, see attach_run_log); the terminal gets
# one line per failure. Never propagated: a traceback must not reach the terminal's handler.
TRACE = logging.getLogger("ticketbench.trace")
TRACE.propagate = False
TRACE.addHandler(logging.NullHandler())  # no run log attached: dropped, not printed by logging's last resort
RUN_LOGGERS = ("ticketbench", TRACE.name)


def attach_run_log(path: Path) -> logging.Handler | None:
    """Append what ticketbench logs from here on, and the tracebacks of failed cases (TRACE), to `path`. Opened
    without following a link planted there and only as a regular file; None (and a warning) when it cannot be."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
    except OSError as exc:
        log.warning("run log %s not written (%s)", path, exc.strerror or one_line(exc))
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        log.warning("run log %s not written (not a regular file)", path)
        return None
    handler = logging.StreamHandler(os.fdopen(fd, "a", encoding="utf-8"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in RUN_LOGGERS:
        logging.getLogger(name).addHandler(handler)
    return handler


def detach_run_log(handler: logging.Handler | None) -> None:
    if handler is None:
        return
    for name in RUN_LOGGERS:
        logging.getLogger(name).removeHandler(handler)
    handler.close()
    if isinstance(handler, logging.StreamHandler):
        handler.stream.close()


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


@dataclass
class RunOptions:
    out: Path
    data_root: Path | None = None
    resume: bool = False
    power_rate_hz: float = 50.0
    show_progress: bool = True
    train_device: str = "auto"  # where tickets are searched and trained: auto (CUDA when torch sees it), cpu, cuda


class Runner:
    def __init__(self, suite: Suite, device: DeviceAdapter, opts: RunOptions) -> None:
        self.suite, self.device, self.opts = suite, device, opts
        self.rundir = RunDir(opts.out).create()
        self.datasets: dict[str, DataBundle] = {}
        self._calibrations: dict[str, CalibrationSet] = {}
        # the dense reference per architecture (_dense_key): exported once per run, its session loaded when a case
        # is first timed beside it
        self._dense: dict[str, DenseReference] = {}
        self._ref_dir = tempfile.TemporaryDirectory(prefix="tb-dense-ref-")
        self.meter = PowerMeter()  # the measured device's power meter (inference, eval and training epochs)
        self.identity: dict[str, Any] = {}  # the device's identity, read once per run
        self._bar: tqdm | None = None
        self.ctx = TicketContext(progress=self._progress, device=resolve_train_device(opts.train_device))
        self.train_meter: PowerMeter | None = None  # the meter on the ticket-training device (maybe self.meter)
        self._run_log: logging.Handler | None = None  # RUN_DIR/run.log while run() runs

    # -- helpers -------------------------------------------------------------------------------
    @property
    def opset(self) -> int:
        """The ONNX opset of every export of this run, ticket and dense reference: e.g. 13 for TensorRT 8.2 (TX2)."""
        return min(OPSET, self.device.max_onnx_opset or OPSET)

    def _case_failed(self, what: str, exc: Exception) -> None:
        """A failed case (or one precision of it): one line on the terminal, the traceback in run.log (or, when
        that could not be opened, under -v)."""
        where = f" (traceback in {self.rundir.log_file})" if self._run_log else ""
        log.error("%s failed: %s%s", what, one_line(exc, with_type=True), where)
        if self._run_log:
            TRACE.error("%s failed", what, exc_info=exc)
        else:
            log.debug("%s failed", what, exc_info=exc)

    def _progress(self, msg: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(msg, refresh=True)
        log.debug(msg)

    def data(self, cfg: TicketConfig) -> DataBundle:
        key = json.dumps([cfg.dataset, cfg.data_options], sort_keys=True, default=str)
        if key not in self.datasets:
            self.datasets[key] = load_dataset(cfg.dataset, self.opts.data_root, **cfg.data_options)
        return self.datasets[key]

    def calibration(self, cfg: TicketConfig) -> CalibrationSet:
        """The int8 calibration set of a case's data set (drawn once per data set); CalibrationError if unusable."""
        m = self.suite.measure
        key = json.dumps([cfg.dataset, cfg.data_options, m.calibration_size, m.calibration_seed], default=str)
        if key not in self._calibrations:
            self._calibrations[key] = calibration_set(self.data(cfg), m.calibration_size, m.calibration_seed)
        return self._calibrations[key]

    def check_calibration(self) -> None:
        """Before any case runs: bad calibration input (empty split, wrong shape) is bad input, not a failed case."""
        if "int8" in self.suite.measure.precision_list():
            for case in self.suite.cases:
                self.calibration(case.ticket)

    def _start_power(self) -> None:
        self.meter = start_power(self.device, self.opts.power_rate_hz, self.suite.measure.idle_seconds)

    def _start_training_meter(self) -> None:
        """Meter ticket training with the training device's power source: the run's own meter when tickets train
        on the measured device, else a meter of their own (e.g. NVML while measuring on the CPU)."""
        same = _same_torch_device(self.ctx.device, self.device.torch_device)
        self.train_meter = self.meter if same else start_meter(self.ctx.device, self.opts.power_rate_hz)
        if self.train_meter.sampling:
            self.ctx.energy, self.ctx.power_source = self.train_meter.energy, self.train_meter.source

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> list[dict[str, Any]]:
        existing = self.rundir.read_json() if self.opts.resume else {}
        run_id = existing.get("run_id") or new_run_id()
        here = str(self.rundir.root.resolve())
        made_in = existing.get("run_dir")
        if isinstance(made_in, str) and made_in != here and (Path(made_in) / "run.json").is_file():
            # a copy of a run that still exists where it was made: resuming it makes another run, under its own
            # id, so storing it never rewrites the original's record (its run_dir, its rows)
            log.info("resuming a copy of %s: new run id", made_in)
            run_id = new_run_id()
        done = self.rundir.finished_cases() if self.opts.resume else set()
        old = self.rundir.read_results() if self.opts.resume else None
        rows: list[dict[str, Any]] = (
            # empty cells come back as NaN; make them None like fresh rows so groups (speedup) match
            [r for r in old.astype(object).where(old.notna(), None).to_dict("records") if str(r["case_id"]) in done]
            if old is not None
            else []
        )
        for r in rows:  # the kept rows belong to this run (a resumed copy has a new id)
            r["run_id"] = run_id
        self.identity = self.device.identity()
        meta = {
            "run_id": run_id,
            "run_dir": here,  # where this run was made: a copy resumed elsewhere becomes a run of its own
            "start_time": existing.get("start_time") or datetime.now(timezone.utc).isoformat(),
            "end_time": None,
            "git_sha": git_sha(),
            "host": host_info(),
            "versions": package_versions(),
            "suite": {
                "name": self.suite.name,
                "source": self.suite.source,
                "measure": asdict(self.suite.measure),
            },
            "device": self.identity,
            "cases": [c.case_id for c in self.suite.cases],
        }
        self.rundir.write_json(meta)
        self._start_power()
        self._start_training_meter()
        meta["train_device"] = self.ctx.device
        meta["train_power_source"] = self.train_meter.source if self.train_meter else "none"
        meta["train_power_note"] = self.train_meter.note if self.train_meter else ""
        meta["power_source"] = self.meter.source
        meta["power_note"] = self.meter.note
        meta["idle_baseline"] = asdict(self.meter.idle) if self.meter.idle else None
        todo = [c for c in self.suite.cases if c.case_id not in done]
        if done:
            log.info("resuming: %d finished case(s) kept, %d to run", len(done), len(todo))
            if run_id != existing.get("run_id"):  # a resumed copy: its kept rows now carry its own id
                self.rundir.write_results(rows)
        self._run_log = attach_run_log(self.rundir.log_file)
        try:
            self._bar = tqdm(todo, desc="cases", unit="case", disable=not self.opts.show_progress, leave=True)
            for case in self._bar:
                self._bar.set_description(case.case_id)
                rows.extend(self.run_case(case, run_id))
                finalize_speedups(rows)
                self.rundir.write_results(rows)
        finally:
            if self._bar is not None:
                self._bar.close()
            self.meter.stop()
            if self.meter.sampling:
                meta["power_rate_hz"] = self.meter.effective_rate_hz()  # what the source really delivered
            if self.train_meter is not None and self.train_meter is not self.meter:
                self.train_meter.stop()
            self._close_references()
            self.device.close()
            meta["end_time"] = datetime.now(timezone.utc).isoformat()
            self.rundir.write_json(meta)
            detach_run_log(self._run_log)
            self._run_log = None
        return rows

    def run_case(self, case: Case, run_id: str) -> list[dict[str, Any]]:
        cfg = case.ticket
        ident = self.identity
        base = {
            "run_id": run_id,
            "case_id": case.case_id,
            "model": cfg.model,
            "dataset": cfg.dataset,
            "method": cfg.method,
            "target_sparsity": cfg.sparsity,
            "device": self.device.name,
            "device_name": ident.get("device_name"),
            "backend": ident.get("backend"),
            "backend_note": backend_note(ident),
            "structure": _structure(cfg),
            "train_device": self.ctx.device,
            **runtime_columns(ident),
        }
        try:
            return self._measure_case(case, base)
        except Exception as exc:  # one failing case must not stop the run
            if isinstance(exc, OSError) and exc.errno in DISK_FULL:
                raise  # every later case would fail the same way: stop, keep what is written
            self._case_failed(f"case {case.case_id}", exc)
            return self._failed_rows(base, self.suite.measure.precision_list(), exc)

    def _failed_rows(self, base: dict[str, Any], precisions: list[str], exc: Exception) -> list[dict[str, Any]]:
        msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        return [
            empty_row(**base, precision=p, batch_size=b, status="failed", error=msg)
            for p in precisions
            for b in self.suite.measure.batch_sizes
        ]

    def _measure_case(self, case: Case, base: dict[str, Any]) -> list[dict[str, Any]]:
        cfg = case.ticket
        data = self.data(cfg)
        if case.ticket_dir is None:
            ticket = find(cfg, data, self.ctx, self._energy_note())
        else:  # a `ticket = "path"` case: the saved ticket as it is, its accuracy measured on this case's data
            ticket = load_saved(case.ticket_dir, data)
        tdir = self.rundir.ticket_dir(case.case_id)
        ticket.save(tdir)
        shape = data.input_shape
        dense = self._dense_reference(case, data, ticket)
        cost_dense = dense.export.cost
        cost_ticket = analyze(ticket.model, shape)
        exp = compact_and_export(
            ticket, tdir / "model.onnx", shape, align=self.device.channel_alignment, opset=self.opset
        )
        compacted, creport = exp.compacted, exp.compaction
        cost_compact = analyze(compacted, shape)
        atomic_write_text(
            tdir / "cost.json",
            json.dumps(
                {
                    "ticket": cost_ticket.to_dict(),
                    "compacted": cost_compact.to_dict(),
                    "compaction": creport.to_dict(),
                    "onnx": exp.onnx_record(),
                    "accuracy_torch": ticket.accuracy,
                },
                indent=2,
            ),
        )
        common = {
            **base,
            "weight_sparsity": cost_ticket.weight_sparsity,
            "channel_sparsity": cost_ticket.channel_sparsity,
            "kernel_sparsity": cost_ticket.kernel_sparsity,
            "params_dense": cost_dense.params,
            "params": cost_compact.params,
            "params_bias_maps": cost_compact.params_bias_maps,
            "params_nonzero": cost_compact.params_nonzero,
            "size_mb_dense": dense.export.size_mb,
            "size_mb": exp.onnx.size_mb,
            "macs_dense": cost_dense.macs,
            "macs": cost_compact.macs,
            "macs_nonzero": cost_compact.macs_nonzero,
            "acceleration_rate": cost_ticket.acceleration_rate,
            "accuracy_top1_torch": ticket.accuracy,
            "onnx_max_abs_error": exp.validation.max_abs_error,
            "channels_removed": creport.filters_removed,  # filters, as is the next one
            "channels_kept_for_alignment": creport.filters_kept_for_alignment,
            "eb_epoch": ticket.artifacts.get("eb_epoch"),
            "energy_j_ticket_training": (ticket.artifacts.get("training_energy") or {}).get("total_j"),
        }
        train_s, e_train = self._train_epoch(ticket, data)
        common.update(train_s_per_epoch=train_s, energy_j_per_train_epoch=e_train.energy_j if e_train else None)
        rows = []
        for precision in self.suite.measure.precision_list():  # one ticket, one export: a row set per precision
            try:
                rows += self._measure_precision(
                    case,
                    data,
                    tdir,
                    exp.path,
                    compacted,
                    {**common, "precision": precision},
                    (cost_dense.layers, cost_compact.layers),
                )
            except Exception as exc:  # int8 failing (say, no calibrator) must not drop the fp32 rows
                self._case_failed(f"case {case.case_id} at {precision}", exc)
                rows += self._failed_rows(base, [precision], exc)
        return rows

    def _int8_model(self, case: Case, tdir: Path, onnx_path: Path) -> tuple[Path, dict[str, Any], dict[str, Any]]:
        """(ONNX to load, extra load() arguments, results columns) for int8 on this device.

        ONNX Runtime gets a QDQ model quantized here from the case's calibration set; TensorRT gets the fp32
        ONNX and the calibration array, and calibrates itself (entropy calibrator, cache beside its engines).
        Either way the calibration set is recorded in tickets/<case>/calibration.json.
        """
        m = self.suite.measure
        calib = self.calibration(case.ticket)
        calib.write(tdir)
        what = f"n={len(calib.indices)} seed={calib.seed} sha256={calib.sha256[:12]}"
        if self.device.int8_input == "qdq":
            q = quantize_onnx(onnx_path, calib, tdir / "model.int8.onnx", QuantizeConfig(method=m.calibration_method))
            atomic_write_text(tdir / "quantize.json", json.dumps(q.to_dict(), indent=2))
            cols = {"int8_calibration": f"onnxruntime QDQ {q.method}, per-channel weights, {what}"}
            return q.path, {}, {**cols, "int8_fallback_layers": q.float_nodes, "size_mb": q.size_mb}
        if self.device.int8_input == "calibrator":
            return onnx_path, {"calibration": calib.x}, {"int8_calibration": f"tensorrt entropy2, {what}"}
        raise ValueError(f"device {self.device.name} has no int8 path")

    def _measure_precision(
        self,
        case: Case,
        data: DataBundle,
        tdir: Path,
        onnx_path: Path,
        compacted: torch.nn.Module,
        common: dict,
        layer_costs: tuple[list[LayerCost], list[LayerCost]] = ([], []),
    ) -> list[dict[str, Any]]:
        """The rows of one precision: eval epoch, timed rounds beside the dense reference, then (after every
        timed round) the per-layer profile of each batch size; `layer_costs` = (dense, compacted ticket) per-layer
        MACs (models/cost.py)."""
        precision, shape = common["precision"], data.input_shape
        load_kw: dict[str, Any] = {}
        if precision == "int8":
            model_path, load_kw, int8_cols = self._int8_model(case, tdir, onnx_path)
            common = {**common, **int8_cols}
        else:
            model_path = onnx_path
        # adapters that can run PyTorch (gpu's torch-cuda backend) get the module the ONNX was validated against
        session = self.device.load(model_path, precision, module=compacted, **load_kw)
        evalr = run_eval_epoch(session, _numpy_batches(data, 256))
        e_eval = self.meter.measure("eval", evalr.t0, evalr.t1, evalr.segments)
        if precision == "int8":
            common = {**common, **_int8_agreement(session, onnx_path, data)}
        rows = []
        # the dense reference timed beside the case in every round (fp32 zoo tickets; imported ones have none)
        timed_beside = case.ticket.method != "dense" and case.ticket_dir is None and precision == "fp32"
        reference = self._reference_session(case, data) if timed_beside else None
        tag = "" if precision == "fp32" else f"-{precision}"  # fp32 files keep their names
        measure_load = not is_remote(self.identity)  # a remote board's load is not this machine's
        measured = measure_session(
            session, shape, self.suite.measure, self.meter, reference, common.get("threads"), measure_load
        )
        nodes = (  # each export's ONNX node → layer map: compacted (FX) models' node names are ambiguous
            (self._dense[self._dense_key(case, data)].nodes, self._node_map(model_path, layer_costs[1]))
            if self.suite.measure.layer_profile
            else ({}, {})
        )
        for bm in measured:  # profiled only once every batch size's rounds are done: never inside a timed window
            layers = self._layer_profile(f"{case.case_id}{tag}", bm, session, reference, shape, layer_costs, nodes)
            rows.append(
                empty_row(
                    **common,
                    batch_size=bm.batch_size,
                    **bm.columns,
                    **layers,
                    samples_file=self._write_samples(f"{case.case_id}{tag}", bm),
                    energy_j_per_eval_epoch=e_eval.energy_j,
                    accuracy_top1=evalr.accuracy_top1,
                    status="ok",
                )
            )
        return rows

    @staticmethod
    def _node_map(path: Path, layers: list[LayerCost]) -> dict[str, str]:
        """models/export.onnx_layer_map, or {} (names decide) when the file cannot be read: never fails a case."""
        try:
            return onnx_layer_map(path, layers)
        except Exception as exc:
            log.warning("%s: no ONNX node → layer map (%s); layer names come from node names", path, one_line(exc))
            return {}

    def _layer_profile(
        self,
        case_id: str,
        bm: BatchMeasurement,
        session: Session,
        reference: Session | None,
        shape: tuple[int, ...],
        costs: tuple[list[LayerCost], list[LayerCost]],
        nodes: tuple[dict[str, str], dict[str, str]] = ({}, {}),
    ) -> dict[str, Any]:
        """Per-layer profile of the case, and of its dense reference beside it, at one batch size: layer table
        (bench/layers.py) in samples/<case>-b<bs>-layers.csv, the profiles' sources and the profiler's measured cost
        in -layers.json; the results columns naming them. Nothing when [measure] layer_profile is false or the
        backend has no profiler; a profile that fails is logged and leaves the row's layer columns empty."""
        if not self.suite.measure.layer_profile:
            return {}
        x = timing_input(bm.batch_size, shape)
        calls = max(LAYER_PROFILE_CALLS, self.suite.measure.min_iterations)
        before = thread_policy.cpu_sample()
        try:
            prof = session.profile_layers(x, calls)
            ref = reference.profile_layers(x, calls) if reference is not None else None
        except LayerProfileUnavailable as exc:
            log.info("no layer profile for %s: %s", case_id, exc)
            return {}
        except Exception as exc:  # the timed rows stand without it
            log.warning("layer profile of %s b%d failed: %s: %s", case_id, bm.batch_size, type(exc).__name__, exc)
            return {}
        # what other processes took of our CPUs while profiling: long layers on a crowded core are preempted in the
        # middle, so their medians grow where short ones' do not (the rows' own `other_load_cores` is for the rounds)
        other = thread_policy.other_load_cores(before, thread_policy.cpu_sample())
        dense_cost, ticket_cost = costs
        rows = layer_rows(prof, ticket_cost, ref, dense_cost if ref is not None else None, nodes[1], nodes[0])
        stem = f"samples/{case_id}-b{bm.batch_size}-layers"
        coverage = _ratio(prof.total_ms, bm.columns.get("latency_ms_p50"))
        check = layers_check(coverage)
        if check:
            log.warning("%s b%d: %s", case_id, bm.batch_size, check)
        atomic_write_text(self.rundir.root / f"{stem}.csv", to_csv(rows))
        meta = {
            "ticket": profile_summary(prof),
            "dense": profile_summary(ref) if ref is not None else None,
            "latency_ms_p50": bm.columns.get("latency_ms_p50"),
            "coverage": coverage,
            # time outside the runtime's layers: against the timed rounds, and against the profiled calls themselves
            "gap_ms": _difference(bm.columns.get("latency_ms_p50"), prof.total_ms),
            "gap_profiled_ms": _difference(prof.profiled_ms, prof.total_ms),
            "coverage_bounds": list(COVERAGE_BOUNDS),
            "check": check or "ok",
            "other_load_cores": other,
        }
        atomic_write_text(self.rundir.root / f"{stem}.json", json.dumps(meta, indent=2))
        return {"layers_file": f"{stem}.csv", "layers_coverage": coverage, "layers_profile_overhead": prof.overhead}

    def _write_samples(self, case_id: str, bm: BatchMeasurement) -> str:
        """samples/<case>-b<bs>-latency.csv (every iteration, its round), -rounds.csv (per-round medians beside the
        dense reference's: what `bench compare` tests) and, with a power source, -power.csv over the timed windows.
        Returns the latency file relative to the run directory."""
        stem = f"samples/{case_id}-b{bm.batch_size}"
        lat = bm.latency
        atomic_write_text(
            self.rundir.root / f"{stem}-latency.csv",
            "latency_ms,round\n" + "".join(f"{v:.6f},{r}\n" for v, r in zip(lat.samples_ms, lat.round_index)),
        )
        none = [None] * len(lat.rounds)
        ref = bm.reference.round_medians_ms if bm.reference is not None else none
        ratios = bm.round_ratios if bm.round_ratios is not None else none

        def cell(v: float | None) -> str:
            return "" if v is None else f"{v:.6f}"

        atomic_write_text(
            self.rundir.root / f"{stem}-rounds.csv",
            "round,latency_ms_median,reference_ms_median,ratio_median,iterations\n"
            + "".join(
                f"{i},{m:.6f},{cell(r)},{cell(q)},{len(w.samples_ms)}\n"
                for i, (m, r, q, w) in enumerate(zip(lat.round_medians_ms, ref, ratios, lat.rounds))
            ),
        )
        if self.meter.sampling:
            t0 = lat.rounds[0].t0
            trace = [self.meter.trace(a, b) for a, b in lat.segments]
            atomic_write_text(
                self.rundir.root / f"{stem}-power.csv",
                "t_s,watts\n" + "".join(f"{a - t0:.6f},{w:.4f}\n" for t, ws in trace for a, w in zip(t, ws)),
            )
        return f"{stem}-latency.csv"

    def _dense_key(self, case: Case, data: DataBundle) -> str:
        """What determines a case's dense reference: architecture, data (and its input shape), the model's options
        and, for a `ticket = path` case, the ticket (its own module is its dense architecture)."""
        mkw = self.ctx.model_kwargs(data, case.ticket) if case.ticket_dir is None else {}  # imported: no options
        shape = list(data.input_shape)
        return json.dumps([case.ticket.model, data.name, shape, mkw, str(case.ticket_dir or "")], default=str)

    def _dense_reference(self, case: Case, data: DataBundle, ticket: Ticket) -> DenseReference:
        """The dense architecture of this case, exported once per run (models/pipeline.export_dense): its cost and
        ONNX size are the denominators of every ticket of it, and the same file is the reference timed beside them.
        A saved ticket's own module is its dense architecture (its model may be user code the zoo lacks)."""
        key = self._dense_key(case, data)
        if key not in self._dense:
            model = (  # fresh_model builds on the training device; a saved ticket's module is its own dense
                self.ctx.fresh_model(case.ticket, data).cpu() if case.ticket_dir is None else ticket.model
            )
            path = Path(self._ref_dir.name) / f"dense-{hashlib.sha1(key.encode()).hexdigest()[:12]}.onnx"
            self._dense[key] = DenseReference(export_dense(model, data.input_shape, path, self.opset))
        return self._dense[key]

    def _reference_session(self, case: Case, data: DataBundle) -> Session | None:
        """The dense reference's session, loaded once per run and timed in every round beside the case: the
        per-round ratio case/dense is steadier than a time (a load change hits both). None when it cannot load."""
        ref = self._dense[self._dense_key(case, data)]  # exported by _measure_case before any precision is measured
        if not ref.loaded:
            ref.loaded = True
            try:
                ref.session = self.device.load(ref.export.path, "fp32", module=ref.export.model)
                ref.nodes = self._node_map(ref.export.path, ref.export.cost.layers)  # for layer profiles beside it
            except Exception as exc:  # the case is still measured; compare falls back to absolute times
                log.warning("dense reference for %s not loaded (%s): ratios left empty", case.case_id, exc)
        return ref.session

    def _close_references(self) -> None:
        """Close the dense references' sessions and remove their exports (the run's end)."""
        for ref in self._dense.values():
            if ref.session is not None:
                ref.session.close()
        self._ref_dir.cleanup()

    def _energy_note(self) -> str:
        """Why ticket training has no energy (models/pipeline.find), '' when it has."""
        meter = self.train_meter
        return "" if meter is None or meter.sampling else f"no power source on {meter.device}: {meter.note}"

    def _train_epoch(self, ticket: Ticket, data: DataBundle) -> tuple[float | None, Measurement | None]:
        """One PyTorch training epoch of the ticket (mask fixed) on the device, when torch runs there: (seconds,
        its energy over the measured device's meter)."""
        torch_device = self.device.torch_device
        if torch_device is None:
            return None, None
        model = copy.deepcopy(ticket.model).to(torch_device)
        masks = {k: v.to(torch_device) for k, v in ticket.masks.items()}
        with self.meter.window("train") as epoch:
            train(
                model,
                data,
                ticket.config.train_config(epochs=1, lr=1e-3),
                after_step=[lambda m: apply_masks(m, masks)],
                evaluate_each_epoch=False,
            )
        assert epoch.measurement is not None, "set when the block completes"
        return epoch.measurement.duration_s, epoch.measurement


def _structure(cfg: TicketConfig) -> str | None:
    """The `structure` option of methods that have one (mpt, magnitude, lth), for one report series each."""
    try:
        return getattr(method_options(cfg), "structure", None)
    except (ValueError, OptionsError):  # imported tickets have no method options; an invalid case fails in
        return None  # find_ticket with its own message


def _same_torch_device(a: str | None, b: str | None) -> bool:
    """ "cuda" and "cuda:0" name the same device; None (torch does not run there) matches nothing."""
    if a is None or b is None:
        return False
    da, db = torch.device(a), torch.device(b)
    return da.type == db.type and (da.index or 0) == (db.index or 0)


def backend_note(identity: dict[str, Any]) -> str | None:
    """Why the device's other backends were not used (e.g. torch-cuda because no ONNX backend is installed)."""
    backends = identity.get("backends")
    if not isinstance(backends, dict):
        return None
    skipped = [f"{b}: {why}" for b, why in backends.items() if why and b != identity.get("backend")]
    return ("skipped " + "; ".join(skipped)) if skipped else None


def _int8_agreement(session: Any, onnx_path: Path, data: DataBundle) -> dict[str, Any]:
    """int8 logits from the device's session vs the fp32 ONNX on ONNX Runtime CPU, over the evaluation split.

    A second, untimed pass: the timed eval epoch keeps only accuracy. Reported whether or not it is within
    tolerance (devices/int8_quantize.py: AGREEMENT_MIN_PERCENT); a session that calibrated itself may add its report.
    """
    xs = [x for x, _ in _numpy_batches(data, 256)]
    agreement = compare_outputs(ort_outputs(onnx_path, xs), np.concatenate([session.run(x) for x in xs]))
    cols = {
        "int8_top1_agreement": agreement.top1_agreement,
        "int8_max_abs_error": agreement.max_abs_error,
        "int8_within_tolerance": agreement.within_tolerance,
        "int8_note": agreement.note,
    }
    report = getattr(session, "int8_report", None)  # set by TensorRT sessions built with a calibrator
    if report is not None:
        cols["int8_fallback_layers"] = len(report.fallback_layers) if report.layers else None  # None: not reported
        cols["int8_note"] += "; " + report.summary()
    return cols


def start_power(device: DeviceAdapter, rate_hz: float = 50.0, idle_seconds: float = 0.0) -> PowerMeter:
    """The device's power meter, started, with the idle baseline measured first when asked."""
    meter = PowerMeter.of(device.power_reader(), rate_hz, device.name).start()
    idle = meter.measure_idle(idle_seconds)
    if idle:
        log.info("idle baseline: %.2f W over %.1f s", idle.watts, idle.seconds)
    return meter


@dataclass
class DenseReference:
    """A dense architecture's reference in one run: its export, and its session on the device once loaded."""

    export: DenseExport
    session: Session | None = None
    loaded: bool = False  # load tried (session None: it failed, and is not tried again)
    nodes: dict[str, str] = field(default_factory=dict)  # ONNX node → layer map of the export, once loaded


@dataclass
class BatchMeasurement:
    batch_size: int
    latency: RoundedLatency
    reference: RoundedLatency | None  # the dense reference, timed in the same rounds
    energy: Measurement  # over the timed rounds (energy_j None, with the reason, when not measured)
    round_ratios: np.ndarray | None  # per round: median of (case iteration ÷ the reference iteration beside it)
    columns: dict[str, Any]  # results.csv columns: latency stats, rounds, spread, energy, throttle


def timing_input(batch_size: int, input_shape: tuple[int, ...]) -> np.ndarray:
    """The input every timed round and every layer profile of a batch size runs on (seeded standard normal)."""
    return np.random.default_rng(0).standard_normal((batch_size, *input_shape), dtype=np.float32)


# Calls per side (profiled and plain) of a layer profile, at least: [measure] min_iterations raises it.
LAYER_PROFILE_CALLS = 20
# Σ per-layer times of a profile / the p50 of the timed rounds outside these bounds is reported as a failed check:
# below, the timed calls spent most of their time outside the runtime's layers (call overhead; on a crowded machine,
# waiting for a CPU); above, the profiler inflated the layers (ONNX Runtime CPU: 4-7 µs per node, docs/devices.md).
COVERAGE_BOUNDS = (0.5, 1.5)


def layers_check(coverage: float | None) -> str:
    """'' when the per-layer times add up to the timed latency within COVERAGE_BOUNDS, else what is wrong."""
    lo, hi = COVERAGE_BOUNDS
    if coverage is None:
        return "per-layer times not comparable with the timed latency (no p50)"
    if not lo <= coverage <= hi:
        return f"per-layer times add up to {coverage:.2f} of the timed p50, outside [{lo:g}, {hi:g}]: " + (
            "the timed calls spent most of their time outside the runtime's layers (call overhead, or waiting "
            "for a CPU other processes held: see other_load_cores)"
            if coverage < lo
            else "the profiler inflated the layers"
        )
    return ""


def measure_session(
    session: Session,
    input_shape: tuple[int, ...],
    m: MeasureConfig,
    power: PowerMeter,
    reference: Session | None = None,
    threads: int | None = None,
    measure_load: bool = True,
) -> list[BatchMeasurement]:
    """Every batch size of one prepared model in m.rounds interleaved rounds (the dense reference beside it in each
    round), and the latency and per-inference energy columns of each batch's row. `bench run` and `bench measure`
    both measure through here, so the two commands cannot disagree on method.

    Also per row: the paired speedup (`paired_speedup`), the CPU time other processes took on our CPUs while this
    model was timed (`other_load_cores`, over every round of every batch size, the reference's windows included;
    not measured when `measure_load` is False: a remote board) and whether that, or rounds that disagree, make the
    row disturbed (`disturbance`), judged against the `threads` it ran with."""
    cfg = LatencyConfig(
        warmup_iterations=m.warmup_iterations, min_iterations=m.min_iterations, min_seconds=m.min_seconds
    )
    targets: list[tuple[Session, np.ndarray]] = []
    for bs in m.batch_sizes:
        x = timing_input(bs, input_shape)
        targets += [(session, x)] + ([(reference, x)] if reference is not None else [])
    # The ticket and its reference take turns in short windows within each round (interleave "alternate"), each
    # window after one untimed call. Not iteration by iteration: that evicted the ticket's weights at every switch,
    # timing tickets cold and the dense case warm (quick suite, VGG-11 ½, ORT CPU, idle: unstructured magnitude 80%
    # came out 0.58× (b1) and 0.39× (b32) of dense, Early-Bird 1.53× instead of ≈2.8×). Not one contiguous window
    # each either: a load change between the two windows moved the round's ratio (the gate's floor reached 69% on a
    # busy machine). Windows that lost the CPU to other processes leave the round medians, and rounds are added
    # until each ticket's ratio to its reference is known to ±round_precision (see docs/regression.md).
    pairs = [(i, i + 1) for i in range(0, len(targets), 2)] if reference is not None else []

    def enough(results: list[RoundedLatency]) -> bool:
        for i, j in pairs:
            ratios = paired_ratios(results[i], results[j])
            half = ratio_interval(ratios) if ratios is not None else None
            if half is None or half > m.round_precision:
                return False
        return True

    # a power trace needs several samples inside each window to attribute energy to it
    window_s = max(m.window_seconds, 5.0 / power.rate_hz) if power.sampling else m.window_seconds
    # rounds are added only where a round is cheap: a self-timed session (trtexec) starts a process per window
    max_rounds = m.rounds if any(s.self_timed for s, _ in targets) else m.max_rounds
    before = thread_policy.cpu_sample()
    timed = iter(
        measure_rounds(targets, cfg, m.rounds, "alternate", window_s=window_s, max_rounds=max_rounds, enough=enough)
    )
    other = thread_policy.other_load_cores(before, thread_policy.cpu_sample()) if measure_load else None
    out = []
    for bs in m.batch_sizes:
        lat = next(timed)
        ref = next(timed) if reference is not None else None
        e_lat = power.measure("latency", lat.rounds[0].t0, lat.rounds[-1].t1, lat.segments)
        n_inf = len(lat.samples_ms) * bs
        ratios = paired_ratios(lat, ref)
        columns = {
            **lat.stats,
            "latency_samples": len(lat.samples_ms),
            "power_source": power.source,
            **inference_energy_columns(e_lat.window, n_inf, power.idle, power.sampling, power.note),
            "throttled": lat.throttled,
            "throttle_note": lat.throttle_note or None,
            **paired_speedup(ratios),
            "other_load_cores": other,
        }
        columns.update(disturbance(columns, threads))
        out.append(BatchMeasurement(bs, lat, ref, e_lat, ratios, columns))
    return out


def paired_speedup(ratios: np.ndarray | None) -> dict[str, Any]:
    """The speedup columns of a ticket timed beside its dense reference, from the per-round ratios ticket ÷ reference.

    speedup = 1 / the median round ratio: the gain of the median round. A load change during the case hits the
    ticket and the reference of the same round alike, so each ratio holds still where times move; the median keeps
    one disturbed round of five from moving the figure (a mean would follow it), and it is the level `bench
    compare` tests. speedup_lo / speedup_hi: the slowest and the fastest round's gain; speedup_round_cv: std/mean
    of the ratios. Empty (nothing to add) without usable ratios."""
    if ratios is None or len(ratios) == 0 or not np.all(np.isfinite(ratios) & (ratios > 0)):
        return {}
    gains = 1.0 / np.asarray(ratios, dtype=float)
    return {
        "speedup": float(1.0 / np.median(ratios)),
        "speedup_lo": float(gains.min()),
        "speedup_hi": float(gains.max()),
        "speedup_round_cv": round_cv(ratios),
        "speedup_basis": "paired",
    }


# A row is disturbed when its rounds disagree by more than this (std/mean of its per-round statistic: the ratio to
# the dense reference when it has one, else the time). Quick suite, 2 threads on a 2-core VM: in a quiet run (other
# load 0.00 cores) the ratios spread 1.5-3.4% between rounds; in a run while other users' work came and went (0.2-0.3
# cores on average) 15-39%, beside a CPU-bound neighbour 15-86% (benchmarks/bench_load_robustness.py).
ROUND_CV_BOUND = 0.10


def disturbance(columns: dict[str, Any], threads: int | None, cores: int | None = None) -> dict[str, Any]:
    """`disturbed` and `disturbance_note` of a row from its other columns: rounds that disagree beyond
    ROUND_CV_BOUND, or other processes that left fewer free cores than the row's `threads` during its timing
    windows (threads.crowded: the thread policy's own rule). disturbed is None when neither was measured."""
    paired = columns.get("speedup_basis") == "paired"
    cv = columns.get("speedup_round_cv") if paired else columns.get("latency_ms_round_cv")
    other = columns.get("other_load_cores")
    notes = []
    if cv is not None and cv > ROUND_CV_BOUND:
        what = "ratio to the dense reference" if paired else "time"
        notes.append(f"rounds disagree: the {what} spread {cv:.0%} between rounds (bound {ROUND_CV_BOUND:.0%})")
    cores = cores or thread_policy.physical_cores()
    if thread_policy.crowded(other, threads, cores):
        notes.append(f"other processes used {other:.2f} of {cores} cores beside {threads} thread(s)")
    known = cv is not None or other is not None
    return {"disturbed": bool(notes) if known else None, "disturbance_note": "; ".join(notes) or None}


# Identity keys that change timing besides the thread count (devices/*.identity()): ONNX Runtime session options,
# a Jetson's power mode and clock lock.
TIMING_SETTINGS = ("session_config", "nvpmodel", "jetson_clocks")


def is_remote(identity: dict[str, Any]) -> bool:
    """A device driven over SSH (a remote Jetson): this machine's threads and load are not the board's."""
    return identity.get("host") not in (None, "local")


def runtime_columns(identity: dict[str, Any]) -> dict[str, Any]:
    """`threads` and `runtime_settings` of every row measured on this device: the adapter's own intra-op count
    when it has one (cpu), else this process's policy (the host side of a local GPU or Jetson); none for a remote
    board. runtime_settings names where the count came from and the identity's other timing settings."""
    threads = identity.get("threads")
    if not isinstance(threads, int) or isinstance(threads, bool):
        threads = None if is_remote(identity) else thread_policy.current()
    parts = []
    policy = thread_policy.applied()
    if threads is not None and policy is not None and policy.threads == threads:
        parts.append(f"threads from {policy.source}")
    for key in TIMING_SETTINGS:
        value = identity.get(key)
        if isinstance(value, dict):
            value = ",".join(f"{k}={v}" for k, v in sorted(value.items()))
        if value not in (None, ""):
            parts.append(f"{key} {value}")
    return {"threads": threads, "runtime_settings": "; ".join(parts) or None}


def paired_ratios(lat: RoundedLatency, ref: RoundedLatency | None) -> np.ndarray | None:
    """Per round, the median of case iteration i ÷ reference iteration i when the two alternated iteration by
    iteration: adjacent iterations share the machine's state (a core taken by another tenant slows both), so the
    pairwise ratio cancels it where a ratio of two medians still mixes different states. Else the ratio of medians."""
    if ref is None:
        return None
    out = []
    for a, b in zip(lat.rounds, ref.rounds):
        # iteration by iteration: the same interleaved window, no timing windows of its own
        paired = not a.windows and a.t0 == b.t0 and len(a.samples_ms) == len(b.samples_ms)
        a_ms, b_ms = a.kept_ms, b.kept_ms  # alternating windows: those not preempted
        out.append(float(np.median(a_ms / b_ms) if paired else np.median(a_ms) / np.median(b_ms)))
    return np.array(out)


def _numpy_batches(data: DataBundle, batch_size: int):
    for x, y in data.loader("test", batch_size, shuffle=False):
        yield x.numpy(), y.numpy()


def finalize_speedups(rows: list[dict[str, Any]]) -> None:
    """The columns that need other rows, filled in place after every case (resumed rows included).

    mac_reduction = macs_dense / macs: what compaction removed, the gain the hardware could deliver.
    speedup: a ticket timed beside its dense reference keeps its paired speedup (`paired_speedup`, speedup_basis
    "paired"). Every other ok row gets the unpaired figure, the dense row's p50 on the same model, data, device,
    backend, precision and batch / this p50 (speedup_basis "unpaired"; "reference" on the dense row itself):
    imported tickets and int8 rows, which have no reference beside them.
    realization = speedup / mac_reduction. speedup_vs_fp32_dense: the paired speedup on fp32 rows (their
    reference is the fp32 dense model); else the fp32 dense row's p50 / this p50 (pruning and precision
    together, unpaired)."""
    dense = {}
    for r in rows:
        if r.get("method") == "dense" and r.get("status") == "ok":
            dense[_group(r)] = r["latency_ms_p50"]
    for r in rows:
        r["mac_reduction"] = _ratio(r.get("macs_dense"), r.get("macs"))
        p50 = r.get("latency_ms_p50")
        if r.get("status") != "ok" or not p50:
            continue
        paired = r.get("speedup_basis") == "paired"
        if not paired:
            ref = dense.get(_group(r))
            r["speedup"] = _ratio(ref, p50)
            own = r.get("method") == "dense" and ref == p50
            r["speedup_basis"] = None if ref is None else "reference" if own else "unpaired"
        r["realization"] = _ratio(r.get("speedup"), r["mac_reduction"])
        if paired and r.get("precision") == "fp32":
            r["speedup_vs_fp32_dense"] = r["speedup"]
        else:
            r["speedup_vs_fp32_dense"] = _ratio(dense.get(_group({**r, "precision": "fp32"})), p50)


def _difference(a: Any, b: Any) -> float | None:
    """a − b for two finite numbers, else None."""
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return None
    return a - b if np.isfinite(a) and np.isfinite(b) else None


def _ratio(a: Any, b: Any) -> float | None:
    """a / b for two positive numbers, else None (an empty cell, never 0 or inf)."""
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return None
    return a / b if a > 0 and b > 0 and np.isfinite(a) and np.isfinite(b) else None


def _group(r: dict[str, Any]) -> tuple:
    """The speedup group of a row; values that cannot be dict keys (a list from a careless suite) by repr, so
    one odd row never stops the run."""
    return tuple(_hashable(r.get(k)) for k in ("model", "dataset", "device", "backend", "precision", "batch_size"))


def _hashable(v: Any) -> Any:
    try:
        hash(v)
    except TypeError:
        return repr(v)
    return v


ProgressFn = Callable[[str], None]
