"""The NIC's control and status registers, declared once as data.

The host programs the gateware through a word-addressed register bus with
64-bit data. Every register is declared here (name, width, access, reset value,
documentation); ``hw/csr.py`` generates the gateware register file from this
table, the host looks registers up by name through :data:`REGISTER_MAP`, and
``docs/registers.md`` is generated from it (``python -m protocols.registers``).
This module is part of the host/NIC interface, so it imports nothing from
``hw/``.
"""

from __future__ import annotations

import enum
import sys
from dataclasses import dataclass, field

BUS_DATA_WIDTH = 64
"""Width of a register bus word; a register is at most this wide."""

BUS_ADDR_WIDTH = 10
"""Word address width of the register bus (1024 registers)."""


class RegisterError(KeyError):
    """An unknown register name, or an access the register does not allow."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0])


class Access(enum.Enum):
    """How the host may access a register."""

    RW = "rw"
    """Written by the host, read back by the host, used by the gateware."""
    RO = "ro"
    """Status driven by the gateware; host writes are ignored."""
    COUNTER = "counter"
    """Read-only event counter; the gateware supplies increments."""


@dataclass(frozen=True)
class Register:
    """One register: a field of at most 64 bits at one bus address.

    ``strobe`` (RW only) makes the gateware see a one-cycle pulse after every
    host write, for registers whose write is an action (load a table entry,
    re-synchronise). ``inc_width`` (counters only) is the width of the
    increment the gateware adds per cycle; ``saturate`` selects saturating
    instead of wrapping arithmetic.
    """

    name: str
    width: int
    access: Access
    doc: str
    reset: int = 0
    strobe: bool = False
    inc_width: int = 1
    saturate: bool = False

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"register name {self.name!r} is not an identifier")
        if not 1 <= self.width <= BUS_DATA_WIDTH:
            raise ValueError(f"register {self.name}: width {self.width} not in 1..{BUS_DATA_WIDTH}")
        if not 0 <= self.reset < (1 << self.width):
            raise ValueError(f"register {self.name}: reset value does not fit {self.width} bits")
        if self.strobe and self.access is not Access.RW:
            raise ValueError(f"register {self.name}: only RW registers have a write strobe")
        if self.access is Access.COUNTER and not 1 <= self.inc_width <= self.width:
            raise ValueError(f"register {self.name}: inc_width out of range")

    @property
    def mask(self) -> int:
        return (1 << self.width) - 1

    @property
    def behaviour(self) -> str:
        """A short phrase for the register table."""
        if self.access is Access.COUNTER:
            return "counter, " + ("saturates" if self.saturate else f"wraps at 2^{self.width}")
        if self.access is Access.RW:
            return "read/write" + (", write pulses" if self.strobe else "")
        return "read-only"


def rw(name: str, width: int, doc: str, reset: int = 0, strobe: bool = False) -> Register:
    return Register(name, width, Access.RW, doc, reset=reset, strobe=strobe)


def ro(name: str, width: int, doc: str) -> Register:
    return Register(name, width, Access.RO, doc)


def counter(name: str, doc: str, width: int = 32, inc_width: int = 1, saturate: bool = False) -> Register:
    return Register(name, width, Access.COUNTER, doc, inc_width=inc_width, saturate=saturate)


@dataclass(frozen=True)
class RegisterBlock:
    """The registers of one pipeline stage, named ``<block>.<register>`` on the bus."""

    name: str
    doc: str
    registers: tuple[Register, ...]

    def __post_init__(self) -> None:
        names = [r.name for r in self.registers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"block {self.name}: duplicate registers {sorted(dup)}")

    def __getitem__(self, name: str) -> Register:
        for reg in self.registers:
            if reg.name == name:
                return reg
        raise RegisterError(f"block {self.name!r} has no register {name!r}")

    @property
    def counters(self) -> tuple[Register, ...]:
        return tuple(r for r in self.registers if r.access is Access.COUNTER)


@dataclass(frozen=True)
class MappedRegister:
    """A register placed on the bus: its block, full name and word address."""

    block: str
    register: Register
    address: int

    @property
    def name(self) -> str:
        return f"{self.block}.{self.register.name}"


@dataclass
class RegisterMap:
    """Blocks placed at consecutive word addresses, in declaration order."""

    blocks: tuple[RegisterBlock, ...]
    _by_name: dict[str, MappedRegister] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name = {}
        address = 0
        for block in self.blocks:
            for reg in block.registers:
                mapped = MappedRegister(block.name, reg, address)
                if mapped.name in self._by_name:
                    raise ValueError(f"duplicate register {mapped.name}")
                self._by_name[mapped.name] = mapped
                address += 1
        if address > (1 << BUS_ADDR_WIDTH):
            raise ValueError(f"{address} registers do not fit a {BUS_ADDR_WIDTH}-bit address")

    def __iter__(self):
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def __getitem__(self, name: str) -> MappedRegister:
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(sorted(self._by_name))
            raise RegisterError(f"unknown register {name!r}; known registers: {known}") from None

    def block(self, name: str) -> RegisterBlock:
        for block in self.blocks:
            if block.name == name:
                return block
        raise RegisterError(f"unknown register block {name!r}")

    def counters(self) -> list[MappedRegister]:
        return [m for m in self if m.register.access is Access.COUNTER]

    def markdown(self) -> str:
        """The register table as Markdown, one section per block."""
        lines = [
            "# calarb NIC registers",
            "",
            "Generated from `protocols/registers.py` by `python -m protocols.registers`; do not edit.",
            f"The bus is word-addressed with {BUS_DATA_WIDTH}-bit data; reads return the",
            "register zero-extended. Writes to read-only registers and counters are ignored.",
            "Counters count events since reset and wrap (or saturate) as stated; the host",
            "takes differences between reads.",
            "",
        ]
        for block in self.blocks:
            lines += [f"## `{block.name}`", "", block.doc, "",
                      "| address | register | width | access | reset | description |",
                      "| --- | --- | --- | --- | --- | --- |"]
            for reg in block.registers:
                m = self[f"{block.name}.{reg.name}"]
                lines.append(f"| 0x{m.address:03x} | `{m.name}` | {reg.width} | {reg.behaviour} "
                             f"| 0x{reg.reset:x} | {reg.doc} |")
            lines.append("")
        return "\n".join(lines)


TOP = RegisterBlock("top", "Identification, scratch and the free-running cycle counter.", (
    ro("magic", 32, "Reads 0xCA1A4B00 (\"calarb\") so the host can check it talks to calarb gateware."),
    rw("scratch", 64, "Free for the host; used to test the register bus."),
    ro("cycle", 64, "Free-running cycle counter; every event is timestamped with it."),
))

ETH = RegisterBlock("eth", "Ethernet II / IPv4 / UDP receive stage (`hw/ethrx.py`). Every frame is "
                    "either forwarded (its UDP payload goes on) or dropped and counted under exactly one reason.", (
    rw("filter", 2, "Bit 0: accept only IPv4 destination `ip_dst`; bit 1: accept only UDP destination port `udp_port`."),
    rw("ip_dst", 32, "IPv4 destination address to accept when `filter` bit 0 is set."),
    rw("udp_port", 16, "UDP destination port to accept when `filter` bit 1 is set."),
    counter("frames", "Frames received (every frame, good or bad)."),
    counter("forwarded", "Frames whose UDP payload was forwarded."),
    counter("truncated", "Forwarded frames that ended before the end of their UDP datagram (payload forwarded as far as it went)."),
    counter("drop_runt", "Frames dropped: shorter than the Ethernet, IPv4 and UDP headers."),
    counter("drop_ethertype", "Frames dropped: EtherType is not IPv4 (0x0800)."),
    counter("drop_ip_header", "Frames dropped: IPv4 version is not 4, or IHL is not 5 (IPv4 options are not supported)."),
    counter("drop_ip_checksum", "Frames dropped: IPv4 header checksum is wrong."),
    counter("drop_ip_length", "Frames dropped: IPv4 total length shorter than its headers, or UDP length inconsistent with it."),
    counter("drop_fragment", "Frames dropped: IPv4 fragments (MF set or offset non-zero)."),
    counter("drop_protocol", "Frames dropped: IPv4 protocol is not UDP."),
    counter("drop_filter", "Frames dropped: destination address or port does not match the filter."),
    counter("dropped_bytes", "Bytes of all dropped frames.", inc_width=16),
))

MOLD = RegisterBlock("mold", "MoldUDP64 stage (`hw/moldudp64.py`): session check, sequencing, message split. "
                     "Byte accounting: the UDP payload bytes of all packets equal 20 per accepted packet header, plus "
                     "2 + length per delivered message, plus `dropped_bytes`.", (
    rw("control", 2, "Bit 0: learn the session and the sequence number from the first packet after reset or "
       "after a write to `next_seq`; bit 1: gap policy, 0 = skip ahead and deliver, 1 = hold (drop packets "
       "beyond a gap until retransmissions fill it).", reset=0b01),
    rw("session_hi", 16, "Expected session bytes 0-1 (big-endian ASCII) when not learning."),
    rw("session_lo", 64, "Expected session bytes 2-9 (big-endian ASCII) when not learning."),
    rw("next_seq", 64, "Next expected sequence number; a write re-synchronises the stage (and re-arms learning).",
       reset=1, strobe=True),
    ro("expected", 64, "Next expected sequence number as the stage tracks it."),
    ro("session_seen_hi", 16, "Session in force, bytes 0-1 (learned or written)."),
    ro("session_seen_lo", 64, "Session in force, bytes 2-9."),
    ro("status", 2, "Bit 0: a session has been learned since the last re-synchronisation; bit 1: end of session seen."),
    counter("packets", "MoldUDP64 packets (UDP payloads) received."),
    counter("messages", "Messages delivered downstream complete."),
    counter("heartbeats", "Heartbeat packets (message count 0)."),
    counter("end_of_session", "End-of-session packets (message count 0xFFFF)."),
    counter("drop_short", "Packets dropped: shorter than the 20-byte MoldUDP64 header."),
    counter("drop_session", "Packets dropped: session differs from the expected one."),
    counter("dup_packets", "Packets whose every message was already delivered (dropped)."),
    counter("dup_messages", "Messages dropped as duplicates (whole and partial duplicate packets).", inc_width=16),
    counter("gaps", "Gap events: packets whose sequence number was beyond the expected one (under the hold "
            "policy every packet held behind an open gap reports it again)."),
    counter("gap_messages", "Sum over gap events of the missing messages (packet sequence number minus expected).",
            width=64, inc_width=64),
    counter("held_packets", "Packets dropped beyond an open gap under the hold policy."),
    counter("truncated", "Packets whose messages ran past the end of the datagram; a message cut short leaves "
            "with `abort` set on its last beat."),
    counter("lost_messages", "Messages announced by a packet header but not complete in it.", inc_width=16),
    counter("trailing", "Packets with bytes after their last announced message (the bytes are dropped)."),
    counter("dropped_bytes", "UDP payload bytes not accounted as accepted headers or delivered messages.",
            inc_width=16),
))

ITCH = RegisterBlock("itch", "ITCH 5.0 decoder (`hw/itch.py`). Every message reaching it lands in exactly one "
                     "counter.", (
    rw("control", 1, "Bit 0: drop messages of untracked stock locates (system event, stock directory and "
       "trading action messages always pass)."),
    rw("track", 17, "A write sets the tracked bit of stock locate bits 0-15 to bit 16.", strobe=True),
    counter("decoded", "Messages decoded and passed on."),
    counter("untracked", "Messages dropped: their stock locate is not tracked."),
    counter("unknown_type", "Messages dropped: unknown message type."),
    counter("bad_length", "Messages dropped: length differs from the type's length in the specification."),
    counter("aborted", "Messages dropped: cut short upstream (truncated datagram)."),
))

BOOK = RegisterBlock("book", "Order book (`hw/book.py`, `hw/ordertable.py`): order table, price-level windows and "
                     "top of book for the instruments in the slot table. Every book message (A F E C X D U) of a "
                     "slotted instrument counts in `messages`; every add lands in exactly one of `adds`, "
                     "`lost_collision`, `lost_window`, `duplicate`, `rejected`.", (
    ro("config", 32, "Build parameters: bits 0-7 log2 of the order table's sets, bits 8-15 log2 of the "
       "price window in ticks (one tick = 100 price4 units), bits 16-23 instrument slots, bits 24-31 ways per "
       "set (capacity = ways << bits 0-7)."),
    rw("slot", 25, "A write sets slot bits 16-20 to stock locate bits 0-15, valid if bit 24 is set (clear "
       "it to free the slot); refused (counted in `refused`) while the slot holds live orders.", strobe=True),
    rw("window", 38, "A write sets the window base of book bits 32-37 (slot * 2 + 1 for the ask side) to "
       "bits 0-31, in ticks (price4 / 100); refused (counted in `refused`) unless that book side is empty.",
       strobe=True),
    counter("messages", "Book messages (A F E C X D U) of slotted instruments."),
    counter("adds", "Orders added to the book (A, F and the new order of a U)."),
    counter("lost_collision", "Adds not kept: every way of the order table set holds another live order (a "
            "BOOK_LOST event names the order)."),
    counter("lost_window", "Adds not kept: price off the tick grid or outside its book side's window (a "
            "BOOK_LOST event names the order)."),
    counter("duplicate", "Adds not kept: the reference is live in the table already."),
    counter("rejected", "Adds not kept: side neither B nor S, or 0 shares."),
    counter("unknown", "E C X D U of a reference that is not live in the table for that instrument."),
    counter("overfill", "Executions and cancels of more shares than are open (the order is removed)."),
    counter("recentred", "Adds into an empty book side outside its window that moved the window."),
    counter("refused", "Host writes of `slot` or `window` refused because the book held orders."),
    counter("tob", "Top-of-book changes (TOB records) produced."),
))

EVENTS = RegisterBlock("events", "Event stream to the host (`hw/events.py`).", (
    rw("control", 5, "Bit 0: send every MoldUDP64 message to the host as a MESSAGE event; bit 1: send every "
       "decoded ITCH record as an ITCH event; bit 2: TOB events; bit 3: BOOK_LOST events; bit 4: LEVEL "
       "events (kinds that are off are consumed without a packet; gaps always go)."),
    counter("events", "Event packets sent to the host."),
    counter("message_events", "MESSAGE events sent."),
    counter("gap_events", "GAP events sent."),
    counter("itch_events", "ITCH events sent."),
    counter("tob_events", "TOB events sent."),
    counter("lost_events", "BOOK_LOST events sent."),
    counter("level_events", "LEVEL events sent."),
))

TX = RegisterBlock("tx", "Frames the host sends to the network through the NIC (`hw/top.py`).", (
    counter("frames", "Frames sent from the host path to the network."),
))

REGISTER_MAP = RegisterMap((TOP, ETH, MOLD, ITCH, BOOK, EVENTS, TX))
"""The NIC's register map, in bus address order."""


def main(argv: list[str] | None = None) -> int:
    """Write (or, with --check, verify) ``docs/registers.md``."""
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", default="docs/registers.md")
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args(argv)
    text = REGISTER_MAP.markdown()
    path = Path(args.out)
    if args.check:
        if not path.exists() or path.read_text() != text:
            print(f"{path} is out of date: run python -m protocols.registers", file=sys.stderr)
            return 1
        return 0
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
