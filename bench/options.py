"""The options and checks the commands share (bench/commands/): the usage error, the one device/host check and the
one way a command opens a device, output paths that destroy nothing, and the --threads / --train-device help."""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path

from ticketbench import threads as thread_policy
from ticketbench.devices.base import DEVICES, Availability, DeviceAdapter, DeviceUnavailable, get_device, resolve_device
from ticketbench.devices.transport import HostError, validate_host
from ticketbench.files import OutputError, check_replaceable

log = logging.getLogger("ticketbench.bench")


class UsageError(Exception):
    """Bad usage or input: reported as one line and exit code 2."""


# A run directory's own files: no command's output may land on them (`report --csv A/results.csv` would merge
# two runs into A; `--html A/results.csv` would replace it with HTML).
RUN_FILES = ("run.json", "results.csv", "run.log")
RUN_FOLDERS = ("samples", "tickets")

THREADS_HELP = (
    "threads for torch, ONNX Runtime and BLAS alike (default: the physical cores, fewer when the machine is "
    f"busy at start; the choice is recorded in run.json); 1 to {thread_policy.max_threads()} here (4 × the logical "
    "CPUs, never over 1024)"
)
TRAIN_DEVICE_HELP = (
    "auto|cpu|cuda|cuda:N: where tickets are searched and trained (default auto: CUDA when torch sees it); "
    "each epoch's energy is measured with that device's power source"
)


# -- device and host -----------------------------------------------------------------------------------------------
def check_host(host: str | None) -> str | None:
    """--host, through the one host check ssh and scp get (devices.transport.validate_host)."""
    if host is None:
        return None
    try:
        return validate_host(host)
    except HostError as exc:
        raise UsageError(f"--host: {exc}") from exc


def check_device_choice(args: argparse.Namespace, known: bool = True) -> None:
    """--device and --host together: --device a known adapter or auto (with known; `measure` leaves an unknown name
    to open_device's message), and --host only for jetson or auto (remote mode)."""
    if known and args.device not in ("auto", *DEVICES.names()):
        raise UsageError(f"unknown device {args.device!r} (known: auto, {', '.join(DEVICES.names())})")
    if args.host and args.device not in ("jetson", "auto"):
        raise UsageError("--host is for --device jetson (remote mode)")


def probe_device(name: str, host: str | None = None) -> Availability:
    """Whether adapter `name` can run, and why not: with a host, the Jetson adapter probes the board there (remote
    mode) and the others this machine (`devices --host`, `doctor --host`)."""
    cls = DEVICES.get(name)
    return cls.probe(host=host) if host and name == "jetson" else cls.probe()


def device_at(name: str, host: str | None = None) -> DeviceAdapter:
    """Adapter `name`, opened (get_device: probed, then constructed); a host goes to the adapter, which is the Jetson
    over SSH (the others refuse one as unavailable)."""
    return get_device(name, **({"host": host} if host else {}))


def open_device(args: argparse.Namespace) -> DeviceAdapter:
    """The device --device and --host name (auto resolved), opened; one that cannot be used is a UsageError."""
    try:
        return device_at(resolve_device(args.device, host=args.host), args.host)
    except DeviceUnavailable as exc:
        raise UsageError(str(exc)) from exc
    except KeyError as exc:  # an unknown --device name: the registry's message, without KeyError's quotes
        raise UsageError(str(exc).strip("'\"")) from exc


# -- paths ---------------------------------------------------------------------------------------------------------
def check_output(flag: str, target: str | None, inputs: list[Path], run_dirs: list[Path]) -> Path | None:
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


def distinct_outputs(*pairs: tuple[str, Path | None]) -> None:
    seen: dict[Path, str] = {}
    for flag, path in pairs:
        if path is None:
            continue
        real = path.resolve()
        if real in seen:
            raise UsageError(f"{flag} and {seen[real]} name the same file {path}")
        seen[real] = flag


def check_writable_dir(p: Path, flag: str) -> None:
    """Create `p` (and parents) and prove a file can be written there, so a read-only place is one line now,
    not a traceback after the work."""
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UsageError(f"{flag} {p}: cannot write there ({exc.strerror or exc})") from exc


def check_data_root(path: str | None) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    if not p.is_dir():
        raise UsageError(f"--data-root {path}: not a directory")
    if not os.access(p, os.R_OK | os.X_OK):
        raise UsageError(f"--data-root {path}: not readable")
    return p


def check_db(db: str | None, default_too: bool = False) -> None:
    """An explicit --db (or, with default_too, the default) must be a usable results database before the work,
    not a warning or a traceback after it."""
    from ticketbench.bench.store import ResultsStore, StoreError, sqlalchemy_available

    if (db is None and not default_too) or not sqlalchemy_available():
        return
    try:
        ResultsStore(db).close()
    except StoreError as exc:
        raise UsageError(f"--db: {exc}") from exc


def check_train_device(name: str) -> str:
    """auto → cuda when torch sees it, else cpu; an unusable choice is bad usage (exit 2)."""
    from ticketbench.models.train import resolve_train_device

    try:
        return resolve_train_device(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def prod(values) -> int:
    n = 1
    for v in values:
        n *= int(v)
    return n
