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
from ticketbench.models.zoo import model_kwargs_problem


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
        ("[[cases]]\noptions = {model_kwargs = {width = -1}}\n", "width must be a finite number > 0, got -1"),
        ("[[cases]]\noptions = {model_kwargs = {width = 0}}\n", "width must be a finite number > 0"),
        ("[[cases]]\noptions = {model_kwargs = {width = nan}}\n", "width must be a finite number > 0"),
        ("[[cases]]\noptions = {model_kwargs = {width = 0.5}}\n", "small_cnn does not build with model_kwargs"),
        ("[[cases]]\noptions = {model_kwargs = {depth = 3}}\n", "small_cnn does not build with model_kwargs"),
    ],
)
def test_settings_that_failed_every_case_after_training_are_refused_at_load(tmp_path, capsys, body, needle):
    suite, out = tmp_path / "s.toml", tmp_path / "out"
    suite.write_text(BASE + body)
    assert_usage_error(capsys, ["run", "--suite", str(suite), "--out", str(out), "-q"], needle)
    assert not out.exists()


def test_a_whole_width_for_small_cnn_and_a_multiplier_elsewhere_still_load(tmp_path):
    from ticketbench.bench.suite import load_suite

    suite = tmp_path / "s.toml"
    suite.write_text(
        BASE + "[[cases]]\noptions = {model_kwargs = {width = 4}}\n"
        '[[cases]]\nmodel = "vgg11"\ndataset = "synthetic"\noptions = {model_kwargs = {width = 0.25}}\n'
    )
    assert len(load_suite(str(suite)).cases) == 2


@pytest.mark.parametrize(
    "device, needle",
    [
        ('kind = "quantum"', "kind 'quantum' unknown (known: cpu, gpu, jetson)"),
        ('kind = "cpu"\nthreads = 1000000', "threads must be a whole number in [1, 1024]"),  # `bench run` refuses it
    ],
)
def test_inventory_values_every_night_would_record_as_down_are_refused_at_load(tmp_path, capsys, device, needle):
    inv = tmp_path / "farm.toml"
    inv.write_text(f'[farm]\nout = "{tmp_path / "farm"}"\n[[device]]\nname = "d"\n{device}\n')
    assert_usage_error(capsys, ["farm", "nightly", "--inventory", str(inv)], needle)
    assert not (tmp_path / "farm").exists()


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


@settings(max_examples=60, deadline=None)
@given(
    model=st.sampled_from(["small_cnn", "vgg11", "resnet18_cifar", "mobilenetv1", "pkg.mod:factory", "nope"]),
    kwargs=st.dictionaries(
        st.sampled_from(["width", "depth", "num_classes", "in_channels", "input_size", "x"]),
        json_values | st.floats() | st.integers(-4, 70),
        max_size=2,
    ),
)
def test_model_kwargs_give_one_line_or_none_and_never_raise(model, kwargs):
    problem = model_kwargs_problem(model, kwargs)
    assert problem is None or ("\n" not in problem and len(problem) < 400)
    if problem is None and "width" in kwargs:
        assert kwargs["width"] > 0
