"""Where a run came from: versions, host, git sha. Recorded in run.json next to every result."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

from ticketbench import threads as thread_policy


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in (
        "ticketbench",
        "torch",
        "torchvision",
        "onnx",
        "onnxruntime",
        "numpy",
        "pandas",
        "tensorrt",
        "nvidia-ml-py",
        "jetson-stats",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def git_sha(cwd: Path | None = None) -> str | None:
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd or Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def host_info() -> dict[str, object]:
    """Host identity, plus the thread policy in force and the load at start: latency depends on both."""
    info: dict[str, object] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    if hasattr(os, "getloadavg"):
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    if (applied := thread_policy.applied()) is not None:
        info["threads"] = applied.as_dict()
    return info
