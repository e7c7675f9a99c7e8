"""NVIDIA Jetson adapter (TX2 and newer; local or over SSH).

Only detection lives here so far; measurement arrives with the device-adapter issue.
"""

from __future__ import annotations

from pathlib import Path

from devices.base import DEVICES, Availability, DeviceAdapter


def jetson_model(root: Path = Path("/")) -> str | None:
    """The board model from the device tree, when this machine is a Jetson."""
    p = root / "proc/device-tree/model"
    try:
        text = p.read_text(errors="ignore").strip("\x00 \n")
    except OSError:
        return None
    return text if ("jetson" in text.lower() or (root / "etc/nv_tegra_release").exists()) else None


@DEVICES.register("jetson")
class JetsonDevice(DeviceAdapter):
    name = "jetson"

    @classmethod
    def probe(cls) -> Availability:
        model = jetson_model()
        if model is None:
            return Availability(False, "not a Jetson (no /proc/device-tree/model naming one); remote mode needs --host")
        return Availability(False, f"{model} found, but the jetson adapter's measurement path is not built yet")
