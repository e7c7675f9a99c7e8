"""Shared test setup: one torch thread (CI has 2 cores), small helpers, and the peer mark of the PostgreSQL tests.

Tiers (pyproject.toml): plain `pytest` runs the fast default tier; tests marked `e2e` (whole runs and commands,
training, full-size models) or `peer` (a real PostgreSQL, Dask, sshd, Chromium or wheel build) run with
`pytest -m e2e`, `pytest -m peer`, or everything with `pytest -m ""` (what tox and CI run)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
# Runs made by tests ingest into a throwaway database, never the checkout's runs/ticketbench.sqlite.
os.environ["TICKETBENCH_DB"] = os.path.join(tempfile.mkdtemp(prefix="ticketbench-test-db-"), "results.sqlite")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _short_busy_core_sample(monkeypatch) -> None:
    """Every in-process run first samples other processes' CPU use (threads.busy_cores): 0.25 s of sleep, some
    ten seconds over the default tier. Tests sample for 0.05 s; none judges the sampled load itself."""
    from ticketbench import threads

    sample = threads.busy_cores
    monkeypatch.setattr(threads, "busy_cores", lambda window_s=0.05: sample(window_s))


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    """A small_cnn (width 8, 1×8×8 input) exported to ONNX: the model device tests run."""
    from ticketbench.models.export import to_onnx_bytes
    from ticketbench.models.zoo import create_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("onnx") / "small.onnx"
    path.write_bytes(to_onnx_bytes(create_model("small_cnn", num_classes=10, in_channels=1, width=8), (1, 8, 8)))
    return path


def pytest_collection_modifyitems(items) -> None:
    """A test that uses the session's PostgreSQL server (directly or through postgres_db) is a peer test."""
    for item in items:
        if "postgres_base_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.peer)


@pytest.fixture(scope="session")
def postgres_base_url():
    """A throwaway PostgreSQL server for the session (tests skip with the reason where none can start)."""
    from fixtures.postgres import postgres_server

    with postgres_server() as (server, why):
        if server is None:
            pytest.skip(f"no PostgreSQL server: {why}")
        yield server.url


@pytest.fixture
def postgres_db(postgres_base_url) -> str:
    """A fresh, empty database on the session's PostgreSQL server: its SQLAlchemy URL."""
    import uuid

    from fixtures.postgres import create_database

    return create_database(postgres_base_url, f"t_{uuid.uuid4().hex[:12]}")
