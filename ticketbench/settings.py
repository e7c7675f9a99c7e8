"""Typed settings read from flags, TOML files and job files, checked one way.

A setting is a dataclass field declared with `setting(default, lo=…, hi=…, help=…)`: its range and help live
beside its default, once. `check(obj)` refuses any numeric field that is not finite or out of its range (a NaN
floor turned every regression into a pass: `nan > x` is False); `from_mapping(cls, data, where)` builds the
dataclass from a parsed TOML/JSON object strictly: unknown keys are errors naming the valid ones, a bool must
be a bool (the string "false" is not False), an int an int, a float a finite number. Every error is a
SettingError: one line, exit 2 at the command line.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, TypeVar

from ticketbench.files import InputError

T = TypeVar("T")


class SettingError(InputError):
    """A setting has the wrong type or is out of range; the message names it and what is allowed."""


def setting(
    default: Any,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    flag: str = "",
    help: str = "",
) -> Any:
    """A dataclass field with its allowed range [lo, hi] (open ends with lo_open/hi_open), its command-line flag
    (for messages) and a help string."""
    meta = {"lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open, "flag": flag, "help": help}
    return dataclasses.field(default=default, metadata=meta)


def _describe(f: dataclasses.Field) -> str:
    flag = f.metadata.get("flag")
    return f"{f.name} ({flag})" if flag else f.name


def _range_text(meta: typing.Mapping[str, Any]) -> str:
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is None and hi is None:
        return ""
    left = "(" if meta.get("lo_open") or lo is None else "["
    right = ")" if meta.get("hi_open") or hi is None else "]"
    lo_text = "-inf" if lo is None else f"{lo:g}"
    hi_text = "inf" if hi is None else f"{hi:g}"
    return f" in {left}{lo_text}, {hi_text}{right}"


def _expected(f: dataclasses.Field, kind: Any) -> str:
    """What a field takes, in words: 'a whole number in [1, 1000]', 'a finite number in [0, 10)', 'true or false'."""
    if kind is bool:
        return "true or false"
    if kind is str:
        return "a string"
    return ("a whole number" if kind is int else "a finite number") + _range_text(f.metadata)


def _fail(where: str, f: dataclasses.Field, kind: Any, value: Any) -> SettingError:
    prefix = f"{where} " if where else ""
    return SettingError(f"{prefix}{_describe(f)} must be {_expected(f, kind)}, got {value!r}"[:300])


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The class's resolved annotations, once per class (get_type_hints compiles every annotation: a suite of 10⁴
    cases must not pay that per case)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def check(obj: Any, where: str = "") -> None:
    """Every numeric field of the dataclass `obj` is finite and inside its declared range, else SettingError."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
        bad = not math.isfinite(value)
        if not bad and lo is not None:
            bad = value <= lo if f.metadata.get("lo_open") else value < lo
        if not bad and hi is not None:
            bad = value >= hi if f.metadata.get("hi_open") else value > hi
        if bad:
            raise _fail(where, f, hints.get(f.name, float), value)


def _coerce(f: dataclasses.Field, kind: Any, value: Any, where: str) -> Any:
    """`value` as the field's type, strictly: no string for a bool or number, no bool for a number."""
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(kind)
    if ok is None:
        raise SettingError(f"{where} {f.name}: cannot be set from a file")
    if not ok:
        raise _fail(where, f, kind, value)
    return float(value) if kind is float else value


def from_mapping(cls: type[T], data: Any, where: str) -> T:
    """`cls(**data)` with every key known, every value of its field's type, and every number in range."""
    if not isinstance(data, dict):
        raise SettingError(f"{where}: expected a table of settings, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SettingError(f"{where}: unknown setting(s) {unknown}; valid: {', '.join(sorted(fields))}"[:300])
    hints = _hints(cls)
    values = {k: _coerce(fields[k], hints[k], v, where) for k, v in data.items()}
    obj = cls(**values)
    check(obj, where)
    return obj
