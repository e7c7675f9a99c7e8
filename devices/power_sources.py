"""Which power sources this machine offers, and why the others are unavailable (for `bench devices`)."""

from __future__ import annotations

from pathlib import Path

from ticketbench.devices import jetson_board
from ticketbench.devices.power import probe_rapl


def probe_nvml() -> tuple[bool, str]:
    """NVML energy counter (Volta+) or power polling, or why neither."""
    from ticketbench.devices.power_nvml import cuda_pci_bus_id, probe_nvml_reader

    reader, why = probe_nvml_reader(cuda_pci_bus_id(0))
    return (True, f"CUDA GPU 0 via {reader.source}") if reader else (False, why)


def probe_jtop(root: Path = Path("/")) -> tuple[bool, str]:
    try:
        import jtop  # noqa: F401
    except ImportError:
        return False, "jetson-stats not installed (pip install 'ticketbench[jetson]')"
    if not (root / "run/jtop.sock").exists():
        return False, "jtop service not running (/run/jtop.sock missing)"
    return True, "jtop service socket found"


def probe_ina3221(root: Path = Path("/")) -> tuple[bool, str]:
    """INA3221 rails in sysfs and whether one of them is the total-board rail (VDD_IN / POM_5V_IN)."""
    rails = jetson_board.find_ina3221_rails(str(root))
    if not rails:
        return False, "no INA3221 in sysfs (not a Jetson)"
    name = jetson_board.total_rail(rails)
    layout = "JetPack 4 iio" if next(iter(rails.values()))[0] == "mw" else "JetPack 5+ hwmon"
    if name is None:
        return False, f"INA3221 ({layout}) rails {','.join(sorted(rails))}: no total-board rail, sub-rails never summed"
    return True, f"INA3221 {name} ({layout})"


def probe_tegrastats() -> tuple[bool, str]:
    path = jetson_board.find_tegrastats()
    return (True, path) if path else (False, "tegrastats not on PATH (not a Jetson)")


def probe_power_sources() -> dict[str, tuple[bool, str]]:
    rapl, why = probe_rapl()
    return {
        "rapl": (True, f"{len(rapl.domains)} package domain(s)") if rapl is not None else (False, why),
        "nvml": probe_nvml(),
        "jtop": probe_jtop(),
        "ina3221-sysfs": probe_ina3221(),
        "tegrastats": probe_tegrastats(),
    }
