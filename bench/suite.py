"""Suites: a TOML file that expands into ticket cases and measurement settings.

Built-in suites live in bench/suites/*.toml; `--suite PATH.toml` loads any other file.
A case entry may give a list for `sparsity`; it expands into one case per value.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ticketbench.models.tickets import TicketConfig


class SuiteError(ValueError):
    """A suite name or file that cannot be used; the message says why."""


PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class MeasureConfig:
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    min_iterations: int = 50
    min_seconds: float = 1.0
    warmup_iterations: int = 10
    precision: str = "fp32"  # one precision; `precisions` (when given) replaces it with several
    idle_seconds: float = 0.0  # idle power baseline measured once before the cases (0 = off); reported beside energy
    precisions: list[str] | None = None  # e.g. ["fp32", "int8"]: one row per precision, the ticket built once
    calibration_size: int = 256  # int8: training images in the calibration set (models/quantize.py)
    calibration_seed: int = 0  # int8: seed of the calibration draw
    calibration_method: str = "entropy"  # int8 on ONNX Runtime: entropy | minmax | percentile

    def precision_list(self) -> list[str]:
        return list(self.precisions) if self.precisions else [self.precision]

    def check(self, source: str) -> None:
        """Typed values: a wrong precision or calibration setting is a suite error, not a failed case later."""
        for p in self.precision_list():
            if p not in PRECISIONS:
                raise SuiteError(f"{source}: [measure] precision {p!r} unknown (known: {', '.join(PRECISIONS)})")
        if len(set(self.precision_list())) != len(self.precision_list()):
            raise SuiteError(f"{source}: [measure] precisions repeat: {self.precision_list()}")
        c = self.calibration_size
        if not isinstance(c, int) or isinstance(c, bool) or c < 1:
            raise SuiteError(f"{source}: [measure] calibration_size must be a positive integer (got {c!r})")
        if self.calibration_method not in ("entropy", "minmax", "percentile"):
            raise SuiteError(
                f"{source}: [measure] calibration_method {self.calibration_method!r} unknown "
                "(known: entropy, minmax, percentile)"
            )


@dataclass
class Case:
    ticket: TicketConfig

    @property
    def case_id(self) -> str:
        t = self.ticket
        return f"{t.model}-{t.dataset}-{t.method}-s{t.sparsity:.2f}-{t.key()[:6]}"


@dataclass
class Suite:
    name: str
    description: str
    cases: list[Case]
    measure: MeasureConfig
    source: str  # where the suite came from (builtin name or path)


def builtin_suites() -> list[str]:
    return sorted(
        p.name[:-5]
        for p in resources.files("ticketbench.bench").joinpath("suites").iterdir()
        if p.name.endswith(".toml")
    )


def _ticket_fields() -> set[str]:
    return {f.name for f in fields(TicketConfig)}


def parse_suite(doc: dict[str, Any], source: str) -> Suite:
    defaults = dict(doc.get("defaults", {}))
    known = _ticket_fields()
    cases: list[Case] = []
    for i, entry in enumerate(doc.get("cases", [])):
        merged = {**defaults, **entry}
        unknown = set(merged) - known
        if unknown:
            raise SuiteError(f"{source}: case {i}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
        if "method" not in merged or "model" not in merged or "dataset" not in merged:
            raise SuiteError(f"{source}: case {i}: needs model, dataset and method")
        sparsities = merged.pop("sparsity", 0.0)
        for s in sparsities if isinstance(sparsities, list) else [sparsities]:
            cases.append(Case(TicketConfig(**merged, sparsity=float(s))))
    if not cases:
        raise SuiteError(f"{source}: no [[cases]]")
    mfields = {f.name for f in fields(MeasureConfig)}
    mdoc = doc.get("measure", {})
    if set(mdoc) - mfields:
        raise SuiteError(f"{source}: unknown [measure] keys {sorted(set(mdoc) - mfields)}")
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):
        raise SuiteError(f"{source}: duplicate cases")
    measure = MeasureConfig(**mdoc)
    measure.check(source)
    return Suite(doc.get("name", source), doc.get("description", ""), cases, measure, source)


def load_suite(name_or_path: str) -> Suite:
    """A built-in suite by name, or a TOML file by path."""
    path = Path(name_or_path)
    if name_or_path.endswith(".toml") or path.exists():
        if not path.is_file():
            raise SuiteError(f"suite file not found: {name_or_path}")
        text, source = path.read_text(), str(path)
    elif name_or_path in builtin_suites():
        text = resources.files("ticketbench.bench").joinpath("suites", f"{name_or_path}.toml").read_text()
        source = name_or_path
    else:
        raise SuiteError(f"unknown suite {name_or_path!r} (built-in: {', '.join(builtin_suites())}, or a .toml path)")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{source}: invalid TOML: {exc}") from exc
    try:
        return parse_suite(doc, source)
    except TypeError as exc:
        raise SuiteError(f"{source}: {exc}") from exc
