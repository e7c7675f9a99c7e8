"""Typed settings, declared once and read from flags, TOML tables and job files alike (open_lth's hparams).

A setting is a dataclass field declared with `setting(default, lo=…, hi=…, help=…)`: its type (the annotation),
range, choices and help live beside its default, once. From that one declaration:
- `from_mapping(cls, data, where)` builds the dataclass from a parsed TOML/JSON object strictly: unknown keys are
  errors naming the valid ones, a bool must be a bool (the string "false" is not False), an int an int, a float a
  finite number, a Literal one of its values;
- `add_arguments(parser, cls)` declares one flag per field, `--field-name` (the field's name, hyphenated), with
  its help, range and default; `from_args(cls, args, base)` reads them back over `base`;
- `check(obj)` refuses any number that is not finite or out of its range (a NaN floor turned every regression
  into a pass: `nan > x` is False), and any string outside its choices;
- `describe(cls)` lists the fields, for `--help` texts and error messages.
Every error is a SettingError: one line, exit 2 at the command line. Ticket methods' options
(models/tickets/options.py), the gate (CompareConfig), `[measure]` (MeasureConfig), the farm inventory and
job files and the suite's case fields (TicketConfig) all use this module.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import types
import typing
from collections.abc import Sequence
from typing import Any, Literal, TypeVar, Union

from ticketbench.files import InputError

T = TypeVar("T")
log = logging.getLogger("ticketbench")


class SettingError(InputError):
    """A setting has the wrong type or is out of range; the message names it and what is allowed."""


def setting(
    default: Any = dataclasses.MISSING,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    choices: Sequence[str] = (),
    factory: Any = None,
    aliases: Sequence[str] = (),
    help: str = "",  # noqa: A002
) -> Any:
    """A dataclass field with its allowed range [lo, hi] (open ends with lo_open/hi_open) or string choices, a help
    string, and `aliases`: earlier flag spellings still accepted on the command line, with a warning."""
    meta = {
        "lo": lo,
        "hi": hi,
        "lo_open": lo_open,
        "hi_open": hi_open,
        "choices": tuple(choices),
        "aliases": tuple(aliases),
        "help": help,
    }
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def flag(name: str) -> str:
    """The command-line flag of a field: its name, hyphenated."""
    return "--" + name.replace("_", "-")


_HINTS: dict[type, dict[str, Any]] = {}


def hints(cls: type) -> dict[str, Any]:
    """The class's resolved annotations, once per class (get_type_hints compiles every annotation string on each
    call: validating a suite of 10⁴ cases per case took 12 s)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def type_name(tp: Any) -> str:
    """A type in the words of a TOML writer: int, float, str, bool, a|b|c for a Literal, `x or y` for a union."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "|".join(str(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return str(tp).replace("typing.", "")
    return "none" if tp is type(None) else getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any) -> Any:
    """`value` as type `tp`, strictly, or TypeError: ints pass as floats; bools are never numbers; no string is a
    number or a bool."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if tp is type(None):
        if value is None:
            return None
        raise TypeError
    if origin is Literal:
        if value in typing.get_args(tp) and not isinstance(value, bool):
            return value
        raise TypeError
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return coerce(value, arg)
            except TypeError:
                continue
        raise TypeError
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list | tuple):
            raise TypeError
        return [coerce(v, item) for v in value]
    if origin is dict:
        if isinstance(value, dict):
            return value
        raise TypeError
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise TypeError
    if tp in (str, dict):
        if isinstance(value, tp):
            return value
        raise TypeError
    raise TypeError


def _number_text(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _range_text(meta: typing.Mapping[str, Any]) -> str:
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is None and hi is None:
        return ""
    left = "(" if meta.get("lo_open") or lo is None else "["
    right = ")" if meta.get("hi_open") or hi is None else "]"
    lo_text = "-inf" if lo is None else _number_text(lo)
    hi_text = "inf" if hi is None else _number_text(hi)
    return f" in {left}{lo_text}, {hi_text}{right}"


def _expected(f: dataclasses.Field, kind: Any) -> str:
    """What a field takes, in words: 'a whole number in [1, 1000]', 'a finite number in [0, 10)', 'true or false'."""
    if f.metadata.get("choices"):
        return "one of " + ", ".join(f.metadata["choices"])
    if kind is bool:
        return "true or false"
    if kind is str:
        return "a string"
    if kind is dict or typing.get_origin(kind) is dict:
        return "a table"
    if kind is int:
        return "a whole number" + _range_text(f.metadata)
    if kind is float or typing.get_origin(kind) in (Union, types.UnionType) and float in typing.get_args(kind):
        return "a finite number" + _range_text(f.metadata)
    return type_name(kind)


def _fail(where: str, f: dataclasses.Field, kind: Any, value: Any, as_flag: bool = False) -> SettingError:
    prefix = f"{where} " if where else ""
    name = flag(f.name) if as_flag else f.name
    return SettingError(f"{prefix}{name} must be {_expected(f, kind)}, got {value!r}"[:300])


def check(obj: Any, where: str = "", as_flags: bool = False) -> None:
    """Every number of the dataclass `obj` finite and inside its declared range, every string among its declared
    choices, else SettingError (naming the field, or its flag when `as_flags`)."""
    kinds = hints(type(obj))
    for f in dataclasses.fields(obj):
        _check_value(f, kinds.get(f.name, float), getattr(obj, f.name), where, as_flags)


def _check_value(f: dataclasses.Field, kind: Any, value: Any, where: str, as_flag: bool = False) -> None:
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise _fail(where, f, kind, value, as_flag)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
    bad = not math.isfinite(value)
    if not bad and lo is not None:
        bad = value <= lo if f.metadata.get("lo_open") else value < lo
    if not bad and hi is not None:
        bad = value >= hi if f.metadata.get("hi_open") else value > hi
    if bad:
        raise _fail(where, f, kind, value, as_flag)


def _coerced(cls: type, data: typing.Mapping[str, Any], where: str, as_flags: bool = False) -> dict[str, Any]:
    """The keys of `data` that are fields of `cls`, each coerced to its field's type, else SettingError."""
    kinds = hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            try:
                values[f.name] = coerce(data[f.name], kinds[f.name])
            except TypeError:
                raise _fail(where, f, kinds[f.name], data[f.name], as_flags) from None
    return values


def check_mapping(cls: type, data: typing.Mapping[str, Any], where: str, as_flags: bool = False) -> None:
    """Every key of `data` that is a field of `cls`: of its field's type and in its range, else SettingError. For
    entries that are not yet a whole `cls` (a suite case before its defaults are merged, a loaded config)."""
    values = _coerced(cls, data, where, as_flags)
    kinds = hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in values:
            _check_value(f, kinds[f.name], values[f.name], where, as_flags)


def from_mapping(cls: type[T], data: Any, where: str) -> T:
    """`cls(**data)` with every key known, every value of its field's type, and every number in range."""
    if not isinstance(data, dict):
        raise SettingError(f"{where}: expected a table of settings, got {type(data).__name__}")
    names = sorted(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise SettingError(f"{where}: unknown setting(s) {unknown}; valid: {', '.join(names)}"[:300])
    obj = cls(**_coerced(cls, data, where))
    check(obj, where)
    return obj


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"{f.name}: a setting needs a default")


def describe(cls: type) -> str:
    """`name (type, default d): help` for every field, one per line."""
    kinds = hints(cls)
    return "\n".join(
        f"{f.name} ({type_name(kinds[f.name])}, default {default_of(f)!r}): {f.metadata.get('help', '')}"
        for f in dataclasses.fields(cls)
    )


# -- the command line -------------------------------------------------------------------------------------------
def _scalar(tp: Any) -> Any:
    """The one scalar type a flag parses: float for `float | None`, the Literal's values' type, else `tp`."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _scalar(args[0]) if len(args) == 1 else None
    if typing.get_origin(tp) is Literal:
        return str
    return tp if tp in (int, float, str, bool) else None


class _Alias(argparse.Action):
    """An earlier spelling of a flag: sets the same value (its const, for an on-switch), and says the current name."""

    def __call__(self, parser, namespace, values, option_string=None):
        log.warning("%s is now %s", option_string, flag(self.dest))
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def add_arguments(parser: argparse.ArgumentParser | Any, cls: type, skip: Sequence[str] = (), base: Any = None) -> None:
    """One flag per field of `cls` (not in `skip`): `--name`, parsed as the field's type; bools as
    `--name/--no-name`. Defaults stay None in the namespace, so `from_args` tells a given flag from an absent one;
    the help shows the default (`base`'s value when a command starts from its own defaults) and the range."""
    kinds = hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        kind = _scalar(kinds[f.name])
        if kind is None:
            raise TypeError(f"{cls.__name__}.{f.name}: {type_name(kinds[f.name])} has no flag form; skip it")
        default = getattr(base, f.name) if base is not None else default_of(f)
        rng = _range_text(f.metadata)
        text = f"{f.metadata.get('help', '')} ({rng.strip() + '; ' if rng else ''}default {default!r})"
        choices = f.metadata.get("choices") or (
            typing.get_args(kinds[f.name]) if typing.get_origin(kinds[f.name]) is Literal else None
        )
        options: dict[str, Any] = {"dest": f.name, "default": None, "help": text.replace("%", "%%")}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            metavar = None if choices else {int: "N", float: "X"}.get(kind, "TEXT")
            options.update(type=kind, choices=choices, metavar=metavar)
        parser.add_argument(flag(f.name), **options)
        for alias in f.metadata.get("aliases", ()):  # hidden: --help shows one name per setting
            if kind is bool:  # an earlier on-switch: `--layers` for `--layer-profile`
                parser.add_argument(alias, action=_Alias, dest=f.name, nargs=0, const=True, help=argparse.SUPPRESS)
            else:
                parser.add_argument(alias, action=_Alias, **{**options, "help": argparse.SUPPRESS})


def from_args(cls: type[T], args: argparse.Namespace, base: T | None = None, where: str = "") -> T:
    """`base` (or the defaults) with every field given on the command line replaced, then checked."""
    obj = base if base is not None else cls()
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if getattr(args, f.name, None) is not None
    }
    obj = dataclasses.replace(obj, **given)  # type: ignore[type-var]
    check(obj, where, as_flags=True)
    return obj
