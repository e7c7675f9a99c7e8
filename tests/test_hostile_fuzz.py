"""Property-based fuzzing of every reader of shared input (issue 11): for any input, a valid object or the one
error type that reader documents, never another exception. Example counts stay small: this runs in seconds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ticketbench.bench.farm import Inventory, InventoryError, load_inventory, parse_inventory
from ticketbench.bench.suite import Suite, SuiteError, load_suite, parse_suite
from ticketbench.files import InputError, read_json_object, read_results_csv
from ticketbench.reports.artifacts import TicketArtifacts, load_ticket_artifacts
from ticketbench.results import COLUMNS

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["small_cnn", "digits", "dense", "magnitude", "quick", "cpu", "u@h", "-E.pwned", "fp32", "1"]),
)
json_values = st.recursive(
    scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=12
)


def _toml(v) -> str:
    """A TOML value (TOML has no null: None becomes an empty string)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v) if abs(v) < 2**63 else json.dumps(str(v))
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v if not isinstance(x, dict)) + "]"
    return json.dumps("" if v is None else str(v))


def _table(d: dict) -> str:
    return "".join(f"{json.dumps(k)} = {_toml(v)}\n" for k, v in d.items() if not isinstance(v, dict))


toml_scalars = st.one_of(scalars, st.lists(scalars, max_size=3))


# -- suites ---------------------------------------------------------------------------------------------------
SUITE_KEYS = ["model", "dataset", "method", "sparsity", "epochs", "finetune_epochs", "lr", "batch_size", "seed",
              "options", "data_options", "bogus"]  # fmt: skip
MEASURE_KEYS = ["batch_sizes", "min_iterations", "min_seconds", "warmup_iterations", "precision", "idle_seconds"]
# a valid case with one or two keys replaced: reaches the checks behind the name checks, and valid suites
nearly_valid_cases = st.builds(
    lambda extra: {"model": "small_cnn", "dataset": "digits", "method": "magnitude", "sparsity": 0.5, **extra},
    st.dictionaries(st.sampled_from(SUITE_KEYS), json_values, max_size=2),
)
suite_docs = st.fixed_dictionaries(
    {},
    optional={
        "name": scalars,
        "defaults": st.dictionaries(st.sampled_from(SUITE_KEYS), json_values, max_size=6) | scalars,
        "cases": st.lists(st.dictionaries(st.sampled_from(SUITE_KEYS), json_values, max_size=5), max_size=3)
        | st.lists(nearly_valid_cases, min_size=1, max_size=3)
        | scalars,
        "measure": st.dictionaries(st.sampled_from([*MEASURE_KEYS, "nope"]), json_values, max_size=4) | scalars,
    },
)


@FUZZ
@given(doc=suite_docs | st.builds(lambda c: {"cases": c}, st.lists(nearly_valid_cases, min_size=1, max_size=3)))
def test_parse_suite_gives_a_suite_or_a_suite_error(doc):
    try:
        suite = parse_suite(doc, "fuzz.toml")
    except SuiteError as exc:
        assert "\n" not in str(exc)
        return
    event("valid suite")
    assert isinstance(suite, Suite) and suite.cases
    assert all(isinstance(b, int) and b >= 1 for b in suite.measure.batch_sizes)
    assert all(0 <= c.ticket.sparsity < 1 for c in suite.cases)


@FUZZ
@given(
    text=st.text(max_size=200)
    | st.builds(
        lambda d: "[defaults]\n" + _table(d) + "[[cases]]\n", st.dictionaries(st.sampled_from(SUITE_KEYS), toml_scalars)
    )
)
def test_load_suite_on_any_text(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("suite") / "s.toml"
    path.write_text(text)
    try:
        assert isinstance(load_suite(str(path)), Suite)
    except SuiteError:
        pass


# -- results.csv, run.json -------------------------------------------------------------------------------------
cells = st.one_of(st.text(max_size=6), st.sampled_from(["", "ok", "failed", "1", "1.5", "nan", "-3", "x,y", '"']))
headers = st.lists(st.sampled_from([*COLUMNS[:22], "status", "junk", ""]), min_size=0, max_size=14)


@FUZZ
@given(header=headers, rows=st.lists(st.lists(cells, max_size=16), max_size=4), raw=st.binary(max_size=64))
def test_results_reader_gives_a_table_or_an_input_error(tmp_path_factory, header, rows, raw):
    path = tmp_path_factory.mktemp("csv") / "results.csv"
    for content in (
        "\n".join([",".join(header), *(",".join(r) for r in rows)]).encode(),
        raw,
        (",".join(COLUMNS) + "\n" + "\n".join(",".join(r) for r in rows)).encode(),
    ):
        path.write_bytes(content)
        try:
            df = read_results_csv(path)
        except InputError as exc:
            assert "\n" not in str(exc)
            continue
        assert list(df.columns[: len(COLUMNS)]) == COLUMNS
        assert set(df["status"].dropna().astype(str)) <= {"ok", "failed", "skipped"}


@FUZZ
@given(value=json_values, raw=st.binary(max_size=64))
def test_json_reader_gives_an_object_or_an_input_error(tmp_path_factory, value, raw):
    path = tmp_path_factory.mktemp("json") / "run.json"
    for content in (json.dumps(value).encode(), raw, b"[" * 5000):
        path.write_bytes(content)
        try:
            assert isinstance(read_json_object(path), dict)
        except InputError:
            pass


# -- cost.json / artifacts.json: a malformed part leaves its plot out, never raises ------------------------------
layer = st.dictionaries(st.sampled_from(["name", "kind", "kernels", "zero_kernels"]), json_values, max_size=4)
cost_docs = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"ticket": st.one_of(json_values, st.fixed_dictionaries({"layers": st.lists(layer, max_size=3) | json_values}))}
    ),
)
art_keys = [
    "mask_distance_matrix",
    "eb_mask_distances",
    "eb_epoch",
    "mask_distance_epochs",
    "score_histograms",
    "score_hist",
]
art_docs = st.one_of(json_values, st.dictionaries(st.sampled_from(art_keys), json_values, max_size=4))


@FUZZ
@given(cost=cost_docs, art=art_docs)
def test_ticket_artifacts_never_raise(tmp_path_factory, cost, art):
    run = tmp_path_factory.mktemp("run")
    tdir = run / "tickets" / "case"
    tdir.mkdir(parents=True)
    (tdir / "cost.json").write_text(json.dumps(cost))
    (tdir / "artifacts.json").write_text(json.dumps(art))
    out = load_ticket_artifacts(run, "case")
    assert isinstance(out, TicketArtifacts)
    assert all(isinstance(lc["kernels"], int) and lc["kernels"] >= 0 for lc in out.layers)


# -- farm inventory -------------------------------------------------------------------------------------------
DEVICE_KEYS = ["name", "kind", "host", "labels", "suite", "suites", "run_args", "timeout_s", "extra"]
FARM_KEYS = ["out", "scheduler", "db", "suite", "suites", "threshold", "timeout_s"]  # threshold: moved, refused
COMPARE_KEYS = ["latency_floor", "energy_floor", "accuracy_floor_points", "alpha", "history_runs", "gate_times", "x"]
devices = st.lists(st.dictionaries(st.sampled_from(DEVICE_KEYS), toml_scalars, max_size=6), max_size=3)
farms = st.dictionaries(st.sampled_from(FARM_KEYS), toml_scalars, max_size=5)
compares = st.dictionaries(st.sampled_from(COMPARE_KEYS), toml_scalars, max_size=4)


@FUZZ
@given(farm=farms, compare=compares, devs=devices)
def test_inventory_gives_an_inventory_or_an_inventory_error(tmp_path_factory, farm, compare, devs):
    path = tmp_path_factory.mktemp("inv") / "farm.toml"
    text = "[farm]\n" + _table(farm) + "[compare]\n" + _table(compare)
    path.write_text(text + "".join("[[device]]\n" + _table(d) for d in devs))
    doc = {"farm": farm, "compare": compare, "device": devs}
    for load in (lambda: load_inventory(path), lambda: parse_inventory(doc, path)):
        try:
            inv = load()
        except InventoryError as exc:
            assert "\n" not in str(exc)
            continue
        assert isinstance(inv, Inventory) and inv.devices
        assert all(d.timeout_s > 0 and (d.host == "local" or not d.host.startswith("-")) for d in inv.devices)


@settings(max_examples=30, deadline=None)
@given(raw=st.binary(max_size=80) | st.text(max_size=80))
def test_inventory_on_any_bytes(tmp_path_factory, raw):
    path = Path(tmp_path_factory.mktemp("inv")) / "farm.toml"
    path.write_bytes(raw if isinstance(raw, bytes) else raw.encode())
    try:
        load_inventory(path)
    except InventoryError:
        pass


# -- a results table the reader accepts always renders (absurd values leave a figure out, never the report) -----
_TEXT = {"run_id", "case_id", "model", "dataset", "method", "device", "device_name", "backend", "precision",
         "power_source", "status", "error"}  # fmt: skip
numbers = st.one_of(st.none(), st.floats(), st.integers(-(10**20), 10**20), st.sampled_from([0, -1, 1e308, 2**64]))
words = st.one_of(st.none(), st.sampled_from(["", "dense", "magnitude", "eb", "x<y>", "cpu", "fp32", "a,b", "1"]))
result_rows = st.fixed_dictionaries(
    {
        c: st.sampled_from(["ok", "failed", "skipped"])
        if c == "status"
        else st.integers(1, 64)
        if c == "batch_size"
        else words
        if c in _TEXT
        else numbers
        for c in COLUMNS[:39]
    }
)


@pytest.mark.e2e
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(result_rows, max_size=5))
def test_any_readable_results_table_renders(tmp_path_factory, rows):
    import pandas as pd

    from ticketbench.reports.html import render_html

    path = tmp_path_factory.mktemp("render") / "results.csv"
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path, index=False)
    html = render_html(read_results_csv(path), [{}])
    assert html.count('<figure class="plot"') + html.count("Not shown:") >= 6


def test_blank_cells_beside_huge_numbers_are_empty(tmp_path):
    path = tmp_path / "results.csv"
    rows = [
        ",".join(["", "c", "m", "d", "x", "cpu", "ort", "fp32", "1", "ok", v]) for v in ("", "18446744073709551616")
    ]
    path.write_text("run_id,case_id,model,dataset,method,device,backend,precision,batch_size,status,speedup\n"
                    + "\n".join(rows) + "\n")  # fmt: skip
    df = read_results_csv(path)
    assert df["speedup"].isna().tolist() == [True, False]
