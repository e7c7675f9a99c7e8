"""Shared test setup: one torch thread (CI has 2 cores), and small helpers."""

from __future__ import annotations

import os

import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)
