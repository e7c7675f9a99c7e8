"""Atomic file writes (temp file in the same folder, fsync, rename): every layer writes results this way,
so an interruption never leaves a half-written run.json, results.csv, ticket or report. And checked reads of
the files and names that come from other people and machines (../shared/DESIGN.md, "Trust and input")."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from ticketbench.results import RESULTS_KEY_COLUMNS, TEXT_COLUMNS

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
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


# -- reading what other people and machines wrote ----------------------------------------------------
# Run directories, tickets and inventories are shared: every reader below turns a malformed file into one
# InputError whose message is one line naming the file and what is wrong, never another exception.


class InputError(ValueError):
    """A file or name from outside cannot be used; the message (one line) says which and why."""


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


def read_text(path: Path, what: str = "file") -> str:
    """UTF-8 text of `path`; unreadable, a directory or not UTF-8 → InputError."""
    path = Path(path)
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such {what}") from exc
    except IsADirectoryError as exc:
        raise InputError(f"{path}: is a directory, expected a {what}") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what} ({exc.strerror or one_line(exc)})") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: {what} is not UTF-8 text") from exc


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
