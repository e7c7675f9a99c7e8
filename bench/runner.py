"""Runs a suite on one device: ticket → compact → export → cost → measure → one results row per batch size.

Every finished case is written to results.csv immediately (atomically), so an interrupted run keeps
its work and `--resume` skips it. A failing case becomes a `status=failed` row and the run goes on.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import logging
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ticketbench.bench.provenance import git_sha, host_info, package_versions
from ticketbench.bench.rundir import RunDir
from ticketbench.bench.suite import Case, MeasureConfig, Suite
from ticketbench.devices.base import DeviceAdapter, Session
from ticketbench.devices.measure import (
    IdleBaseline,
    LatencyConfig,
    RoundedLatency,
    energy_window,
    inference_energy_columns,
    measure_idle,
    measure_rounds,
    run_eval_epoch,
)
from ticketbench.devices.power import PowerSampler, Window
from ticketbench.files import atomic_write_text
from ticketbench.models.compact import CompactionConfig, compact
from ticketbench.models.cost import ModelCost, analyze
from ticketbench.models.data import DataBundle, load_dataset
from ticketbench.models.export import export_onnx, to_onnx_bytes
from ticketbench.models.masks import apply_masks
from ticketbench.models.tickets import Ticket, TicketConfig, TicketContext, find_ticket
from ticketbench.models.train import train
from ticketbench.results import empty_row

log = logging.getLogger("ticketbench.bench.runner")


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


@dataclass
class RunOptions:
    out: Path
    data_root: Path | None = None
    resume: bool = False
    power_rate_hz: float = 50.0
    show_progress: bool = True


class Runner:
    def __init__(self, suite: Suite, device: DeviceAdapter, opts: RunOptions) -> None:
        self.suite, self.device, self.opts = suite, device, opts
        self.rundir = RunDir(opts.out).create()
        self.datasets: dict[str, DataBundle] = {}
        self._dense_refs: dict[str, tuple[ModelCost, float]] = {}
        self._ref_sessions: dict[str, Session | None] = {}  # dense reference per architecture, timed in every round
        self._ref_dir = tempfile.TemporaryDirectory(prefix="tb-dense-ref-")
        self.power = PowerState()
        self.sampler: PowerSampler | None = None
        self.power_note = ""
        self.idle: IdleBaseline | None = None
        self.identity: dict[str, Any] = {}  # the device's identity, read once per run
        self._bar: tqdm | None = None
        self.ctx = TicketContext(progress=self._progress)

    # -- helpers -------------------------------------------------------------------------------
    def _progress(self, msg: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(msg, refresh=True)
        log.debug(msg)

    def data(self, cfg: TicketConfig) -> DataBundle:
        key = json.dumps([cfg.dataset, cfg.data_options], sort_keys=True, default=str)
        if key not in self.datasets:
            self.datasets[key] = load_dataset(cfg.dataset, self.opts.data_root, **cfg.data_options)
        return self.datasets[key]

    def _start_power(self) -> None:
        self.power = start_power(self.device, self.opts.power_rate_hz, self.suite.measure.idle_seconds)
        self.sampler, self.power_note, self.idle = self.power.sampler, self.power.note, self.power.idle

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> list[dict[str, Any]]:
        existing = self.rundir.read_json() if self.opts.resume else {}
        run_id = existing.get("run_id") or new_run_id()
        done = self.rundir.finished_cases() if self.opts.resume else set()
        old = self.rundir.read_results() if self.opts.resume else None
        rows: list[dict[str, Any]] = (
            # empty cells come back as NaN; make them None like fresh rows so groups (speedup) match
            [r for r in old.astype(object).where(old.notna(), None).to_dict("records") if str(r["case_id"]) in done]
            if old is not None
            else []
        )
        self.identity = self.device.identity()
        meta = {
            "run_id": run_id,
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
        meta["power_source"] = self.sampler.reader.source if self.sampler else "none"
        meta["power_note"] = self.power_note
        meta["idle_baseline"] = asdict(self.idle) if self.idle else None
        todo = [c for c in self.suite.cases if c.case_id not in done]
        if done:
            log.info("resuming: %d finished case(s) kept, %d to run", len(done), len(todo))
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
            if self.sampler:
                self.sampler.stop()
            self.device.close()
            meta["end_time"] = datetime.now(timezone.utc).isoformat()
            self.rundir.write_json(meta)
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
            "precision": self.suite.measure.precision,
        }
        try:
            return self._measure_case(case, base)
        except Exception as exc:  # one failing case must not stop the run
            log.exception("case %s failed", case.case_id)
            msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            return [empty_row(**base, batch_size=b, status="failed", error=msg) for b in self.suite.measure.batch_sizes]

    def _measure_case(self, case: Case, base: dict[str, Any]) -> list[dict[str, Any]]:
        cfg = case.ticket
        data = self.data(cfg)
        ticket = find_ticket(cfg, data, self.ctx)
        tdir = self.rundir.tickets / case.case_id
        ticket.save(tdir)
        shape = data.input_shape
        cost_dense, size_mb_dense = self._dense_reference(case, data)
        cost_ticket = analyze(ticket.model, shape)
        align = CompactionConfig(align=self.device.channel_alignment)
        compacted, creport = compact(ticket.model, torch.zeros(1, *shape), align)
        cost_compact = analyze(compacted, shape)
        exp = export_onnx(compacted, ticket.model, shape, tdir / "model.onnx")
        atomic_write_text(
            tdir / "cost.json",
            json.dumps(
                {
                    "ticket": cost_ticket.to_dict(),
                    "compacted": cost_compact.to_dict(),
                    "compaction": creport.to_dict(),
                    "onnx": {k: v for k, v in asdict(exp).items() if k != "path"},
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
            "params_nonzero": cost_compact.params_nonzero,
            "size_mb_dense": size_mb_dense,
            "size_mb": exp.size_mb,
            "macs_dense": cost_dense.macs,
            "macs": cost_compact.macs,
            "macs_nonzero": cost_compact.macs_nonzero,
            "acceleration_rate": cost_ticket.acceleration_rate,
            "accuracy_top1_torch": ticket.accuracy,
            "onnx_max_abs_error": exp.max_abs_error,
            "channels_removed": creport.channels_removed,
            "channels_kept_for_alignment": sum(g.kept_aligned for g in creport.groups),
            "eb_epoch": ticket.artifacts.get("eb_epoch"),
        }
        # adapters that can run PyTorch (gpu's torch-cuda backend) get the module the ONNX was validated against
        takes_module = "module" in inspect.signature(self.device.load).parameters
        session = self.device.load(
            exp.path, self.suite.measure.precision, **({"module": compacted} if takes_module else {})
        )
        evalr = run_eval_epoch(session, _numpy_batches(data, 256))
        e_eval = energy_window(self.sampler, "eval", evalr.t0, evalr.t1, evalr.segments)
        train_s, e_train = self._train_epoch(ticket, data)
        rows = []
        reference = self._reference_session(case, data) if cfg.method != "dense" else None
        for bm in measure_session(session, shape, self.suite.measure, self.power, reference):
            rows.append(
                empty_row(
                    **common,
                    batch_size=bm.batch_size,
                    **bm.columns,
                    samples_file=self._write_samples(case.case_id, bm),
                    energy_j_per_eval_epoch=e_eval.energy_j if e_eval else None,
                    train_s_per_epoch=train_s,
                    energy_j_per_train_epoch=e_train.energy_j if e_train else None,
                    accuracy_top1=evalr.accuracy_top1,
                    status="ok",
                )
            )
        return rows

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
        if self.sampler:
            t0 = lat.rounds[0].t0
            trace = [self.sampler.trace(a, b) for a, b in lat.segments]
            atomic_write_text(
                self.rundir.root / f"{stem}-power.csv",
                "t_s,watts\n" + "".join(f"{a - t0:.6f},{w:.4f}\n" for t, ws in trace for a, w in zip(t, ws)),
            )
        return f"{stem}-latency.csv"

    def _reference_session(self, case: Case, data: DataBundle) -> Session | None:
        """The dense architecture of this case, loaded once per run and timed in every round beside the case: the
        per-round ratio case/dense is steadier than a time (a load change hits both). None when it cannot load."""
        key = self._dense_key(case, data)
        if key not in self._ref_sessions:
            dense = self.ctx.fresh_model(case.ticket, data)
            path = Path(self._ref_dir.name) / f"dense-{hashlib.sha1(key.encode()).hexdigest()[:12]}.onnx"
            try:
                path.write_bytes(to_onnx_bytes(dense, data.input_shape))
                takes_module = "module" in inspect.signature(self.device.load).parameters
                self._ref_sessions[key] = self.device.load(
                    path, self.suite.measure.precision, **({"module": dense} if takes_module else {})
                )
            except Exception as exc:  # the case is still measured; compare falls back to absolute times
                log.warning("dense reference for %s not loaded (%s): ratios left empty", case.case_id, exc)
                self._ref_sessions[key] = None
        return self._ref_sessions[key]

    def _dense_key(self, case: Case, data: DataBundle) -> str:
        return json.dumps([case.ticket.model, data.name, self.ctx.model_kwargs(data, case.ticket)], default=str)

    def _dense_reference(self, case: Case, data: DataBundle) -> tuple[ModelCost, float]:
        """Cost and ONNX size (MB) of the dense architecture: the denominators for every ticket of it."""
        key = self._dense_key(case, data)
        if key not in self._dense_refs:
            dense_model = self.ctx.fresh_model(case.ticket, data)
            size = len(to_onnx_bytes(dense_model, data.input_shape)) / 1e6
            self._dense_refs[key] = (analyze(dense_model, data.input_shape), size)
        return self._dense_refs[key]

    def _train_epoch(self, ticket: Ticket, data: DataBundle):
        """One PyTorch training epoch of the ticket (mask fixed) on the device, when torch runs there."""
        torch_device = getattr(self.device, "torch_device", None)
        if torch_device is None:
            return None, None
        model = copy.deepcopy(ticket.model).to(torch_device)
        masks = {k: v.to(torch_device) for k, v in ticket.masks.items()}
        t0 = time.monotonic()
        train(
            model,
            data,
            ticket.config.train_config(epochs=1, lr=1e-3),
            after_step=[lambda m: apply_masks(m, masks)],
            evaluate_each_epoch=False,
        )
        t1 = time.monotonic()
        return t1 - t0, energy_window(self.sampler, "train", t0, t1)


@dataclass
class PowerState:
    """The power side of a measurement: the sampler (None without a power source), why not, the idle baseline."""

    sampler: PowerSampler | None = None
    note: str = ""
    idle: IdleBaseline | None = None

    @property
    def source(self) -> str:
        return self.sampler.reader.source if self.sampler else "none"

    def stop(self) -> None:
        if self.sampler:
            self.sampler.stop()


def start_power(device: DeviceAdapter, rate_hz: float = 50.0, idle_seconds: float = 0.0) -> PowerState:
    """Start sampling the device's power source (if any) and measure the idle baseline first when asked."""
    reader, why = device.power_reader()
    if reader is None:
        return PowerState(note=why)
    sampler = PowerSampler(reader, rate_hz=rate_hz).start()
    idle = measure_idle(sampler, idle_seconds) if idle_seconds > 0 else None
    if idle:
        log.info("idle baseline: %.2f W over %.1f s", idle.watts, idle.seconds)
    return PowerState(sampler, "", idle)


@dataclass
class BatchMeasurement:
    batch_size: int
    latency: RoundedLatency
    reference: RoundedLatency | None  # the dense reference, timed in the same rounds
    energy: Window | None
    round_ratios: np.ndarray | None  # per round: median of (case iteration ÷ the reference iteration beside it)
    columns: dict[str, Any]  # results.csv columns: latency stats, rounds, spread, energy, throttle


def measure_session(
    session: Session,
    input_shape: tuple[int, ...],
    m: MeasureConfig,
    power: PowerState,
    reference: Session | None = None,
) -> list[BatchMeasurement]:
    """Every batch size of one prepared model in m.rounds interleaved rounds (the dense reference beside it in each
    round), and the latency and per-inference energy columns of each batch's row. `bench run` and `bench measure`
    both measure through here, so the two commands cannot disagree on method."""
    cfg = LatencyConfig(
        warmup_iterations=m.warmup_iterations, min_iterations=m.min_iterations, min_seconds=m.min_seconds
    )
    targets: list[tuple[Session, np.ndarray]] = []
    for bs in m.batch_sizes:
        x = np.random.default_rng(0).standard_normal((bs, *input_shape), dtype=np.float32)
        targets += [(session, x)] + ([(reference, x)] if reference is not None else [])
    # no power trace to attribute: alternate the case and its reference iteration by iteration (steadier ratios)
    timed = iter(measure_rounds(targets, cfg, m.rounds, "window" if power.sampler else "iteration"))
    out = []
    for bs in m.batch_sizes:
        lat = next(timed)
        ref = next(timed) if reference is not None else None
        e_lat = energy_window(power.sampler, "latency", lat.rounds[0].t0, lat.rounds[-1].t1, lat.segments)
        n_inf = len(lat.samples_ms) * bs
        columns = {
            **lat.stats,
            "latency_samples": len(lat.samples_ms),
            "power_source": power.source,
            **inference_energy_columns(e_lat, n_inf, power.idle, power.sampler is not None, power.note),
            "throttled": lat.throttled,
            "throttle_note": lat.throttle_note or None,
        }
        out.append(BatchMeasurement(bs, lat, ref, e_lat, paired_ratios(lat, ref), columns))
    return out


def paired_ratios(lat: RoundedLatency, ref: RoundedLatency | None) -> np.ndarray | None:
    """Per round, the median of case iteration i ÷ reference iteration i when the two alternated iteration by
    iteration: adjacent iterations share the machine's state (a core taken by another tenant slows both), so the
    pairwise ratio cancels it where a ratio of two medians still mixes different states. Else the ratio of medians."""
    if ref is None:
        return None
    out = []
    for a, b in zip(lat.rounds, ref.rounds):
        paired = a.t0 == b.t0 and len(a.samples_ms) == len(b.samples_ms)  # same interleaved window
        a_ms, b_ms = a.samples_ms, b.samples_ms
        out.append(float(np.median(a_ms / b_ms) if paired else np.median(a_ms) / np.median(b_ms)))
    return np.array(out)


def _numpy_batches(data: DataBundle, batch_size: int):
    for x, y in data.loader("test", batch_size, shuffle=False):
        yield x.numpy(), y.numpy()


def finalize_speedups(rows: list[dict[str, Any]]) -> None:
    """speedup = dense p50 / p50 on the same model, data, device, backend, precision and batch;
    realization = speedup / acceleration_rate."""
    dense = {}
    for r in rows:
        if r.get("method") == "dense" and r.get("status") == "ok":
            dense[_group(r)] = r["latency_ms_p50"]
    for r in rows:
        ref = dense.get(_group(r))
        if r.get("status") == "ok" and ref and r.get("latency_ms_p50"):
            r["speedup"] = ref / r["latency_ms_p50"]
            ar = r.get("acceleration_rate")
            r["realization"] = r["speedup"] / ar if ar else None


def _group(r: dict[str, Any]) -> tuple:
    return tuple(r.get(k) for k in ("model", "dataset", "device", "backend", "precision", "batch_size"))


ProgressFn = Callable[[str], None]
