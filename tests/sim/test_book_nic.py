"""The gateware book through the simulated NIC (Verilator) against the software NIC and the reference book.

200,000 generated ITCH messages over 32 instruments, all slotted: every TOB,
BOOK_LOST and LEVEL event of the gateware equals the software NIC's (its book is
``host/bookrx.py``, the reference book behind the gateware's policies), and
for every instrument up to its first lost order, every TOB event and the top 8
levels of each side after every message equal the plain reference book's
(the top 8 are rebuilt from the LEVEL events, which report every level write).
Feeds that overflow the order table and leave the windows are in
``tests/hw/test_book.py`` (small build parameters, amaranth.sim).
"""

import heapq
from collections import defaultdict

import pytest

from host.book import BookSet, TopOfBook
from host.softnic import SoftwareNic
from protocols import itch
from protocols import moldudp64 as mold
from protocols.events import LevelEvent, LostEvent, TobEvent
from sim import moldfeed
from sim.itchfeed import generate_itch

INSTRUMENTS = 32
TOP_N = 8


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


def top(levels: dict, side: str, n: int):
    pick = heapq.nlargest if side == "B" else heapq.nsmallest
    return [(p, *levels[p]) for p in pick(n, levels)]


@pytest.mark.sim
def test_200k_messages_over_32_instruments_match_the_reference_book():
    from sim.gatewarenic import GatewareNic

    messages = generate_itch(200_000, INSTRUMENTS, seed=5)
    packets = mold.packetise(messages, session=moldfeed.SESSION, max_payload=1400)
    frames = [moldfeed._frame(mold.encode_packet(p)) for p in packets]
    locates = list(range(1, INSTRUMENTS + 1))
    want, want_counters = run(SoftwareNic(), frames, locates)
    with GatewareNic() as hw:
        got, counters = run(hw, frames, locates)
    for kind in ("TobEvent", "LostEvent", "LevelEvent"):
        assert got[kind] == want[kind], kind
    assert counters == want_counters
    assert counters["book.messages"] > 190_000 and counters["book.tob"] > 50_000

    # Against the plain reference book: every instrument is exact up to its first lost order.
    first_lost = {}
    for e in got["LostEvent"]:
        first_lost.setdefault(e["instrument"], e["seq"])
    assert len(got["LostEvent"]) == counters["book.lost_collision"] + counters["book.lost_window"]
    exact_until = {loc: first_lost.get(loc, len(messages) + 1) for loc in locates}
    ref = BookSet()
    ref_tob = []
    levels_by_seq = defaultdict(list)
    for e in got["LevelEvent"]:
        levels_by_seq[e["seq"]].append(e)
    mirror = defaultdict(dict)            # (instrument, side) -> price -> (shares, orders), from LEVEL events
    for seq, raw in enumerate(messages, 1):
        msg = itch.decode(raw)
        for ev in ref.apply(msg, seq):
            if isinstance(ev, TopOfBook) and seq < exact_until[ev.instrument]:
                ref_tob.append(ev.as_json())
        for e in levels_by_seq.get(seq, ()):
            book = mirror[e["instrument"], e["side"]]
            if e["orders"]:
                book[e["price"]] = (e["shares"], e["orders"])
            else:
                book.pop(e["price"], None)
        loc = getattr(msg, "stock_locate", 0)
        if loc in exact_until and seq < exact_until[loc] and msg.code in "AFECXDU":
            for side in "BS":
                assert top(mirror[loc, side], side, TOP_N) == ref.levels(loc, side, TOP_N), (seq, loc, side)
    assert [e for e in got["TobEvent"] if e["seq"] < exact_until[e["instrument"]]] == ref_tob
    assert sum(min(v, len(messages)) for v in exact_until.values()) > 0.1 * INSTRUMENTS * len(messages)   # measured: 0.17
