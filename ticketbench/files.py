"""Atomic file writes (temp file in the same folder, fsync, rename): every layer writes results this way,
so an interruption never leaves a half-written run.json, results.csv, ticket or report. And checked reads of
the files and names that come from other people and machines (README, "Trust and input")."""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import os
import re
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ticketbench.results import RESULTS_KEY_COLUMNS, TEXT_COLUMNS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # no space or quota left: nothing later can be written either

_UMASK = os.umask(0)
os.umask(_UMASK)


def check_replaceable(path: Path) -> None:
    """Refuse to replace what is not a regular file: a device, FIFO or socket, or a link to one (/dev/stdout,
    /proc/self/fd/1). Renaming over it would swap the special file for a regular one (as root, the /dev entry);
    a missing path or a regular file (or a link to one: the link itself is replaced, its target is untouched)
    is fine."""
    try:
        st = os.stat(path)  # follows links: a link to /dev/stdout is a character device
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise OutputError(f"{path}: cannot check the output path ({exc.strerror or one_line(exc)})") from exc
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (a device, FIFO or socket)"
        raise OutputError(f"{path}: is {kind}; refusing to replace it")


def _temp_beside(path: Path) -> tuple[int, str]:
    """A new file beside `path` under a unique name (mkstemp: O_EXCL, so never a planted link), shareable mode."""
    check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
    return fd, tmp


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, then rename over `path`: the one write path for every
    file the project writes (an interruption or a full disk leaves the old file and no temp file behind)."""
    path = Path(path)
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """For writers that want a file name (torch.save, ONNX Runtime's quantizer): a fresh temp file beside `path`
    that this process created (a link planted at a fixed name like `model.onnx.tmp` is never followed), renamed
    over `path` when the block succeeds and removed when it fails."""
    path = Path(path)
    fd, tmp = _temp_beside(path)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Busy(Exception):
    """Another live process holds the lock; `holder` names it (pid, host, since when)."""

    def __init__(self, what: str, holder: str) -> None:
        super().__init__(f"{what} is in use by {holder}: wait for it to finish")
        self.holder = holder


@contextmanager
def exclusive_lock(path: Path, what: str) -> Iterator[None]:
    """One writer at a time for what `path` guards (a run directory, a farm night): a kernel lock (flock) on a
    lock file holding the holder's pid, host and start time. The kernel drops the lock when its holder dies, so
    a crashed holder's lock is free at once, nobody "takes over" a lock, and two processes can never both
    enter (the races of pid-file locks: two takers of a stale file, a just-created empty file read as stale,
    a recycled pid). The file is removed on release; a waiter that locked the removed file notices (its inode
    is no longer at `path`) and tries again. Busy when held; flock is local: on NFS it is not relied on."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)  # a planted link is not followed
        except OSError as exc:
            raise InputError(f"{path}: cannot open the lock file of {what} ({exc.strerror or one_line(exc)})") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            os.close(fd)
            raise Busy(what, holder) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file we locked: lock the current one
    try:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(me).encode())
        yield
    finally:
        Path(path).unlink(missing_ok=True)  # still holding the lock: nobody can have entered meanwhile
        os.close(fd)


def _lock_holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        holder = {}
    if isinstance(holder, dict) and holder.get("pid"):
        return f"pid {holder.get('pid')} on {holder.get('host', '?')} since {holder.get('since', '?')}"
    return "another process (starting up)"


# -- reading what other people and machines wrote ----------------------------------------------------
# Run directories, tickets and inventories are shared: every reader below turns a malformed file into one
# InputError whose message is one line naming the file and what is wrong, never another exception.


class InputError(ValueError):
    """A file or name from outside cannot be used; the message (one line) says which and why."""


class OutputError(InputError):
    """An output path that must not be written (a device, FIFO or socket, or a link to one): bad usage, exit 2."""


_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.,+=@-]{0,199}")


def safe_component(name: object, what: str = "name") -> str:
    """`name` if it is one safe path component (letters, digits, `_.,+=@-`, not starting with `.` or `-`,
    at most 200 characters), else InputError. Ids that become paths (case ids, night names) go through here,
    so `../x` or `a/b` can never address a file outside the folder they are joined onto."""
    if not isinstance(name, str) or not _COMPONENT.fullmatch(name):
        raise InputError(f"{what} {name!r} is not a safe single path component (letters, digits, _.,+=@- only)")
    return name


def one_line(exc: BaseException, with_type: bool = False) -> str:
    """An exception as one line of at most 300 characters (whitespace collapsed; the type's name when it has no
    message): what every error message, log line and farm outcome shows, so none can spill a traceback."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if with_type and text != type(exc).__name__:
        text = f"{type(exc).__name__}: {text}"
    return text[:300]


MAX_READ_BYTES = 1 << 30  # no input of ours comes near 1 GiB; a larger one is refused before it is read


def read_bytes(path: Path, what: str = "file", limit: int = MAX_READ_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; anything else → InputError. A device, FIFO or socket
    (a samples_file naming /dev/zero, a FIFO nobody writes) is refused at once instead of read without end."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens without waiting for a writer
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such {what}") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what} ({exc.strerror or one_line(exc)})") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{path}: is a directory, expected a {what}")
        raise InputError(f"{path}: {what} is not a regular file (a device, FIFO or socket)")
    if st.st_size > limit:
        os.close(fd)
        raise InputError(f"{path}: {what} is {st.st_size} bytes, over the {limit}-byte limit")
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise InputError(f"{path}: cannot read {what} ({exc.strerror or one_line(exc)})") from exc
    if len(data) > limit:  # grew while we read
        raise InputError(f"{path}: {what} is over the {limit}-byte limit")
    return data


def read_text(path: Path, what: str = "file") -> str:
    """UTF-8 text of a regular file; unreadable, a directory, a special file, too large or not UTF-8 → InputError."""
    data = read_bytes(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: {what} is not UTF-8 text") from exc


def confined(root: Path, relative: object, what: str = "path") -> Path:
    """`root / relative` when it stays inside `root` after resolving links (a path read from a data file, e.g.
    results.csv's samples_file); absolute paths, `..` and links out of `root` → InputError."""
    if not isinstance(relative, str) or not relative or Path(relative).is_absolute():
        raise InputError(f"{what} {relative!r}: expected a path relative to {root}")
    base = Path(root).resolve()
    full = (base / relative).resolve()
    if not full.is_relative_to(base):
        raise InputError(f"{what} {relative!r} leads out of {root}")
    return full


def read_json_object(path: Path, what: str = "JSON file") -> dict[str, Any]:
    """A JSON file whose top level is an object (run.json, cost.json, artifacts.json), else InputError."""
    text = read_text(path, what)
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{path}: not valid JSON ({one_line(exc)})") from exc
    if not isinstance(value, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


MAX_TOML_DEPTH = 32  # nesting levels (tables, arrays); no suite or inventory of ours needs more than 4


def parse_toml(text: str, what: str) -> dict[str, Any]:
    """A TOML document from outside (a suite, a farm inventory), else InputError. tomllib recurses once per level
    of nested arrays and inline tables, so `x = [[[[…` 10⁵ deep ended in RecursionError; the parsed document is also
    held to MAX_TOML_DEPTH levels (dotted table headers nest without recursing), so nothing that walks it later
    (repr, json.dumps, deepcopy) can recurse without bound either."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{what}: invalid TOML: {one_line(exc)}") from exc
    except RecursionError:
        raise InputError(f"{what}: nested deeper than {MAX_TOML_DEPTH} levels (arrays or tables)") from None
    todo: list[tuple[Any, int]] = [(doc, 1)]
    while todo:  # a loop, not recursion: the depth of what tomllib could parse is the thing being checked
        value, depth = todo.pop()
        if depth > MAX_TOML_DEPTH:
            raise InputError(f"{what}: nested deeper than {MAX_TOML_DEPTH} levels (arrays or tables)")
        inner = value.values() if isinstance(value, dict) else value
        todo.extend((v, depth + 1) for v in inner if isinstance(v, dict | list))
    return doc


def read_results_csv(path: Path):
    """results.csv as a DataFrame, checked: one header of unique names, every row as wide as the header, the
    key columns present, numbers where the contract has numbers, and known statuses. Contract columns a file
    lacks (written by an older or partial writer) come back empty. Anything else → InputError."""
    import pandas as pd

    from ticketbench.results import COLUMNS, CONTRACT_COLUMNS, STATUSES

    path = Path(path)
    text = read_text(path, "results.csv")
    try:
        records = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise InputError(f"{path}: not a CSV file ({one_line(exc)})") from exc
    if not records or not any(records[0]):
        raise InputError(f"{path}: empty, no header row")
    header = records[0]
    if len(set(header)) != len(header) or any(not h.strip() for h in header):
        raise InputError(f"{path}: header has empty or duplicate column names")
    for i, rec in enumerate(records[1:], start=2):
        if rec and len(rec) != len(header):
            raise InputError(f"{path}: line {i} has {len(rec)} fields, the header has {len(header)}")
    missing = [c for c in RESULTS_KEY_COLUMNS if c not in header]
    if missing:
        raise InputError(f"{path}: not a results table, missing columns {missing}")
    try:
        df = pd.read_csv(io.StringIO(text), index_col=False)
    except Exception as exc:  # pandas' parser errors have no common base; the structure was checked above
        raise InputError(f"{path}: not a CSV file ({one_line(exc)})") from exc
    for c in CONTRACT_COLUMNS + [c for c in COLUMNS if c in df]:
        if c not in df:
            df[c] = None if c in TEXT_COLUMNS else float("nan")
        elif c not in TEXT_COLUMNS:
            col = df[c].map(lambda v: None if isinstance(v, str) and not v.strip() else v)  # blank = empty cell
            num = pd.to_numeric(col, errors="coerce")
            bad = col[num.isna() & col.notna()]
            if len(bad):
                raise InputError(f"{path}: column {c}: {str(bad.iloc[0])[:40]!r} is not a number")
            df[c] = num
    df = df.reindex(columns=COLUMNS + [c for c in df.columns if c not in COLUMNS])
    unknown = set(df["status"].dropna().astype(str)) - set(STATUSES)
    if unknown:
        raise InputError(f"{path}: unknown status {sorted(unknown)[0][:40]!r} (known: {', '.join(STATUSES)})")
    bs = df["batch_size"].dropna()
    if len(bs) and not ((bs >= 1) & (bs == bs.round())).all():
        raise InputError(f"{path}: batch_size must be a whole number ≥ 1")
    return df
