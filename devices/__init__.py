"""Device adapters (cpu, gpu, jetson) behind one protocol, and power readers behind one sampler.

devices/ knows nothing of tickets: it takes an ONNX file and inputs and returns measurements.
"""

from ticketbench.devices import cpu, gpu, jetson  # noqa: E402,F401  (registration)
from ticketbench.devices.base import DEVICES, Availability, DeviceAdapter, get_device, resolve_device  # noqa: F401
