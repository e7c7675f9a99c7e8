"""Suites: a TOML file that expands into ticket cases and measurement settings.

Built-in suites live in bench/suites/*.toml; `--suite PATH.toml` loads any other file.
A case entry may give a list for `sparsity`; it expands into one case per value.
A case may instead name a saved ticket directory (`ticket = "path"`, e.g. from `bench import`), relative to the
suite file; it is measured as saved, on its own `dataset` (default: synthetic data shaped for the ticket).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from ticketbench.bench.configs import MeasureConfig
from ticketbench.files import InputError, one_line, parse_toml, read_text, safe_component
from ticketbench.models.data import DataError, check_data_options, input_shape_problem
from ticketbench.models.tickets import OptionsError, Ticket, TicketConfig, load_ticket, method_options
from ticketbench.settings import SettingError, check_mapping, from_mapping


class SuiteError(ValueError):
    """A suite name or file that cannot be used; the message says why."""




@dataclass
class Case:
    ticket: TicketConfig
    ticket_dir: Path | None = None  # a saved ticket to measure instead of finding one (`ticket = "path"`)

    @property
    def case_id(self) -> str:
        t = self.ticket
        model = re.sub(r"[^A-Za-z0-9_.-]", "_", t.model)  # user code (package.module:factory) → a safe path part
        return f"{model}-{t.dataset}-{t.method}-s{t.sparsity:.2f}-{t.key()[:6]}"


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


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_case(merged: dict[str, Any], where: str) -> None:
    """Every TicketConfig field of one case entry: type, range, and a known model/dataset/method."""
    from ticketbench.models.data import dataset_names
    from ticketbench.models.tickets import METHODS
    from ticketbench.models.zoo import model_names

    for key, known in (("model", model_names()), ("dataset", dataset_names()), ("method", METHODS.names())):
        if not isinstance(merged[key], str) or merged[key] not in known:
            raise SuiteError(f"{where}: unknown {key} {_short(merged[key])} (known: {', '.join(known)})")
    _check_values(merged, where)
    _check_data_options(merged["dataset"], merged.get("data_options", {}), where)


NOT_VALUES = ("model", "dataset", "method", "sparsity")  # names checked against registries; a sparsity list


def _check_values(merged: dict[str, Any], where: str, skip: tuple[str, ...] = NOT_VALUES) -> None:
    """Type and range of every number and table of a case entry (or of a saved ticket's config), as TicketConfig
    declares them."""
    try:
        check_mapping(TicketConfig, {k: v for k, v in merged.items() if k not in skip}, where)
    except SettingError as exc:
        raise SuiteError(str(exc)) from None


def _check_data_options(dataset: str, options: dict[str, Any], where: str) -> None:
    try:
        check_data_options(dataset, options)
    except DataError as exc:  # an unknown key or a value out of range: names the key and what it may be
        raise SuiteError(f"{where}: {exc}") from None


def _sparsities(value: Any, where: str) -> list[float]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise SuiteError(f"{where}: sparsity list is empty")
    for v in values:
        _check_values({"sparsity": v}, where, ())
    return [float(v) for v in values]


def _measure(mdoc: Any, source: str) -> MeasureConfig:
    """[measure], checked: batch sizes whole numbers ≥ 1, iterations ≥ 1, rounds in [1, 1000], seconds ≥ 0, a known
    precision."""
    if not isinstance(mdoc, dict):
        raise SuiteError(f"{source}: [measure] must be a table")
    mfields = {f.name for f in fields(MeasureConfig)}
    if set(mdoc) - mfields:
        raise SuiteError(f"{source}: unknown [measure] keys {sorted(set(mdoc) - mfields)}")
    bs = mdoc.get("batch_sizes", [1])
    if not isinstance(bs, list) or not bs or not all(_is_int(b) and 1 <= b <= 1_000_000 for b in bs):
        raise SuiteError(
            f"{source}: [measure] batch_sizes must be a non-empty list of whole numbers ≥ 1, got {_short(bs)}"
        )
    if len(set(bs)) != len(bs):
        raise SuiteError(f"{source}: [measure] batch_sizes has duplicates: {_short(bs)}")
    if "precisions" in mdoc and not (isinstance(mdoc["precisions"], list) and mdoc["precisions"]):
        raise SuiteError(f"{source}: [measure] precisions must be a non-empty list, got {_short(mdoc['precisions'])}")
    try:  # every value of its declared type, range and choices (ticketbench.settings)
        measure = from_mapping(MeasureConfig, mdoc, f"{source}: [measure]")
    except SettingError as exc:
        raise SuiteError(str(exc)) from None
    try:
        measure.check(f"{source}: [measure]")  # the precisions list: known names, no repeats
    except SettingError as exc:
        raise SuiteError(str(exc)) from None
    return measure


def parse_suite(doc: dict[str, Any], source: str) -> Suite:
    """A parsed TOML document → Suite, every value checked up front (type, range, known names), so a bad
    suite is one SuiteError before anything runs, never "ok" rows measured with nonsense or a crash mid-run."""
    if not isinstance(doc, dict):
        raise SuiteError(f"{source}: a suite is a TOML document")
    for key in ("name", "description"):
        if key in doc and not isinstance(doc[key], str):
            raise SuiteError(f"{source}: {key} must be a string, got {_short(doc[key])}")
    measure = _measure(doc.get("measure", {}), source)
    defaults = doc.get("defaults", {})
    entries = doc.get("cases", [])
    if not isinstance(defaults, dict):
        raise SuiteError(f"{source}: [defaults] must be a table")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise SuiteError(f"{source}: cases must be [[cases]] tables")
    known = _ticket_fields()
    cases: list[Case] = []
    origins: list[str] = []  # per case, which entry made it: what a duplicate or colliding case id names
    for i, entry in enumerate(entries):
        where = f"{source}: case {i}"
        if "ticket" in entry:
            cases.append(ticket_case(entry, source, i))
            origins.append(f"{i} (ticket {_short(entry['ticket'])})")
            continue
        merged = {**defaults, **entry}
        unknown = set(merged) - known
        if unknown:
            raise SuiteError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
        if "method" not in merged or "model" not in merged or "dataset" not in merged:
            raise SuiteError(f"{where}: needs model, dataset and method")
        _check_case(merged, where)
        sparsities = _sparsities(merged.pop("sparsity", 0.0), where)
        try:  # typed method options, once per entry (sparsity plays no part): a typo fails here, listing the valid ones
            method_options(TicketConfig(**merged, sparsity=sparsities[0]))
        except OptionsError as exc:
            raise SuiteError(f"{where}: {exc}") from exc
        for s in sparsities:
            cases.append(Case(TicketConfig(**merged, sparsity=s)))
            origins.append(f"{i} (sparsity {s:g})")
    if not cases:
        raise SuiteError(f"{source}: no [[cases]]")
    _check_case_ids(cases, origins, source)
    return Suite(doc.get("name", source), doc.get("description", ""), cases, measure, source)


def _check_case_ids(cases: list[Case], origins: list[str], source: str) -> None:
    """Case ids are unique (one dict: linear in the cases) and safe path components (they name folders under
    tickets/ and samples files). A repeated id names both cases: the same case twice, or two configs whose
    6-hex hashes collide (likely among thousands of cases of one model, data set, method and sparsity)."""
    seen: dict[str, int] = {}
    for n, case in enumerate(cases):
        cid = case.case_id
        first = seen.setdefault(cid, n)
        if first != n:
            a, b = cases[first], case
            pair = f"{source}: cases {origins[first]} and {origins[n]}"
            if a.ticket == b.ticket and a.ticket_dir == b.ticket_dir:
                raise SuiteError(f"{pair} are the same case (id {cid}); remove one")
            differ = [f.name for f in fields(TicketConfig) if getattr(a.ticket, f.name) != getattr(b.ticket, f.name)]
            raise SuiteError(
                f"{pair} differ but share the case id {cid} (its 6-hex config hash collides; they differ in "
                f"{', '.join(differ)}): change one of them, e.g. its seed"
            )
        try:
            safe_component(cid, "case id")
        except InputError as exc:
            raise SuiteError(f"{source}: {exc}") from exc


TICKET_CASE_KEYS = ("ticket", "dataset", "data_options")


def ticket_case(entry: dict[str, Any], source: str, i: int) -> Case:
    """A case measuring a saved ticket directory; its config comes from the ticket, the data set from the entry
    (`[defaults]` are for finding tickets and do not apply). The ticket loads without executing code."""
    unknown = set(entry) - set(TICKET_CASE_KEYS)
    if unknown:
        raise SuiteError(f"{source}: case {i}: a ticket case takes {list(TICKET_CASE_KEYS)}, not {sorted(unknown)}")
    base = Path(source).parent if source.endswith(".toml") else Path.cwd()
    tdir = (base / str(entry["ticket"])).resolve()
    if not (tdir / "ticket.pt").is_file():
        raise SuiteError(f"{source}: case {i}: no ticket.pt in {tdir}")
    try:
        ticket = load_ticket(tdir)
    except Exception as exc:  # a malformed or untrusted ticket: one line
        raise SuiteError(f"{source}: case {i}: ticket {tdir}: {type(exc).__name__}: {exc}") from None
    where = f"{source}: case {i}: ticket {tdir}"  # what a ticket records is as untrusted as the file
    cfg = ticket.config
    if not isinstance(cfg.method, str):
        raise SuiteError(f"{where}: method must be a name, got {_short(cfg.method)}")
    _check_values({f.name: getattr(cfg, f.name) for f in fields(cfg)}, where, ("model", "dataset", "method"))
    dataset, data_options = entry.get("dataset", "synthetic"), entry.get("data_options", {})
    from ticketbench.models.data import dataset_names

    if not isinstance(dataset, str) or dataset not in dataset_names():
        raise SuiteError(f"{source}: case {i}: unknown dataset {_short(dataset)} (known: {', '.join(dataset_names())})")
    if not isinstance(data_options, dict):
        raise SuiteError(f"{source}: case {i}: data_options must be a table, got {_short(data_options)}")
    data_options = dict(data_options)
    _check_data_options(dataset, data_options, f"{source}: case {i}")
    if dataset == "synthetic" and not data_options:  # shaped for the ticket: it measures, accuracy is chance
        data_options = _synthetic_for(ticket, where)
    cfg = replace(ticket.config, dataset=dataset, data_options=data_options)
    cfg.options = {**cfg.options, "ticket_dir": str(tdir)}  # two cases of one ticket dir are one case
    return Case(cfg, tdir)


def _synthetic_for(ticket: Ticket, where: str) -> dict[str, Any]:
    """data_options of synthetic data shaped for a saved ticket: its recorded input shape, checked (sizes, and the
    data set it implies) before one forward pass on it counts the classes."""
    shape = ticket.provenance.get("input_shape")
    if shape is None or isinstance(shape, list | tuple) and not shape:
        raise SuiteError(f"{where}: records no input_shape; give dataset and data_options")
    problem = input_shape_problem(shape, (3,))
    if problem:
        raise SuiteError(f"{where}: input_shape {problem}")
    _check_data_options("synthetic", {"input_shape": list(shape)}, where)  # the data set it implies must fit
    try:
        with torch.no_grad():
            classes = int(ticket.model.eval()(torch.zeros(1, *shape)).shape[1])
    except Exception as exc:  # the model takes other channels or sizes, or its output has no class dimension
        why = one_line(exc, with_type=True)[:200]
        raise SuiteError(f"{where}: does not run on its recorded input_shape {list(shape)} ({why})") from None
    options = {"input_shape": list(shape), "num_classes": classes}
    _check_data_options("synthetic", options, where)
    return options


def load_suite(name_or_path: str) -> Suite:
    """A built-in suite by name, or a TOML file by path."""
    path = Path(name_or_path)
    if name_or_path.endswith(".toml") or path.exists():
        if not path.exists():
            raise SuiteError(f"suite file not found: {name_or_path}")
        try:
            text, source = read_text(path, "suite file"), str(path)
        except InputError as exc:
            raise SuiteError(str(exc)) from exc
    elif name_or_path in builtin_suites():
        text = resources.files("ticketbench.bench").joinpath("suites").joinpath(f"{name_or_path}.toml").read_text()
        source = name_or_path
    else:
        raise SuiteError(f"unknown suite {name_or_path!r} (built-in: {', '.join(builtin_suites())}, or a .toml path)")
    try:
        doc = parse_toml(text, source)
    except InputError as exc:  # invalid, or nested without bound (a RecursionError in tomllib)
        raise SuiteError(str(exc)) from exc
    return parse_suite(doc, source)
