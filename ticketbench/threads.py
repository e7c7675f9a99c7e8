"""One thread policy for torch, ONNX Runtime and BLAS.

Each runtime sizes its own pool to every logical CPU by default; torch training, ONNX Runtime inference and
NumPy/SciPy BLAS then fight over the same cores, and a parallel region whose threads are descheduled by
another process waits a whole time slice at every barrier. On a small model that turns a 28 s suite into
minutes. The policy: one count for all three, the physical cores this process may use (affinity, SMT
siblings and a cgroup CPU quota respected), lowered to the cores left free when the machine is already busy
at start. `--threads N` fixes the count and switches the adaptation off. The chosen count and the load seen
are recorded in the run's provenance, since latency from a loaded machine is not comparable.

The count is chosen once per run, never per case: it is part of what a row is (a ticket's gain over dense
changes with it: the quick suite's Early-Bird b1 ticket read 3.8-3.9x dense on 1 thread and 2.8x on 2, quiet),
and the dense reference timed beside every ticket is loaded once per run. What the machine does later is measured
instead: `cpu_sample` / `other_load_cores` give the CPU time other processes (and the hypervisor: steal) took
on our CPUs during each case's timing windows, and `crowded` applies this policy's own rounding to it.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Collection
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


def cpu_jiffies(cpus: Collection[int] | None = None) -> tuple[int, int]:
    """(busy, total) clock ticks since boot from /proc/stat: the machine's `cpu` line, or the sum of the `cpuN`
    lines of `cpus`. Busy = user + nice + system + irq + softirq + steal (a hypervisor's other guests count:
    they take the core as surely as a neighbour process); total adds idle and iowait. OSError/ValueError when
    unreadable."""
    lines = PROC_STAT.read_text().splitlines()
    if cpus is None:
        chosen = lines[:1]
    else:
        names = {f"cpu{i}" for i in cpus}
        chosen = [ln for ln in lines if ln.split(maxsplit=1)[0] in names]
    busy = total = 0
    for line in chosen:
        fields = [int(x) for x in line.split()[1:9]]
        if len(fields) < 4:
            raise ValueError(f"{PROC_STAT}: short cpu line {line[:40]!r}")
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        busy, total = busy + sum(fields) - idle, total + sum(fields)
    if not chosen:
        raise ValueError(f"{PROC_STAT}: none of the cpu lines asked for")
    return busy, total


def busy_cores(window_s: float = 0.25) -> float | None:
    """CPU time used by all processes over a short window, in cores (from /proc/stat); None where unreadable.
    Sampled before this process starts working, so it measures the others."""
    try:
        b0, t0 = cpu_jiffies()
        time.sleep(window_s)
        b1, t1 = cpu_jiffies()
    except (OSError, ValueError, IndexError):
        return None
    total = t1 - t0
    if total <= 0:
        return None
    return (b1 - b0) / total * (os.cpu_count() or 1)


@dataclass(frozen=True)
class CpuSample:
    """Where CPU time had gone at one moment: every process's busy time on the CPUs this process may run on
    (s, from /proc/stat; None where unreadable) and this process's own CPU time (s: all its threads, plus
    children it waited for)."""

    wall_s: float  # time.monotonic()
    busy_s: float | None
    own_s: float


def cpu_sample() -> CpuSample:
    """A CpuSample now; two of them bracket a window (`other_load_cores`)."""
    try:
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        busy: float | None = cpu_jiffies(cpus)[0] / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        busy = None
    t = os.times()
    return CpuSample(time.monotonic(), busy, t.user + t.system + t.children_user + t.children_system)


def other_load_cores(before: CpuSample, after: CpuSample) -> float | None:
    """Mean CPU use of everything but this process between two samples, in cores, on the CPUs this process may
    use: (busy time − our CPU time) / wall time, never below 0 (the two clocks tick differently; about ±0.02
    cores over a 1 s window at 100 Hz). None when /proc/stat is unreadable or the window is empty."""
    wall = after.wall_s - before.wall_s
    if before.busy_s is None or after.busy_s is None or wall <= 0:
        return None
    other = (after.busy_s - before.busy_s) - (after.own_s - before.own_s)
    return max(0.0, other / wall)


def free_cores(cores: int, busy: float) -> int:
    """Cores left to us when others use `busy` of them, rounded as the policy rounds: a core counts as taken
    once it is half used (busy 0.4 of 2 cores leaves 2; 0.6 leaves 1)."""
    return math.floor(cores - busy + 0.5)


def crowded(other: float | None, threads: int | None, cores: int | None = None) -> bool:
    """True when other processes left fewer free cores than `threads` (the policy's rule, applied to a window
    instead of the moment before the run): a parallel region then waits on a descheduled thread. False when
    either is unknown."""
    if other is None or threads is None:
        return False
    return free_cores(cores or physical_cores(), other) < threads


def max_threads() -> int:
    """The most threads `--threads` may ask for: 4 × the logical CPUs, never over 1024. More only oversubscribe the
    cores, and a million made the pools' creation crash the process (SIGSEGV) instead of a one-line error."""
    return min(1024, 4 * (os.cpu_count() or 1))


def choose(threads: int | None = None, adapt: bool = True) -> ThreadPolicy:
    """The policy without applying it: an explicit count wins; else physical cores, minus busy ones."""
    cores = physical_cores()
    if threads is not None:
        if not 1 <= threads <= max_threads():
            raise ValueError(
                f"--threads must be ≥ 1 and at most {max_threads()} (4 × the {os.cpu_count()} logical CPUs, "
                f"never over 1024), got {threads}"
            )
        return ThreadPolicy(threads, cores, None, "--threads")
    busy = busy_cores() if adapt else None
    if busy is not None and busy >= 0.5:
        free = max(1, min(cores, free_cores(cores, busy)))
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
