"""Issue 25, item 12: inputs that ended in a traceback or a crash now end in one line on stderr and exit 2, checked
before anything trains or writes. Parsers get a hypothesis property beside the probes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hostile_fuzz import json_values
from test_hostile_input import BASE, assert_usage_error, make_ticket, one_error_line, run_cli

from ticketbench.bench.farm import InventoryError, load_inventory
from ticketbench.bench.suite import Case, Suite, SuiteError, load_suite, ticket_case


def _retouch(tdir: Path, key: str, value) -> Path:
    """Rewrite one recorded value of a saved ticket: the config's `key`, or the provenance's input_shape."""
    blob = torch.load(tdir / "ticket.pt", weights_only=True)
    if key == "input_shape":
        blob["provenance"]["input_shape"] = value
    else:
        blob["config"][key] = value
    torch.save(blob, tdir / "ticket.pt")
    return tdir


# -- a suite `ticket = "path"` case whose ticket records nonsense ------------------------------------------------
@pytest.mark.parametrize(
    "key, value, needle",
    [
        ("input_shape", ["a", "b", "c"], "input_shape"),
        ("input_shape", [0, 8, 8], "input_shape"),
        ("input_shape", [-1, 8, 8], "input_shape"),
        ("input_shape", [1, 100000, 100000], "input_shape"),
        ("input_shape", [4, 4096, 4096], "over"),  # each side allowed, the synthetic data set it implies is not
        ("input_shape", [3, 8, 8], "does not run on its recorded input_shape"),  # the model takes 1 channel
        ("input_shape", torch.tensor([1, 8, 8]), "input_shape"),
        ("sparsity", "half", "sparsity"),
        ("sparsity", 1.5, "sparsity"),
        ("epochs", "ten", "epochs"),
    ],
)
def test_a_ticket_case_recording_nonsense_is_one_line_before_anything_runs(tmp_path, capsys, key, value, needle):
    _retouch(make_ticket(tmp_path / "t"), key, value)
    suite, out = tmp_path / "s.toml", tmp_path / "out"
    suite.write_text('[[cases]]\nticket = "t"\n')
    line = assert_usage_error(capsys, ["run", "--suite", str(suite), "--out", str(out), "-q"], needle)
    assert "case 0" in line
    assert not out.exists()


@pytest.fixture(scope="module")
def one_ticket(tmp_path_factory) -> Path:
    return make_ticket(tmp_path_factory.mktemp("fuzz") / "t")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=json_values | st.lists(st.integers(-(2**40), 2**40), min_size=3, max_size=3),
    sparsity=st.none() | json_values,
)
def test_ticket_case_gives_a_case_or_a_suite_error_for_any_record(one_ticket, shape, sparsity):
    pristine = one_ticket.parent / "pristine.pt"
    if not pristine.exists():
        pristine.write_bytes((one_ticket / "ticket.pt").read_bytes())
    (one_ticket / "ticket.pt").write_bytes(pristine.read_bytes())
    _retouch(one_ticket, "input_shape", shape)
    if sparsity is not None:
        _retouch(one_ticket, "sparsity", sparsity)
    try:
        case = ticket_case({"ticket": str(one_ticket)}, "fuzz", 0)
    except SuiteError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(case, Case) and 0 <= case.ticket.sparsity < 1
    assert case.ticket.data_options["input_shape"] == [1, 8, 8]


# -- bench ticket --width that builds nothing -------------------------------------------------------------------
@pytest.mark.parametrize("model", ["small_cnn", "vgg11"])
@pytest.mark.parametrize("width", ["0", "-2", "nan", "inf"])
def test_ticket_width_that_builds_no_model_is_one_line_before_training(tmp_path, capsys, model, width):
    """vgg11 clamped -2 to 1-channel layers and trained that (exit 0); small_cnn and nan crashed mid-build."""
    out = tmp_path / "t"
    args = ["ticket", "--model", model, "--method", "dense", "--sparsity", "0", "--epochs", "0"]
    args += ["--finetune-epochs", "0", "--dataset", "synthetic", f"--width={width}", "--out", str(out)]
    assert_usage_error(capsys, args, "width must be a finite number > 0")
    assert not out.exists()


# -- bench import of checkpoints that are not what their format promises -------------------------------------------
def _state() -> dict[str, torch.Tensor]:
    from ticketbench.models.zoo import create_model

    return create_model("small_cnn", num_classes=10, in_channels=1).state_dict()


def _no_var(sd: dict) -> dict:
    return {k: v for k, v in sd.items() if not k.endswith("running_var")}


@pytest.mark.parametrize(
    "make, fmt, needle",
    [
        (lambda sd: {"cfg": 5, "state_dict": sd}, "auto", "format eb: cfg must be a list of channel counts"),
        (lambda sd: {"cfg": [None], "state_dict": sd}, "auto", "format eb: cfg must be a list of channel counts"),
        (lambda sd: {"cfg": [8, 8, 16, 16], "state_dict": _no_var(sd)}, "auto", "features.1 has no running_var"),
        (lambda sd: {"cfg": [8], "state_dict": {**sd, "features.1.running_var": torch.tensor(1.0)}}, "eb", "0-d"),
        (lambda sd: {**sd, "classifier.weight": torch.tensor(1.0)}, "auto", "classifier.weight"),
    ],
)
def test_import_of_a_checkpoint_unlike_its_format_is_one_line(tmp_path, capsys, make, fmt, needle):
    torch.save(make(_state()), tmp_path / "c.pt")
    out = tmp_path / "t"
    args = ["import", "--model", "small_cnn", "--checkpoint", str(tmp_path / "c.pt"), "--format", fmt]
    assert_usage_error(capsys, [*args, "--out", str(out)], needle)
    assert not out.exists()


@pytest.mark.parametrize("where", ["file/t", "/proc/ticketbench-no-such-dir"])
def test_import_out_that_cannot_be_written_is_one_line(tmp_path, capsys, where):
    (tmp_path / "file").write_text("keep")
    torch.save(_state(), tmp_path / "c.pt")
    args = ["import", "--model", "small_cnn", "--checkpoint", str(tmp_path / "c.pt"), "--out", str(tmp_path / where)]
    assert_usage_error(capsys, args, "--out")
    assert (tmp_path / "file").read_text() == "keep"


@settings(max_examples=60, deadline=None)
@given(cfg=json_values | st.lists(st.integers(-3, 40) | st.sampled_from(["M", None, 1.5, True]), max_size=6))
def test_eb_reader_gives_a_source_or_a_checkpoint_error_for_any_cfg(cfg):
    from ticketbench.models.importers import CheckpointError, Source, read_eb

    try:
        src = read_eb({"cfg": cfg, "state_dict": _state()})
    except CheckpointError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(src, Source) and src.facts["cfg"] == [8, 8, 16, 16]


# -- TOML nesting bombs: tomllib recursed until RecursionError -------------------------------------------------------
DEEP = 100_000


def _arrays(n: int) -> str:
    return "[" * n + "]" * n


def _tables(n: int) -> str:
    return "{a = " * n + "1" + "}" * n


@pytest.mark.parametrize(
    "text",
    [BASE + f"[[cases]]\nsparsity = {_arrays(DEEP)}\n", BASE + f"[[cases]]\noptions = {_tables(DEEP)}\n"],
    ids=["suite-arrays", "suite-inline-tables"],
)
def test_a_suite_nested_without_bound_is_one_line(tmp_path, capsys, text):
    suite, out = tmp_path / "s.toml", tmp_path / "out"
    suite.write_text(text)
    assert_usage_error(capsys, ["run", "--suite", str(suite), "--out", str(out), "-q"], "nested deeper than 32 levels")
    assert not out.exists()


@pytest.mark.parametrize("value", [_arrays(DEEP), _tables(DEEP)], ids=["arrays", "inline-tables"])
def test_an_inventory_nested_without_bound_is_one_line(tmp_path, capsys, value):
    inv = tmp_path / "farm.toml"
    inv.write_text(f'[farm]\nout = "{tmp_path / "farm"}"\n[[device]]\nname = "d"\nkind = "cpu"\nlabels = {value}\n')
    assert_usage_error(capsys, ["farm", "nightly", "--inventory", str(inv)], "nested deeper than 32 levels")
    assert not (tmp_path / "farm").exists()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    depth=st.integers(1, 3000),
    nest=st.sampled_from([_arrays, _tables, lambda n: "0.5\n[" + ".".join(["x"] * n) + "]\nb = 1"]),
    key=st.sampled_from(["sparsity", "options", "data_options", "labels"]),
)
def test_any_nesting_depth_loads_or_is_one_error(tmp_path_factory, depth, nest, key):
    folder = tmp_path_factory.mktemp("deep")
    (folder / "s.toml").write_text(BASE + f"[[cases]]\n{key} = {nest(depth)}\n")
    (folder / "i.toml").write_text(f'[[device]]\nname = "d"\nkind = "cpu"\n{key} = {nest(depth)}\n')
    for load, error, kind in ((load_suite, SuiteError, Suite), (load_inventory, InventoryError, object)):
        try:
            assert isinstance(load(str(folder / ("s.toml" if load is load_suite else "i.toml"))), kind)
        except error as exc:
            assert "\n" not in str(exc)


# -- doctor --out that cannot be written: refused before the checks run, not after -----------------------------------
@pytest.mark.parametrize("where", ["/proc/ticketbench-doctor", "file/sub"])
def test_doctor_out_that_cannot_be_written_is_refused_before_the_checks(tmp_path, capsys, monkeypatch, where):
    from ticketbench.bench import doctor

    (tmp_path / "file").write_text("keep")
    ran = []
    monkeypatch.setattr(doctor, "run_doctor", lambda *a, **k: ran.append(a) or [])
    out = where if where.startswith("/") else str(tmp_path / where)
    assert_usage_error(capsys, ["doctor", "--device", "cpu", "--out", out], "--out")
    assert ran == [] and (tmp_path / "file").read_text() == "keep"


# -- --threads 1000000 crashed the process (SIGSEGV) ----------------------------------------------------------------
def test_threads_beyond_the_machine_are_one_line_and_the_help_says_the_bound(capsys):
    from ticketbench import threads
    from ticketbench.bench.cli import main

    limit = threads.max_threads()
    assert limit == min(1024, 4 * (os.cpu_count() or 1)) and threads.choose(limit).threads == limit
    res = run_cli("run", "--threads", "1000000", "--suite", "quick", "-q")
    assert res.returncode == 2, res.stderr
    one_error_line(res.stderr, f"--threads must be ≥ 1 and at most {limit}")
    assert main(["run", "--help"]) == 0
    assert f"1 to {limit} here" in " ".join(capsys.readouterr().out.split())
