"""Tests of sim/fastfeed.py (the FAST options quote feed) and calarb/fast_cmd.py."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import numpy as np
import pytest

from calarb.fast_cmd import decode_fast_pcap, generate_fast_feed
from models import black_scholes as bs
from protocols.fast import Decoder, Message, ScaledNumber, parse_templates
from protocols.net import parse_udp_frame
from protocols.pcap import read_pcap, write_pcap
from sim import fastfeed

SMALL = dict(updates=400, seed=7, expiries_days=(30, 91), strikes_per_expiry=7, levels=2)


@pytest.fixture(scope="module")
def feed():
    kw = dict(SMALL)
    return fastfeed.generate_fast_feed(kw.pop("updates"), kw.pop("seed"), **kw)


@pytest.fixture(scope="module")
def pcap(tmp_path_factory):
    path = tmp_path_factory.mktemp("fast") / "options.pcap"
    summary = generate_fast_feed(path, SMALL["seed"], updates=SMALL["updates"],
                                 expiries_days=SMALL["expiries_days"],
                                 strikes_per_expiry=SMALL["strikes_per_expiry"], levels=SMALL["levels"])
    return path, summary


def test_pcap_decodes_to_the_generated_messages(feed, pcap):
    path, summary = pcap
    stats = Counter()
    lines = list(decode_fast_pcap(path, fastfeed.TEMPLATES_PATH, stats=stats))
    assert stats["errors"] == 0 and stats["messages"] == len(feed.messages) == summary["messages"]
    ts = parse_templates(fastfeed.TEMPLATES_PATH)
    expected = [Message(ts[name].name, ts[name].id, fields).as_json() for _, name, fields in feed.messages]
    assert [{k: v for k, v in line.items() if k != "frame"} for line in lines] == expected


def test_datagrams_fit_and_decode_on_their_own(feed):
    ts = parse_templates(fastfeed.TEMPLATES_PATH)
    assert all(len(p) <= fastfeed.MAX_PAYLOAD for _, p, _ in feed.datagrams)
    frames = fastfeed.frames(feed)
    for (t, payload, count), (t2, frame) in zip(feed.datagrams[::7], frames[::7]):
        d = parse_udp_frame(frame)
        assert (d.dst_port, d.payload, t) == (fastfeed.FEED_PORT, payload, t2)
        assert len(Decoder(ts).decode_all(payload)) == count        # a fresh decoder: no state needed


def test_feed_is_seeded():
    a = fastfeed.generate_fast_feed(50, 3, expiries_days=(30,), strikes_per_expiry=5)
    b = fastfeed.generate_fast_feed(50, 3, expiries_days=(30,), strikes_per_expiry=5)
    c = fastfeed.generate_fast_feed(50, 4, expiries_days=(30,), strikes_per_expiry=5)
    assert a.datagrams == b.datagrams and a.datagrams != c.datagrams


def book_from(feed):
    """Replay the incremental refreshes: (security, side, level) -> (price, size)."""
    book = {}
    for _, name, fields in feed.messages:
        if name != "MDIncRefresh":
            continue
        for e in fields["MDEntries"]:
            key = (e["SecurityID"], e["MDEntryType"], e["MDPriceLevel"])
            if e["MDUpdateAction"] == fastfeed.DELETE:
                assert key in book, f"delete of a level that is not there: {key}"
                del book[key]
            elif e["MDUpdateAction"] == fastfeed.NEW:
                assert key not in book, f"new level already there: {key}"
                book[key] = (e["MDEntryPx"].to_decimal(), e["MDEntrySize"])
            else:
                assert key in book, f"change of a level that is not there: {key}"
                book[key] = (e["MDEntryPx"].to_decimal(), e["MDEntrySize"])
    return book


def test_quotes_are_consistent_and_follow_the_model_smile(feed):
    book = book_from(feed)
    spot = feed.spot_path[-1]
    t_years = (feed.messages[-1][0] - fastfeed.START_NS) / 1e9 / (365 * 24 * 3600)
    rate, div = 0.03, 0.01
    near, far = [], []
    for s in feed.series:
        bid = book.get((s.security_id, fastfeed.BID, 1))
        ask = book[(s.security_id, fastfeed.OFFER, 1)]
        if bid is None:
            continue
        assert bid[0] < ask[0]
        b2 = book.get((s.security_id, fastfeed.BID, 2))
        assert b2 is None or b2[0] < bid[0]
        assert book[(s.security_id, fastfeed.OFFER, 2)][0] > ask[0]
        T = s.expiry_days / 365 - t_years
        mid = float(bid[0] + ask[0]) / 2
        vega = float(bs.vega(spot, s.strike, T, rate, div, s.iv))
        if vega * 0.01 > 0.05:           # a cent is small against a vol point here
            iv_mid = float(bs.implied_vol(mid, spot, s.strike, T, rate, div, s.is_call))
            assert abs(iv_mid - s.iv) < 0.01, (s.symbol, iv_mid, s.iv)
        x = abs(math.log(s.strike / (spot * math.exp((rate - div) * T)))) / math.sqrt(T)
        (near if x < 0.1 else far).append(float(ask[0] - bid[0]) / max(vega, 1e-9))
    assert near and far and np.median(far) > np.median(near)     # wider (in vol) away from the money
    # the smile: the lowest-strike put of an expiry has a higher vol than the one nearest the money
    for days in SMALL["expiries_days"]:
        puts = sorted((s for s in feed.series if s.expiry_days == days and not s.is_call), key=lambda s: s.strike)
        atm = min(puts, key=lambda s: abs(s.strike - feed.spot_path[0]))
        assert puts[0].iv > atm.iv


def test_security_definitions_describe_every_series(feed):
    defs = [f for _, name, f in feed.messages if name == "SecurityDefinition"]
    assert [d["SecurityID"] for d in defs] == [s.security_id for s in feed.series]
    for d, s in zip(defs, feed.series):
        assert d["Symbol"] == s.symbol and d["StrikePrice"] == ScaledNumber.from_decimal(f"{s.strike:.2f}")
        assert d["PutOrCall"] == int(s.is_call) and d["Underlying"] == fastfeed.UNDERLYING


def test_a_corrupt_datagram_is_reported_and_the_next_ones_decode(pcap, tmp_path):
    path, _ = pcap
    recs = list(read_pcap(path))
    frame = bytearray(recs[3].data)
    frame[42 + 1] = 0x7f          # UDP payload starts at 42: the template id becomes unterminated
    frame[40:42] = b"\x00\x00"    # no UDP checksum
    recs[3] = dataclasses.replace(recs[3], data=bytes(frame))
    bad = tmp_path / "bad.pcap"
    write_pcap(bad, ((r.ts_ns, r.data) for r in recs))
    stats = Counter()
    lines = list(decode_fast_pcap(bad, fastfeed.TEMPLATES_PATH, stats=stats))
    errors = [x for x in lines if "error" in x]
    assert len(errors) == 1 and errors[0]["frame"] == 3 and errors[0]["code"] in ("D9", "R6", "D2")
    assert max(x["frame"] for x in lines) == len(recs) - 1


def test_cached_feed_is_the_generated_feed_and_is_reused(tmp_path):
    kw = dict(expiries_days=(30,), strikes_per_expiry=4, levels=2)
    a = fastfeed.cached_fast_feed(60, 8, cache_dir=tmp_path, **kw)
    files = list(tmp_path.glob("*.pkl"))
    assert len(files) == 1
    b = fastfeed.cached_fast_feed(60, 8, cache_dir=tmp_path, **kw)
    assert a.datagrams == b.datagrams == fastfeed.generate_fast_feed(60, 8, **kw).datagrams
    assert list(tmp_path.glob("*.pkl")) == files
    fastfeed.cached_fast_feed(60, 9, cache_dir=tmp_path, **kw)          # other parameters, other entry
    assert len(list(tmp_path.glob("*.pkl"))) == 2
