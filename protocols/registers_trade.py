"""The tick-to-trade path as data: register blocks, event layouts and the order template.

Written once here and used by the gateware (``hw/trigger.py``, ``hw/risk.py``,
``hw/fixenc.py``, ``hw/sequencer.py``), the golden model (``host/ordermodel.py``)
and the tests. The blocks join ``protocols.registers.REGISTER_MAP`` when the
path is wired into the core; the event layouts join ``protocols/events.py``.

Tables (per instrument slot and side) fit the register model as *staging
registers plus a write strobe*: the host writes the data registers, then the
``*_write`` register whose value names the slot (and side); that write copies
the staged values into the table entry in one cycle.
"""

from __future__ import annotations

from protocols.registers import RegisterBlock, counter, ro, rw

# ---------------------------------------------------------------------------------------------- registers

TRIGGER = RegisterBlock("trigger", "Trigger table (`hw/trigger.py`): per slot and side a limit price, maximum quantity, "
                        "minimum displayed size, time in force and an arm bit; per slot an optional model link "
                        "(threshold = limit + delta x (underlying mid - reference mid)). One-shot: a fire disarms "
                        "the entry until the host writes it again.", (
    rw("entry_price", 32, "Staged limit price (price4): buy when ask <= it, sell when bid >= it (the base price "
       "of a model-linked slot)."),
    rw("entry_qty", 64, "Staged bits 0-31: maximum order quantity; bits 32-63: minimum displayed size at the touch."),
    rw("entry_ctl", 16, "Staged bit 0: enable (arm); bits 8-15: TimeInForce (59) as ASCII ('0' day, '3' IOC, '4' FOK)."),
    rw("entry_write", 6, "A write copies the staged entry into slot bits 0-4, side bit 5 (0 buy, 1 sell); "
       "enable 1 arms it.", strobe=True),
    rw("model", 64, "Staged bits 0-31: delta (Q16.16, signed); bits 32-63: reference mid of the underlying (price4)."),
    rw("model_write", 17, "A write copies `model` into slot bits 0-4 with the underlying's slot in bits 8-12 "
       "and bit 16 = linked (0: plain thresholds).", strobe=True),
    ro("armed", 64, "Bit 2 * slot + side: the entry is armed."),
    counter("tob", "Top-of-book records received."),
    counter("fired", "Trigger fires (orders handed to risk)."),
    counter("no_mid", "Records of linked slots not evaluated because the underlying had no two-sided mid yet."),
))

RISK = RegisterBlock("risk", "Pre-trade risk (`hw/risk.py`): every check in parallel; a rejected order is counted "
                     "under its first failing reason (in the order of `REJECT_REASONS`) and reported as a "
                     "RISK_REJECT event. Limits per slot are staged and written with `limit_write`.", (
    rw("lim_qty", 32, "Staged maximum order quantity."),
    rw("lim_notional", 64, "Staged maximum notional, price4 x quantity."),
    rw("lim_band", 64, "Staged price band: bits 0-31 reference price (price4), bits 32-62 width, bit 63 "
       "unit (0: price4 units, 1: basis points of the reference); |price - reference| must not exceed it."),
    rw("lim_position", 64, "Staged bits 0-31 long limit, bits 32-63 short limit (shares): position plus open "
       "buys plus the order must stay <= long, position minus open sells minus the order >= -short."),
    rw("limit_write", 5, "A write copies the staged limits into slot bits 0-4.", strobe=True),
    rw("fill", 64, "Bits 0-31 filled quantity, bits 32-63 released quantity (cancelled, expired, rejected)."),
    rw("fill_write", 6, "A write applies `fill` to slot bits 0-4, side bit 5: open quantity of that side "
       "-= filled + released, position += filled (buy) or -= filled (sell).", strobe=True),
    rw("position", 32, "Staged signed position for `position_write`."),
    rw("position_write", 5, "A write sets the position of slot bits 0-4 and zeroes its open quantities.",
       strobe=True),
    rw("throttle_inst", 48, "Per-slot token bucket: bits 0-15 burst (tokens), bits 16-47 cycles per new "
       "token (0: no refill). A write refills every slot's bucket.", reset=0xFFFF, strobe=True),
    rw("throttle_global", 48, "Global token bucket, laid out as `throttle_inst`. A write refills it.",
       reset=0xFFFF, strobe=True),
    rw("clordid_next", 32, "A write sets the next ClOrdID counter.", strobe=True),
    rw("clordid_epoch", 1, "A write forgets the ClOrdIDs issued so far (write after changing "
       "`order.clordid_prefix`).", strobe=True),
    rw("kill_set", 33, "A write latches the kill switch of the slots whose bits (0-31) are set, bit 32 the "
       "global one.", strobe=True),
    rw("kill_clear", 33, "A write clears the latched kill switches whose bits are set.", strobe=True),
    rw("reject_rule", 48, "Bits 0-31 window in cycles, bits 32-47 rejects per window that trip the global "
       "kill switch (0: off)."),
    ro("killed", 33, "Latched kill switches: bits 0-31 per slot, bit 32 global."),
    ro("tripped", 1, "The global kill switch was tripped by the reject rule (cleared with it)."),
    ro("clordid", 32, "Next ClOrdID counter value."),
    counter("checked", "Orders checked."),
    counter("passed", "Orders passed to the encoder."),
    counter("rej_killed", "Rejected: kill switch (global or the slot's)."),
    counter("rej_qty", "Rejected: quantity above the maximum."),
    counter("rej_notional", "Rejected: notional above the maximum."),
    counter("rej_band", "Rejected: price outside the band."),
    counter("rej_long", "Rejected: long position limit."),
    counter("rej_short", "Rejected: short position limit."),
    counter("rej_throttle", "Rejected: no token in the slot's or the global bucket."),
    counter("rej_dup", "Rejected: duplicate ClOrdID (counter at or below the highest issued this epoch)."),
))

ORDER = RegisterBlock("order", "FIX 4.4 NewOrderSingle encoder (`hw/fixenc.py`) and its UTC clock.", (
    rw("sender_lo", 64, "SenderCompID (49) bytes 0-7, byte 0 in bits 0-7."),
    rw("sender_hi", 64, "SenderCompID bytes 8-15."),
    rw("target_lo", 64, "TargetCompID (56) bytes 0-7."),
    rw("target_hi", 64, "TargetCompID bytes 8-15."),
    rw("comp_len", 16, "Bits 0-4: SenderCompID length, bits 8-12: TargetCompID length (1-16)."),
    rw("clordid_prefix", 64, "ClOrdID (11) prefix: 8 ASCII bytes, byte 0 in bits 0-7."),
    rw("symbol", 64, "Staged Symbol (55) bytes, byte 0 in bits 0-7."),
    rw("symbol_write", 12, "A write copies `symbol` into slot bits 0-4 with length bits 8-11 (1-8).",
       strobe=True),
    rw("date", 64, "UTC date YYYYMMDD as 8 ASCII bytes (byte 0 = first digit in bits 0-7)."),
    rw("date_next", 64, "The date that replaces `date` when the clock passes midnight."),
    rw("time", 36, "A write sets the time of day: the digits HHMMSSmmm as BCD, read as hexadecimal "
       "(`host.ordermodel.time_bcd`), hours' tens in bits 32-35.", strobe=True),
    rw("ms_cycles", 32, "Cycles per millisecond of the clock (0 stops it)."),
    ro("time_now", 36, "The clock's time of day, BCD as `time`."),
    counter("orders", "NewOrderSingle messages encoded."),
))

FIXSEQ = RegisterBlock("fixseq", "FIX outbound sequencer (`hw/sequencer.py`): one MsgSeqNum sequence for gateware "
                       "and host messages; stamps MsgSeqNum and CheckSum and reports every stamped message.", (
    rw("next_seq", 30, "A write sets the next outbound MsgSeqNum.", reset=1, strobe=True),
    ro("seq", 30, "The next outbound MsgSeqNum."),
    counter("gateware", "Gateware messages stamped."),
    counter("host", "Host messages stamped."),
    counter("unstamped", "Messages passed without a `34=` placeholder (no MsgSeqNum consumed)."),
))

TRADE_BLOCKS = (TRIGGER, RISK, ORDER, FIXSEQ)
"""The blocks to append to ``REGISTER_MAP``."""

# ---------------------------------------------------------------------------------------------- events

REJECT_REASONS = ("killed", "qty", "notional", "band", "long", "short", "throttle", "dup")
"""Risk checks in priority order; bit i of a reject's ``reasons`` is check i, ``reason`` is the first (1-based)."""

ORDER_SENT = 7
RISK_REJECT = 8
FIX_STAMPED = 9
"""Event kinds proposed for ``protocols.events.EventKind``."""

ORDER_SENT_LAYOUT = (("clordid", 32), ("slot", 8), ("side", 8), ("tif", 8), ("price", 32), ("qty", 32),
                     ("checksum", 8), ("length", 16), ("cycle", 64), ("md_seq", 64), ("time", 36), ("date", 64))
"""A gateware NewOrderSingle as stamped: ClOrdID counter, slot, side ('1' buy, '2' sell, ASCII), TimeInForce,
price (price4), quantity, CheckSum, length in bytes, cycle of its first byte out, the sequence number of the
market data message that triggered it, and its SendingTime/TransactTime (BCD time of day, date as 8 ASCII bytes):
with the encoder's registers that is enough to rebuild the exact bytes for the resend store
(``host.ordermodel.rebuild_order``). Its first argument is the MsgSeqNum."""

RISK_REJECT_LAYOUT = (("slot", 8), ("side", 8), ("reason", 8), ("reasons", 8), ("price", 32), ("qty", 32),
                      ("cycle", 64))
"""An order risk refused: slot, side ('1'/'2'), first failing check (1-based in :data:`REJECT_REASONS`), the
bitmap of all failing checks, price, quantity, cycle. Its first argument is the market data sequence number."""

FIX_STAMPED_LAYOUT = (("checksum", 8), ("length", 16), ("cycle", 64))
"""A host message stamped by the sequencer (first argument: its MsgSeqNum): the host's resend store keeps
``protocols.fix.stamp(template, seq)``; CheckSum and length let it verify."""

# ---------------------------------------------------------------------------------------------- order template

SEQ_WIDTH = 9
"""MsgSeqNum placeholder digits (``protocols.fix.SEQ_WIDTH``)."""
CLORDID_DIGITS = 10
QTY_DIGITS = 10
PRICE_INT_DIGITS = 6
TIME_WIDTH = 21
"""UTCTimestamp with milliseconds, YYYYMMDD-HH:MM:SS.sss."""

NOS_TEMPLATE = (
    ("const", b"8=FIX.4.4\x019="),
    ("field", "body_length", 3),
    ("const", b"\x0135=D\x0134="),
    ("field", "seq", SEQ_WIDTH),
    ("const", b"\x0152="),
    ("field", "time", TIME_WIDTH),
    ("const", b"\x0149="),
    ("var", "sender", 16),
    ("const", b"\x0156="),
    ("var", "target", 16),
    ("const", b"\x0111="),
    ("field", "prefix", 8),
    ("field", "clordid", CLORDID_DIGITS),
    ("const", b"\x0154="),
    ("field", "side", 1),
    ("const", b"\x0160="),
    ("field", "time", TIME_WIDTH),
    ("const", b"\x0138="),
    ("field", "qty", QTY_DIGITS),
    ("const", b"\x0140=2\x0144="),
    ("field", "price", PRICE_INT_DIGITS + 5),
    ("const", b"\x0159="),
    ("field", "tif", 1),
    ("const", b"\x0155="),
    ("var", "symbol", 8),
    ("const", b"\x0110=000\x01"),
)
"""The gateware NewOrderSingle, in wire order: fixed-width fields (integers with leading zeros, the price as
``DDDDDD.dddd``) keep every offset constant except after the three strings (the CompIDs and the Symbol), so
BodyLength is a constant plus their lengths. MsgSeqNum is a zero placeholder and CheckSum ``000``: the sequencer
stamps both (``protocols.fix.stamp`` is its model)."""

FIXED_BODY = sum(len(s[1]) if s[0] == "const" else s[2] for s in NOS_TEMPLATE if s[0] != "var") - 7 - 16
"""BodyLength without the strings: every fixed byte after ``9=BBB<SOH>`` and before ``10=``."""


def body_length(sender_len: int, target_len: int, symbol_len: int) -> int:
    """BodyLength (9) of a gateware order."""
    return FIXED_BODY + sender_len + target_len + symbol_len
