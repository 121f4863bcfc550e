"""The FAST decoder's register block (``hw/fast.py``), declared as data like ``protocols/registers.py``.

Kept in its own module so the FAST stage can be built and tested alone; the
core's :data:`protocols.registers.REGISTER_MAP` places it on the bus. Every
datagram lands in ``packets``; every decoded message in ``messages``; a
datagram that fails lands in exactly one error counter and is dropped from
the failing message to its end.
"""

from __future__ import annotations

from protocols.registers import RegisterBlock, counter, rw

FAST = RegisterBlock("fast", "FAST 1.1 decoder (`hw/fast.py`): templates generated from "
                     "`protocols/spec/fast/options.xml`, dictionaries reset at every datagram. A datagram "
                     "that fails is dropped from the failing message to its end and counted under one reason.", (
    rw("control", 2, "Bit 0: drop every datagram (decoder disabled; still counted in `packets`); bit 1: "
       "stop emitting price-level updates (messages are still decoded and counted).", reset=0),
    rw("port", 16, "UDP destination port of the FAST feed: the core routes datagrams to this port to the "
       "FAST decoder, every other datagram to MoldUDP64.", reset=26410),
    counter("packets", "Datagrams (UDP payloads) received."),
    counter("messages", "Messages decoded completely (every template)."),
    counter("updates", "Price-level updates emitted (one per incremental-refresh entry)."),
    counter("host_messages", "Messages of host templates (security definitions): the rest of their "
            "datagram is left to the host."),
    counter("past_end", "Datagrams dropped: a field ran past the end of the datagram."),
    counter("unknown_template", "Datagrams dropped: unknown template identifier (or none defined yet)."),
    counter("seq_too_long", "Datagrams dropped: a sequence length beyond the configured maximum."),
    counter("bad_field", "Datagrams dropped: an integer or string longer than the decoder takes (10 bytes), "
            "or a mandatory field absent with no previous value (ERR D5/D6)."),
))

MBP = RegisterBlock("mbp", "Market-by-price book (`hw/mbpbook.py`): the top levels of each option series "
                    "fed by the FAST decoder's price-level updates, and top-of-book records.", (
    counter("updates", "Price-level updates applied."),
    counter("tob", "Top-of-book changes (TOB records) produced."),
    counter("untracked", "Updates dropped: the security is not in the slot table and no slot is free."),
    counter("ignored", "Updates ignored: level 0 or beyond the book's depth, or an unknown action."),
))
