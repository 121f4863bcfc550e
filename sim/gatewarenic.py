"""The simulated NIC behind the host's NIC interface: the Verilated gateware via :mod:`sim.simnic`.

Frames delivered to the wire side are pushed in batches that fit the
bridge's input buffer; ``poll`` clocks the design until it is idle and
decodes the event packets. Ingress cycles are kept so callers can compute
latency per frame in cycles.
"""

from __future__ import annotations

from host.nic import Nic
from protocols.events import Event, decode_event
from sim.simnic import SimNic

BATCH_FRAMES = 4096
BATCH_BYTES = 4 << 20


class GatewareNic(Nic):
    """The gateware core, Verilated, as a NIC."""

    def __init__(self, trace: str | None = None, library: str | None = None):
        """``library``: an already built bridge library (``sim.simnic.build_library()``), so that
        several NICs in one process share one build instead of exporting the design each time."""
        self.sim = SimNic(library)
        if trace:
            self.sim.trace(str(trace))
        self.ingress: list[int] = []
        self._packets: list[tuple[bytes, bool]] = []

    def read(self, name: str) -> int:
        return self.sim.read(name)

    def write(self, name: str, value: int) -> None:
        self.check_write(name, value)
        self.sim.write(name, value)

    def send(self, frames: list[bytes]) -> None:
        self.sim.push_host_frames(list(frames))

    def sent(self) -> list[bytes]:
        self.sim.run(until_idle=True)
        return [data for data, _ in self.sim.pop_tx()]

    def deliver(self, frames: list[bytes]) -> None:
        batch, size = [], 0
        for frame in frames:
            if batch and (len(batch) >= BATCH_FRAMES or size + len(frame) > BATCH_BYTES):
                self._push(batch)
                batch, size = [], 0
            batch.append(frame)
            size += len(frame)
        if batch:
            self._push(batch)

    def _push(self, batch: list[bytes]) -> None:
        self.sim.push_frames(batch)
        # Keep the bridge's input buffer from filling: drain what was pushed.
        self.sim.run(until_idle=True)
        self._packets += self.sim.pop_events()
        self.ingress += self.sim.pop_ingress()

    def poll(self) -> list[Event]:
        self.sim.run(until_idle=True)
        packets = self._packets + self.sim.pop_events()
        self._packets = []
        self.ingress += self.sim.pop_ingress()
        return [decode_event(data, aborted) for data, aborted in packets]

    @property
    def cycle(self) -> int:
        return self.sim.cycle

    def reset(self) -> None:
        self.sim.reset()
        self._packets = []
        self.ingress = []

    def close(self) -> None:
        self.sim.close()
