"""host/fix/orders.py: the order state machine per ClOrdID chain, allowed and refused transitions."""

from __future__ import annotations

import pytest

from host.fix import OrderState, OrderStateError, OrderTracker
from host.fix.orders import (TERMINAL, TRANSITIONS, cancel_reject, cancel_request, execution_report,
                             new_order_single, replace_request)
from protocols import fix

S = OrderState


def er(cl, et, status, cum=0, leaves=100, last=None, orig=None, qty=100):
    m = execution_report("O1", f"E{cl}{et}{cum}", cl, "AAPL", "1", et, status, cum, leaves, 1_500_000,
                         order_qty=qty, last_qty=last, last_px_e4=1_500_000 if last else None, orig_cl_ord_id=orig)
    return fix.decode(m.copy().set(34, 1).set(49, "X").set(56, "Y").set(52, "20240102-10:00:00").encode())


def tracker_with_new(qty=100):
    t = OrderTracker()
    t.new_order(new_order_single("c1", "AAPL", "1", qty, 1_500_000))
    t.on_execution_report(er("c1", "0", "0", qty=qty, leaves=qty))
    return t


def test_builders_validate_against_dictionary():
    header = [(34, 1), (49, "A"), (56, "B"), (52, "20240102-10:00:00")]
    for m in (new_order_single("c1", "AAPL", "1", 100, 1_502_500), cancel_request("c2", "c1", "AAPL", "1", 100),
              replace_request("c3", "c1", "AAPL", "1", 200, 1_503_000), cancel_reject("O1", "c2", "c1", "0"),
              execution_report("O1", "E1", "c1", "AAPL", "1", "F", "1", 40, 60, 1_502_500, last_qty=40,
                               last_px_e4=1_502_500)):
        fix.validate(fix.Message(m.msg_type, header + m.fields))
    assert new_order_single("c", "X", "2", 1, 1_502_500).get(44) == "150.25"


def test_new_ack_partial_fill():
    t = tracker_with_new()
    o = t.on_execution_report(er("c1", "F", "1", cum=40, leaves=60, last=40))
    assert (o.state, o.cum_qty, o.leaves_qty) == (S.PARTIALLY_FILLED, 40, 60)
    o = t.on_execution_report(er("c1", "F", "2", cum=100, leaves=0, last=60))
    assert o.state == S.FILLED and [h[0] for h in o.history] == ["new_order", "ack", "partial", "fill"]


def test_reject():
    t = OrderTracker()
    t.new_order(new_order_single("c1", "AAPL", "1", 100))
    assert t.on_execution_report(er("c1", "8", "8", leaves=0)).state == S.REJECTED


def test_cancel_chain():
    t = tracker_with_new()
    o = t.cancel(cancel_request("c2", "c1", "AAPL", "1", 100))
    assert o.state == S.PENDING_CANCEL and t.order("c2") is o
    t.on_execution_report(er("c2", "6", "6", orig="c1"))
    o = t.on_execution_report(er("c2", "4", "4", leaves=0, orig="c1"))
    assert o.state == S.CANCELED and o.cl_ord_id == "c2" and o.id_states == {"c1": S.CANCELED, "c2": S.CANCELED}


def test_cancel_rejected_restores_prior_state():
    t = tracker_with_new()
    t.on_execution_report(er("c1", "F", "1", cum=10, leaves=90, last=10))
    t.cancel(cancel_request("c2", "c1", "AAPL", "1", 100))
    o = t.on_cancel_reject(fix.decode(cancel_reject("O1", "c2", "c1", "1").copy().set(34, 1).encode()))
    assert o.state == S.PARTIALLY_FILLED and o.cl_ord_id == "c1"


def test_replace_chain():
    t = tracker_with_new()
    t.on_execution_report(er("c1", "F", "1", cum=30, leaves=70, last=30))
    t.replace(replace_request("c2", "c1", "AAPL", "1", 200, 1_490_000))
    o = t.on_execution_report(er("c2", "E", "E", cum=30, leaves=70, orig="c1"))
    assert o.state == S.PENDING_REPLACE
    o = t.on_execution_report(er("c2", "5", "1", cum=30, leaves=170, orig="c1", qty=200))
    assert (o.state, o.cl_ord_id, o.order_qty, o.price_e4, o.leaves_qty) == (S.PARTIALLY_FILLED, "c2", 200,
                                                                              1_490_000, 170)
    assert o.id_states["c1"] == S.REPLACED and o.chain == ["c1", "c2"]
    o = t.on_execution_report(er("c2", "F", "2", cum=200, leaves=0, last=170, qty=200))
    assert o.state == S.FILLED


def test_fill_while_cancel_pending_then_filled():
    t = tracker_with_new()
    t.cancel(cancel_request("c2", "c1", "AAPL", "1", 100))
    o = t.on_execution_report(er("c1", "F", "6", cum=100, leaves=0, last=100))
    assert o.state == S.FILLED


@pytest.mark.parametrize("steps, match", [
    (lambda t: t.on_execution_report(er("c1", "F", "1", cum=10, leaves=90, last=10)), "partial is impossible in "
                                                                                       "state PENDING_NEW"),
    (lambda t: (t.on_execution_report(er("c1", "8", "8", leaves=0)),
                t.on_execution_report(er("c1", "0", "0"))), r"ack is impossible in state REJECTED \(terminal\)"),
    (lambda t: (t.on_execution_report(er("c1", "0", "0")),
                t.on_execution_report(er("c1", "F", "2", cum=100, leaves=0, last=100)),
                t.cancel(cancel_request("c2", "c1", "AAPL", "1", 100))),
     "cancel_request is impossible in state FILLED"),
    (lambda t: (t.on_execution_report(er("c1", "0", "0")),
                t.on_execution_report(er("c1", "F", "1", cum=120, leaves=0, last=120))), "overfill"),
    (lambda t: (t.on_execution_report(er("c1", "0", "0")),
                t.on_execution_report(er("c1", "F", "1", cum=50, leaves=50, last=40))), "CumQty 50 after a fill of 40"),
    (lambda t: (t.on_execution_report(er("c1", "0", "0")),
                t.on_execution_report(er("c1", "5", "0"))), "Replaced for c1 without its replace request"),
    (lambda t: t.on_execution_report(er("zz", "0", "0")), "unknown ClOrdID"),
    (lambda t: t.new_order(new_order_single("c1", "AAPL", "1", 5)), "duplicate ClOrdID"),
    (lambda t: t.on_execution_report(er("c1", "0", "1")), "OrdStatus '1' disagrees"),
    (lambda t: (t.on_execution_report(er("c1", "0", "0")),
                t.cancel(cancel_request("c2", "c1", "AAPL", "1", 100)),
                t.cancel(cancel_request("c3", "c1", "AAPL", "1", 100))), "not the current ClOrdID|impossible"),
    (lambda t: (t.on_execution_report(er("c1", "0", "0")),
                t.on_cancel_reject(fix.decode(cancel_reject("O1", "c1", "c1", "0").copy().set(34, 1).encode()))),
     "without its request"),
])
def test_impossible_transitions_refused_loudly(steps, match):
    t = OrderTracker()
    t.new_order(new_order_single("c1", "AAPL", "1", 100, 1_500_000))
    with pytest.raises(OrderStateError, match=match):
        steps(t)


def test_terminal_states_allow_nothing_and_every_state_is_reachable():
    assert not (TERMINAL & set(TRANSITIONS))
    reachable = {S.PENDING_NEW} | {v for d in TRANSITIONS.values() for v in d.values() if v} | {S.REPLACED}
    assert reachable == set(S)
