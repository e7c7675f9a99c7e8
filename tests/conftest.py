"""Shared test setup: one torch thread (CI has 2 cores), and small helpers."""

from __future__ import annotations

import os
import tempfile

import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
# Runs made by tests ingest into a throwaway database, never the checkout's runs/ticketbench.sqlite.
os.environ["TICKETBENCH_DB"] = os.path.join(tempfile.mkdtemp(prefix="ticketbench-test-db-"), "results.sqlite")
torch.set_num_threads(1)
