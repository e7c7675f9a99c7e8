"""Typed method options (open_lth's hparams style): one dataclass per method, one help string per field.

Options are settings (ticketbench.settings: the one typed-config mechanism); this module adds the methods'
shared option classes and the error wording that lists a method's valid options.

A suite's `options = {...}` and `bench ticket --option KEY=VALUE` arrive as a plain dict; `parse_options`
turns it into the method's dataclass or raises `OptionsError` naming the bad key or value and listing the
valid options, so a typo (`scpoe=filter`) can never silently run the default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from ticketbench.settings import coerce, hints, setting, type_name

STRUCTURES = ("unstructured", "kernel", "group")


class OptionsError(ValueError):
    """An unknown, ill-typed or out-of-range method option; the message is one line."""


def opt(default: Any = dataclasses.MISSING, help: str = "", factory: Any = None) -> Any:  # noqa: A002
    """A method option: a setting (ticketbench.settings) with its help text, the default first."""
    return setting(default, factory=factory, help=help)


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


def parse_options(method: str, cls: type[T], raw: dict[str, Any] | None) -> T:
    """The typed options of `method` from a plain dict; OptionsError lists the valid options on any mistake."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise OptionsError(f"{method}: options must be a table of KEY = VALUE, got {type(raw).__name__}")
    kinds = hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    valid = ", ".join(f"{n} ({type_name(kinds[n])})" for n in names)
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise OptionsError(f"{method}: unknown option(s) {', '.join(map(repr, unknown))}; valid options: {valid}")
    values = {}
    for name, value in raw.items():
        try:
            values[name] = coerce(value, kinds[name])
        except TypeError:
            raise OptionsError(
                f"{method}: option {name}={value!r} is not {type_name(kinds[name])}; valid options: {valid}"
            ) from None
    options = cls(**values)
    try:
        options.check()
    except OptionsError as exc:
        raise OptionsError(f"{method}: {exc}") from None
    return options
