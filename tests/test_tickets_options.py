"""Typed method options: every method has a dataclass; typos and wrong types are rejected with the valid list."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from ticketbench.bench.suite import SuiteError, parse_suite
from ticketbench.models.data import load_dataset
from ticketbench.models.tickets import METHOD_OPTIONS, METHODS, OptionsError, TicketConfig, find_ticket, method_options


def _cfg(method: str, **options) -> TicketConfig:
    return TicketConfig("small_cnn", "digits", method, 0.5, 1, 0, options=options)


def test_every_method_has_typed_options_with_help_for_every_field():
    assert set(METHOD_OPTIONS) == set(METHODS.names())
    for method, cls in METHOD_OPTIONS.items():
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{method}.{f.name} has no help"


def test_a_typo_is_rejected_listing_the_valid_options():
    with pytest.raises(OptionsError) as exc:
        method_options(_cfg("magnitude", scpoe="filter"))
    msg = str(exc.value)
    assert "'scpoe'" in msg and "scope (global|layer|filter|nm)" in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("method", "options", "needle"),
    [
        ("mpt", {"power": "two"}, "power='two' is not float or none"),
        ("mpt", {"structure": "blocks"}, "structure='blocks' is not unstructured|kernel|group"),
        ("mpt", {"groups": "many"}, "groups='many' is not int or auto"),
        ("mpt", {"groups": 2.5}, "groups=2.5"),
        ("lth", {"one_shot": 1}, "one_shot=1 is not bool"),
        ("lth", {"rate": 1.5}, "rate must be in (0, 1)"),
        ("eb", {"fifo": True}, "fifo=True is not int"),
        ("eb", {"ratios": 0.5}, "ratios=0.5"),
        ("magnitude", {"structure": "kernel", "scope": "filter"}, "needs scope global or layer"),
        ("mpt", {"min_kept_per_layer": 1.0}, "min_kept_per_layer must be in [0, 1)"),
        ("dense", {"scope": "global"}, "unknown option(s) 'scope'"),
    ],
)
def test_ill_typed_or_out_of_range_options_are_errors(method, options, needle):
    with pytest.raises(OptionsError, match=None) as exc:
        method_options(_cfg(method, **options))
    assert needle in str(exc.value)


def test_options_that_are_not_a_table_are_an_error():
    with pytest.raises(OptionsError, match="options must be a table"):
        method_options(TicketConfig("small_cnn", "digits", "mpt", 0.5, options=5))


def test_values_are_coerced_to_their_declared_type():
    o = method_options(_cfg("mpt", power=2, groups=4, structure="group", finetune="all"))
    assert o.power == 2.0 and isinstance(o.power, float) and o.groups == 4 and o.finetune == "all"
    assert method_options(_cfg("mpt", power=None)).power is None
    assert method_options(_cfg("eb", ratios=[0.2, 0])).ratios == [0.2, 0.0]
    assert method_options(_cfg("lth")).final_epochs is None  # defaults come from the dataclass


def test_find_ticket_rejects_before_any_training():
    with pytest.raises(OptionsError, match="'epsilom'"):
        find_ticket(_cfg("eb", epsilom=0.2), load_dataset("digits"))


def test_suite_loader_rejects_an_option_typo_naming_the_case():
    doc = {"cases": [{"model": "small_cnn", "dataset": "digits", "method": "mpt", "options": {"mdoe": "sort"}}]}
    with pytest.raises(SuiteError, match=r"case 0: mpt: unknown option\(s\) 'mdoe'; valid options: .*mode"):
        parse_suite(doc, "t.toml")


@pytest.mark.e2e
@pytest.mark.parametrize("option", ["scpoe=filter", "structure=blocks", "groups=auto2", "power=[1]", "ramp_epochs=-1"])
def test_cli_bad_option_is_exit_2_and_one_line(option):
    args = ["ticket", "--model", "small_cnn", "--method", "mpt", "--sparsity", "0.5", "--option", option]
    r = subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: mpt:") and "Traceback" not in r.stderr
