"""Typed method options (open_lth's hparams style): one dataclass per method, one help string per field.

A suite's `options = {...}` and `bench ticket --option KEY=VALUE` arrive as a plain dict; `parse_options`
turns it into the method's dataclass or raises `OptionsError` naming the bad key or value and listing the
valid options, so a typo (`scpoe=filter`) can never silently run the default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, Union

STRUCTURES = ("unstructured", "kernel", "group")


class OptionsError(ValueError):
    """An unknown, ill-typed or out-of-range method option; the message is one line."""


def opt(default: Any = dataclasses.MISSING, help: str = "", factory: Any = None) -> Any:  # noqa: A002
    """A dataclass field with its help text (the CLI and the error messages print it)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class MethodOptions:
    """Options every method takes."""

    model_kwargs: dict = opt(factory=dict, help="extra model factory arguments, e.g. {width = 0.25}")

    def check(self) -> None:
        """Range checks beyond the types; raise OptionsError. Subclasses extend."""


@dataclass
class StructureOptions(MethodOptions):
    """Kernel-structure options shared by mpt, magnitude and lth."""

    structure: Literal["unstructured", "kernel", "group"] = opt(
        "unstructured",
        "unstructured: single weights; kernel: whole k×k kernels pruned as units; group: lottery-regulated grouped "
        "kernels (block diagonal after permutation, rewritten as grouped/split convs)",
    )
    groups: int | Literal["auto", "uniform"] = opt(
        "auto",
        "structure=group: classes per channel group: an integer; auto: each channel group its own, the largest "
        "power of two ≤ 1/kept fraction whose classes are aligned and at least min_group_width wide (a conv "
        "between two groups keeps the smaller count as blocks); uniform: one such count for the whole network "
        "(capped by its narrowest group: ResNet-18 stays at 4 blocks at 95 %)",
    )
    align: int = opt(8, "structure=group, groups=auto|uniform: channel alignment of the target device (export --align)")
    min_group_width: int = opt(
        16,
        "structure=group, groups=auto|uniform: narrowest class (channels per group) auto may choose; ORT CPU measured "
        "8-wide groups realizing about half their AR, 16-wide and wider most of it (bench_kernel_structure a)",
    )

    def check(self) -> None:
        super().check()
        if isinstance(self.groups, int) and self.groups < 1:
            raise OptionsError(f"groups must be ≥ 1 or 'auto', got {self.groups}")
        if self.align < 1 or self.min_group_width < 1:
            raise OptionsError(f"align and min_group_width must be ≥ 1, got {self.align}, {self.min_group_width}")


T = TypeVar("T", bound=MethodOptions)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """typing.get_type_hints(cls), once per class: it compiles every annotation string on each call, and calling it
    per case made validating a suite of 10**4 cases take 12 s."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def describe(cls: type[MethodOptions]) -> str:
    """`name (type, default d): help` for every option, one per line."""
    hints = _hints(cls)
    lines = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: an option needs a default")
        lines.append(f"{f.name} ({_type_name(hints[f.name])}, default {default!r}): {f.metadata.get('help', '')}")
    return "\n".join(lines)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "|".join(str(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return str(tp).replace("typing.", "")
    return "none" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any) -> Any:
    """`value` as type `tp`, or raise TypeError. ints pass as floats; bools are never numbers."""
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
                return _coerce(value, arg)
            except TypeError:
                continue
        raise TypeError
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise TypeError
        return [_coerce(v, item) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError
    if tp in (str, dict):
        if isinstance(value, tp):
            return value
        raise TypeError
    raise TypeError


def parse_options(method: str, cls: type[T], raw: dict[str, Any] | None) -> T:
    """The typed options of `method` from a plain dict; OptionsError lists the valid options on any mistake."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise OptionsError(f"{method}: options must be a table of KEY = VALUE, got {type(raw).__name__}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    valid = ", ".join(f"{n} ({_type_name(hints[n])})" for n in names)
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise OptionsError(f"{method}: unknown option(s) {', '.join(map(repr, unknown))}; valid options: {valid}")
    values = {}
    for name, value in raw.items():
        try:
            values[name] = _coerce(value, hints[name])
        except TypeError:
            raise OptionsError(
                f"{method}: option {name}={value!r} is not {_type_name(hints[name])}; valid options: {valid}"
            ) from None
    options = cls(**values)
    try:
        options.check()
    except OptionsError as exc:
        raise OptionsError(f"{method}: {exc}") from None
    return options
