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


@dataclass
class MeasureConfig:
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    min_iterations: int = 50  # per (case, batch) over all rounds
    min_seconds: float = 1.0  # per (case, batch) over all rounds
    warmup_iterations: int = 10
    rounds: int = 5  # interleaved timing windows per (case, batch), dense reference beside: the regression test's unit
    precision: str = "fp32"
    idle_seconds: float = 0.0  # idle power baseline measured once before the cases (0 = off); reported beside energy


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
    return Suite(doc.get("name", source), doc.get("description", ""), cases, MeasureConfig(**mdoc), source)


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
