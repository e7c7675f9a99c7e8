"""`python -m bench` (or `ticketbench`): find tickets, export, measure, report, compare; see README.md.

Exit codes: 0 ok, 1 regression or failed cases, 2 bad usage or input (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ticketbench import threads as thread_policy
from ticketbench.devices.transport import HostError, validate_host
from ticketbench.files import (
    DISK_FULL,
    Busy,
    InputError,
    OutputError,
    check_replaceable,
    exclusive_lock,
    one_line,
    safe_component,
)

log = logging.getLogger("ticketbench.bench")


class UsageError(Exception):
    """Bad usage or input: reported as one line and exit code 2."""


# A run directory's own files: no command's output may land on them (`report --csv A/results.csv` would merge
# two runs into A; `--html A/results.csv` would replace it with HTML).
RUN_FILES = ("run.json", "results.csv", "run.log")
RUN_FOLDERS = ("samples", "tickets")


def _check_host(host: str | None) -> str | None:
    """--host, through the one host check ssh and scp get (devices.transport.validate_host)."""
    if host is None:
        return None
    try:
        return validate_host(host)
    except HostError as exc:
        raise UsageError(f"--host: {exc}") from exc


def _check_output(flag: str, target: str | None, inputs: list[Path], run_dirs: list[Path]) -> Path | None:
    """An output path that destroys nothing: not a directory, not one of the command's input files, and not
    inside a run directory's own files (run.json, results.csv, samples/, tickets/). Symlinks are resolved."""
    if target is None:
        return None
    out = Path(target)
    if out.is_dir():
        raise UsageError(f"{flag} {target}: is a directory, expected a file path")
    try:
        check_replaceable(out)  # a device, FIFO or socket (or a link to one) is never replaced by a file
    except OutputError as exc:
        raise UsageError(f"{flag} {exc}") from None
    real = out.resolve()
    run_dirs = [*run_dirs, *_enclosing_run_dirs(real.parent)]
    if any(real == Path(f).resolve() for f in inputs):
        raise UsageError(f"{flag} {target}: is an input of this command; refusing to overwrite it")
    for d in (Path(d).resolve() for d in run_dirs):
        if (real.parent == d and real.name in RUN_FILES) or any(real.is_relative_to(d / f) for f in RUN_FOLDERS):
            raise UsageError(
                f"{flag} {target}: would overwrite run directory {d}'s own files "
                f"({', '.join(RUN_FILES)}, {'/, '.join(RUN_FOLDERS)}/); choose another path"
            )
    return out


def _enclosing_run_dirs(path: Path) -> list[Path]:
    """The run directories `path` lies in (a folder holding run.json or results.csv, itself or above): an output
    named inside one must not replace its files, whatever command writes it (export --out RUN/results.csv)."""
    return [d for d in (path, *path.parents) if (d / "run.json").is_file() or (d / "results.csv").is_file()]


def _distinct_outputs(*pairs: tuple[str, Path | None]) -> None:
    seen: dict[Path, str] = {}
    for flag, path in pairs:
        if path is None:
            continue
        real = path.resolve()
        if real in seen:
            raise UsageError(f"{flag} and {seen[real]} name the same file {path}")
        seen[real] = flag


def _check_writable_dir(p: Path, flag: str) -> None:
    """Create `p` (and parents) and prove a file can be written there, so a read-only place is one line now,
    not a traceback after the work."""
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UsageError(f"{flag} {p}: cannot write there ({exc.strerror or exc})") from exc


def _check_data_root(path: str | None) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    if not p.is_dir():
        raise UsageError(f"--data-root {path}: not a directory")
    if not os.access(p, os.R_OK | os.X_OK):
        raise UsageError(f"--data-root {path}: not readable")
    return p


def _check_out_dir(path: str, resume: bool) -> Path:
    p = Path(path)
    if p.exists() and not p.is_dir() or any(a.exists() and not a.is_dir() for a in p.parents):
        raise UsageError(f"--out {path}: exists and is not a directory")
    if p.is_dir() and (p / "results.csv").exists() and not resume:
        raise UsageError(f"--out {path} already holds a run; pass --resume to continue it or choose another --out")
    if resume and not (p / "results.csv").exists() and not (p / "run.json").exists():
        log.warning("--resume: %s holds no run yet; starting a new one", path)
    return p


def _check_db(db: str | None, default_too: bool = False) -> None:
    """An explicit --db (or, with default_too, the default) must be a usable results database before the work,
    not a warning or a traceback after it."""
    from ticketbench.bench.store import ResultsStore, StoreError, sqlalchemy_available

    if (db is None and not default_too) or not sqlalchemy_available():
        return
    try:
        ResultsStore(db).close()
    except StoreError as exc:
        raise UsageError(f"--db: {exc}") from exc


def _check_run_ids(specs: list[str], db: str | None) -> None:
    """A RUN that is not a path is a run id in the results database; an SQLite database that does not exist holds
    no run, so that is said here instead of opening it, which creates it (`compare A B --history typo` left an
    empty runs/ticketbench.sqlite in the current directory)."""
    from ticketbench.bench.store import db_url

    url = db_url(db)
    if not url.startswith("sqlite:///"):
        return
    path = Path(url.removeprefix("sqlite:///"))
    for spec in specs:
        if not Path(spec).exists() and not path.is_file():
            raise UsageError(
                f"{spec}: not a run directory (no results.csv), and no results database at {path} to look it up "
                "as a run id (--db names another)"
            )


def _resume_difference(out: Path, suite) -> str | None:
    """What differs between the run in `out` and the suite a `--resume` brings, or None. Resuming with another
    suite would mix two configurations in one results table and overwrite the run's record of its suite."""
    from dataclasses import asdict

    from ticketbench.bench.rundir import RunDir

    rundir = RunDir(out)
    meta, done = rundir.read_json(), rundir.read_results()  # malformed → InputError → exit 2
    stored = meta.get("suite")
    stored = stored if isinstance(stored, dict) else {}
    measure = stored.get("measure")
    if isinstance(measure, dict):
        for key, new in asdict(suite.measure).items():
            if key in measure and measure[key] != new:
                return f"[measure] {key} is {measure[key]!r} in the run, {new!r} now"
    ids = [c.case_id for c in suite.cases]
    run_cases = meta.get("cases")
    if isinstance(run_cases, list) and run_cases != ids:
        added = [c for c in ids if c not in run_cases]
        gone = [str(c) for c in run_cases if c not in ids]
        if added or gone:
            parts = ([f"{len(added)} new case(s) (e.g. {added[0]})"] if added else []) + (
                [f"{len(gone)} of the run's case(s) missing (e.g. {gone[0]})"] if gone else []
            )
            return "cases differ: " + "; ".join(parts)
    foreign = sorted(set(done["case_id"].dropna().astype(str)) - set(ids))
    if foreign:
        return f"results.csv holds {len(foreign)} case(s) not in this suite (e.g. {foreign[0]})"
    return None


# -- commands ---------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from ticketbench.bench.runner import Runner, RunOptions, new_run_id
    from ticketbench.bench.suite import SuiteError, load_suite
    from ticketbench.devices.base import DEVICES, DeviceUnavailable, get_device, resolve_device
    from ticketbench.models.data import DataError
    from ticketbench.models.quantize import CalibrationError

    try:
        suite = load_suite(args.suite)
    except SuiteError as exc:
        raise UsageError(str(exc)) from exc
    data_root = _check_data_root(args.data_root)
    if args.device not in ("auto", *DEVICES.names()):
        raise UsageError(f"unknown device {args.device!r} (known: auto, {', '.join(DEVICES.names())})")
    if args.host and args.device not in ("jetson", "auto"):
        raise UsageError("--host is for --device jetson (remote mode)")
    _check_host(args.host)
    out = _check_out_dir(args.out or str(Path("runs") / new_run_id()), args.resume)
    if args.precision:  # one precision, replacing the suite's
        suite.measure.precision, suite.measure.precisions = args.precision, None
    if args.resume and out.is_dir():
        diff = _resume_difference(out, suite)
        if diff:
            raise UsageError(f"--resume {out}: the suite differs from the run's: {diff}; use another --out")
    name = resolve_device(args.device, host=args.host)
    try:
        device = get_device(name, **({"host": args.host} if args.host else {}))  # --host: remote Jetson over SSH
    except DeviceUnavailable as exc:
        raise UsageError(str(exc)) from exc
    for precision in suite.measure.precision_list():
        if precision not in device.precisions:
            raise UsageError(f"device {name!r} does not run {precision} (supported: {', '.join(device.precisions)})")
    _check_db(getattr(args, "db", None))
    _check_writable_dir(out, "--out")  # last check: it creates the run directory
    held = ExitStack()  # the run directory's lock, held until the report and the store ingest are written
    try:
        held.enter_context(exclusive_lock(out / ".run.lock", f"run directory {out}"))
    except Busy as exc:  # another `bench run` writes here: two writers would interleave results.csv and run.json
        device.close()
        raise UsageError(f"--out {out}: another run is writing there ({exc.holder}); choose another --out") from None
    with held:
        _check_out_dir(str(out), args.resume)  # again, under the lock: a run that finished meanwhile is not overwritten
        train_device = _check_train_device(args.train_device)
        opts = RunOptions(
            out=out, data_root=data_root, resume=args.resume, show_progress=not args.quiet, train_device=train_device
        )
        runner = Runner(suite, device, opts)
        try:
            runner.check_calibration()  # int8: an unusable calibration set is bad input, found before any case runs
        except (CalibrationError, DataError) as exc:
            device.close()
            raise UsageError(f"int8 calibration: {exc}") from exc
        log.info("suite %s: %d case(s) on device %s → %s", suite.name, len(suite.cases), name, out)
        thread_policy.announce()
        try:
            rows = runner.run()
        except OSError as exc:
            if exc.errno not in DISK_FULL:
                raise
            print(
                f"error: {exc.strerror} ({exc.filename or out}): the run stopped; finished cases are kept in {out}; "
                f"free space, then `python -m bench run --resume --out {out}`",
                file=sys.stderr,
            )
            return 1
        except KeyboardInterrupt:
            print(
                f"\ninterrupted: finished cases are kept in {out}; continue with "
                f"`python -m bench run --resume --out {out}`",
                file=sys.stderr,
            )
            return 130
        from ticketbench.bench.store import ingest_after_run
        from ticketbench.reports.html import write_report

        try:
            html = write_report([out], out / "report.html")
        except Exception as exc:  # the results are safe on disk; a report problem must not hide them or the ingest
            log.debug("report failed", exc_info=True)
            print(f"error: report not written: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
            html = None
        ingest_after_run(out, getattr(args, "db", None))  # into the results database when SQLAlchemy is installed
        _print_summary(rows)
        if html is not None:
            print(f"report: {html.resolve()}")
        return 1 if html is None or any(r["status"] == "failed" for r in rows) else 0


def _print_summary(rows: list[dict]) -> None:
    """The report's summary tables (reports.summary: one per device, backend and precision), the failed cases, and
    one warning line naming the rows a disturbed machine measured."""
    import pandas as pd

    from ticketbench.reports.summary import disturbed_rows, summary_tables

    df = pd.DataFrame(rows)
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.float_format", "{:.3g}".format):
        for title, table in summary_tables(df):
            print(f"{title}\n{table.to_string(index=False)}")
    failed = df[df["status"] == "failed"]
    for _, r in failed.iterrows():
        print(f"FAILED {r['case_id']}: {r['error']}")
    disturbed = [d.split(":")[0] for d in disturbed_rows(df)]
    if disturbed:
        log.warning(
            "%d row(s) measured on a disturbed machine, less trustworthy: %s (disturbance_note in results.csv says "
            "why; pin --threads below the free cores, or rerun when the machine is quiet)",
            len(disturbed),
            ", ".join(disturbed),
        )


def _check_train_device(name: str) -> str:
    """auto → cuda when torch sees it, else cpu; an unusable choice is bad usage (exit 2)."""
    from ticketbench.models.train import resolve_train_device

    try:
        return resolve_train_device(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def cmd_devices(args: argparse.Namespace) -> int:
    from ticketbench.devices.base import DEVICES
    from ticketbench.devices.power_sources import probe_power_sources

    _check_host(args.host)
    report: dict[str, dict[str, Any]] = {"adapters": {}, "power_sources": {}}
    for name in DEVICES.names():
        remote = name == "jetson" and getattr(args, "host", None)
        a = DEVICES.get(name).probe(host=args.host) if remote else DEVICES.get(name).probe()
        report["adapters"][name] = {"available": a.ok, "reason": a.reason}
    for name, (ok, reason) in probe_power_sources().items():
        report["power_sources"][name] = {"available": ok, "reason": reason}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print("adapters:")
    for name, a in report["adapters"].items():
        print(f"  {name:8s} {'yes' if a['available'] else 'no ':4s} {a['reason']}")
    print("power sources:")
    for name, a in report["power_sources"].items():
        print(f"  {name:14s} {'yes' if a['available'] else 'no ':4s} {a['reason']}")
    return 0


def cmd_ticket(args: argparse.Namespace) -> int:
    from ticketbench.models.data import DataError, dataset_names, load_dataset
    from ticketbench.models.tickets import (
        METHODS,
        OptionsError,
        TicketConfig,
        TicketContext,
        find_ticket,
        method_options,
    )
    from ticketbench.models.zoo import model_names

    if args.model not in model_names():
        raise UsageError(f"unknown model {args.model!r} (known: {', '.join(model_names())})")
    if args.method not in METHODS.names():
        raise UsageError(f"unknown method {args.method!r} (known: {', '.join(METHODS.names())})")
    if not 0.0 <= args.sparsity < 1.0:
        raise UsageError(f"--sparsity must be in [0, 1), got {args.sparsity}")
    if args.epochs < 0 or args.finetune_epochs < 0:
        raise UsageError("--epochs and --finetune-epochs must be ≥ 0")
    data_root = _check_data_root(args.data_root)
    dataset = args.dataset or ("cifar10" if data_root else "synthetic")
    if dataset not in dataset_names():
        raise UsageError(f"unknown dataset {dataset!r} (known: {', '.join(dataset_names())})")
    data_options = {"subset": args.subset} if args.subset else {}
    try:
        data = load_dataset(dataset, data_root, **data_options)
    except DataError as exc:
        raise UsageError(str(exc)) from exc
    options = {}
    for item in args.option or []:  # --option KEY=VALUE, VALUE parsed as JSON when it parses
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--option {item!r}: expected KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    if args.width is not None:
        if not isinstance(options.get("model_kwargs", {}), dict):
            raise UsageError(f"--option model_kwargs={options['model_kwargs']!r}: expected a JSON object")
        options["model_kwargs"] = {**options.get("model_kwargs", {}), "width": args.width}
    cfg = TicketConfig(
        args.model,
        dataset,
        args.method,
        args.sparsity,
        epochs=args.epochs,
        finetune_epochs=args.finetune_epochs,
        seed=args.seed,
        options=options,
        data_options=data_options,
    )
    try:
        method_options(cfg)
    except OptionsError as exc:
        raise UsageError(str(exc)) from exc
    out = Path(
        args.out or Path("runs") / "tickets" / f"{args.model}-{args.method}-s{args.sparsity:.2f}-{cfg.key()[:6]}"
    )
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    _check_writable_dir(out, "--out")
    from ticketbench.bench.training import start_meter

    meter = start_meter(_check_train_device(args.train_device))
    log.info("training on %s; energy from %s", meter.device, meter.source if meter.sampler else f"none ({meter.note})")
    ctx = TicketContext(
        progress=lambda msg: log.info("%s %s", cfg.method, msg),
        device=meter.device,
        energy=meter.energy if meter.sampler else None,
        power_source=meter.source,
    )
    try:
        ticket = find_ticket(cfg, data, ctx)
    finally:
        meter.stop()
    if not meter.sampler:
        ticket.artifacts["training_energy"]["note"] = f"no power source on {meter.device}: {meter.note}"
    path = ticket.save(out)
    print(
        json.dumps(
            {
                "ticket": str(path),
                "accuracy_top1": ticket.accuracy,
                "weight_sparsity": ticket.weight_sparsity,
                "eb_epoch": ticket.artifacts.get("eb_epoch"),
                "train_device": meter.device,
                "training_energy_j": ticket.artifacts["training_energy"]["total_j"],
                "power_source": ticket.artifacts["training_energy"]["power_source"],
            }
        )
    )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """A ticket directory from another tool's pruned checkpoint (models/importers.py reads each format)."""
    from ticketbench.models.importers import CheckpointError, import_checkpoint

    shape: tuple[int, int, int] | None = None
    if args.input_shape:
        try:
            values = [int(v) for v in args.input_shape.split(",")]
        except ValueError:
            values = []
        if len(values) != 3 or min(values) < 1:
            raise UsageError(f"--input-shape {args.input_shape!r}: expected C,H,W (three positive integers)")
        shape = (values[0], values[1], values[2])
    ckpt = Path(args.checkpoint)
    try:
        ticket = import_checkpoint(args.model, ckpt, args.format, Path(args.mask) if args.mask else None, shape)
    except CheckpointError as exc:
        raise UsageError(str(exc)) from exc
    fmt = ticket.provenance["imported_from"]["format"]
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in args.model)
    out = Path(args.out or Path("runs") / "tickets" / f"{safe}-import-{fmt}-{ticket.config.key()[:6]}")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    for written in ("ticket.pt", "artifacts.json"):  # what save() writes must not be what we read
        _check_output("--out", str(out / written), [ckpt, *([Path(args.mask)] if args.mask else [])], [])
    _check_writable_dir(out, "--out")  # /proc/x or under a file: one line, not a traceback from save()
    path = ticket.save(out)
    print(
        json.dumps(
            {
                "ticket": str(path),
                "format": fmt,
                "weight_sparsity": ticket.weight_sparsity,
                "masks_derived": ticket.provenance["imported_from"]["masks_derived"],
            }
        )
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import torch

    from ticketbench.models.compact import CompactionConfig, compact
    from ticketbench.models.data import load_dataset
    from ticketbench.models.export import ExportError, export_onnx
    from ticketbench.models.tickets import load_ticket
    from ticketbench.models.tickets.base import TicketError

    tdir = Path(args.ticket_dir)
    if not (tdir / "ticket.pt").is_file() and not (tdir.is_file() and tdir.suffix == ".pt"):
        raise UsageError(f"{tdir}: no ticket.pt here")
    if not 1 <= args.align <= 1024:
        raise UsageError(
            f"--align must be a whole number in [1, 1024] (1 = remove every dead channel), got {args.align}"
        )
    home = tdir if tdir.is_dir() else tdir.parent
    inputs = [home / "ticket.pt" if tdir.is_dir() else tdir, home / "cost.json", home / "artifacts.json"]
    out = _check_output("--out", args.out, inputs, []) or home / "model.onnx"
    _check_writable_dir(out.parent, "--out")
    try:
        ticket = load_ticket(tdir, trust=args.trust)
    except TicketError as exc:
        raise UsageError(str(exc)) from exc
    shape = _ticket_input_shape(ticket, load_dataset)
    # bias maps need the real input size: a recorded one, never a guess
    config = CompactionConfig(align=args.align, input_size_known=ticket.provenance.get("input_shape") is not None)
    try:
        compacted, report = compact(ticket.model, torch.zeros(1, *shape), config)
        res = export_onnx(compacted, ticket.model, shape, out)
    except ExportError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # a ticket that loads but does not compact or trace: one line, the trace under -v
        log.debug("export failed", exc_info=True)
        print(f"error: cannot export {tdir}: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "onnx": str(res.path),
                "size_mb": res.size_mb,
                "max_abs_error": res.max_abs_error,
                "channels_removed": report.filters_removed,  # filters, as is the next one
                "channels_kept_for_alignment": report.filters_kept_for_alignment,
                "zero_filters": sum(res.zero_filters.values()),
            }
        )
    )
    return 0


def _ticket_input_shape(ticket, load_dataset) -> tuple[int, ...]:
    """The (C, H, W)-like input shape the ticket records, checked: 1-3 whole sizes in [1, 4096] and at most
    2**26 values per example; a ticket saved before provenance recorded it falls back to `_input_shape`."""
    shape = ticket.provenance.get("input_shape")
    if shape is None:
        return tuple(_input_shape(ticket.config, load_dataset))
    ok = isinstance(shape, list | tuple) and 1 <= len(shape) <= 3
    ok = ok and all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 4096 for d in shape)
    if not ok or _prod(shape) > 2**26:
        raise UsageError(f"ticket records an unusable input_shape {str(shape)[:60]}")
    return tuple(shape)


def _prod(values) -> int:
    n = 1
    for v in values:
        n *= int(v)
    return n


def _input_shape(cfg, load_dataset) -> tuple[int, ...]:
    """Input shape of a ticket saved before provenance recorded it: from the embedded data, else the zoo's hint."""
    from ticketbench.models.zoo import input_size

    if cfg.dataset in ("digits", "synthetic"):
        return load_dataset(cfg.dataset).input_shape
    side = input_size(cfg.model) or 32
    return (3, side, side)


def cmd_measure(args: argparse.Namespace) -> int:

    from ticketbench.bench.runner import (
        LAYER_PROFILE_CALLS,
        PowerState,
        is_remote,
        measure_session,
        runtime_columns,
        start_power,
        timing_input,
    )
    from ticketbench.bench.suite import MeasureConfig
    from ticketbench.devices.base import DeviceUnavailable, get_device, resolve_device
    from ticketbench.devices.layer_profile import LayerProfile, LayerProfileUnavailable
    from ticketbench.results import empty_row

    path = Path(args.model)
    if args.batch < 1 or not args.duration > 0 or not args.idle >= 0 or args.rounds < 1:
        raise UsageError("--batch must be ≥ 1, --duration > 0, --idle ≥ 0 and --rounds ≥ 1")
    if args.batch > 65536 or args.duration > 3600 or args.idle > 3600 or args.rounds > 1000:
        raise UsageError("--batch must be ≤ 65536, --duration and --idle ≤ 3600 s, --rounds ≤ 1000")
    if args.host and args.device not in ("jetson", "auto"):
        raise UsageError("--host is for --device jetson (remote mode)")
    _check_host(args.host)
    if not path.is_file():
        raise UsageError(f"{path}: no such ONNX file")
    shape = _onnx_input_shape(path, args.batch)
    try:
        device = get_device(resolve_device(args.device, host=args.host), **({"host": args.host} if args.host else {}))
    except (DeviceUnavailable, KeyError) as exc:
        raise UsageError(str(exc).strip("'\"")) from exc
    # the runner's own measurement: power lifecycle, interleaved rounds, row columns (one method for both commands)
    m = MeasureConfig(batch_sizes=[args.batch], min_seconds=args.duration, idle_seconds=args.idle, rounds=args.rounds)
    m.precision = args.precision
    power = PowerState()
    profile: LayerProfile | None = None
    no_profile = ""
    try:
        ident = device.identity()
        try:
            session = device.load(path, args.precision, args.batch)
        except (ValueError, OSError):
            raise
        except Exception as exc:  # the runtime refuses the graph (ORT's InvalidGraph, Fail, ...): bad input
            raise UsageError(f"{path}: {device.name} cannot load this model ({one_line(exc)[:200]})") from exc
        power = start_power(device, idle_seconds=m.idle_seconds)
        runtime = runtime_columns(ident)
        (bm,) = measure_session(session, shape, m, power, threads=runtime["threads"], measure_load=not is_remote(ident))
        if args.layers:  # after the timed rounds, in a window of its own
            try:
                profile = session.profile_layers(timing_input(args.batch, shape), LAYER_PROFILE_CALLS)
            except LayerProfileUnavailable as exc:
                no_profile = str(exc)
    except UsageError:
        raise
    except ValueError as exc:  # e.g. a precision the backend does not run
        raise UsageError(str(exc)) from exc
    except Exception as exc:  # the measurement itself failed (runtime, device): one line, the trace under -v
        log.debug("measure failed", exc_info=True)
        print(f"error: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return 1
    finally:
        power.stop()
        device.close()
    row = empty_row(
        **bm.columns,
        **runtime,
        device=device.name,
        device_name=ident.get("device_name"),
        backend=ident.get("backend"),
        precision=args.precision,
        batch_size=args.batch,
        size_mb=path.stat().st_size / 1e6,
        status="ok",
    )
    if profile is not None:
        p50 = row.get("latency_ms_p50")
        row["layers_coverage"] = profile.total_ms / p50 if isinstance(p50, float) and p50 > 0 else None
        row["layers_profile_overhead"] = profile.overhead
    if no_profile:
        print(f"no per-layer profile: {no_profile}", file=sys.stderr)
    if args.json:
        print(json.dumps(row))
    else:
        for k in (
            "device_name",
            "backend",
            "batch_size",
            "latency_ms_p50",
            "latency_ms_p90",
            "latency_ms_p99",
            "latency_ms_mean",
            "latency_ms_std",
            "latency_rounds",
            "latency_ms_round_cv",
            "throughput_ips",
            "power_source",
            "power_w_mean",
            "energy_mj_per_inference",
            "power_w_idle",
            "energy_mj_per_inference_above_idle",
            "throttled",
            "threads",
            "other_load_cores",
            "disturbed",
            "disturbance_note",
            *(("layers_coverage", "layers_profile_overhead") if profile is not None else ()),
        ):
            print(f"{k:36s} {row[k]}")
        if profile is not None:
            _print_layers(profile)
    return 0


def _print_layers(profile) -> None:
    """`measure --layers`: the per-layer table of one ONNX (bench/layers.py), most time first; no dense reference and
    no MACs here (those need the PyTorch model: `bench run` has them)."""
    from ticketbench.bench.layers import format_table, layer_rows

    print(f"\nper-layer profile: {profile.source}, {profile.iterations} calls at batch {profile.batch_size}")
    print(format_table(layer_rows(profile, [])))
    if profile.overhead is not None:
        ms = f"{profile.plain_ms:.4g} → {profile.profiled_ms:.4g} ms"
        print(f"profiling slowed a call by {100 * profile.overhead:.0f} % ({ms})")


def _onnx_input_shape(path: Path, batch: int) -> tuple[int, ...]:
    """Per-example input shape of a model `measure` can feed: one float32 graph input (initializers aside) of
    at most 8 dims, symbolic dims taken as 1, and at most 2**27 values per batch (512 MB). Else UsageError."""
    import onnx

    if path.stat().st_size == 0:
        raise UsageError(f"{path}: empty file, not an ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise UsageError(f"{path}: not an ONNX model ({one_line(exc)[:200]})") from exc
    init = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init]
    if len(inputs) != 1:
        raise UsageError(f"{path}: has {len(inputs)} graph inputs; measure feeds exactly one")
    tt = inputs[0].type.tensor_type
    if not inputs[0].type.HasField("tensor_type") or tt.elem_type != onnx.TensorProto.FLOAT:
        name = onnx.TensorProto.DataType.Name(tt.elem_type) if tt.elem_type else "not a tensor"
        raise UsageError(f"{path}: input {inputs[0].name!r} is {name}; measure feeds float32")
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in tt.shape.dim]
    if not 1 <= len(dims) <= 8:
        raise UsageError(f"{path}: input {inputs[0].name!r} has {len(dims)} dims; expected a batch dim and 0-7 more")
    shape = tuple(dims[1:])
    if batch * _prod(shape) > 2**27:
        raise UsageError(f"{path}: input shape {shape} × batch {batch} is over 2**27 values; too large to feed")
    return shape


def cmd_report(args: argparse.Namespace) -> int:
    from ticketbench.reports.html import write_report

    dirs = [Path(d) for d in args.run_dirs]
    for d in dirs:
        if not (d / "results.csv").is_file():
            raise UsageError(f"{d}: not a run directory (no results.csv)")
    inputs = [f for d in dirs for f in (d / "results.csv", d / "run.json")]
    html_out = _check_output("--html", args.html or str(dirs[0] / "report.html"), inputs, dirs)  # default checked too
    assert html_out is not None  # a target was given
    csv_out = _check_output("--csv", args.csv, inputs, dirs)
    _distinct_outputs(("--html", html_out), ("--csv", csv_out))
    try:
        html = write_report(dirs, html_out, csv_out)  # malformed inputs → InputError → exit 2
    except OSError as exc:
        raise UsageError(f"cannot write the report: {exc.strerror or one_line(exc)} ({exc.filename})") from exc
    print(f"report: {html.resolve()}")
    if args.csv:
        print(f"csv: {Path(args.csv).resolve()}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ticketbench.bench.regression import (
        CompareConfig,
        CompareError,
        compare_runs,
        default_energy_floor,
        gate,
        latency_floor,
        load_ref,
        write_comparison,
    )
    from ticketbench.files import read_json_object, read_results_csv
    from ticketbench.reports.pages import fmt_cell
    from ticketbench.settings import check as check_settings

    cfg = CompareConfig(
        latency_floor=args.threshold,
        time_floor=args.time_threshold,
        energy_floor=args.energy_threshold
        if args.energy_threshold is not None
        else default_energy_floor(args.threshold),
        accuracy_floor_points=args.accuracy_points,
        alpha=args.alpha,
        spread_multiple=args.spread_multiple,
        normalize=args.normalize,
        gate_times=args.gate_times,
        gate_disturbed=args.gate_disturbed,
    )
    check_settings(cfg)  # every floor finite and in range: `--accuracy-points nan` made every drop pass
    specs = (args.baseline, args.current, *args.history)
    dirs = [Path(spec) for spec in specs if (Path(spec) / "results.csv").is_file()]
    for d in dirs:  # check what load_ref will read: a malformed run is one line and exit 2
        read_results_csv(d / "results.csv")
        if (d / "run.json").exists():
            read_json_object(d / "run.json", "run.json")
    inputs = [f for d in dirs for f in (d / "results.csv", d / "run.json")]
    md_arg = _check_output("--md", args.md, inputs, dirs)
    html_arg = _check_output("--html", args.html, inputs, dirs)
    _distinct_outputs(("--md", md_arg), ("--html", html_arg))
    _check_run_ids(list(specs), args.db)
    try:
        base, cur = load_ref(args.baseline, args.db), load_ref(args.current, args.db)
        history = [load_ref(spec, args.db) for spec in args.history]
    except CompareError as exc:
        raise UsageError(str(exc)) from exc
    comp = compare_runs(base, cur, cfg, history)
    table = comp.table()
    view = table.drop(columns=["backend", "precision"]).astype(object).map(fmt_cell)
    print(
        f"latency floor = max({cfg.latency_floor:.0%} for a ratio, {latency_floor(cfg, None, time=True):.0%} for "
        f"a time, {cfg.spread_multiple:g} × baseline between-round spread"
        f"{f' or between its {len(history) + 1} runs' if history else ''}), "
        f"per-round statistic {'÷ dense reference' if cfg.normalize == 'dense' else 'time'} (dense rows: time); "
        f"energy floor {cfg.energy_floor:.0%}; accuracy floor {cfg.accuracy_floor_points:g} point(s); "
        f"alpha {cfg.alpha:g}"
        + ("" if cfg.gate_times or cfg.normalize != "dense" else "; times reported, not gated (--gate-times)")
        + ("" if cfg.gate_disturbed else "; disturbed rows reported, not gated (--gate-disturbed)")
    )
    for note in comp.notes:  # one line per run pair measured with different thread counts
        print(note)
    print(view.to_string(index=False) if len(view) else "nothing to compare: no matching (case, device, batch) rows")
    here = cur.root if cur.root is not None and os.access(cur.root, os.W_OK) else None  # default: beside CURRENT
    md = Path(args.md) if args.md else here / "compare.md" if here else None
    html = Path(args.html) if args.html else here / "compare.html" if here else None
    for path in write_comparison(comp, md, html):
        print(f"wrote {path.resolve()}")
    code, reason = gate(comp, base, cur, allow_missing=args.allow_missing, allow_untested=args.allow_untested)
    print(reason, file=sys.stderr if code else sys.stdout)
    return code


def cmd_farm(args: argparse.Namespace) -> int:
    from ticketbench.bench.farm import InventoryError, NightBusy, load_inventory, nightly

    for mod in ("distributed", "sqlalchemy"):
        try:
            __import__(mod)
        except ImportError as exc:
            raise UsageError(f'`farm` needs {mod}: pip install "ticketbench[farm]"') from exc
    if args.action == "ingest":
        return _farm_ingest(args)
    if not args.inventory:
        raise UsageError("farm nightly needs --inventory FARM.toml")
    try:
        inv = load_inventory(Path(args.inventory))
    except InventoryError as exc:
        raise UsageError(str(exc)) from exc
    inv.db = args.db or inv.db
    inv.scheduler = args.scheduler or inv.scheduler
    if args.night is not None:
        safe_component(args.night, "--night")  # a folder under the farm's out: never ../x
    _check_db(inv.db, default_too=True)  # a --db that is not a database: one line now, not a traceback per job
    try:
        report = nightly(inv, night=args.night, resume=args.resume)
    except (NightBusy, InventoryError) as exc:
        raise UsageError(str(exc)) from exc
    for o in report.outcomes:
        print(f"{o.device:16s} {o.suite:10s} {o.status:10s} {o.message}")
    if report.summary_md and report.summary_html:
        print(f"summary: {report.summary_md.resolve()}\nreport: {report.summary_html.resolve()}")
    return report.exit_code


def _farm_ingest(args: argparse.Namespace) -> int:
    """Finish a farm job whose ingest failed (store unreachable): ingest, compare, record, from job.json."""
    from ticketbench.bench.farm import Outcome, finish_job, read_job_file

    if not args.run_dir:
        raise UsageError("farm ingest needs RUN_DIR (a farm job's run directory, holding job.json)")
    run_dir = Path(args.run_dir)
    if not (run_dir / "results.csv").is_file():
        raise UsageError(f"{run_dir}: not a run directory (no results.csv)")
    job = read_job_file(run_dir, args.db)  # a malformed job.json is an InputError: one line, exit 2
    out = finish_job(job, run_dir, Outcome(job.device.name, job.suite, job.night, "ok"))
    print(f"{out.device:16s} {out.suite:10s} {out.status:10s} {out.message}")
    return 0 if out.status == "ok" else 1


def cmd_doctor(args: argparse.Namespace) -> int:
    from ticketbench.bench.doctor import exit_code, run_doctor, table, to_json, write_out
    from ticketbench.devices.base import DEVICES

    if args.device not in ("auto", *DEVICES.names()):
        raise UsageError(f"unknown device {args.device!r} (known: auto, {', '.join(DEVICES.names())})")
    if args.host and args.device not in ("jetson", "auto"):
        raise UsageError("--host is for --device jetson (remote mode)")
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out {args.out}: exists and is not a directory")
    if args.out:  # proved writable before the checks run (they time models for a while), not after them
        _check_writable_dir(Path(args.out), "--out")
    checks = run_doctor(args.device, args.host)
    if args.out:
        write_out(Path(args.out), checks)
    print(json.dumps(to_json(checks), indent=2, default=str) if args.json else table(checks))
    return exit_code(checks)


# -- parser ---------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="find tickets, compact, export and measure a suite on a device")
    r.add_argument("--threads", type=int, help=THREADS_HELP)
    r.add_argument("--device", default="auto", help="auto|cpu|gpu|jetson (default auto)")
    r.add_argument("--suite", default="quick", help="built-in suite name or PATH.toml (default quick)")
    r.add_argument("--out", help="run directory (default runs/<run-id>)")
    r.add_argument("--host", help="USER@HOST of a Jetson driven over SSH (remote mode)")
    r.add_argument("--precision", choices=["fp32", "fp16", "int8"], help="override the suite's precision")
    r.add_argument("--data-root", help="local folder holding real data sets (never downloaded)")
    r.add_argument("--resume", action="store_true", help="continue the run in --out, skipping finished cases")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r.add_argument("--db", help="results database: SQLAlchemy URL or SQLite path (default runs/ticketbench.sqlite)")
    r.add_argument("--train-device", default="auto", help=TRAIN_DEVICE_HELP)
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("devices", help="which adapters and power sources are available here, and why not")
    d.add_argument("--json", action="store_true")
    d.add_argument("--host", help="USER@HOST: also probe a Jetson over SSH")
    d.set_defaults(func=cmd_devices)

    t = sub.add_parser("ticket", help="find one ticket and save it")
    t.add_argument("--threads", type=int, help=THREADS_HELP)
    t.add_argument("--model", required=True)
    t.add_argument("--method", required=True, help="eb|lth|mpt|magnitude|dense")
    t.add_argument("--sparsity", type=float, required=True, help="fraction of weights/channels removed")
    t.add_argument("--out")
    t.add_argument("--dataset", help="cifar10|cifar100|digits|synthetic (default: cifar10 with --data-root)")
    t.add_argument("--data-root")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--finetune-epochs", type=int, default=3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--width", type=float, help="model width multiplier (e.g. 0.25 for a quick small model)")
    t.add_argument("--subset", type=int, help="use this many training examples (CIFAR)")
    t.add_argument(
        "--option",
        action="append",
        help="method option KEY=VALUE (JSON value), repeatable; a wrong key lists the valid ones",
    )
    t.add_argument("--train-device", default="auto", help=TRAIN_DEVICE_HELP)
    t.set_defaults(func=cmd_ticket)

    im = sub.add_parser("import", help="a ticket directory from a checkpoint pruned by another tool")
    im.add_argument("--model", required=True, help="zoo model name, or package.module:factory (your own code)")
    im.add_argument("--checkpoint", required=True, help="the pruned checkpoint (loaded with weights_only=True)")
    im.add_argument("--format", default="auto", choices=["auto", "state_dict", "torch-prune", "eb", "open_lth", "mpt"])
    im.add_argument("--mask", help="open_lth mask.pth (default: mask.pth beside the checkpoint)")
    im.add_argument("--input-shape", help="C,H,W (default: the zoo model's input size)")
    im.add_argument("--out", help="ticket directory (default runs/tickets/<model>-import-<format>-<hash>)")
    im.set_defaults(func=cmd_import)

    m = sub.add_parser("measure", help="time (and power) one ONNX model, like trtexec")
    m.add_argument("--threads", type=int, help=THREADS_HELP)
    m.add_argument("model", help="MODEL.onnx")
    m.add_argument("--device", default="auto")
    m.add_argument("--batch", type=int, default=1)
    m.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"])
    m.add_argument("--duration", type=float, default=3.0, help="minimum timed seconds (default 3, as trtexec)")
    m.add_argument("--rounds", type=int, default=5, help="interleaved timing windows the duration is split into")
    m.add_argument("--json", action="store_true", help="one JSON object keyed by results.csv columns")
    m.add_argument("--host", help="USER@HOST of a Jetson driven over SSH (remote mode)")
    m.add_argument("--idle", type=float, default=0.0, help="seconds of idle baseline to measure first (0 = off)")
    m.add_argument(
        "--layers",
        action="store_true",
        help="after timing, profile each layer and print the per-layer table (with --json: its coverage and overhead)",
    )
    m.set_defaults(func=cmd_measure)

    e = sub.add_parser("export", help="compact a saved ticket and export it to validated ONNX")
    e.add_argument("ticket_dir")
    e.add_argument("--out", help="FILE.onnx (default TICKET_DIR/model.onnx)")
    e.add_argument(
        "--align", type=int, default=8, help="keep channel counts multiples of N (faster kernels; 1 = remove all)"
    )
    e.add_argument(
        "--trust",
        action="store_true",
        help="load a ticket.pt written before tickets held only tensors (full unpickling: it can run code; "
        "only for files you made yourself)",
    )
    e.set_defaults(func=cmd_export)

    rp = sub.add_parser("report", help="one HTML report (and CSV) over one or more run directories")
    rp.add_argument("run_dirs", nargs="+")
    rp.add_argument("--html")
    rp.add_argument("--csv")
    rp.set_defaults(func=cmd_report)

    c = sub.add_parser("compare", help="flag significant regressions between two runs (exit 1; 2: other threads)")
    c.add_argument("baseline")
    c.add_argument("current")
    c.add_argument(
        "--history",
        nargs="+",
        default=[],
        metavar="RUN",
        help="earlier runs of the same suite on this machine (directories or run ids): their rounds join the latency "
        "baseline and the spread of their levels widens the floor (identical runs drift apart)",
    )
    c.add_argument(
        "--threshold",
        type=float,
        default=0.10,
        help="relative latency floor for rows tested on their ratio to the dense reference (default 0.10)",
    )
    c.add_argument(
        "--time-threshold",
        type=float,
        default=0.20,
        help="relative latency floor for rows tested on a time: dense rows, --normalize none, runs without rounds "
        "(default 0.20: a shared machine's speed drifts between runs; lower it on a dedicated device)",
    )
    c.add_argument("--energy-threshold", type=float, help="relative energy floor (default max(0.10, threshold))")
    c.add_argument("--accuracy-points", type=float, default=1.0, help="top-1 drop floor in points (default 1)")
    c.add_argument("--alpha", type=float, default=0.01, help="one-sided significance level (default 0.01)")
    c.add_argument(
        "--spread-multiple",
        type=float,
        default=3.0,
        help="latency floor is at least this × the baseline's between-round spread (default 3)",
    )
    c.add_argument(
        "--normalize",
        choices=["dense", "none"],
        default="dense",
        help="per-round latency ÷ the round's dense reference (default; dense rows always use time) or raw time",
    )
    c.add_argument(
        "--allow-missing", action="store_true", help="do not fail when CURRENT lacks some of the baseline's rows"
    )
    c.add_argument(
        "--allow-untested",
        action="store_true",
        help="do not fail on what could not be judged: metrics without samples, duplicate rows, failed rows",
    )
    c.add_argument(
        "--gate-times",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also flag rows tested on a time under --normalize dense (dense rows; rows without a reference: int8, "
        "imported tickets). Off by default: identical runs on a shared machine drift apart in time by up to 27%% "
        "(measured), so those rows are reported as time-not-gated; turn on for a dedicated device",
    )
    c.add_argument(
        "--gate-disturbed",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also flag time and energy of rows disturbed in either run (results.csv `disturbed`: other load crowded "
        "the threads, or rounds disagreed). Off by default: identical runs, one disturbed, differed by 42%% in a "
        "ticket's ratio to dense (measured), so those rows are reported as disturbed-not-gated",
    )
    c.add_argument("--db", help="results database, for run ids (default runs/ticketbench.sqlite)")
    c.add_argument("--md", help="markdown output (default CURRENT/compare.md)")
    c.add_argument("--html", help="HTML output (default CURRENT/compare.html)")
    c.set_defaults(func=cmd_compare)

    dr = sub.add_parser("doctor", help="real self-check of adapters, backends and power sources here (exit 1: failed)")
    dr.add_argument("--device", default="auto", help="auto (every available adapter)|cpu|gpu|jetson")
    dr.add_argument("--host", help="USER@HOST of a Jetson driven over SSH (remote mode)")
    dr.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    dr.add_argument("--out", help="also write DIR/doctor.json")
    dr.set_defaults(func=cmd_doctor)

    f = sub.add_parser("farm", help="nightly runs over a device farm")
    f.add_argument("action", choices=["nightly", "ingest"], help="nightly: run the farm; ingest: store a kept run")
    f.add_argument("run_dir", nargs="?", help="ingest: a farm job's run directory (after the store was unreachable)")
    f.add_argument("--inventory", help="nightly: the farm's inventory TOML")
    f.add_argument("--resume", action="store_true", help="nightly: continue an interrupted --night")
    f.add_argument("--db", help="shared results database URL (default: the inventory's, else runs/ticketbench.sqlite)")
    f.add_argument("--scheduler", help="address of a running Dask scheduler (default: an in-process cluster)")
    f.add_argument("--night", help="label of this night (default: UTC timestamp; must sort chronologically)")
    f.set_defaults(func=cmd_farm)
    return p


TRAIN_DEVICE_HELP = (
    "auto|cpu|cuda|cuda:N: where tickets are searched and trained (default auto: CUDA when torch sees it); "
    "each epoch's energy is measured with that device's power source"
)
THREADS_HELP = (
    "threads for torch, ONNX Runtime and BLAS alike (default: the physical cores, fewer when the machine is "
    f"busy at start; the choice is recorded in run.json); 1 to {thread_policy.max_threads()} here (4 × the logical "
    "CPUs, never over 1024)"
)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed a one-line usage error
        return int(exc.code or 0)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        if hasattr(args, "threads"):  # the commands that train or time models share one thread policy
            try:
                thread_policy.apply(args.threads)
            except ValueError as exc:
                raise UsageError(str(exc)) from exc
        return args.func(args)
    except (UsageError, InputError, HostError) as exc:  # bad usage or a malformed input file
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
