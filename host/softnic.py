"""The software NIC: the gateware's receive path in Python behind the NIC interface.

It holds the same registers as the gateware (from ``protocols/registers.py``),
applies writes the way the gateware does, and produces the same events for the
same frames, so ``calarb replay`` without ``--gateware`` prints what the
gateware prints. It has no clock: event timestamps count the frames processed.
"""

from __future__ import annotations

from collections import Counter

from host.bookrx import GatewareBook
from host.nic import Nic, NicError
from host.rxpath import EthRx, EthRxConfig, Gap, ItchRx, Message, MoldRx
from protocols.events import Event, GapEvent, ItchEvent, LevelEvent, LostEvent, MessageEvent, TobEvent
from protocols.registers import Access

MAGIC = 0xCA1A4B00


class SoftwareNic(Nic):
    """A NIC whose receive path is :mod:`host.rxpath`."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self._regs = {m.name: m.register.reset for m in self.register_map
                      if m.register.access is Access.RW}
        self._eth = EthRx()
        self._mold = MoldRx()
        self._itch = ItchRx()
        self._book = GatewareBook()
        self._events: Counter = Counter()
        self._tx_frames = 0
        self._inbox: list[bytes] = []
        self._sent: list[bytes] = []
        self._pending: list[Event] = []
        self._clock = 0
        self._apply()

    def _apply(self) -> None:
        r = self._regs
        self._eth.cfg = EthRxConfig(filter=r["eth.filter"], ip_dst=r["eth.ip_dst"], udp_port=r["eth.udp_port"])
        self._mold.learn = bool(r["mold.control"] & 1)
        self._mold.hold = bool(r["mold.control"] & 2)
        session = (r["mold.session_hi"] << 64) | r["mold.session_lo"]
        self._mold.written_session = session.to_bytes(10, "big")
        self._itch.filter = bool(r["itch.control"] & 1)

    def write(self, name: str, value: int) -> None:
        self.check_write(name, value)
        self._regs[name] = value
        if name == "mold.next_seq":
            self._mold.resync(value)
        elif name == "book.slot":
            self._book.write_slot(value)
        elif name == "book.window":
            self._book.write_window(value)
        elif name == "itch.track":
            if value >> 16:
                self._itch.tracked.add(value & 0xFFFF)
            else:
                self._itch.tracked.discard(value & 0xFFFF)
        self._apply()

    def read(self, name: str) -> int:
        mapped = self.register_map[name]
        if name in self._regs:
            return self._regs[name]
        block, reg = mapped.block, mapped.register.name
        mold = self._mold
        if mapped.register.access is Access.COUNTER:
            if block == "eth":
                value = self._eth.counters[reg]
            elif block == "mold":
                value = mold.counters[reg]
            elif block == "itch":
                value = self._itch.counters[reg]
            elif block == "book":
                value = self._book.counters[reg]
            elif block == "events":
                value = self._events[reg]
            elif block == "tx":
                value = self._tx_frames
            else:
                value = 0
            return value & mapped.register.mask
        session = int.from_bytes(mold.session_in_force, "big")
        status = {
            "top.magic": MAGIC, "top.cycle": self._clock, "book.config": self._book.config,
            "mold.expected": mold.expected, "mold.status": int(mold.learned) | int(mold.eos_seen) << 1,
            "mold.session_seen_hi": session >> 64, "mold.session_seen_lo": session & ((1 << 64) - 1),
        }
        if name not in status:
            raise NicError(f"the software NIC does not model register {name}")
        return status[name]

    def _emit(self, event: Event, counter: str) -> None:
        self._pending.append(event)
        self._events[counter] += 1
        self._events["events"] += 1

    def send(self, frames: list[bytes]) -> None:
        self._sent += frames
        self._tx_frames += len(frames)

    def sent(self) -> list[bytes]:
        out, self._sent = self._sent, []
        return out

    def deliver(self, frames: list[bytes]) -> None:
        self._inbox += frames

    def poll(self) -> list[Event]:
        messages_on = bool(self._regs["events.control"] & 1)
        records_on = bool(self._regs["events.control"] & 2)
        book_on = {TobEvent: (self._regs["events.control"] >> 2 & 1, "tob_events"),
                   LostEvent: (self._regs["events.control"] >> 3 & 1, "lost_events"),
                   LevelEvent: (self._regs["events.control"] >> 4 & 1, "level_events")}
        for frame in self._inbox:
            self._clock += 1
            payload = self._eth.receive(frame)
            for out in self._mold.receive(payload) if payload is not None else []:
                if isinstance(out, Gap):
                    self._emit(GapEvent(self._clock, out.expected, out.seq), "gap_events")
                    continue
                # With both kinds on, the gateware usually sends a message before its record;
                # the order between the two kinds is not guaranteed (compare them per kind).
                if messages_on:
                    self._emit(MessageEvent(self._clock, out.seq, out.data, out.aborted), "message_events")
                record = self._itch.receive(out)
                if record is None:
                    continue
                seq = record.pop("seq")
                if records_on:
                    self._emit(ItchEvent(self._clock, seq, record), "itch_events")
                # Within a message the gateware sends LOST and LEVEL records before the TOB; across kinds
                # its order is not guaranteed (compare per kind).
                for ev in self._book.apply(record, seq):
                    on, counter = book_on[type(ev)]
                    if on:
                        self._emit(ev, counter)
        self._inbox = []
        out, self._pending = self._pending, []
        return out
