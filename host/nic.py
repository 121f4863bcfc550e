"""The NIC interface the host programs against.

A NIC receives frames from the network, turns them into events for the host
(``protocols/events.py``), sends frames the host gives it, and is configured
through named registers (``protocols/registers.py``). The simulated NIC
(``sim/gatewarenic.py``: the Verilated gateware), the software NIC
(``host/softnic.py``: the same receive path in Python) and, later, a board NIC
implement it. The host never imports ``sim/`` or ``hw/``: the CLI picks the
implementation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from protocols.events import Event
from protocols.registers import REGISTER_MAP, Access, RegisterError


class NicError(RuntimeError):
    """The NIC refused an operation (a batch too large, a write to a read-only register, ...)."""


class Nic(ABC):
    """The host's view of a NIC."""

    register_map = REGISTER_MAP

    @abstractmethod
    def read(self, name: str) -> int:
        """Read register ``name`` (``block.register``)."""

    @abstractmethod
    def write(self, name: str, value: int) -> None:
        """Write register ``name``; read-only registers and values that do not fit are refused."""

    @abstractmethod
    def send(self, frames: list[bytes]) -> None:
        """Queue Ethernet frames for the network."""

    @abstractmethod
    def deliver(self, frames: list[bytes]) -> None:
        """Frames arriving from the network (a simulated NIC's wire side)."""

    @abstractmethod
    def poll(self) -> list[Event]:
        """Process what has arrived and return the events produced since the last poll."""

    @abstractmethod
    def sent(self) -> list[bytes]:
        """Frames that left for the network since the last call."""

    @abstractmethod
    def reset(self) -> None:
        """Return the NIC to its reset state (registers, queues, counters)."""

    def close(self) -> None:
        """Release the NIC."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def counters(self, *blocks: str) -> dict[str, int]:
        """Every counter register (of ``blocks`` if given), by name."""
        return {m.name: self.read(m.name) for m in self.register_map.counters()
                if not blocks or m.block in blocks}

    def check_write(self, name: str, value: int) -> int:
        """Validate a register write; returns the bus address. Shared by implementations."""
        mapped = self.register_map[name]
        reg = mapped.register
        if reg.access is not Access.RW:
            raise NicError(f"register {name} is {reg.behaviour}; it cannot be written")
        if not 0 <= value <= reg.mask:
            raise NicError(f"value {value:#x} does not fit register {name} ({reg.width} bits)")
        return mapped.address


__all__ = ["Nic", "NicError", "RegisterError"]
