"""Reconciliation: orders sent, acknowledgements and fills matched per ClOrdID.

What
    :class:`Reconciler` records every order sent (by the gateware's
    order-sent report or the host's own FIX path, :meth:`~Reconciler.on_sent`)
    and matches each ExecutionReport (:meth:`~Reconciler.on_execution`) to it
    by ClOrdID. Fills update :class:`~host.types.Position` s (average cost,
    realised P&L; unrealised at the marks). Every disagreement becomes a
    :class:`Mismatch` - kept in ``mismatches`` and passed to
    ``on_mismatch`` - and is never absorbed silently:

    ``unknown_order``       a report for a ClOrdID never sent
    ``duplicate_sent``      the same ClOrdID sent twice
    ``duplicate_exec``      an ExecID seen before (the fill is *not* applied twice)
    ``duplicate_ack``       a second acknowledgement
    ``instrument_mismatch`` / ``side_mismatch``  the report disagrees with the order sent
    ``fill_without_ack``    a fill before any acknowledgement
    ``fill_after_final``    a fill after the order was cancelled or rejected
    ``overfill``            fills beyond the order's quantity
    ``price_through_limit`` a buy filled above its limit, a sell below
    ``cum_qty_mismatch``    the report's CumQty is not the sum of the fills seen
    ``leaves_qty_mismatch`` LeavesQty + CumQty is not the order quantity on a live order
    ``ack_timeout``         no acknowledgement within ``ack_timeout_ns`` (:meth:`~Reconciler.overdue`)

    Fills the venue reports are real exposure, so a fill with a mismatch is
    still applied to the position (except a duplicate ExecID) - and flagged.

Feedback
    Each fill's slippage against the decision price (bps, positive = worse)
    and its time from sending feed per-instrument statistics; when the mean
    slippage over the last ``slippage_window`` fills passes
    ``slippage_alert_bps`` the instrument is added to ``recalibrate`` (the
    calibrator's trigger) and ``on_recalibrate(instrument)`` is called.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from host.config import ReconcileConfig
from host.types import Execution, Position, Side, e4_to_price

__all__ = ["FINAL_EXEC_TYPES", "Mismatch", "OrderRecord", "Reconciler"]

FILL_EXEC_TYPES = ("F", "1", "2")  # Trade (FIX 4.4), and 4.2's partial fill / fill
ACK_EXEC_TYPES = ("0",)
FINAL_EXEC_TYPES = ("4", "8", "C")  # cancelled, rejected, expired


@dataclass(frozen=True)
class Mismatch:
    kind: str
    clordid: str
    detail: str
    timestamp: int = 0


@dataclass
class OrderRecord:
    """What was sent, and what came back, for one ClOrdID."""

    clordid: str
    instrument: str
    side: Side
    quantity: int
    limit_price: int
    origin: str
    sent_ns: int
    decision_price: float | None = None
    acked_ns: int | None = None
    cum_qty: int = 0
    final: str | None = None
    fills: list = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.final is None and self.cum_qty < self.quantity


class _Stats:
    """Running statistics over a window."""

    def __init__(self, window: int):
        self.values = deque(maxlen=window)
        self.count = 0

    def add(self, x: float) -> None:
        self.values.append(x)
        self.count += 1

    @property
    def mean(self) -> float:
        return math.fsum(self.values) / len(self.values) if self.values else math.nan


class Reconciler:
    """Matches sent orders, acks and fills per ClOrdID; keeps positions and P&L (see the module docstring)."""

    def __init__(self, config: ReconcileConfig = ReconcileConfig(), *,
                 on_mismatch: Callable[[Mismatch], None] | None = None,
                 on_fill: Callable[[Execution, Position], None] | None = None,
                 on_recalibrate: Callable[[str], None] | None = None):
        self.config = config
        self.on_mismatch = on_mismatch
        self.on_fill = on_fill
        self.on_recalibrate = on_recalibrate
        self.orders: dict[str, OrderRecord] = {}
        self.positions: dict[str, Position] = {}
        self.marks: dict[str, float] = {}
        self.mismatches: list[Mismatch] = []
        self.exec_ids: set[str] = set()
        self.slippage: dict[str, _Stats] = {}
        self.fill_latency_ns: dict[str, _Stats] = {}
        self.recalibrate: set[str] = set()
        self._timed_out: set[str] = set()

    # ---------------------------------------------------------------- inputs

    def _flag(self, kind: str, clordid: str, detail: str, timestamp: int = 0) -> Mismatch:
        m = Mismatch(kind, clordid, detail, timestamp)
        self.mismatches.append(m)
        if self.on_mismatch is not None:
            self.on_mismatch(m)
        return m

    def on_sent(self, clordid: str, instrument: str, side: Side, quantity: int, limit_price: int, *,
                origin: str = "host", timestamp: int = 0, decision_price: float | None = None) -> list[Mismatch]:
        """An order left (the gateware's order-sent report, or the host's FIX engine)."""
        if clordid in self.orders:
            return [self._flag("duplicate_sent", clordid, f"ClOrdID sent again by {origin} "
                                                          f"(first by {self.orders[clordid].origin})", timestamp)]
        self.orders[clordid] = OrderRecord(clordid, instrument, Side(side), int(quantity), int(limit_price),
                                           origin, int(timestamp), decision_price)
        return []

    def on_execution(self, er: Execution) -> list[Mismatch]:
        """Match one ExecutionReport; returns the mismatches it raised."""
        before = len(self.mismatches)
        t = er.timestamp
        if er.exec_id in self.exec_ids:
            self._flag("duplicate_exec", er.clordid, f"ExecID {er.exec_id} seen before; not applied again", t)
            return self.mismatches[before:]
        self.exec_ids.add(er.exec_id)
        order = self.orders.get(er.clordid)
        if order is None:
            self._flag("unknown_order", er.clordid, f"ExecType {er.exec_type} for a ClOrdID never sent", t)
        else:
            if er.instrument != order.instrument:
                self._flag("instrument_mismatch", er.clordid, f"report {er.instrument}, sent {order.instrument}", t)
            if er.side != order.side:
                self._flag("side_mismatch", er.clordid, f"report {er.side.name}, sent {order.side.name}", t)
        is_fill = er.exec_type in FILL_EXEC_TYPES and er.last_qty > 0
        if er.exec_type in ACK_EXEC_TYPES and order is not None:
            if order.acked_ns is not None:
                self._flag("duplicate_ack", er.clordid, "second acknowledgement", t)
            else:
                order.acked_ns = t
        if is_fill:
            self._fill(er, order)
        if er.exec_type in FINAL_EXEC_TYPES and order is not None:
            order.final = er.exec_type
        if order is not None and er.exec_type in ACK_EXEC_TYPES + FILL_EXEC_TYPES + FINAL_EXEC_TYPES:
            if er.cum_qty != order.cum_qty:
                self._flag("cum_qty_mismatch", er.clordid, f"report CumQty {er.cum_qty}, fills seen {order.cum_qty}", t)
            if order.final is None and er.leaves_qty + er.cum_qty != order.quantity:
                self._flag("leaves_qty_mismatch", er.clordid,
                           f"LeavesQty {er.leaves_qty} + CumQty {er.cum_qty} != OrderQty {order.quantity}", t)
        return self.mismatches[before:]

    def _fill(self, er: Execution, order: OrderRecord | None) -> None:
        t = er.timestamp
        if order is not None:
            if order.acked_ns is None:
                self._flag("fill_without_ack", er.clordid, f"ExecID {er.exec_id} before any acknowledgement", t)
            if order.final is not None:
                self._flag("fill_after_final", er.clordid, f"fill after ExecType {order.final}", t)
            order.cum_qty += er.last_qty
            order.fills.append(er)
            if order.cum_qty > order.quantity:
                self._flag("overfill", er.clordid, f"filled {order.cum_qty} of {order.quantity}", t)
            if (order.side is Side.BUY and er.last_price > order.limit_price) or (
                    order.side is Side.SELL and er.last_price < order.limit_price):
                self._flag("price_through_limit", er.clordid,
                           f"{order.side.name} filled at {er.last_price}, limit {order.limit_price}", t)
        pos = self.positions.setdefault(er.instrument, Position(er.instrument))
        price = e4_to_price(er.last_price)
        pos.apply_fill(int(er.side) * er.last_qty, price)
        self._feedback(er, order, price)
        if self.on_fill is not None:
            self.on_fill(er, pos)

    def _feedback(self, er: Execution, order: OrderRecord | None, price: float) -> None:
        if order is None:
            return
        k = er.instrument
        lat = self.fill_latency_ns.setdefault(k, _Stats(self.config.slippage_window))
        lat.add(er.timestamp - order.sent_ns)
        if order.decision_price and order.decision_price > 0:
            slip = int(order.side) * (price - order.decision_price) / order.decision_price * 1e4
            stats = self.slippage.setdefault(k, _Stats(self.config.slippage_window))
            stats.add(slip)
            if abs(stats.mean) > self.config.slippage_alert_bps and k not in self.recalibrate:
                self.recalibrate.add(k)
                if self.on_recalibrate is not None:
                    self.on_recalibrate(k)

    def overdue(self, now_ns: int) -> list[Mismatch]:
        """Orders sent more than ``ack_timeout_ns`` ago without an acknowledgement or fill (each flagged once)."""
        out = []
        for o in self.orders.values():
            if (o.acked_ns is None and not o.fills and o.final is None and o.clordid not in self._timed_out
                    and now_ns - o.sent_ns > self.config.ack_timeout_ns):
                self._timed_out.add(o.clordid)
                out.append(self._flag("ack_timeout", o.clordid, f"no acknowledgement after {now_ns - o.sent_ns} ns",
                                      now_ns))
        return out

    # ---------------------------------------------------------------- P&L

    def mark(self, instrument: str, price: float) -> None:
        self.marks[instrument] = float(price)

    def pnl(self) -> dict[str, float]:
        """``{"realised", "unrealised", "total"}`` in currency units (unmarked open positions count 0 unrealised)."""
        realised = math.fsum(p.realised_pnl for p in self.positions.values())
        unrealised = math.fsum(p.unrealised(self.marks[k]) for k, p in self.positions.items() if k in self.marks)
        return {"realised": realised, "unrealised": unrealised, "total": realised + unrealised}

    def position(self, instrument: str) -> int:
        p = self.positions.get(instrument)
        return 0 if p is None else p.quantity

    def mean_slippage_bps(self, instrument: str) -> float:
        s = self.slippage.get(instrument)
        return math.nan if s is None else s.mean
