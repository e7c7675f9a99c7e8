"""`python -m bench export`: compact a saved ticket and export it to validated ONNX."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ticketbench.bench.options import UsageError, check_output, check_writable_dir, log, prod
from ticketbench.files import one_line

NAME = "export"
HELP = "compact a saved ticket and export it to validated ONNX"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ticket_dir")
    parser.add_argument("--out", help="FILE.onnx (default TICKET_DIR/model.onnx)")
    parser.add_argument(
        "--align", type=int, default=8, help="keep channel counts multiples of N (faster kernels; 1 = remove all)"
    )
    parser.add_argument(
        "--trust",
        action="store_true",
        help="load a ticket.pt written before tickets held only tensors (full unpickling: it can run code; "
        "only for files you made yourself)",
    )


def run(args: argparse.Namespace) -> int:
    from ticketbench.models.data import load_dataset
    from ticketbench.models.export import ExportError
    from ticketbench.models.pipeline import compact_and_export
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
    out = check_output("--out", args.out, inputs, []) or home / "model.onnx"
    check_writable_dir(out.parent, "--out")
    try:
        ticket = load_ticket(tdir, trust=args.trust)
    except TicketError as exc:
        raise UsageError(str(exc)) from exc
    shape = _ticket_input_shape(ticket, load_dataset)
    known = ticket.provenance.get("input_shape") is not None  # bias maps need the real input size, never a guess
    try:
        exported = compact_and_export(ticket, out, shape, align=args.align, input_size_known=known)
    except ExportError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # a ticket that loads but does not compact or trace: one line, the trace under -v
        log.debug("export failed", exc_info=True)
        print(f"error: cannot export {tdir}: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return 1
    res, report = exported.onnx, exported.compaction
    print(
        json.dumps(
            {
                "onnx": str(res.path),
                "size_mb": res.size_mb,
                "max_abs_error": exported.validation.max_abs_error,
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
    if not ok or prod(shape) > 2**26:
        raise UsageError(f"ticket records an unusable input_shape {str(shape)[:60]}")
    return tuple(shape)


def _input_shape(cfg, load_dataset) -> tuple[int, ...]:
    """Input shape of a ticket saved before provenance recorded it: from the embedded data, else the zoo's hint."""
    from ticketbench.models.zoo import input_size

    if cfg.dataset in ("digits", "synthetic"):
        return load_dataset(cfg.dataset).input_shape
    side = input_size(cfg.model) or 32
    return (3, side, side)
