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
    left = "(" if meta.get("lo_open") or lo is None else "["
    right = ")" if meta.get("hi_open") or hi is None else "]"
    lo_text = "-inf" if lo is None else f"{lo:g}"
    hi_text = "inf" if hi is None else f"{hi:g}"
    return f"{left}{lo_text}, {hi_text}{right}"


def check(obj: Any, where: str = "") -> None:
    """Every numeric field of the dataclass `obj` is finite and inside its declared range, else SettingError."""
    prefix = f"{where}: " if where else ""
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
            allowed = _range_text(f.metadata) if lo is not None or hi is not None else "finite"
            raise SettingError(f"{prefix}{_describe(f)} = {value!r}: expected a finite number in {allowed}")


def _coerce(f: dataclasses.Field, kind: Any, value: Any, where: str) -> Any:
    name = f"{where}: {f.name}"
    if kind is bool:
        if not isinstance(value, bool):
            raise SettingError(f"{name} = {value!r}: expected true or false (a boolean, not a string)")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingError(f"{name} = {value!r}: expected a whole number")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SettingError(f"{name} = {value!r}: expected a number")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise SettingError(f"{name} = {value!r}: expected a string")
        return value
    raise SettingError(f"{name}: cannot be set from a file")


def from_mapping(cls: type[T], data: Any, where: str) -> T:
    """`cls(**data)` with every key known, every value of its field's type, and every number in range."""
    if not isinstance(data, dict):
        raise SettingError(f"{where}: expected a table of settings, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SettingError(f"{where}: unknown setting(s) {unknown}; valid: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    values = {k: _coerce(fields[k], hints[k], v, where) for k, v in data.items()}
    obj = cls(**values)
    check(obj, where)
    return obj
