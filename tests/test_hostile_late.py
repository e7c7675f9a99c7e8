"""Issue 25, item 13: settings that were checked too late (every case failed after training) or not at all (silently
ignored, or recorded as a device "down") are refused when the suite or inventory loads: one line naming the key and
what it may be, exit 2, nothing run."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_hostile_fuzz import json_values
from test_hostile_input import BASE, assert_usage_error

from ticketbench.models.data import DataError, check_data_options, dataset_names


@pytest.mark.parametrize(
    "body, needle",
    [
        ("[measure]\nrounds = 0\n[[cases]]\n", "[measure] rounds must be a whole number in [1, 1000], got 0"),
        ('[measure]\nrounds = "five"\n[[cases]]\n', "[measure] rounds must be a whole number in [1, 1000], got 'five'"),
        ("[measure]\nrounds = 1.5\n[[cases]]\n", "[measure] rounds"),
        ("[[cases]]\ndata_options = {bogus = 1}\n", "digits has no data option 'bogus' (valid: seed"),
        ('[[cases]]\ndata_options = {size = "big"}\n', "data_options size must be a whole number in [8, 256]"),
        ('[[cases]]\ndataset = "synthetic"\ndata_options = {input_shape = [3, -1, 8]}\n', "input_shape"),
        ('[[cases]]\ndataset = "synthetic"\ndata_options = {n_test = 0}\n', "n_test"),
    ],
)
def test_settings_that_failed_every_case_after_training_are_refused_at_load(tmp_path, capsys, body, needle):
    suite, out = tmp_path / "s.toml", tmp_path / "out"
    suite.write_text(BASE + body)
    assert_usage_error(capsys, ["run", "--suite", str(suite), "--out", str(out), "-q"], needle)
    assert not out.exists()


@settings(max_examples=80, deadline=None)
@given(
    name=st.sampled_from(["digits", "synthetic", "cifar10", "imagefolder", "nope"]),
    options=json_values
    | st.dictionaries(
        st.sampled_from(["seed", "size", "input_shape", "num_classes", "n_train", "n_test", "subset", "augment", "x"]),
        json_values | st.lists(st.integers(-5, 5000), min_size=3, max_size=3),
        max_size=3,
    ),
)
def test_data_options_are_accepted_or_refused_in_one_line(name, options):
    try:
        check_data_options(name, options)
    except DataError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 400
        return
    assert isinstance(options, dict) and (options == {} or name in dataset_names())
    if name == "synthetic" and "input_shape" in options:
        assert all(isinstance(d, int) and d >= 1 for d in options["input_shape"])


@settings(max_examples=60, deadline=None)
@given(
    measure=st.dictionaries(
        st.sampled_from(["rounds", "min_iterations", "warmup_iterations", "min_seconds", "idle_seconds"]),
        json_values | st.integers(-3, 2000),
        min_size=1,
        max_size=3,
    )
)
def test_measure_settings_load_in_range_or_not_at_all(measure):
    from ticketbench.bench.suite import SuiteError, parse_suite

    doc = {"measure": measure, "cases": [{"model": "small_cnn", "dataset": "digits", "method": "dense"}]}
    try:
        m = parse_suite(doc, "fuzz.toml").measure
    except SuiteError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(m.rounds, int) and 1 <= m.rounds <= 1000
    assert isinstance(m.min_iterations, int) and m.min_iterations >= 1 and m.warmup_iterations >= 0
