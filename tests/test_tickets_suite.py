"""The `seeds` suite covers every ticket method and every variant option it names is known."""

from __future__ import annotations

import pytest

from ticketbench.bench.suite import load_suite
from ticketbench.models.tickets import METHODS


def test_seeds_suite_runs_every_method():
    suite = load_suite("seeds")
    methods = {c.ticket.method for c in suite.cases}
    assert methods == set(METHODS.names()) >= {"dense", "magnitude", "lth", "eb", "mpt"}
    scopes = {c.ticket.options.get("scope", "global") for c in suite.cases if c.ticket.method == "magnitude"}
    assert scopes == {"global", "filter", "nm"}
    assert any(c.ticket.options.get("low_precision") for c in suite.cases if c.ticket.method == "eb")
    assert {c.ticket.options.get("mode") for c in suite.cases if c.ticket.method == "mpt"} == {"sort", "threshold"}


@pytest.mark.e2e
def test_seeds_suite_end_to_end(tmp_path):
    from ticketbench.bench.cli import main

    assert main(["run", "--suite", "seeds", "--out", str(tmp_path / "run"), "-q"]) == 0
