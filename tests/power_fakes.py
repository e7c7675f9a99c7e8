"""A power reader that pushes its samples (a remote board's feed), for the sampler and doctor tests."""

from __future__ import annotations

from ticketbench.devices.power import PowerReader


class PushReader(PowerReader):
    """Hands samples to the sampler's sink instead of being polled; the test calls `sink(t, watts)` itself."""

    source = "fake-push"
    kind = "push"

    def __init__(self) -> None:
        self.sink = None

    def attach(self, sink) -> None:
        self.sink = sink

    def detach(self) -> None:
        self.sink = None
