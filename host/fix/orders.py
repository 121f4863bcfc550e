"""Order entry messages and the order state machine per ClOrdID chain.

Builders for NewOrderSingle, OrderCancelRequest, OrderCancelReplaceRequest,
ExecutionReport and OrderCancelReject (prices are integers in 1/10000, quantities
integers). :class:`OrderTracker` follows each order through its ClOrdID chain
(a cancel or replace request opens a new ClOrdID linked by OrigClOrdID) and
raises :class:`OrderStateError` on any transition the FIX 4.4 order state change
matrices do not allow: a fill before the New acknowledgement, anything after a
terminal state, an overfill, a CumQty that goes backwards, an OrdStatus that
disagrees with the transition.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from decimal import Decimal

from protocols.fix import Message


def _px(price_e4: int | None):
    return None if price_e4 is None else Decimal(int(price_e4)).scaleb(-4)


def _fields(pairs) -> list:
    return [(t, v) for t, v in pairs if v is not None]


def _now(transact_time):
    return transact_time if transact_time is not None else time.time()


def _ts(seconds: float):
    from protocols.fix import format_utc
    return format_utc(seconds)


def new_order_single(cl_ord_id: str, symbol: str, side: str, qty: int, price_e4: int | None = None,
                     ord_type: str | None = None, time_in_force: str | None = None, account: str | None = None,
                     transact_time: float | None = None) -> Message:
    """NewOrderSingle (35=D); ``side`` '1' buy / '2' sell; OrdType limit ('2') when a price is given, else market."""
    return Message("D", _fields([
        (11, cl_ord_id), (1, account), (21, "1"), (55, symbol), (54, side), (60, _ts(_now(transact_time))),
        (38, int(qty)), (40, ord_type or ("2" if price_e4 is not None else "1")), (44, _px(price_e4)),
        (59, time_in_force)]))


def cancel_request(cl_ord_id: str, orig_cl_ord_id: str, symbol: str, side: str, qty: int,
                   order_id: str | None = None, transact_time: float | None = None) -> Message:
    """OrderCancelRequest (35=F) for the order whose current ClOrdID is ``orig_cl_ord_id``."""
    return Message("F", _fields([
        (41, orig_cl_ord_id), (37, order_id), (11, cl_ord_id), (55, symbol), (54, side),
        (60, _ts(_now(transact_time))), (38, int(qty))]))


def replace_request(cl_ord_id: str, orig_cl_ord_id: str, symbol: str, side: str, qty: int, price_e4: int | None,
                    ord_type: str = "2", order_id: str | None = None, transact_time: float | None = None) -> Message:
    """OrderCancelReplaceRequest (35=G): new quantity and price for the order ``orig_cl_ord_id``."""
    return Message("G", _fields([
        (37, order_id), (41, orig_cl_ord_id), (11, cl_ord_id), (21, "1"), (55, symbol), (54, side),
        (60, _ts(_now(transact_time))), (38, int(qty)), (40, ord_type), (44, _px(price_e4))]))


def execution_report(order_id: str, exec_id: str, cl_ord_id: str, symbol: str, side: str, exec_type: str,
                     ord_status: str, cum_qty: int, leaves_qty: int, avg_px_e4: int = 0, order_qty: int | None = None,
                     price_e4: int | None = None, last_qty: int | None = None, last_px_e4: int | None = None,
                     orig_cl_ord_id: str | None = None, ord_rej_reason: int | None = None, text: str | None = None,
                     transact_time: float | None = None) -> Message:
    """ExecutionReport (35=8). FIX 4.4 reports fills with ExecType 'F' (Trade) and the
    order's OrdStatus ('1' partially filled, '2' filled)."""
    return Message("8", _fields([
        (37, order_id), (11, cl_ord_id), (41, orig_cl_ord_id), (17, exec_id), (150, exec_type), (39, ord_status),
        (103, ord_rej_reason), (55, symbol), (54, side), (38, order_qty), (44, _px(price_e4)), (32, last_qty),
        (31, _px(last_px_e4)), (151, int(leaves_qty)), (14, int(cum_qty)), (6, _px(avg_px_e4)),
        (60, _ts(_now(transact_time))), (58, text)]))


def cancel_reject(order_id: str, cl_ord_id: str, orig_cl_ord_id: str, ord_status: str, response_to: str = "1",
                  reason: int | None = None, text: str | None = None) -> Message:
    """OrderCancelReject (35=9); ``response_to`` '1' a cancel request, '2' a cancel/replace request."""
    return Message("9", _fields([
        (37, order_id), (11, cl_ord_id), (41, orig_cl_ord_id), (39, ord_status), (434, response_to),
        (102, reason), (58, text)]))


class OrderState(str, enum.Enum):
    PENDING_NEW = "A"
    NEW = "0"
    PARTIALLY_FILLED = "1"
    FILLED = "2"
    PENDING_CANCEL = "6"
    PENDING_REPLACE = "E"
    CANCELED = "4"
    REJECTED = "8"
    EXPIRED = "C"
    REPLACED = "replaced"      # a ClOrdID superseded by a replace (OrdStatus 5 is not used in FIX 4.4)


TERMINAL = frozenset({OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED, OrderState.EXPIRED,
                      OrderState.REPLACED})

S = OrderState
_WORKING = {S.NEW, S.PARTIALLY_FILLED}
TRANSITIONS: dict[OrderState, dict[str, OrderState | None]] = {
    S.PENDING_NEW: {"pending_new": S.PENDING_NEW, "ack": S.NEW, "reject": S.REJECTED},
    S.NEW: {"partial": S.PARTIALLY_FILLED, "fill": S.FILLED, "cancel_request": S.PENDING_CANCEL,
            "replace_request": S.PENDING_REPLACE, "canceled": S.CANCELED, "expired": S.EXPIRED},
    S.PARTIALLY_FILLED: {"partial": S.PARTIALLY_FILLED, "fill": S.FILLED, "cancel_request": S.PENDING_CANCEL,
                         "replace_request": S.PENDING_REPLACE, "canceled": S.CANCELED, "expired": S.EXPIRED},
    S.PENDING_CANCEL: {"pending_cancel": S.PENDING_CANCEL, "canceled": S.CANCELED, "cancel_reject": None,
                       "partial": S.PENDING_CANCEL, "fill": S.FILLED},
    S.PENDING_REPLACE: {"pending_replace": S.PENDING_REPLACE, "replaced": None, "cancel_reject": None,
                        "partial": S.PENDING_REPLACE, "fill": S.FILLED},
}
"""Allowed (state, event) -> next state; None: decided by the order (back to the state
before the request, or working again after a replace). Terminal states allow nothing."""

_EXEC_EVENTS = {"A": "pending_new", "0": "ack", "8": "reject", "6": "pending_cancel", "4": "canceled",
                "E": "pending_replace", "5": "replaced", "C": "expired"}


class OrderStateError(RuntimeError):
    """An order event the state machine refuses; the message names the order, state and event."""


@dataclass
class Order:
    """One order: its ClOrdID chain, quantities and state (``state`` is the chain's; each
    superseded ClOrdID is REPLACED in ``id_states``)."""

    cl_ord_id: str
    symbol: str
    side: str
    order_qty: int
    price_e4: int | None
    state: OrderState = OrderState.PENDING_NEW
    cum_qty: int = 0
    leaves_qty: int = 0
    avg_px_e4: int | None = None
    order_id: str | None = None
    chain: list[str] = field(default_factory=list)
    id_states: dict[str, OrderState] = field(default_factory=dict)
    history: list[tuple[str, OrderState, OrderState]] = field(default_factory=list)
    prior: OrderState | None = None
    pending: tuple[str, str, int | None, int | None] | None = None   # (kind, new ClOrdID, qty, price_e4)


class OrderTracker:
    """Orders by every ClOrdID of their chain, moved by our requests and their reports."""

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}

    def order(self, cl_ord_id: str) -> Order:
        try:
            return self.orders[cl_ord_id]
        except KeyError:
            raise OrderStateError(f"unknown ClOrdID {cl_ord_id!r}") from None

    def _move(self, o: Order, event: str, target: OrderState | None = None) -> None:
        allowed = TRANSITIONS.get(o.state, {})
        if event not in allowed:
            raise OrderStateError(f"order {o.chain[0]} (ClOrdID {o.cl_ord_id}): {event} is impossible in state "
                                  f"{o.state.name}" + (" (terminal)" if o.state in TERMINAL else ""))
        new = allowed[event] or target
        o.history.append((event, o.state, new))
        o.state = new
        o.id_states[o.cl_ord_id] = new

    # -- our requests
    def new_order(self, msg: Message) -> Order:
        cid = msg.cl_ord_id
        if cid in self.orders:
            raise OrderStateError(f"duplicate ClOrdID {cid!r}")
        qty = msg.order_qty
        if qty is None or qty <= 0:
            raise OrderStateError(f"order {cid}: OrderQty must be positive, not {qty}")
        o = Order(cid, msg.symbol, msg.side, qty, msg.price_e4, leaves_qty=qty, chain=[cid])
        o.id_states[cid] = o.state
        o.history.append(("new_order", o.state, o.state))
        self.orders[cid] = o
        return o

    def _request(self, msg: Message, kind: str) -> Order:
        new_id, orig = msg.cl_ord_id, msg.orig_cl_ord_id
        if new_id in self.orders:
            raise OrderStateError(f"duplicate ClOrdID {new_id!r}")
        o = self.order(orig)
        if orig != o.cl_ord_id:
            raise OrderStateError(f"order {o.chain[0]}: OrigClOrdID {orig} is not the current ClOrdID {o.cl_ord_id}")
        prior = o.state
        self._move(o, f"{kind}_request")
        o.prior = prior
        o.pending = (kind, new_id, msg.order_qty, msg.price_e4 if kind == "replace" else None)
        self.orders[new_id] = o
        return o

    def cancel(self, msg: Message) -> Order:
        return self._request(msg, "cancel")

    def replace(self, msg: Message) -> Order:
        return self._request(msg, "replace")

    # -- their reports
    def on_execution_report(self, msg: Message) -> Order:
        o = self.order(msg.cl_ord_id)
        et, status = msg.exec_type, msg.ord_status
        if msg.order_id:
            o.order_id = msg.order_id
        if et in ("I", "D", "3"):        # order status, restatement, done for day: no transition
            return o
        if et == "F":
            return self._fill(o, msg)
        event = _EXEC_EVENTS.get(et)
        if event is None:
            raise OrderStateError(f"order {o.chain[0]}: unsupported ExecType {et!r}")
        if event == "replaced":
            if o.pending is None or o.pending[0] != "replace" or o.pending[1] != msg.cl_ord_id:
                raise OrderStateError(f"order {o.chain[0]}: Replaced for {msg.cl_ord_id} without its replace request")
            _, new_id, qty, price = o.pending
            old_id = o.cl_ord_id
            cum = msg.cum_qty if msg.cum_qty is not None else o.cum_qty
            self._check_qty(o, cum, qty or o.order_qty)
            self._move(o, "replaced", S.PARTIALLY_FILLED if cum else S.NEW)
            o.id_states[old_id] = S.REPLACED
            o.cl_ord_id, o.order_qty = new_id, qty or o.order_qty
            if price is not None:
                o.price_e4 = price
            o.chain.append(new_id)
            o.id_states[new_id] = o.state
            o.cum_qty, o.leaves_qty, o.pending, o.prior = cum, o.order_qty - cum, None, None
        else:
            if event in ("canceled", "pending_cancel") and o.pending and o.pending[1] == msg.cl_ord_id:
                pass
            elif msg.cl_ord_id != o.cl_ord_id and not (o.pending and o.pending[1] == msg.cl_ord_id):
                raise OrderStateError(f"order {o.chain[0]}: report for superseded ClOrdID {msg.cl_ord_id}")
            self._move(o, event)
            if event == "canceled":
                if o.pending and o.pending[1] == msg.cl_ord_id:
                    o.id_states[o.cl_ord_id] = S.CANCELED
                    o.cl_ord_id = msg.cl_ord_id
                    o.chain.append(msg.cl_ord_id)
                    o.id_states[msg.cl_ord_id] = S.CANCELED
                o.leaves_qty, o.pending = 0, None
            elif event in ("reject", "expired"):
                o.leaves_qty = 0
        self._check_status(o, status)
        return o

    def _fill(self, o: Order, msg: Message) -> Order:
        last, cum, leaves = msg.last_qty, msg.cum_qty, msg.leaves_qty
        if last is None or last <= 0:
            raise OrderStateError(f"order {o.chain[0]}: fill without a positive LastQty ({last})")
        if cum is None or cum != o.cum_qty + last:
            raise OrderStateError(f"order {o.chain[0]}: CumQty {cum} after a fill of {last} on {o.cum_qty}")
        self._check_qty(o, cum, o.order_qty)
        done = cum == o.order_qty or (leaves == 0 and msg.ord_status == "2")
        was_pending = o.state in (S.PENDING_CANCEL, S.PENDING_REPLACE)
        self._move(o, "fill" if done else "partial")
        o.cum_qty, o.leaves_qty = cum, 0 if done else o.order_qty - cum
        if msg.raw(6) is not None:
            o.avg_px_e4 = msg.avg_px_e4
        if done:
            o.pending = None
        if not was_pending:
            self._check_status(o, msg.ord_status)
        return o

    def on_cancel_reject(self, msg: Message) -> Order:
        o = self.order(msg.cl_ord_id)
        if o.pending is None or o.pending[1] != msg.cl_ord_id:
            raise OrderStateError(f"order {o.chain[0]}: OrderCancelReject for {msg.cl_ord_id} without its request")
        self._move(o, "cancel_reject", o.prior)
        o.id_states[msg.cl_ord_id] = S.REJECTED
        o.pending, o.prior = None, None
        return o

    def on_message(self, msg: Message) -> Order | None:
        """Route an inbound application message (ExecutionReport or OrderCancelReject)."""
        if msg.msg_type == "8":
            return self.on_execution_report(msg)
        if msg.msg_type == "9":
            return self.on_cancel_reject(msg)
        return None

    @staticmethod
    def _check_qty(o: Order, cum: int, qty: int) -> None:
        if cum < o.cum_qty:
            raise OrderStateError(f"order {o.chain[0]}: CumQty went back from {o.cum_qty} to {cum}")
        if cum > qty:
            raise OrderStateError(f"order {o.chain[0]}: overfill, CumQty {cum} > OrderQty {qty}")

    @staticmethod
    def _check_status(o: Order, status: str | None) -> None:
        """OrdStatus must agree with the state (pending states take precedence, FIX 4.4)."""
        if status is None or o.state in (S.PENDING_CANCEL, S.PENDING_REPLACE):
            return
        if status != o.state.value and not (o.state == S.FILLED and status in ("2",)):
            raise OrderStateError(f"order {o.chain[0]}: OrdStatus {status!r} disagrees with state {o.state.name}")
