"""`python -m bench import`: a ticket directory from a checkpoint pruned by another tool."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ticketbench.bench.options import UsageError, check_output, check_writable_dir

NAME = "import"
HELP = "a ticket directory from a checkpoint pruned by another tool"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="zoo model name, or package.module:factory (your own code)")
    parser.add_argument("--checkpoint", required=True, help="the pruned checkpoint (loaded with weights_only=True)")
    parser.add_argument(
        "--format", default="auto", choices=["auto", "state_dict", "torch-prune", "eb", "open_lth", "mpt"]
    )
    parser.add_argument("--mask", help="open_lth mask.pth (default: mask.pth beside the checkpoint)")
    parser.add_argument("--input-shape", help="C,H,W (default: the zoo model's input size)")
    parser.add_argument("--out", help="ticket directory (default runs/tickets/<model>-import-<format>-<hash>)")


def run(args: argparse.Namespace) -> int:
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
        check_output("--out", str(out / written), [ckpt, *([Path(args.mask)] if args.mask else [])], [])
    check_writable_dir(out, "--out")  # /proc/x or under a file: one line, not a traceback from save()
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
