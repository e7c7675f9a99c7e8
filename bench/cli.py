"""`python -m bench`: the CLI contract of ../shared/DESIGN.md.

Exit codes: 0 ok, 1 regression or failed cases, 2 bad usage or input (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("ticketbench.bench")


class UsageError(Exception):
    """Bad usage or input: reported as one line and exit code 2."""


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
    if p.exists() and not p.is_dir():
        raise UsageError(f"--out {path}: exists and is not a directory")
    if p.is_dir() and (p / "results.csv").exists() and not resume:
        raise UsageError(f"--out {path} already holds a run; pass --resume to continue it or choose another --out")
    if resume and not (p / "results.csv").exists() and not (p / "run.json").exists():
        log.warning("--resume: %s holds no run yet; starting a new one", path)
    return p


# -- commands ---------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from ticketbench.bench.runner import Runner, RunOptions, new_run_id
    from ticketbench.bench.suite import SuiteError, load_suite
    from ticketbench.devices.base import DEVICES, DeviceUnavailable, get_device, resolve_device

    try:
        suite = load_suite(args.suite)
    except SuiteError as exc:
        raise UsageError(str(exc)) from exc
    data_root = _check_data_root(args.data_root)
    if args.device not in ("auto", *DEVICES.names()):
        raise UsageError(f"unknown device {args.device!r} (known: auto, {', '.join(DEVICES.names())})")
    if args.host and args.device not in ("jetson", "auto"):
        raise UsageError("--host is for --device jetson (remote mode)")
    out = _check_out_dir(args.out or str(Path("runs") / new_run_id()), args.resume)
    if args.precision:
        suite.measure.precision = args.precision
    name = resolve_device(args.device, host=args.host)
    try:
        device = get_device(name, **({"host": args.host} if args.host else {}))  # --host: remote Jetson over SSH
    except DeviceUnavailable as exc:
        raise UsageError(str(exc)) from exc
    if suite.measure.precision not in device.precisions:
        raise UsageError(
            f"device {name!r} does not run {suite.measure.precision} (supported: {', '.join(device.precisions)})"
        )
    log.info("suite %s: %d case(s) on device %s → %s", suite.name, len(suite.cases), name, out)
    runner = Runner(
        suite, device, RunOptions(out=out, data_root=data_root, resume=args.resume, show_progress=not args.quiet)
    )
    try:
        rows = runner.run()
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: finished cases are kept in {out}; continue with "
            f"`python -m bench run --resume --out {out}`",
            file=sys.stderr,
        )
        return 130
    from ticketbench.reports.html import write_report

    html = write_report([out], out / "report.html")
    from ticketbench.bench.store import ingest_after_run

    ingest_after_run(out, getattr(args, "db", None))  # into the results database when SQLAlchemy is installed
    _print_summary(rows)
    print(f"report: {html.resolve()}")
    return 1 if any(r["status"] == "failed" for r in rows) else 0


def _print_summary(rows: list[dict]) -> None:
    import pandas as pd

    df = pd.DataFrame(rows)
    cols = [
        "case_id",
        "batch_size",
        "status",
        "accuracy_top1",
        "weight_sparsity",
        "acceleration_rate",
        "latency_ms_p50",
        "speedup",
        "size_mb",
        "power_source",
    ]
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3g}".format):
        print(df[[c for c in cols if c in df]].to_string(index=False))
    failed = df[df["status"] == "failed"]
    for _, r in failed.iterrows():
        print(f"FAILED {r['case_id']}: {r['error']}")


def cmd_devices(args: argparse.Namespace) -> int:
    from ticketbench.devices.base import DEVICES
    from ticketbench.devices.power_sources import probe_power_sources

    report = {"adapters": {}, "power_sources": {}}
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
    from ticketbench.models.tickets import METHODS, TicketConfig, TicketContext, find_ticket
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
    out = Path(
        args.out or Path("runs") / "tickets" / f"{args.model}-{args.method}-s{args.sparsity:.2f}-{cfg.key()[:6]}"
    )
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    ticket = find_ticket(cfg, data, TicketContext(progress=lambda msg: log.info("%s %s", cfg.method, msg)))
    path = ticket.save(out)
    print(
        json.dumps(
            {
                "ticket": str(path),
                "accuracy_top1": ticket.accuracy,
                "weight_sparsity": ticket.weight_sparsity,
                "eb_epoch": ticket.artifacts.get("eb_epoch"),
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

    tdir = Path(args.ticket_dir)
    if not (tdir / "ticket.pt").is_file() and not (tdir.is_file() and tdir.suffix == ".pt"):
        raise UsageError(f"{tdir}: no ticket.pt here")
    ticket = load_ticket(tdir)
    shape = tuple(ticket.provenance.get("input_shape") or _input_shape(ticket.config, load_dataset))
    compacted, report = compact(ticket.model, torch.zeros(1, *shape), CompactionConfig(align=args.align))
    out = Path(args.out or (tdir if tdir.is_dir() else tdir.parent) / "model.onnx")
    try:
        res = export_onnx(compacted, ticket.model, shape, out)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "onnx": str(res.path),
                "size_mb": res.size_mb,
                "max_abs_error": res.max_abs_error,
                "channels_removed": report.channels_removed,
                "channels_kept_for_alignment": sum(g.kept_aligned for g in report.groups),
            }
        )
    )
    return 0


def _input_shape(cfg, load_dataset) -> tuple[int, ...]:
    """Input shape of a ticket saved before provenance recorded it: from the embedded data, else the zoo's hint."""
    from ticketbench.models.zoo import input_size

    if cfg.dataset in ("digits", "synthetic"):
        return load_dataset(cfg.dataset).input_shape
    side = input_size(cfg.model) or 32
    return (3, side, side)


def cmd_measure(args: argparse.Namespace) -> int:
    import onnx

    from ticketbench.bench.runner import PowerState, measure_session, start_power
    from ticketbench.bench.suite import MeasureConfig
    from ticketbench.devices.base import DeviceUnavailable, get_device, resolve_device
    from ticketbench.results import empty_row

    path = Path(args.model)
    if args.batch < 1 or not args.duration > 0 or not args.idle >= 0 or args.rounds < 1:
        raise UsageError("--batch must be ≥ 1, --duration > 0, --idle ≥ 0 and --rounds ≥ 1")
    if not path.is_file():
        raise UsageError(f"{path}: no such ONNX file")
    try:
        graph = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise UsageError(f"{path}: not an ONNX model ({exc})") from exc
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value if d.dim_value > 0 else 1 for d in dims)[1:]
    if args.host and args.device not in ("jetson", "auto"):
        raise UsageError("--host is for --device jetson (remote mode)")
    try:
        device = get_device(resolve_device(args.device, host=args.host), **({"host": args.host} if args.host else {}))
    except (DeviceUnavailable, KeyError) as exc:
        raise UsageError(str(exc).strip("'\"")) from exc
    # the runner's own measurement: power lifecycle, interleaved rounds, row columns (one method for both commands)
    m = MeasureConfig(batch_sizes=[args.batch], min_seconds=args.duration, idle_seconds=args.idle, rounds=args.rounds)
    m.precision = args.precision
    power = PowerState()
    try:
        ident = device.identity()
        session = device.load(path, args.precision, args.batch)
        power = start_power(device, idle_seconds=m.idle_seconds)
        (bm,) = measure_session(session, shape, m, power)
    except ValueError as exc:  # e.g. a precision the backend does not run
        raise UsageError(str(exc)) from exc
    except (RuntimeError, OSError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        power.stop()
        device.close()
    row = empty_row(
        **bm.columns,
        device=device.name,
        device_name=ident.get("device_name"),
        backend=ident.get("backend"),
        precision=args.precision,
        batch_size=args.batch,
        size_mb=path.stat().st_size / 1e6,
        status="ok",
    )
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
        ):
            print(f"{k:36s} {row[k]}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ticketbench.reports.html import write_report

    dirs = [Path(d) for d in args.run_dirs]
    for d in dirs:
        if not (d / "results.csv").is_file():
            raise UsageError(f"{d}: not a run directory (no results.csv)")
    for flag, target in (("--html", args.html), ("--csv", args.csv)):
        if target and Path(target).is_dir():
            raise UsageError(f"{flag} {target}: is a directory, expected a file path")
    html = write_report(dirs, Path(args.html or (dirs[0] / "report.html")), Path(args.csv) if args.csv else None)
    print(f"report: {html.resolve()}")
    if args.csv:
        print(f"csv: {Path(args.csv).resolve()}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ticketbench.bench.regression import (
        CompareConfig,
        CompareError,
        compare_runs,
        gate,
        load_ref,
        write_comparison,
    )
    from ticketbench.reports.pages import fmt_cell

    if not 0 <= args.threshold < 10 or not 0 < args.alpha < 1 or not 0 <= args.spread_multiple < 100:
        raise UsageError("--threshold must be in [0, 10), --alpha in (0, 1) and --spread-multiple in [0, 100)")
    cfg = CompareConfig(
        latency_floor=args.threshold,
        energy_floor=args.energy_threshold if args.energy_threshold is not None else max(0.10, 2 * args.threshold),
        accuracy_floor_points=args.accuracy_points,
        alpha=args.alpha,
        spread_multiple=args.spread_multiple,
        normalize=args.normalize,
        gate_times=args.gate_times,
    )
    try:
        base, cur = load_ref(args.baseline, args.db), load_ref(args.current, args.db)
    except CompareError as exc:
        raise UsageError(str(exc)) from exc
    comp = compare_runs(base, cur, cfg)
    table = comp.table()
    view = table.drop(columns=["backend", "precision"]).astype(object).map(fmt_cell)
    print(
        f"latency floor = max({cfg.latency_floor:.0%}, {cfg.spread_multiple:g} × baseline between-round spread), "
        f"per-round statistic {'÷ dense reference' if cfg.normalize == 'dense' else 'time'} (dense rows: time); "
        f"energy floor {cfg.energy_floor:.0%}; accuracy floor {cfg.accuracy_floor_points:g} point(s); "
        f"alpha {cfg.alpha:g}"
    )
    print(view.to_string(index=False) if len(view) else "nothing to compare: no matching (case, device, batch) rows")
    here = cur.root if cur.root is not None and os.access(cur.root, os.W_OK) else None  # default: beside CURRENT
    md = Path(args.md) if args.md else here / "compare.md" if here else None
    html = Path(args.html) if args.html else here / "compare.html" if here else None
    for path in write_comparison(comp, md, html):
        print(f"wrote {path.resolve()}")
    code, reason = gate(comp, base, cur, allow_missing=args.allow_missing)
    print(reason, file=sys.stderr if code else sys.stdout)
    return code


def cmd_farm(args: argparse.Namespace) -> int:
    from ticketbench.bench.farm import InventoryError, load_inventory, nightly

    try:
        inv = load_inventory(Path(args.inventory))
    except InventoryError as exc:
        raise UsageError(str(exc)) from exc
    inv.db = args.db or inv.db
    inv.scheduler = args.scheduler or inv.scheduler
    for mod in ("distributed", "sqlalchemy"):
        try:
            __import__(mod)
        except ImportError as exc:
            raise UsageError(f'`farm` needs {mod}: pip install "ticketbench[farm]"') from exc
    report = nightly(inv, night=args.night)
    for o in report.outcomes:
        print(f"{o.device:16s} {o.suite:10s} {o.status:10s} {o.message}")
    print(f"summary: {report.summary_md.resolve()}\nreport: {report.summary_html.resolve()}")
    return report.exit_code


# -- parser ---------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="find tickets, compact, export and measure a suite on a device")
    r.add_argument("--device", default="auto", help="auto|cpu|gpu|jetson (default auto)")
    r.add_argument("--suite", default="quick", help="built-in suite name or PATH.toml (default quick)")
    r.add_argument("--out", help="run directory (default runs/<run-id>)")
    r.add_argument("--host", help="USER@HOST of a Jetson driven over SSH (remote mode)")
    r.add_argument("--precision", choices=["fp32", "fp16", "int8"], help="override the suite's precision")
    r.add_argument("--data-root", help="local folder holding real data sets (never downloaded)")
    r.add_argument("--resume", action="store_true", help="continue the run in --out, skipping finished cases")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r.add_argument("--db", help="results database: SQLAlchemy URL or SQLite path (default runs/ticketbench.sqlite)")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("devices", help="which adapters and power sources are available here, and why not")
    d.add_argument("--json", action="store_true")
    d.add_argument("--host", help="USER@HOST: also probe a Jetson over SSH")
    d.set_defaults(func=cmd_devices)

    t = sub.add_parser("ticket", help="find one ticket and save it")
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
    t.add_argument("--option", action="append", help="method option KEY=VALUE (JSON value), repeatable")
    t.set_defaults(func=cmd_ticket)

    m = sub.add_parser("measure", help="time (and power) one ONNX model, like trtexec")
    m.add_argument("model", help="MODEL.onnx")
    m.add_argument("--device", default="auto")
    m.add_argument("--batch", type=int, default=1)
    m.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"])
    m.add_argument("--duration", type=float, default=3.0, help="minimum timed seconds (default 3, as trtexec)")
    m.add_argument("--rounds", type=int, default=5, help="interleaved timing windows the duration is split into")
    m.add_argument("--json", action="store_true", help="one JSON object keyed by results.csv columns")
    m.add_argument("--host", help="USER@HOST of a Jetson driven over SSH (remote mode)")
    m.add_argument("--idle", type=float, default=0.0, help="seconds of idle baseline to measure first (0 = off)")
    m.set_defaults(func=cmd_measure)

    e = sub.add_parser("export", help="compact a saved ticket and export it to validated ONNX")
    e.add_argument("ticket_dir")
    e.add_argument("--out", help="FILE.onnx (default TICKET_DIR/model.onnx)")
    e.add_argument(
        "--align", type=int, default=8, help="keep channel counts multiples of N (faster kernels; 1 = remove all)"
    )
    e.set_defaults(func=cmd_export)

    rp = sub.add_parser("report", help="one HTML report (and CSV) over one or more run directories")
    rp.add_argument("run_dirs", nargs="+")
    rp.add_argument("--html")
    rp.add_argument("--csv")
    rp.set_defaults(func=cmd_report)

    c = sub.add_parser("compare", help="flag significant regressions between two runs (exit 1)")
    c.add_argument("baseline")
    c.add_argument("current")
    c.add_argument("--threshold", type=float, default=0.05, help="relative latency floor (default 0.05)")
    c.add_argument("--energy-threshold", type=float, help="relative energy floor (default max(0.10, 2×threshold))")
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
        "--no-gate-times",
        dest="gate_times",
        action="store_false",
        help="report rows tested on time (dense rows) but never flag them: for shared machines whose speed drifts "
        "between runs; tickets are still gated on their ratio to the dense reference",
    )
    c.add_argument("--db", help="results database, for run ids (default runs/ticketbench.sqlite)")
    c.add_argument("--md", help="markdown output (default CURRENT/compare.md)")
    c.add_argument("--html", help="HTML output (default CURRENT/compare.html)")
    c.set_defaults(func=cmd_compare)

    f = sub.add_parser("farm", help="nightly runs over a device farm")
    f.add_argument("action", choices=["nightly"])
    f.add_argument("--inventory", required=True)
    f.add_argument("--db", help="shared results database URL (default: the inventory's, else runs/ticketbench.sqlite)")
    f.add_argument("--scheduler", help="address of a running Dask scheduler (default: an in-process cluster)")
    f.add_argument("--night", help="label of this night (default: UTC timestamp; must sort chronologically)")
    f.set_defaults(func=cmd_farm)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed a one-line usage error
        return int(exc.code or 0)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
