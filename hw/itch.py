"""ITCH 5.0 decoder stage, generated from the message table in ``protocols/itch.py``.

Each MoldUDP64 message (one packet of beats, lane 0 aligned) becomes one
decoded record (:data:`ItchRecord`). For every field of the record and every
message type that carries it, the elaboration loop works out from the table
in which beat and lane each byte arrives; nothing about a layout is typed
here. The record leaves in the cycle after the message's last beat (one
cycle of latency), one message per cycle at most, and the stage only
backpressures when its output does.

A tracked-instrument filter (65,536 bits in block RAM, written through
``itch.track``) drops and counts messages of untracked stock locates when
``itch.control`` bit 0 is set; system events, stock directory and trading
action messages always pass. Unknown types, lengths that differ from the
table and messages cut short upstream are counted and skipped, and the next
message decodes normally.
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.csr import block_signature
from hw.moldudp64 import MessageBeat
from protocols.itch import DECODED_FIELDS, DECODED_LAYOUT, MAX_LENGTH, MESSAGES
from protocols.registers import ITCH

ItchRecord = data.StructLayout({**dict(DECODED_LAYOUT), "seq": 64})
"""A decoded message (see ``protocols.itch.DECODED_LAYOUT``) with its MoldUDP64 sequence number."""

ALWAYS_PASS = ("S", "R", "H")
"""Types every consumer needs, passed whatever the filter says."""

MAX_BEATS = (MAX_LENGTH + 7) // 8


def _sources(name: str, dest_byte: int) -> list[tuple[str, int]]:
    """(type letter, message byte position) of each type's source for byte ``dest_byte`` of a field.

    Byte 0 is the least significant byte of the decoded value; fields are big-endian on the wire.
    """
    out = []
    for code, mt in MESSAGES.items():
        try:
            f = mt.field(name)
        except KeyError:
            continue
        if dest_byte < f.width:
            out.append((code, f.offset + f.width - 1 - dest_byte))
    return out


class ItchDecoder(wiring.Component):
    """Decode ITCH 5.0 messages into records.

    Attributes
    ----------
    i : stream of MessageBeat
        One MoldUDP64 message per packet.
    o : stream of ItchRecord
    csr : registers of the ``itch`` block
    """

    i: In(stream.Signature(MessageBeat))
    o: Out(stream.Signature(ItchRecord))
    csr: In(block_signature(ITCH))

    def elaborate(self, platform):
        m = Module()
        beat = self.i.payload
        d = beat.data
        lanes = [d[8 * k:8 * k + 8] for k in range(8)]
        accept = self.i.valid & self.i.ready
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        index = Signal(range(MAX_BEATS + 2))        # beat index within the message, saturating
        count = Signal(range(8 * (MAX_BEATS + 2)))  # bytes before this beat
        code_reg = Signal(8)
        code = Signal(8)
        m.d.comb += code.eq(Mux(beat.first, lanes[0], code_reg))
        at = Signal.like(index)                    # this beat's index (the register is stale on a first beat)
        m.d.comb += at.eq(Mux(beat.first, 0, index))

        # Field bytes: the next value of each byte, from this beat if it brings it.
        fields = {name: Signal(width, name=f"f_{name}") for name, width in DECODED_LAYOUT
                  if name in DECODED_FIELDS}
        nxt = {name: Signal(len(sig), name=f"n_{name}") for name, sig in fields.items()}
        for name, sig in fields.items():
            m.d.comb += nxt[name].eq(sig)
            with m.If(beat.first):
                m.d.comb += nxt[name].eq(0)
            for dest in range(len(sig) // 8):
                by_beat = {}
                for code_letter, pos in _sources(name, dest):
                    by_beat.setdefault(pos // 8, []).append((code_letter, pos % 8))
                for beat_index, options in sorted(by_beat.items()):
                    with m.If(at == beat_index):
                        for code_letter, lane in options:
                            with m.If(code == ord(code_letter)):
                                m.d.comb += nxt[name][8 * dest:8 * dest + 8].eq(lanes[lane])

        # Per-type facts from the table.
        known = Signal()
        length = Signal(range(MAX_LENGTH + 1))
        carries = Signal(len(DECODED_FIELDS))
        always = Signal()
        with m.Switch(code):
            for code_letter, mt in MESSAGES.items():
                with m.Case(ord(code_letter)):
                    bits = sum(1 << i for i, n in enumerate(DECODED_FIELDS) if n in {f.name for f in mt.fields})
                    m.d.comb += [known.eq(1), length.eq(mt.length), carries.eq(bits),
                                 always.eq(code_letter in ALWAYS_PASS)]

        # The tracked-instrument bitmap: read at beat 0 (locate in bytes 1-2), used at the last beat.
        m.submodules.tracked = tracked = Memory(shape=1, depth=1 << 16, init=[])
        rd = tracked.read_port()
        wr = tracked.write_port()
        m.d.comb += [
            rd.addr.eq(Cat(lanes[2], lanes[1])),
            rd.en.eq(accept & beat.first),
            wr.addr.eq(self.csr.track[:16]),
            wr.data.eq(self.csr.track[16]),
            wr.en.eq(self.csr.track_w),
        ]
        is_tracked = Signal()
        m.d.comb += is_tracked.eq(Mux(beat.first, 0, rd.data))

        with m.If(accept):
            m.d.sync += [sig.eq(nxt[name]) for name, sig in fields.items()]
            with m.If(beat.first):
                m.d.sync += [code_reg.eq(lanes[0]), index.eq(1), count.eq(beat.n)]
            with m.Else():
                with m.If(index != MAX_BEATS + 1):
                    m.d.sync += index.eq(index + 1)
                m.d.sync += count.eq(count + beat.n)
            with m.If(beat.last):
                total = Signal.like(count)
                m.d.comb += total.eq(Mux(beat.first, 0, count) + beat.n)
                with m.If(beat.abort):
                    m.d.comb += self.csr.aborted.eq(1)
                with m.Elif(~known):
                    m.d.comb += self.csr.unknown_type.eq(1)
                with m.Elif(total != length):
                    m.d.comb += self.csr.bad_length.eq(1)
                with m.Elif(self.csr.control[0] & ~always & ~is_tracked):
                    m.d.comb += self.csr.untracked.eq(1)
                with m.Else():
                    m.d.comb += self.csr.decoded.eq(1)
                    m.d.sync += [self.o.valid.eq(1), self.o.payload.type.eq(code),
                                 self.o.payload.carries.eq(carries), self.o.payload.seq.eq(beat.seq)]
                    m.d.sync += [getattr(self.o.payload, name).eq(nxt[name]) for name in fields]
        return m

