"""Property test of the book stage (amaranth.sim, tiny build): short random message sequences on few
instruments, references and prices -- back-to-back operations on one order included -- give exactly
the golden model's events (``host/bookrx.py``), are exact for the orders kept against the plain
reference book, and never show a negative (wrapped) quantity."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hw.ordertable import BookParams
from tests.hw.test_book import check_kept, kept_stream, model_events, rec, run_book

# 2 sets of 2 ways (4 orders), 8-tick windows, 2 slots: collisions, window losses and recentres are common.
TINY = BookParams(set_bits=1, ways=2, window_bits=3, slots=2)
SLOTS = {0: 1, 1: 2}                       # locate 3 is not tracked
BASE = 1000                                # ticks


@st.composite
def message(draw):
    code = draw(st.sampled_from("AAAFEXDUUC"))
    f = {"stock_locate": draw(st.sampled_from([1, 1, 2, 3])), "order_ref": draw(st.integers(1, 7))}
    if code in "AF":
        f["side"] = draw(st.sampled_from("BBSSX"))         # X: a bad side, rejected
    if code in "AFUC":
        tick = BASE + draw(st.integers(-6, 14))
        f["price"] = tick * 100 + draw(st.sampled_from([0, 0, 0, 0, 0, 50]))   # now and then off the grid
    if code in "AFUECX":
        f["shares"] = draw(st.sampled_from([0, 1, 5, 20, 100, 4_000_000_000]))
    if code == "U":
        f["new_order_ref"] = draw(st.integers(1, 9))
    if code in "EC":
        f["match_number"] = draw(st.integers(1, 1000))
    return code, f


@settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(message(), min_size=1, max_size=32), st.sampled_from([(0.0, 0.0), (0.3, 0.3)]))
def test_random_sequences_match_the_golden_model(msgs, pacing):
    records = [rec(code, seq, timestamp=seq, **f) for seq, (code, f) in enumerate(msgs, 1)]
    got, counters, _ = run_book(TINY, records, SLOTS, stall=pacing[0], gap=pacing[1])
    want, model = model_events(TINY, records, SLOTS)
    assert got == want
    assert counters == dict(model.counters)
    most = TINY.capacity * (2**32 - 1)      # a level or side holds at most this; a wrapped value is above it
    assert all(0 <= e["shares"] <= most and 0 <= e["orders"] <= TINY.capacity for e in got["level"])
    assert all(0 <= t["bid_size"] <= most and 0 <= t["ask_size"] <= most for t in got["tob"])
    if not (counters["rejected"] or counters["duplicate"] or counters["overfill"]) and \
            kept_stream(records, got["lost"])[1] == counters["unknown"]:
        # Clean input (every unknown order is a lost one) has one meaning in the plain reference book (strict).
        check_kept(records, set(SLOTS.values()), got["tob"], got["level"], got["lost"], counters)
