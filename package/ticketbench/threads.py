"""One thread policy for torch, ONNX Runtime and BLAS.

Each runtime sizes its own pool to every logical CPU by default; torch training, ONNX Runtime inference and
NumPy/SciPy BLAS then fight over the same cores, and a parallel region whose threads are descheduled by
another process waits a whole time slice at every barrier. On a small model that turns a 28 s suite into
minutes. The policy: one count for all three, the physical cores this process may use (affinity, SMT
siblings and a cgroup CPU quota respected), lowered to the cores left free when the machine is already busy
at start. `--threads N` fixes the count and switches the adaptation off. The chosen count and the load seen
are recorded in the run's provenance, since latency from a loaded machine is not comparable.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("ticketbench.threads")

_applied: ThreadPolicy | None = None

# Where the kernel says it; module constants so tests point them at fake trees.
PROC_STAT = Path("/proc/stat")
SMT_SIBLINGS = Path("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list")
CGROUP_V2_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_DIR = Path("/sys/fs/cgroup/cpu")


@dataclass(frozen=True)
class ThreadPolicy:
    threads: int  # one count for torch intra-op, ONNX Runtime intra-op and BLAS pools
    physical_cores: int
    busy_cores: float | None  # other processes' CPU use at start, in cores; None = not sampled
    source: str  # "--threads", or "physical cores", or "free cores (busy machine)"

    def as_dict(self) -> dict[str, object]:
        return {
            "threads": self.threads,
            "physical_cores": self.physical_cores,
            "busy_cores": None if self.busy_cores is None else round(self.busy_cores, 2),
            "source": self.source,
        }


def usable_cpus() -> int:
    """Logical CPUs this process may run on: the affinity mask, capped by a cgroup v2/v1 CPU quota."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_quota()
    return max(1, min(n, math.ceil(quota))) if quota else max(1, n)


def _cgroup_quota() -> float | None:
    try:
        text = CGROUP_V2_MAX.read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        q = int((CGROUP_V1_DIR / "cpu.cfs_quota_us").read_text())
        p = int((CGROUP_V1_DIR / "cpu.cfs_period_us").read_text())
        return q / p if q > 0 and p > 0 else None
    except (OSError, ValueError):
        return None


def physical_cores() -> int:
    """Usable CPUs divided by SMT siblings per core (hyper-threads share one core's execution units)."""
    n = usable_cpus()
    try:
        siblings = SMT_SIBLINGS.read_text().strip()
        per_core = sum(b - a + 1 for a, b in (_span(p) for p in siblings.split(",")))
    except (OSError, ValueError):
        per_core = 1
    return max(1, n // max(1, per_core))


def _span(part: str) -> tuple[int, int]:
    a, _, b = part.partition("-")
    return int(a), int(b or a)


def busy_cores(window_s: float = 0.25) -> float | None:
    """CPU time used by all processes over a short window, in cores (from /proc/stat); None where unreadable.
    Sampled before this process starts working, so it measures the others."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in PROC_STAT.read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle

    try:
        t0, i0 = sample()
        time.sleep(window_s)
        t1, i1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    total = t1 - t0
    if total <= 0:
        return None
    return (1 - (i1 - i0) / total) * (os.cpu_count() or 1)


def choose(threads: int | None = None, adapt: bool = True) -> ThreadPolicy:
    """The policy without applying it: an explicit count wins; else physical cores, minus busy ones."""
    cores = physical_cores()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be ≥ 1 (got {threads})")
        return ThreadPolicy(threads, cores, None, "--threads")
    busy = busy_cores() if adapt else None
    if busy is not None and busy >= 0.5:
        free = max(1, min(cores, math.floor(cores - busy + 0.5)))
        if free < cores:
            return ThreadPolicy(free, cores, busy, "free cores (busy machine)")
    return ThreadPolicy(cores, cores, busy, "physical cores")


def apply(threads: int | None = None, adapt: bool = True) -> ThreadPolicy:
    """Choose the count and set it for torch, BLAS (threadpoolctl) and, through `current()`, ONNX Runtime."""
    global _applied
    policy = choose(threads, adapt)
    import torch

    torch.set_num_threads(policy.threads)
    try:
        torch.set_num_interop_threads(1)  # no inter-op parallelism: the runner runs one model at a time
    except RuntimeError:
        pass  # already set once in this process (only allowed before the first parallel work)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=policy.threads)
    except ImportError:
        log.debug("threadpoolctl not installed: BLAS pools keep their default size")
    _applied = policy
    return policy


def announce() -> None:
    """Log the policy in force (a warning when a busy machine lowered it); called once the input is valid,
    so that bad input still ends in one line."""
    policy = _applied
    if policy is None:
        return
    if policy.source.startswith("free"):
        log.warning(
            "machine busy at start (%.1f of %d cores in use by others): using %d thread(s); latency measured "
            "on a loaded machine is not comparable with an idle one (--threads N fixes the count)",
            policy.busy_cores,
            policy.physical_cores,
            policy.threads,
        )
    else:
        log.info("threads: %d (%s)", policy.threads, policy.source)


def applied() -> ThreadPolicy | None:
    """The policy in force in this process, if `apply` ran."""
    return _applied


def current() -> int | None:
    """The applied thread count (None before `apply`): what ONNX Runtime sessions use by default."""
    return _applied.threads if _applied else None
