"""FIX 4.4 order entry messages to matching engine requests, and engine events back to FIX.

:func:`request_from_fix` reads a NewOrderSingle (``D``), OrderCancelRequest
(``F``) or OrderCancelReplaceRequest (``G``) into a :mod:`sim.exchange.matching`
request; a message the venue cannot take becomes a :class:`FixRequestError`
whose :meth:`~FixRequestError.reply` is the ExecutionReport (rejected) or
OrderCancelReject to send back. :func:`fix_from_event` writes an
:class:`~sim.exchange.matching.ExecReport` as an ExecutionReport (``8``) and a
:class:`~sim.exchange.matching.CancelReject` as an OrderCancelReject (``9``).
Only body fields are set here; the session layer adds the header.

Mapping: Side ``1`` -> ``B``, ``2``/``5``/``6`` -> ``S``; OrdType ``1`` market,
``2`` limit; TimeInForce ``0`` (or absent) day, ``3`` IOC; prices are price4
integers in the engine and decimals on the wire; OrderID is the engine's
stable order id and SecondaryOrderID (198) the ITCH order reference the
order rests (or will rest) under, so a client can find its order in the feed;
AvgPx is rounded to 1/10000 (calarb's price4 grid).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from protocols import fix
from sim.exchange.matching import (BUY, DAY, IOC, SELL, CancelReject, CancelRequest, ExecReport, NewOrder,
                                   ReplaceRequest, REJ_OTHER)

SIDES = {"1": BUY, "2": SELL, "5": SELL, "6": SELL}
FIX_SIDE = {BUY: "1", SELL: "2"}
TIFS = {"0": DAY, "3": IOC}
FIX_TIF = {DAY: "0", IOC: "3"}


class FixRequestError(ValueError):
    """An order entry message the venue answers with a reject; ``reply`` is that reject."""

    def __init__(self, text: str, reply: fix.Message):
        super().__init__(text)
        self.reply = reply


def price_decimal(price_e4: int) -> Decimal:
    return Decimal(price_e4).scaleb(-4).normalize() if price_e4 % 10000 else Decimal(price_e4 // 10000)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _reject_order(msg: fix.Message, text: str) -> FixRequestError:
    side = msg.get(54) if msg.get(54) in SIDES else "1"
    reply = fix.Message("8", [
        (37, "NONE"), (11, msg.get(11) or "NONE"), (17, "R" + (msg.get(11) or "NONE")), (150, "8"), (39, "8"),
        (55, msg.get(55) or "NONE"), (54, side), (151, 0), (14, 0), (6, 0), (103, REJ_OTHER), (58, text[:200]),
        (60, _now())])
    return FixRequestError(text, reply)


def _reject_cancel(msg: fix.Message, text: str) -> FixRequestError:
    reply = fix.Message("9", [
        (37, "NONE"), (11, msg.get(11) or "NONE"), (41, msg.get(41) or "NONE"), (39, "8"),
        (434, "2" if msg.msg_type == "G" else "1"), (102, 99), (58, text[:200])])
    return FixRequestError(text, reply)


def _qty(msg: fix.Message) -> int:
    q = msg.get_decimal(38)
    if q is None:
        raise ValueError("OrderQty (38) is missing")
    if q != q.to_integral_value() or q <= 0:
        raise ValueError(f"OrderQty (38) {q} is not a positive whole number of shares")
    return int(q)


def _price(msg: fix.Message) -> int | None:
    ord_type = msg.get(40)
    if ord_type == "1":
        return None
    if ord_type != "2":
        raise ValueError(f"OrdType (40) {ord_type!r} is not 1 (market) or 2 (limit)")
    price = msg.get_e4(44)
    if price is None:
        raise ValueError("Price (44) is missing on a limit order")
    return price


def request_from_fix(msg: fix.Message, owner: str):
    """The engine request for an order entry message from ``owner`` (FixRequestError if unusable)."""
    if msg.msg_type == "D":
        try:
            cl = msg.get(11)
            if not cl:
                raise ValueError("ClOrdID (11) is missing")
            side = SIDES.get(msg.get(54))
            if side is None:
                raise ValueError(f"Side (54) {msg.get(54)!r} is not supported")
            tif = TIFS.get(msg.get(59, "0"))
            if tif is None:
                raise ValueError(f"TimeInForce (59) {msg.get(59)!r} is not 0 (day) or 3 (IOC)")
            return NewOrder(owner, cl, msg.get(55) or "", side, _qty(msg), _price(msg), tif)
        except (ValueError, fix.FixError) as e:
            raise _reject_order(msg, str(e)) from None
    if msg.msg_type in ("F", "G"):
        try:
            cl, orig = msg.get(11), msg.get(41)
            if not cl or not orig:
                raise ValueError("ClOrdID (11) and OrigClOrdID (41) are required")
            side = SIDES.get(msg.get(54), "")
            if msg.msg_type == "F":
                return CancelRequest(owner, cl, orig, msg.get(55) or "", side)
            return ReplaceRequest(owner, cl, orig, _qty(msg), _price(msg), msg.get(55) or "", side)
        except (ValueError, fix.FixError) as e:
            raise _reject_cancel(msg, str(e)) from None
    raise ValueError(f"MsgType {msg.msg_type!r} is not order entry")


def fix_from_event(ev: ExecReport | CancelReject) -> fix.Message:
    """The FIX message for an engine event addressed to a client."""
    if isinstance(ev, CancelReject):
        return fix.Message("9", [
            (37, ev.order_id or "NONE"), (11, ev.cl_ord_id), (41, ev.orig_cl_ord_id), (39, ev.ord_status),
            (434, ev.response_to), (102, ev.reason), (58, ev.text[:200])])
    f: list[tuple[int, object]] = [
        (37, ev.order_id), (17, ev.exec_id), (11, ev.cl_ord_id)]
    if ev.orig_cl_ord_id:
        f.append((41, ev.orig_cl_ord_id))
    if ev.ref:
        f.append((198, ev.ref))
    f += [(150, ev.exec_type), (39, ev.ord_status), (55, ev.symbol), (54, FIX_SIDE.get(ev.side, "1")),
          (38, ev.order_qty), (40, "1" if ev.price is None else "2")]
    if ev.price is not None:
        f.append((44, price_decimal(ev.price)))
    f.append((59, FIX_TIF.get(ev.tif, "0")))
    if ev.exec_type == "F":
        f += [(32, ev.last_qty), (31, price_decimal(ev.last_px))]
    avg = Decimal(ev.notional) / Decimal(ev.cum_qty) / 10000 if ev.cum_qty else Decimal(0)
    f += [(151, ev.leaves_qty), (14, ev.cum_qty), (6, avg.quantize(Decimal("0.0001")).normalize())]
    if ev.rej_reason is not None:
        f.append((103, ev.rej_reason))
    if ev.text:
        f.append((58, ev.text[:200]))
    f.append((60, _now()))
    return fix.Message("8", f)
