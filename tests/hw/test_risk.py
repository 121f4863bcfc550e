"""The risk stage (through the whole path, hw/tick2trade.py): exact basis-point band, duplicate ClOrdID,
position limits with open orders and fills written back, token refill, the reject rule tripping the kill switch."""

from host.ordermodel import BUY, Entry, Limits
from tests.hw.test_tick2trade import MAP, PRICE, outcome, run_steps, simple_model, tob

REARM = [("write", "trigger.entry_price", PRICE), ("write", "trigger.entry_qty", 100),
         ("write", "trigger.entry_ctl", 1 | ord("3") << 8), ("write", "trigger.entry_write", 0)]


def fire(seq, ask=PRICE):
    return REARM + [("tob", tob(0, 1, ask, 5, 100, seq))]


def test_basis_point_band_is_exact():
    # 20 bp of 1,000,000 is 2,000 exactly: 1,002,000 passes, 1,002,001 does not (|p - ref| * 10^4 > bp * ref)
    model = simple_model(band_ref=PRICE, band_width=20, band_bps=True)
    model.entries[0, BUY] = Entry(price=PRICE + 5000, max_qty=100, tif="3", armed=True)
    steps = [("tob", tob(0, 1, PRICE + 2000, 5, 100, 1))] + [
        ("write", "trigger.entry_price", PRICE + 5000), ("write", "trigger.entry_qty", 100),
        ("write", "trigger.entry_ctl", 1 | ord("3") << 8), ("write", "trigger.entry_write", 0),
        ("tob", tob(0, 1, PRICE + 2001, 5, 100, 2))]
    assert [outcome(g) for g in run_steps(model, steps)] == ["order", "reject:band"]


def test_duplicate_clordid_after_a_rewind_until_a_new_epoch():
    model = simple_model()
    model.clordid = 5
    steps = (fire(1) + [("write", "risk.clordid_next", 5)] + fire(2) + [("write", "risk.clordid_next", 6)] + fire(3)
             + [("write", "risk.clordid_next", 2)] + fire(4) + [("write", "risk.clordid_epoch", 1)] + fire(5))
    got = run_steps(model, steps)
    assert [outcome(g) for g in got] == ["order", "reject:dup", "order", "reject:dup", "order"]
    assert [g[0][2]["clordid"] for g in got if outcome(g) == "order"] == [5, 6, 2]


def test_position_limit_counts_open_orders_and_fills():
    model = simple_model(long_limit=200)
    model.position[0] = 50
    steps = (fire(1) + fire(2) + [("write", "risk.fill", 50 | 50 << 32), ("write", "risk.fill_write", 0)]
             + fire(3) + fire(4))
    # 50 + 0 open + 100 = 150 passes; 50 + 100 open + 100 = 250 > 200; 50 filled and 50 released: position
    # 100, nothing open, 100 + 100 = 200 passes; then 100 + 100 open + 100 = 300 > 200
    assert [outcome(g) for g in run_steps(model, steps)] == ["order", "reject:long", "order", "reject:long"]


def test_token_bucket_refills():
    model = simple_model()
    steps = ([("write", "risk.throttle_inst", 1 | 200 << 16)] + fire(1) + fire(2) + [("wait", 220)] + fire(3))
    assert [outcome(g) for g in run_steps(model, steps)] == ["order", "reject:throttle", "order"]


def test_reject_rule_trips_the_kill_switch_until_cleared():
    model = simple_model(max_qty=10)
    steps = ([("write", "risk.reject_rule", 100000 | 2 << 32)] + fire(1) + fire(2) + fire(3)
             + [("write", "risk.lim_qty", 10 ** 6), ("write", "risk.lim_notional", 10 ** 15),
                ("write", "risk.lim_band", PRICE | 10 ** 6 << 32), ("write", "risk.lim_position", 10 ** 6 | 10 ** 6 << 32),
                ("write", "risk.limit_write", 0)] + fire(4)
             + [("write", "risk.reject_rule", 0), ("write", "risk.kill_clear", 1 << 32)] + fire(5))
    assert [outcome(g) for g in run_steps(model, steps)] == ["reject:qty", "reject:qty", "reject:killed",
                                                             "reject:killed", "order"]
