"""`python -m bench ticket`: find one ticket and save it as a ticket directory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ticketbench.bench.options import (
    THREADS_HELP,
    TRAIN_DEVICE_HELP,
    UsageError,
    check_data_root,
    check_train_device,
    check_writable_dir,
    log,
)

# TicketConfig's fields given here as flags, under their names. They are declared by hand, not generated from the
# dataclass: generating them would import torch (models/tickets) whenever the CLI starts, for every command.
CONFIG_FLAGS = ("sparsity", "epochs", "finetune_epochs", "seed")

NAME = "ticket"
HELP = "find one ticket and save it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, help=THREADS_HELP)
    parser.add_argument("--model", required=True)
    parser.add_argument("--method", required=True, help="eb|lth|mpt|magnitude|dense")
    parser.add_argument("--sparsity", type=float, required=True, help="fraction of weights/channels removed")
    parser.add_argument("--out")
    parser.add_argument("--dataset", help="cifar10|cifar100|digits|synthetic (default: cifar10 with --data-root)")
    parser.add_argument("--data-root")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=float, help="model width multiplier (e.g. 0.25 for a quick small model)")
    parser.add_argument("--subset", type=int, help="use this many training examples (CIFAR)")
    parser.add_argument(
        "--option",
        action="append",
        help="method option KEY=VALUE (JSON value), repeatable; a wrong key lists the valid ones",
    )
    parser.add_argument("--train-device", default="auto", help=TRAIN_DEVICE_HELP)


def run(args: argparse.Namespace) -> int:
    from ticketbench.models.data import DataError, dataset_names, load_dataset
    from ticketbench.models.pipeline import find
    from ticketbench.models.tickets import METHODS, OptionsError, TicketConfig, TicketContext, method_options
    from ticketbench.models.zoo import model_names
    from ticketbench.settings import SettingError, check_mapping

    if args.model not in model_names():
        raise UsageError(f"unknown model {args.model!r} (known: {', '.join(model_names())})")
    if args.method not in METHODS.names():
        raise UsageError(f"unknown method {args.method!r} (known: {', '.join(METHODS.names())})")
    try:  # the ranges TicketConfig declares (ticketbench.settings), named as these flags
        check_mapping(TicketConfig, {k: getattr(args, k) for k in CONFIG_FLAGS}, "", as_flags=True)
    except SettingError as exc:
        raise UsageError(str(exc)) from None
    data_root = check_data_root(args.data_root)
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
    check_writable_dir(out, "--out")
    from ticketbench.bench.training import start_meter

    meter = start_meter(check_train_device(args.train_device))
    log.info("training on %s; energy from %s", meter.device, meter.source if meter.sampler else f"none ({meter.note})")
    ctx = TicketContext(
        progress=lambda msg: log.info("%s %s", cfg.method, msg),
        device=meter.device,
        energy=meter.energy if meter.sampler else None,
        power_source=meter.source,
    )
    try:
        ticket = find(cfg, data, ctx, energy_note=f"no power source on {meter.device}: {meter.note}")
    finally:
        meter.stop()
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
