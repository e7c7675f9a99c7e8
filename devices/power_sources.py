"""Which power sources this machine offers, and why the others are unavailable (for `bench devices`)."""

from __future__ import annotations

import shutil
from pathlib import Path

from devices.power import probe_rapl


def probe_nvml() -> tuple[bool, str]:
    try:
        import pynvml
    except ImportError:
        return False, "nvidia-ml-py not installed (pip install 'ticketbench[gpu]')"
    try:
        pynvml.nvmlInit()
        n = pynvml.nvmlDeviceGetCount()
    except Exception as exc:
        return False, f"NVML init failed: {exc}"
    return (n > 0, f"{n} GPU(s)" if n else "NVML sees no GPU")


def probe_jtop() -> tuple[bool, str]:
    try:
        import jtop  # noqa: F401
    except ImportError:
        return False, "jetson-stats not installed (pip install 'ticketbench[jetson]')"
    if not Path("/run/jtop.sock").exists():
        return False, "jtop service not running (/run/jtop.sock missing)"
    return True, "jtop service socket found"


def probe_ina3221(root: Path = Path("/")) -> tuple[bool, str]:
    iio = list(root.glob("sys/bus/i2c/drivers/ina3221x/*/iio:device*/in_power*_input"))
    hwmon = [p for p in root.glob("sys/class/hwmon/hwmon*/name") if p.read_text().strip() == "ina3221"]
    if iio:
        return True, f"INA3221 iio rails ({len(iio)} files, JetPack 4 layout)"
    if hwmon:
        return True, f"INA3221 hwmon ({hwmon[0].parent}, JetPack 5+ layout)"
    return False, "no INA3221 in sysfs (not a Jetson)"


def probe_tegrastats() -> tuple[bool, str]:
    path = shutil.which("tegrastats")
    return (True, path) if path else (False, "tegrastats not on PATH (not a Jetson)")


def probe_power_sources() -> dict[str, tuple[bool, str]]:
    rapl, why = probe_rapl()
    return {
        "rapl": (rapl is not None, why or f"{len(rapl.domains)} package domain(s)"),
        "nvml": probe_nvml(),
        "jtop": probe_jtop(),
        "ina3221-sysfs": probe_ina3221(),
        "tegrastats": probe_tegrastats(),
    }
