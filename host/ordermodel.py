"""Golden model of the gateware tick-to-trade path: trigger, pre-trade risk, order encoder, sequencer.

What
    :class:`TradeModel` holds the state the gateware holds (trigger table,
    per-slot mids, risk limits, positions and open quantities, token buckets,
    ClOrdID counter, kill switches, MsgSeqNum) and processes top-of-book
    records in order: :meth:`TradeModel.on_tob` returns the order that leaves
    (its FIX bytes, stamped) or the risk reject, or None. :func:`encode_order`
    builds a NewOrderSingle from ``protocols.registers_trade.NOS_TEMPLATE``;
    :func:`protocols.fix.stamp` is the sequencer.

Why
    The hypothesis property test runs the same records through the gateware
    and this model and asserts the orders (bytes included) and rejects agree;
    the software NIC can run it in place of the gateware.

Semantics (exactly what the gateware does)
    * Thresholds: ``p = delta_q16 * (mid[underlying] - ref)``; buy threshold
      ``limit + (p >> 16)`` (floor), sell threshold ``limit - ((-p) >> 16)``
      (ceiling): both rounded away from fair value, as
      ``host.arming.effective_thresholds`` (a zero buy limit never buys). A linked slot whose underlying has
      no two-sided mid yet is not evaluated. The mid of a slot is
      ``(bid + ask) >> 1`` after a record with both sides non-empty; a record
      is evaluated with the mids as they were before it.
    * Buy when armed, ``ask > 0``, ``ask <= buy threshold`` and ``ask_size >=
      min size``; else sell when armed, ``bid > 0``, ``bid >= sell threshold``
      and ``bid_size >= min size`` (buy first, as ``host.arming.would_trigger``).
      The order takes the touch price and ``min(size, max_qty)``; the entry
      disarms whether or not risk passes the order.
    * Risk: all checks of :data:`REJECT_REASONS` at once; a passed order takes
      one token from its slot's and the global bucket, adds to its side's
      open quantity and consumes the ClOrdID.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocols import fix
from protocols.events import pack_fields, unpack_fields
from protocols.registers_trade import (CLORDID_DIGITS, NOS_TEMPLATE, ORDER_SENT_LAYOUT, PRICE_INT_DIGITS,
                                       QTY_DIGITS, REJECT_REASONS, RISK_REJECT_LAYOUT, body_length)

__all__ = ["Entry", "Link", "Limits", "OrderConfig", "Order", "Reject", "TradeModel", "encode_order",
           "format_price", "time_bcd", "bcd_time", "time_text", "pack_order_sent", "unpack_order_sent",
           "pack_risk_reject", "unpack_risk_reject", "restamp", "rebuild_order"]

BUY, SELL = 0, 1
SIDE_CHAR = {BUY: "1", SELL: "2"}


def time_bcd(ms_of_day: int) -> int:
    """The ``order.time`` register value for a time of day in milliseconds (BCD digits HHMMSSmmm)."""
    h, rem = divmod(ms_of_day, 3_600_000)
    mi, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return int("%02d%02d%02d%03d" % (h, mi, s, ms), 16)


def bcd_time(value: int) -> int:
    """Milliseconds of day from a BCD ``time`` value (inverse of :func:`time_bcd`)."""
    t = "%09x" % value
    return ((int(t[0:2]) * 60 + int(t[2:4])) * 60 + int(t[4:6])) * 1000 + int(t[6:9])


def time_text(date: bytes, value: int) -> bytes:
    """UTCTimestamp ``YYYYMMDD-HH:MM:SS.sss`` from the date bytes and a BCD time."""
    t = b"%09x" % value
    return date + b"-" + t[0:2] + b":" + t[2:4] + b":" + t[4:6] + b"." + t[6:9]


def format_price(price_e4: int) -> bytes:
    """Price (44) as fixed-width ``DDDDDD.dddd`` (leading zeros are allowed in FIX floats)."""
    return b"%0*d.%04d" % (PRICE_INT_DIGITS, price_e4 // 10000, price_e4 % 10000)


@dataclass
class OrderConfig:
    """The encoder's registers: CompIDs, ClOrdID prefix, symbols per slot, date and BCD time."""

    sender: bytes = b"CALARB"
    target: bytes = b"EXCH"
    prefix: bytes = b"CA000001"
    symbols: dict[int, bytes] = field(default_factory=dict)
    date: bytes = b"20240102"
    time: int = 0x093000000


def encode_order(cfg: OrderConfig, *, slot: int, side: int, price: int, qty: int, tif: str, clordid: int,
                 seq: int = 0) -> bytes:
    """The NewOrderSingle bytes the encoder emits (``seq`` 0: the zero placeholder and CheckSum ``000``;
    otherwise stamped as the sequencer would)."""
    symbol = cfg.symbols.get(slot, b"?")
    values = {
        "body_length": b"%03d" % body_length(len(cfg.sender), len(cfg.target), len(symbol)),
        "seq": b"0" * 9, "time": time_text(cfg.date, cfg.time), "sender": cfg.sender, "target": cfg.target,
        "prefix": cfg.prefix, "clordid": b"%0*d" % (CLORDID_DIGITS, clordid), "side": SIDE_CHAR[side].encode(),
        "qty": b"%0*d" % (QTY_DIGITS, qty), "price": format_price(price), "tif": tif.encode(), "symbol": symbol,
    }
    out = b"".join(seg[1] if seg[0] == "const" else values[seg[1]] for seg in NOS_TEMPLATE)
    return restamp(out, seq) if seq else out


def restamp(template: bytes, seq: int) -> bytes:
    """What the gateware sequencer does to any frame: write ``seq`` into the digits after the first
    ``<SOH>34=`` and recompute the CheckSum from the bytes (so the template's own CheckSum does not
    matter). Equal to :func:`protocols.fix.stamp` for a template whose CheckSum is right."""
    i = template.find(b"\x0134=") + 4
    j = template.find(b"\x01", i)
    if i < 4 or j < 0:
        raise fix.FixError("no MsgSeqNum (34) to stamp", 0)
    out = template[:i] + b"%0*d" % (j - i, seq) + template[j:-4]
    return out + b"%03d\x01" % (sum(out[:-3]) & 0xFF)


@dataclass
class Entry:
    """One trigger table entry (slot, side)."""

    price: int = 0
    max_qty: int = 0
    min_size: int = 0
    tif: str = "3"
    armed: bool = False


@dataclass
class Link:
    """Model link of a slot: threshold shift ``delta_q16 * (mid[under] - ref) / 2^16``."""

    linked: bool = False
    under: int = 0
    delta_q16: int = 0
    ref: int = 0


@dataclass
class Limits:
    """Risk limits of one slot (zeros refuse every order)."""

    max_qty: int = 0
    max_notional: int = 0
    band_ref: int = 0
    band_width: int = 0
    band_bps: bool = False
    long_limit: int = 0
    short_limit: int = 0


@dataclass(frozen=True)
class Order:
    slot: int
    side: int
    price: int
    qty: int
    tif: str
    clordid: int
    seq: int
    md_seq: int
    raw: bytes


@dataclass(frozen=True)
class Reject:
    slot: int
    side: int
    price: int
    qty: int
    reasons: int
    md_seq: int

    @property
    def reason(self) -> str:
        """The first failing check."""
        return REJECT_REASONS[(self.reasons & -self.reasons).bit_length() - 1]


class TradeModel:
    """The tick-to-trade path's state and semantics (see the module docstring)."""

    def __init__(self, slots: int = 32, cfg: OrderConfig | None = None) -> None:
        self.slots = slots
        self.cfg = cfg or OrderConfig()
        self.entries = {(s, d): Entry() for s in range(slots) for d in (BUY, SELL)}
        self.links = [Link() for _ in range(slots)]
        self.mid = [0] * slots
        self.mid_valid = [False] * slots
        self.limits = [Limits() for _ in range(slots)]
        self.position = [0] * slots
        self.open = [[0, 0] for _ in range(slots)]
        self.inst_burst = self.global_burst = 0xFFFF
        self.tokens = [0xFFFF] * slots
        self.global_tokens = 0xFFFF
        self.clordid = 0
        self.hwm: int | None = None
        self.kill_global = False
        self.kill_slot = [False] * slots
        self.reject_limit = 0
        self.window_rejects = 0
        self.next_seq = 1
        self.counts = {name: 0 for name in REJECT_REASONS}

    # -- host writes
    def set_throttle(self, inst_burst: int | None = None, global_burst: int | None = None) -> None:
        """Burst sizes (no refill in the model); a write refills the bucket(s)."""
        if inst_burst is not None:
            self.inst_burst = inst_burst
            self.tokens = [inst_burst] * self.slots
        if global_burst is not None:
            self.global_burst = self.global_tokens = global_burst

    def fill(self, slot: int, side: int, filled: int, released: int = 0) -> None:
        self.open[slot][side] -= filled + released
        self.position[slot] += filled if side == BUY else -filled

    # -- the path
    def thresholds(self, slot: int) -> tuple[int, int] | None:
        """(buy, sell) thresholds of a slot now; None if its underlying has no mid."""
        link = self.links[slot]
        buy, sell = self.entries[slot, BUY].price, self.entries[slot, SELL].price
        if not link.linked:
            return buy, sell
        if not self.mid_valid[link.under]:
            return None
        p = link.delta_q16 * (self.mid[link.under] - link.ref)
        return (max(buy + (p >> 16), 0) if buy else 0), sell - ((-p) >> 16)

    def on_tob(self, slot: int, bid: int, ask: int, bid_size: int, ask_size: int, md_seq: int = 0):
        """Process one top-of-book record; returns an Order, a Reject or None."""
        out = None
        thr = self.thresholds(slot)
        if thr is not None:
            fire = None
            eb, es = self.entries[slot, BUY], self.entries[slot, SELL]
            if eb.armed and ask > 0 and ask <= thr[0] and ask_size >= eb.min_size:
                fire = (BUY, eb, ask, ask_size)
            elif es.armed and bid > 0 and bid >= thr[1] and bid_size >= es.min_size:
                fire = (SELL, es, bid, bid_size)
            if fire is not None:
                side, entry, price, size = fire
                entry.armed = False
                out = self.risk(slot, side, price, min(size, entry.max_qty), entry.tif, md_seq)
        if bid > 0 and ask > 0:
            self.mid[slot] = (bid + ask) >> 1
            self.mid_valid[slot] = True
        return out

    def check(self, slot: int, side: int, price: int, qty: int) -> int:
        """Bitmap of the failing risk checks (bit i: ``REJECT_REASONS[i]``)."""
        lim = self.limits[slot]
        dev = abs(price - lim.band_ref)
        band_bad = dev * 10000 > lim.band_width * lim.band_ref if lim.band_bps else dev > lim.band_width
        bad = [
            self.kill_global or self.kill_slot[slot],
            qty > lim.max_qty,
            price * qty > lim.max_notional,
            band_bad,
            side == BUY and self.position[slot] + self.open[slot][BUY] + qty > lim.long_limit,
            side == SELL and self.open[slot][SELL] + qty - self.position[slot] > lim.short_limit,
            self.tokens[slot] == 0 or self.global_tokens == 0,
            self.hwm is not None and self.clordid <= self.hwm,
        ]
        return sum(1 << i for i, b in enumerate(bad) if b)

    def risk(self, slot, side, price, qty, tif, md_seq):
        reasons = self.check(slot, side, price, qty)
        if reasons:
            rej = Reject(slot, side, price, qty, reasons, md_seq)
            self.counts[rej.reason] += 1
            self.window_rejects += 1
            if self.reject_limit and self.window_rejects >= self.reject_limit:
                self.kill_global = True
            return rej
        self.tokens[slot] -= 1
        self.global_tokens -= 1
        self.open[slot][side] += qty
        clordid = self.clordid
        self.hwm = clordid
        self.clordid = (clordid + 1) & 0xFFFFFFFF
        seq = self.next_seq
        self.next_seq += 1
        raw = encode_order(self.cfg, slot=slot, side=side, price=price, qty=qty, tif=tif, clordid=clordid, seq=seq)
        return Order(slot, side, price, qty, tif, clordid, seq, md_seq, raw)


# ---------------------------------------------------------------------------------------------- event records

def rebuild_order(cfg: OrderConfig, sent: dict, seq: int) -> bytes:
    """The exact bytes of a gateware order from its ORDER_SENT record (and the encoder's registers in
    ``cfg``: CompIDs, prefix, symbols), for the host's resend store; check ``checksum``/``length``."""
    from dataclasses import replace
    c = replace(cfg, time=sent["time"], date=int(sent["date"]).to_bytes(8, "little"))
    raw = encode_order(c, slot=sent["slot"], side=sent["side"] - ord("1"), price=sent["price"], qty=sent["qty"],
                       tif=chr(sent["tif"]), clordid=sent["clordid"], seq=seq)
    if len(raw) != sent["length"] or int(raw[-4:-1]) != sent["checksum"]:
        raise ValueError(f"ORDER_SENT seq {seq}: rebuilt order does not match length/checksum "
                         f"({len(raw)}/{raw[-4:-1].decode()} vs {sent['length']}/{sent['checksum']:03d})")
    return raw


def pack_order_sent(values: dict) -> int:
    return pack_fields(ORDER_SENT_LAYOUT, values)


def unpack_order_sent(value: int) -> dict:
    return unpack_fields(ORDER_SENT_LAYOUT, value)


def pack_risk_reject(values: dict) -> int:
    return pack_fields(RISK_REJECT_LAYOUT, values)


def unpack_risk_reject(value: int) -> dict:
    return unpack_fields(RISK_REJECT_LAYOUT, value)
