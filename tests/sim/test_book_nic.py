"""The gateware book through the simulated NIC (Verilator) against the software NIC and the reference book.

* 200,000 generated ITCH messages over 32 instruments, all slotted, with the
  default build: nothing is lost, every TOB, BOOK_LOST and LEVEL event and every
  counter of the gateware equals the software NIC's (its book is
  ``host/bookrx.py``, the golden model of the gateware's policies), and every
  TOB event and the top 8 levels of each side after every message equal the
  plain reference book's (``host/book.py``; the top 8 are rebuilt from the LEVEL
  events, which report every level write).
* A feed with more live orders than the order table holds, and a feed whose
  prices leave the windows: the gateware reports exactly the orders the policy
  predicts (equal to the software NIC's), and on the messages it kept it is exact
  against the plain reference book (``tests.hw.test_book.check_kept``, which does
  not use the golden model).

Feed volatility: the generator's default (``fair_move=0.3``, a tick move every
few messages of an instrument) makes 200,000 messages a very volatile day. The
main feed uses ``fair_move=0.002``: a name with 5 million messages a day then
moves about 100 ticks ($1) a day, and 200,000 messages over 32 names are a few
minutes of a real session (a few ticks per name). ``book_capacity=128`` caps the
live orders per instrument (the generator keeps stale deep orders until the cap;
about 3,900 live orders at the peak, a quarter of the table).
"""

from collections import defaultdict

import pytest

from host.softnic import SoftwareNic
from protocols import itch
from protocols import moldudp64 as mold
from sim import moldfeed
from sim.itchfeed import generate_itch
from tests.hw.test_book import check_kept

INSTRUMENTS = 32
LOCATES = list(range(1, INSTRUMENTS + 1))


def configure(nic, locates):
    nic.write("events.control", 4 | 8 | 16)
    for slot, locate in enumerate(locates):
        nic.write("book.slot", locate | slot << 16 | 1 << 24)


def run(nic, frames, locates):
    configure(nic, locates)
    nic.deliver(frames)
    events = nic.poll()
    by_kind = defaultdict(list)
    for e in events:
        by_kind[type(e).__name__].append(e.as_json())
    return by_kind, nic.counters("book", "events")


@pytest.fixture(scope="module")
def hw():
    """One simulated NIC for the module (opening one exports the design to check the cached build)."""
    from sim.gatewarenic import GatewareNic

    with GatewareNic() as nic:
        yield nic


def frames_of(messages):
    packets = mold.packetise(messages, session=moldfeed.SESSION, max_payload=1400)
    return [moldfeed._frame(mold.encode_packet(p)) for p in packets]


def both_nics(hw, messages, locates=LOCATES):
    """The gateware's events and counters (after a reset), checked equal to the software NIC's."""
    frames = frames_of(messages)
    want, want_counters = run(SoftwareNic(), frames, locates)
    hw.reset()
    got, counters = run(hw, frames, locates)
    for kind in ("TobEvent", "LostEvent", "LevelEvent"):
        assert got[kind] == want[kind], kind
    assert counters == want_counters
    return got, counters


def check_against_reference(messages, got, counters, locates=LOCATES):
    records = [dict(itch.decoded_record(m), seq=i) for i, m in enumerate(messages, 1)]
    book = {k.split(".", 1)[1]: v for k, v in counters.items() if k.startswith("book.")}
    return check_kept(records, set(locates), got["TobEvent"], got["LevelEvent"], got["LostEvent"], book)


@pytest.mark.sim
def test_200k_messages_over_32_instruments_match_the_reference_book(hw):
    messages = generate_itch(200_000, INSTRUMENTS, seed=5, fair_move=0.002, book_capacity=128)
    got, counters = both_nics(hw, messages)
    assert counters["book.messages"] > 190_000 and counters["book.tob"] > 50_000
    assert counters["book.lost_collision"] == counters["book.lost_window"] == counters["book.unknown"] == 0
    assert got["LostEvent"] == []
    assert check_against_reference(messages, got, counters) == len(messages)


@pytest.mark.sim
def test_a_feed_that_overflows_the_order_table_is_exact_for_the_orders_kept(hw):
    # Adds outnumber removals 3:1 and each instrument may hold 1,024 live orders: over 16,384 live at the end.
    mix = {"A": 0.6, "F": 0.05, "D": 0.12, "X": 0.04, "E": 0.04, "C": 0.01, "U": 0.1, "P": 0.04}
    messages = generate_itch(45_000, INSTRUMENTS, seed=11, fair_move=0.002, book_capacity=1024, mix=mix)
    got, counters = both_nics(hw, messages)
    assert counters["book.lost_collision"] > 500 and counters["book.lost_window"] == 0
    assert counters["book.unknown"] > 100
    check_against_reference(messages, got, counters)


@pytest.mark.sim
def test_a_feed_that_leaves_the_windows_is_exact_for_the_orders_kept(hw):
    # A tick move at every message: prices walk out of the 128-tick windows placed by each side's first add.
    messages = generate_itch(15_000, INSTRUMENTS, seed=12, fair_move=1.0, book_capacity=64)
    got, counters = both_nics(hw, messages)
    assert counters["book.lost_window"] > 100 and counters["book.lost_collision"] == 0
    assert counters["book.unknown"] > 100
    check_against_reference(messages, got, counters)


@pytest.mark.sim
def test_a_reset_clears_the_book(hw):
    """Block RAM keeps its contents across a reset: the book sweeps it, so the same feed gives the same events."""
    messages = generate_itch(3_000, 8, seed=13, fair_move=0.002)
    frames = frames_of(messages)
    hw.reset()
    first = run(hw, frames, LOCATES[:8])
    hw.reset()
    assert run(hw, frames, LOCATES[:8]) == first
    assert first[1]["book.adds"] > 1000 and first[1]["book.duplicate"] == 0
