"""Smart order routing (host/routing.py): touch liquidity, latency, residual, stale and foreign quotes."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host.config import RoutingConfig, VenueConfig
from host.routing import RoutingError, rank_venues, route
from host.types import ChildOrder, OrderIntent, Side, TopOfBook

CFG = RoutingConfig(venues=[VenueConfig("XNAS", 40.0), VenueConfig("BATS", 60.0), VenueConfig("IEX", 350.0)])


def tob(bid, bsz, ask, asz, t=0, instrument="A"):
    return TopOfBook(instrument, bid, bsz, ask, asz, t, 1)


def test_buy_takes_the_best_ask_first_then_the_next():
    quotes = {"XNAS": tob(999_900, 100, 1_000_100, 300), "BATS": tob(999_900, 100, 1_000_000, 200)}
    kids = route(OrderIntent("A", Side.BUY, 400, 1_000_200), quotes, CFG)
    assert kids == [ChildOrder("BATS", "A", Side.BUY, 200, 1_000_000), ChildOrder("XNAS", "A", Side.BUY, 200, 1_000_100)]


def test_sell_takes_the_best_bid_and_rests_the_residual_on_the_fastest_venue():
    quotes = {"XNAS": tob(999_900, 100, 1_000_100, 300), "BATS": tob(1_000_000, 50, 1_000_200, 10)}
    kids = route(OrderIntent("A", Side.SELL, 400, 999_900), quotes, CFG)
    assert kids == [ChildOrder("BATS", "A", Side.SELL, 50, 1_000_000), ChildOrder("XNAS", "A", Side.SELL, 100, 999_900),
                    ChildOrder("XNAS", "A", Side.SELL, 250, 999_900, resting=True)]


def test_equal_prices_go_to_the_faster_venue():
    quotes = {"IEX": tob(0, 0, 1_000_000, 100), "BATS": tob(0, 0, 1_000_000, 100), "XNAS": tob(0, 0, 1_000_000, 100)}
    assert [v for v, _, _ in rank_venues(OrderIntent("A", Side.BUY, 1, 1_000_000), quotes, CFG)] == ["XNAS", "BATS", "IEX"]


def test_latency_cost_can_outweigh_a_better_price():
    cfg = RoutingConfig(venues=CFG.venues, latency_cost_e4_per_us=1.0)
    # IEX is 100 better but 310 us slower than XNAS: effective 1_000_250 against 1_000_040
    quotes = {"IEX": tob(0, 0, 999_900, 100), "XNAS": tob(0, 0, 1_000_000, 100)}
    assert route(OrderIntent("A", Side.BUY, 100, 1_001_000), quotes, cfg)[0].venue == "XNAS"
    assert route(OrderIntent("A", Side.BUY, 100, 1_001_000), quotes, CFG)[0].venue == "IEX"


def test_limit_stale_quotes_and_one_sided_books_are_not_taken():
    quotes = {"XNAS": tob(0, 0, 1_000_300, 100), "BATS": tob(0, 0, 1_000_000, 100, t=0),
              "IEX": tob(0, 0, 0, 0, t=5_000_000_000)}
    kids = route(OrderIntent("A", Side.BUY, 100, 1_000_200), quotes, CFG, now_ns=5_000_000_000)
    assert kids == [ChildOrder("XNAS", "A", Side.BUY, 100, 1_000_200, resting=True)]


def test_foreign_and_unconfigured_quotes_are_refused():
    with pytest.raises(RoutingError, match="unconfigured venue 'ARCA'"):
        route(OrderIntent("A", Side.BUY, 1, 1), {"ARCA": tob(1, 1, 2, 1)}, CFG)
    with pytest.raises(RoutingError, match="quote for B"):
        route(OrderIntent("A", Side.BUY, 1, 1), {"XNAS": tob(1, 1, 2, 1, instrument="B")}, CFG)


venue_quotes = st.dictionaries(st.sampled_from(["XNAS", "BATS", "IEX"]),
                               st.tuples(st.integers(990_000, 1_010_000), st.integers(0, 500),
                                         st.integers(0, 20_000), st.integers(0, 500)))


@settings(max_examples=300, deadline=None)
@given(venue_quotes, st.sampled_from([Side.BUY, Side.SELL]), st.integers(1, 2000), st.integers(990_000, 1_010_000),
       st.floats(0, 5))
def test_routing_conserves_quantity_and_respects_the_touch(raw, side, qty, limit, cost):
    cfg = RoutingConfig(venues=CFG.venues, latency_cost_e4_per_us=cost)
    quotes = {v: tob(b, bs, b + spread, a_s) for v, (b, bs, spread, a_s) in raw.items()}
    kids = route(OrderIntent("A", side, qty, limit), quotes, cfg)
    assert sum(k.quantity for k in kids) == qty and all(k.quantity > 0 for k in kids)
    assert sum(k.resting for k in kids) <= 1 and (not kids[-1].resting or kids[-1].limit_price == limit)
    for k in kids:
        if k.resting:
            continue
        q = quotes[k.venue]
        if side is Side.BUY:
            assert k.limit_price == q.ask_price <= limit and k.quantity <= q.ask_size
        else:
            assert k.limit_price == q.bid_price >= limit and k.quantity <= q.bid_size
    taken = [k.venue for k in kids if not k.resting]
    assert len(taken) == len(set(taken))
