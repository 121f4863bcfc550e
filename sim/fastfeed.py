"""A realistic options quote feed in FAST 1.1 (templates in protocols/spec/fast/options.xml).

:func:`generate_fast_feed` quotes an option chain on one underlying (several
expiries, calls and puts at strikes around the forward) the way a market
maker streaming to a venue would:

* the volatility surface is a Heston model (:mod:`sim.optionchain`,
  :data:`~sim.optionchain.DEFAULT_PARAMS`): each series keeps the implied
  volatility of its Heston price, so the quotes trace the model's smile and
  skew; prices follow the underlying, which moves as a geometric Brownian
  motion, through Black-Scholes at that volatility (``models.black_scholes``);
* the spread is a vega-weighted volatility spread that widens with
  ``|ln(K/F)| / sqrt(T)`` (away from the money), on a one-cent tick with a
  one-tick minimum; ``levels`` price levels per side one tick apart, with
  random sizes growing with depth; a bid that would be zero is deleted;
* the feed starts with a security definition per series and a snapshot of
  every level as ``new`` entries, then sends incremental refreshes
  (``change``, ``delete``, ``new``) for a few series at a time, at Poisson
  times, plus a heartbeat now and then.

Messages are packed into UDP datagrams of at most :data:`MAX_PAYLOAD`
bytes and every FAST dictionary is reset at the start of each datagram (as
the template file says), then written as Ethernet/IPv4/UDP frames to
:data:`FEED_IP`:\\ :data:`FEED_PORT` in a nanosecond pcap.

The quote updates are drawn and priced in one vectorised pass (one
Black-Scholes call for the whole feed); encoding is the codec's.
:func:`cached_fast_feed` keeps a generated feed under ``build/fastfeed/``,
keyed by its parameters and the generator's sources.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from models import black_scholes as bs
from protocols.fast import Encoder, ScaledNumber, TemplateSet, parse_templates
from protocols.net import build_udp_frame
from protocols.pcap import write_pcap
from sim.optionchain import DEFAULT_PARAMS, generate_chain

TEMPLATES_PATH = Path(__file__).resolve().parent.parent / "protocols" / "spec" / "fast" / "options.xml"
"""The feed's template file."""
FEED_IP = "233.54.12.2"
FEED_PORT = 26410
SRC_IP = "10.0.0.3"
SRC_PORT = 40010
MAX_PAYLOAD = 1400
"""Largest UDP payload written (bytes): whole FAST messages only."""
UNDERLYING = "CALB"
TRADE_DATE = date(2026, 1, 2)
START_NS = 1_767_364_200_000_000_000
"""2026-01-02 14:30:00 UTC (9:30 New York), when the feed starts."""
ENTRIES_PER_MESSAGE = 16
NEW, CHANGE, DELETE = 0, 1, 2
BID, OFFER = "0", "1"


@dataclass(frozen=True)
class OptionSeries:
    """One listed option: its security id, OCC-style symbol, expiry, strike
    (dollars) and type, and the model implied volatility it is quoted at."""

    security_id: int
    symbol: str
    expiry_days: float
    maturity_date: int
    strike: float
    is_call: bool
    iv: float


@dataclass
class FastFeed:
    """A generated feed: the series, every message as ``(ts_ns, template, fields)``
    in send order, and the UDP payloads as ``(ts_ns, payload, message count)``."""

    series: list[OptionSeries]
    messages: list[tuple[int, str, dict]] = field(default_factory=list)
    datagrams: list[tuple[int, bytes, int]] = field(default_factory=list)
    spot_path: list[float] = field(default_factory=list)


def occ_symbol(underlying: str, maturity: date, is_call: bool, strike: float) -> str:
    """OCC option symbol: root, YYMMDD, C/P, strike times 1000 in 8 digits."""
    return f"{underlying}{maturity:%y%m%d}{'C' if is_call else 'P'}{round(strike * 1000):08d}"


def make_series(chain) -> list[OptionSeries]:
    iv = bs.implied_vol(chain.price, chain.spot, chain.strike, chain.expiry_years, chain.rate, chain.dividend,
                        chain.is_call)
    iv = np.where(np.isfinite(iv), iv, math.sqrt(DEFAULT_PARAMS.theta))
    out = []
    for i in range(chain.strike.size):
        mat = TRADE_DATE + timedelta(days=int(chain.expiry_days[i]))
        out.append(OptionSeries(i + 1, occ_symbol(UNDERLYING, mat, bool(chain.is_call[i]), float(chain.strike[i])),
                                float(chain.expiry_days[i]), int(f"{mat:%Y%m%d}"), float(chain.strike[i]),
                                bool(chain.is_call[i]), float(iv[i])))
    return out


class _Quoter:
    """Two-sided quotes in cents for every series at a given spot and time."""

    def __init__(self, series, rate, dividend, vol_spread=0.002, wing_spread=0.004):
        self.K = np.array([s.strike for s in series])
        self.T0 = np.array([s.expiry_days for s in series]) / 365.0
        self.iv = np.array([s.iv for s in series])
        self.call = np.array([s.is_call for s in series])
        self.r, self.q = rate, dividend
        self.vol_spread, self.wing_spread = vol_spread, wing_spread

    def quotes(self, spot: float, t_years: float, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.quotes_at(np.full(len(idx), spot), np.full(len(idx), t_years), idx)

    def quotes_at(self, spot: np.ndarray, t_years: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Quotes of series ``idx[j]`` at spot ``spot[j]`` and time ``t_years[j]`` (vectorised)."""
        K, T, iv, call = self.K[idx], np.maximum(self.T0[idx] - t_years, 1e-4), self.iv[idx], self.call[idx]
        price = bs.price(spot, K, T, self.r, self.q, iv, call)
        F = spot * np.exp((self.r - self.q) * T)
        x = np.abs(np.log(K / F)) / np.sqrt(T)
        spread = np.maximum(0.01, bs.vega(spot, K, T, self.r, self.q, iv) * (self.vol_spread + self.wing_spread * x))
        bid = np.floor((price - 0.5 * spread) * 100 + 1e-9).astype(np.int64)
        ask = np.ceil((price + 0.5 * spread) * 100 - 1e-9).astype(np.int64)
        ask = np.maximum(ask, np.maximum(bid, 0) + 1)
        return bid, ask


def _levels(bid: int, ask: int, levels: int, sizes: np.ndarray) -> dict:
    """Book levels ``(side, level) -> (price_cents, size)``; bids at or under 0 are absent."""
    out = {}
    for lv in range(levels):
        b = bid - lv
        if b > 0:
            out[(BID, lv + 1)] = (b, int(sizes[2 * lv]))
        out[(OFFER, lv + 1)] = (ask + lv, int(sizes[2 * lv + 1]))
    return out


def _entry(action: int, side: str, sid: int, rpt: int, level: int, px: int | None, size: int | None) -> dict:
    return {"MDUpdateAction": action, "MDEntryType": side, "SecurityID": sid, "RptSeq": rpt,
            "MDPriceLevel": level, "MDEntryPx": None if px is None else ScaledNumber(-2, px),
            "MDEntrySize": size}


def generate_fast_feed(updates: int = 5000, seed: int = 1, *, expiries_days=(30, 60, 91, 182),
                       strikes_per_expiry: int = 11, levels: int = 2, spot: float = 100.0,
                       rate: float = 0.03, dividend: float = 0.01, spot_vol: float | None = None,
                       mean_gap_ms: float = 20.0, heartbeat_every: int = 500,
                       templates: TemplateSet | None = None) -> FastFeed:
    """Generate a seeded feed of ``updates`` quote-update events after the opening
    definitions and snapshot (see the module docstring), and encode it."""
    if updates < 0 or strikes_per_expiry < 1 or levels < 1:
        raise ValueError("updates >= 0, strikes_per_expiry >= 1 and levels >= 1 are needed")
    rng = np.random.default_rng(seed)
    chain = generate_chain(DEFAULT_PARAMS, spot=spot, rate=rate, dividend=dividend, expiries_days=expiries_days,
                           strikes_per_expiry=strikes_per_expiry, both_types=True, seed=seed)
    series = make_series(chain)
    quoter = _Quoter(series, rate, dividend)
    n = len(series)
    feed = FastFeed(series)
    sigma = math.sqrt(DEFAULT_PARAMS.v0) if spot_vol is None else spot_vol
    seq = 0
    ts = START_NS
    rpt = np.zeros(n + 1, dtype=np.int64)

    def header() -> dict:
        nonlocal seq
        seq += 1
        return {"MsgSeqNum": seq, "SendingTime": ts}

    batches: list[tuple[int, list[tuple[str, dict]]]] = []
    defs = []
    for s in series:
        # fixed width, so the tail operator only ever sends the changed end
        desc = f"{UNDERLYING} {s.maturity_date} {'C' if s.is_call else 'P'} {s.strike:09.3f} \u00b7 {s.iv:.1%} vol"
        defs.append(("SecurityDefinition", {
            **header(), "MessageType": "d", "SecurityID": s.security_id, "Symbol": s.symbol,
            "Underlying": UNDERLYING, "MaturityDate": s.maturity_date,
            "StrikePrice": ScaledNumber.from_decimal(f"{s.strike:.2f}"), "PutOrCall": int(s.is_call),
            "MinPriceIncrement": ScaledNumber(-2, 1), "Currency": "USD", "SecurityDesc": desc}))
    batches.append((ts, defs))

    def entries_message(entries: list[dict]) -> list[tuple[str, dict]]:
        out = []
        for i in range(0, len(entries), ENTRIES_PER_MESSAGE):
            out.append(("MDIncRefresh", {**header(), "MessageType": "X",
                                         "MDEntries": entries[i:i + ENTRIES_PER_MESSAGE]}))
        return out

    book: dict[int, dict] = {}
    idx_all = np.arange(n)
    bid, ask = quoter.quotes(spot, 0.0, idx_all)
    entries = []
    for i in idx_all:
        sid = int(i) + 1
        book[sid] = _levels(int(bid[i]), int(ask[i]), levels, rng.integers(10, 200, 2 * levels) * np.repeat(
            np.arange(1, levels + 1), 2))
        for (side, lv), (px, size) in sorted(book[sid].items()):
            rpt[sid] += 1
            entries.append(_entry(NEW, side, sid, int(rpt[sid]), lv, px, size))
    ts += 1_000_000
    batches.append((ts, entries_message(entries)))

    # Every random draw of the quote updates at once (vectorised: one Black-Scholes call for the
    # whole feed), then a loop that only diffs the books.
    gaps_s = rng.exponential(mean_gap_ms / 1000.0, updates)
    normals = rng.standard_normal(updates)
    ks = np.minimum(rng.integers(1, 7, updates), n)
    order = np.argsort(rng.random((updates, n)), axis=1)
    dt = gaps_s / (252 * 6.5 * 3600)
    S_path = spot * np.exp(np.cumsum(-0.5 * sigma * sigma * dt + sigma * np.sqrt(dt) * normals))
    t_path = np.cumsum(gaps_s) / (365 * 24 * 3600)
    ts_path = ts + np.cumsum(np.maximum(1000, (gaps_s * 1e9).astype(np.int64)))
    feed.spot_path.append(spot)
    feed.spot_path.extend(S_path.tolist())
    step_of = np.repeat(np.arange(updates), ks)
    idx_all = np.concatenate([np.sort(order[i, :ks[i]]) for i in range(updates)]) if updates else \
        np.zeros(0, dtype=np.int64)
    bids, asks = quoter.quotes_at(S_path[step_of], t_path[step_of], idx_all)
    m2 = 2 * levels
    fresh = rng.integers(10, 200, (idx_all.size, m2)) * np.tile(np.repeat(np.arange(1, levels + 1), 2), 1)
    churn = rng.random((idx_all.size, m2)) < 0.3
    moves = rng.integers(-50, 51, (idx_all.size, m2))
    bids, asks, idx_l = bids.tolist(), asks.tolist(), idx_all.tolist()
    keys = [(side, lv) for lv in range(1, levels + 1) for side in (BID, OFFER)]
    pair = 0
    for step in range(updates):
        ts = int(ts_path[step])
        entries = []
        for _ in range(int(ks[step])):
            i = idx_l[pair]
            sid = i + 1
            old = book[sid]
            sizes = np.array([old[key][1] if key in old else fresh[pair, j] for j, key in enumerate(keys)])
            sizes = np.where(churn[pair], np.maximum(1, sizes + moves[pair]), sizes)
            new = _levels(bids[pair], asks[pair], levels, sizes)
            pair += 1
            for key in sorted(set(old) | set(new)):
                side, lv = key
                if key not in new:
                    rpt[sid] += 1
                    entries.append(_entry(DELETE, side, sid, int(rpt[sid]), lv, old[key][0], None))
                elif key not in old:
                    rpt[sid] += 1
                    entries.append(_entry(NEW, side, sid, int(rpt[sid]), lv, *new[key]))
                elif new[key] != old[key]:
                    rpt[sid] += 1
                    entries.append(_entry(CHANGE, side, sid, int(rpt[sid]), lv, *new[key]))
            book[sid] = new
        msgs = entries_message(entries) if entries else []
        if heartbeat_every and (step + 1) % heartbeat_every == 0:
            msgs.append(("Heartbeat", {**header(), "MessageType": "0"}))
        if msgs:
            batches.append((ts, msgs))

    encode_feed(feed, batches, templates or parse_templates(TEMPLATES_PATH))
    return feed


def encode_feed(feed: FastFeed, batches, templates: TemplateSet, max_payload: int = MAX_PAYLOAD) -> None:
    """Encode ``batches`` of ``(ts_ns, [(template, fields), ...])`` into datagrams of
    whole messages, resetting the dictionaries at the start of every datagram."""
    enc = Encoder(templates)
    for ts, msgs in batches:
        payload = bytearray()
        count = 0
        enc.reset()
        for name, fields in msgs:
            b = enc.encode(name, fields)
            if payload and len(payload) + len(b) > max_payload:
                feed.datagrams.append((ts, bytes(payload), count))
                payload, count = bytearray(), 0
                enc.reset()
                b = enc.encode(name, fields)
            if len(b) > max_payload:
                raise ValueError(f"a {name} message of {len(b)} bytes does not fit a datagram")
            payload += b
            count += 1
            feed.messages.append((ts, name, fields))
        if payload:
            feed.datagrams.append((ts, bytes(payload), count))


def frames(feed: FastFeed) -> list[tuple[int, bytes]]:
    """``(ts_ns, Ethernet frame)`` for every datagram, to the feed's group and port."""
    return [(ts, build_udp_frame(p, dst_ip=FEED_IP, src_ip=SRC_IP, dst_port=FEED_PORT, src_port=SRC_PORT,
                                 ident=i & 0xFFFF))
            for i, (ts, p, _) in enumerate(feed.datagrams)]


def write_fast_pcap(path: str | os.PathLike, feed: FastFeed) -> int:
    """Write the feed's frames to a nanosecond pcap (atomically); returns the frame count."""
    return write_pcap(path, frames(feed))


CACHE_DIR = Path(__file__).resolve().parent.parent / "build" / "fastfeed"


def _sources_digest() -> str:
    import hashlib

    h = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    for rel in ("sim/fastfeed.py", "sim/optionchain.py", "protocols/fast/codec.py", "protocols/fast/templates.py",
                "models/black_scholes.py"):
        h.update((root / rel).read_bytes())
    h.update(TEMPLATES_PATH.read_bytes())
    return h.hexdigest()[:16]


def cache_key(updates: int, seed: int, **kw) -> str:
    """The cache key of a feed: its parameters and the sources that shape it."""
    import hashlib

    params = repr((updates, seed, sorted(kw.items())))
    return hashlib.sha256(f"{params}|{_sources_digest()}".encode()).hexdigest()[:20]


def cached_fast_feed(updates: int = 5000, seed: int = 1, cache_dir: Path | None = None, **kw) -> FastFeed:
    """:func:`generate_fast_feed`, kept as a pickle under ``build/fastfeed/`` keyed by the parameters
    and the generator's sources, so a rerun with the same arguments loads it instead."""
    import pickle

    d = Path(cache_dir or CACHE_DIR)
    path = d / f"{cache_key(updates, seed, **kw)}.pkl"
    if path.exists():
        try:
            return pickle.loads(path.read_bytes())
        except Exception:          # a damaged cache file is regenerated
            pass
    feed = generate_fast_feed(updates, seed, **kw)
    d.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(pickle.dumps(feed, protocol=pickle.HIGHEST_PROTOCOL))
    os.replace(tmp, path)
    return feed
