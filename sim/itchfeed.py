"""A realistic NASDAQ TotalView-ITCH 5.0 day: start of day, order flow, end of day.

:func:`generate_feed` (and :func:`generate_itch`, its list-of-bytes form) builds
a seeded session:

* start of day: ``S 'O'`` (start of messages), ``S 'S'`` (start of system hours),
  a stock directory ``R`` per instrument (stock locate 1..K, real NASDAQ symbols
  first, then made-up ones), ``H 'T'`` (trading) per instrument and ``S 'Q'``
  (start of market hours) at 9:30;
* order flow from 9:30 to 16:00 with Poisson arrivals: each instrument's fair
  value is a random walk on the penny grid (price4, one tick = 100), activity
  is Zipf-like across instruments, adds sit near the touch and never cross the
  opposite best, and the mix is close to a real day (:data:`MIX`); now and then
  an instrument is halted (``H 'H'``, reason ``LUDP``) and later resumed
  (``H 'T'``), and nothing trades while it is halted;
* end of day: ``S 'M'``, ``S 'E'``, ``S 'C'``.

The order flow keeps the referential rules a book builder relies on: every
referenced order is live; executions and cancels never exceed the open shares;
an order executed or cancelled to zero is gone; a replace retires the old
reference and adds a new one (references are unique and increasing); a delete
only names a live order.

The flow is simulated in a numba-jitted loop over per-instrument slot arrays of
live orders (swap-remove, with the best bid/ask and their order counts cached
and rescanned only when the last order at the best price leaves), then encoded
column-wise with :func:`protocols.itch_reader.encode_rows`, so the whole day is
laid out in NASDAQ binary form without a Python loop per message. The start-
and end-of-day messages are built with :func:`protocols.itch.message` and
:func:`protocols.itch.encode`.

:func:`write_itch_file` writes NASDAQ's binary format, :func:`write_itch_pcap`
MoldUDP64 datagrams in Ethernet/IPv4/UDP frames to
:data:`sim.moldfeed.FEED_IP`/:data:`~sim.moldfeed.FEED_PORT`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from numba import njit

from protocols import itch
from protocols import moldudp64 as mold
from protocols.itch import MESSAGES
from protocols.itch_reader import TYPE_LENGTHS, encode_rows, gather_rows, put_rows
from protocols.pcap import write_pcap
from sim.moldfeed import _frame

TICK = 100
"""One cent in price4 units."""
NS_PER_S = 1_000_000_000
START_OF_MESSAGES_NS = 3 * 3600 * NS_PER_S
START_OF_SYSTEM_HOURS_NS = 4 * 3600 * NS_PER_S
MARKET_OPEN_NS = (9 * 3600 + 30 * 60) * NS_PER_S
MARKET_CLOSE_NS = 16 * 3600 * NS_PER_S
END_OF_SYSTEM_HOURS_NS = 20 * 3600 * NS_PER_S
END_OF_MESSAGES_NS = (20 * 3600 + 5 * 60) * NS_PER_S

SESSION = b"NASDAQ0001"
"""Default MoldUDP64 session of generated pcaps."""
SESSION_MIDNIGHT_NS = int(datetime(2024, 1, 2, tzinfo=timezone(timedelta(hours=-5))).timestamp()) * NS_PER_S
"""Midnight (US Eastern, EST) of the simulated trading day, in ns since the epoch:
ITCH timestamps count from it, pcap timestamps from the epoch."""

MIX = {"A": 0.405, "F": 0.045, "D": 0.35, "X": 0.05, "E": 0.05, "C": 0.01, "U": 0.08, "P": 0.01}
"""Share of order-flow messages by type (adds 45% of which a tenth are ``F``)."""
HALT_RATE = 2e-5
"""Chance per order-flow message that an instrument is halted."""
MEAN_HALT_MESSAGES = 20_000
"""Mean length of a halt, in order-flow messages."""
BOOK_CAPACITY = 512
"""Most live orders per instrument; an add on a full book becomes a delete."""
FAIR_MOVE = 0.3
"""Chance per order-flow message of an instrument that its fair value moves one tick (up or down with
equal chance). The default makes each message a volatile "day" in a short feed (spans of 40-160 ticks
over 200,000 messages); a real active name moves a few ticks over tens of thousands of messages, about
``fair_move=0.002``."""

REAL_SYMBOLS = (
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "AVGO", "COST", "NFLX", "AMD", "PEP", "ADBE",
    "CSCO", "TMUS", "INTC", "QCOM", "TXN", "INTU", "AMGN", "HON", "AMAT", "BKNG", "ISRG", "SBUX", "MDLZ",
    "GILD", "ADP", "VRTX", "REGN", "ADI", "LRCX", "PANW", "MU", "KLAC", "SNPS", "CDNS", "MELI", "PYPL",
    "ASML", "MAR", "ORLY", "CSX", "CTAS", "ABNB", "MRVL", "FTNT", "CRWD", "WDAY", "DXCM", "QQQ", "TQQQ",
)
MPIDS = ("GSCO", "MSCO", "NITE", "UBSS", "CDRG", "SUSQ", "VIRT", "JPMS", "CITD", "HRTF")
"""Market participants that attribute their ``F`` adds."""
_FLOW_CODES = "AFDXECUP"
_A = ord("A")
_C = ord("C")
_D = ord("D")
_E = ord("E")
_F = ord("F")
_H = ord("H")
_N = ord("N")
_P = ord("P")
_T = ord("T")
_U = ord("U")
_X = ord("X")
_Y = ord("Y")
"""Type letters and flags as ints: numba folds globals into constants."""


# --------------------------------------------------------------------------- #
# the order-flow simulation (numba)
# --------------------------------------------------------------------------- #


@njit(cache=True, nogil=True, inline="always")
def _next(rng):
    """splitmix64: the next 64 random bits (``rng`` is a one-element uint64 state)."""
    rng[0] += np.uint64(0x9E3779B97F4A7C15)
    z = rng[0]
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True, inline="always")
def _uniform(rng):
    """A float in [0, 1)."""
    return np.float64(_next(rng) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True, nogil=True, inline="always")
def _randint(rng, lo, hi):
    """An int in [lo, hi)."""
    return lo + np.int64(_next(rng) % np.uint64(hi - lo))


@njit(cache=True, nogil=True, inline="always")
def _exponential(rng, mean):
    return -mean * np.log(1.0 - _uniform(rng))


@njit(cache=True, nogil=True, inline="always")
def _geometric(rng, log_1mp):
    """Trials to the first success (>= 1) with success chance p, given log(1 - p)."""
    return np.int64(np.ceil(np.log(1.0 - _uniform(rng)) / log_1mp)) if log_1mp < 0 else np.int64(1)


GUIDE_SIZE = 4096


def _guide(cdf: np.ndarray) -> np.ndarray:
    """Guide table for :func:`_pick`: entry ``b`` is the first index whose cumulative
    weight exceeds ``b / GUIDE_SIZE``."""
    return np.minimum(np.searchsorted(cdf, np.arange(GUIDE_SIZE) / GUIDE_SIZE, side="right"),
                      len(cdf) - 1).astype(np.int64)


@njit(cache=True, nogil=True, inline="always")
def _pick(cdf, guide, u):
    """First index whose cumulative weight exceeds ``u`` (clamped to the last): start
    from the guide table and walk forward, O(1) expected."""
    i = guide[np.int64(u * GUIDE_SIZE)]
    last = len(cdf) - 1
    while i < last and cdf[i] <= u:
        i += 1
    return i


@njit(cache=True, nogil=True)
def _rescan(inst, side, nlive, s_side, s_price, best, nbest):
    b = np.int64(-1) if side == 0 else np.int64(1) << 40
    c = 0
    for j in range(nlive[inst]):
        if s_side[inst, j] == side:
            p = s_price[inst, j]
            if (side == 0 and p > b) or (side == 1 and p < b):
                b, c = p, 1
            elif p == b:
                c += 1
    best[side, inst], nbest[side, inst] = b, c


@njit(cache=True, nogil=True)
def _level_add(inst, side, p, best, nbest):
    b = best[side, inst]
    if p == b:
        nbest[side, inst] += 1
    elif (side == 0 and p > b) or (side == 1 and p < b):
        best[side, inst], nbest[side, inst] = p, 1


@njit(cache=True, nogil=True)
def _level_remove(inst, side, p, nlive, s_side, s_price, best, nbest):
    """Call after the order left the slot arrays."""
    if p == best[side, inst]:
        nbest[side, inst] -= 1
        if nbest[side, inst] == 0:
            _rescan(inst, side, nlive, s_side, s_price, best, nbest)


@njit(cache=True, nogil=True)
def _remove_slot(inst, j, nlive, s_ref, s_side, s_price, s_shares):
    last = nlive[inst] - 1
    s_ref[inst, j], s_side[inst, j] = s_ref[inst, last], s_side[inst, last]
    s_price[inst, j], s_shares[inst, j] = s_price[inst, last], s_shares[inst, last]
    nlive[inst] = last


@njit(cache=True, nogil=True)
def _quote_price(rng, side, fair, best, inst):
    """A price near the touch that does not cross the opposite best (in ticks)."""
    d = np.int64(_exponential(rng, 2.0))
    if side == 0:
        p = fair - d
        if best[1, inst] < (np.int64(1) << 40):
            p = min(p, best[1, inst] - 1)
    else:
        p = fair + 1 + d
        if best[0, inst] >= 0:
            p = max(p, best[0, inst] + 1)
    return max(p, np.int64(1))


@njit(cache=True, nogil=True)
def _lot(rng):
    """Shares: a tenth odd lots, else round lots with a geometric count of 100s."""
    u = _uniform(rng)
    if u < 0.1:
        return np.int64(1) + np.int64(u * 990.0)
    return np.int64(100) * min(_geometric(rng, -0.5108256237659907), np.int64(1000))   # p = 0.4


@njit(cache=True, nogil=True)
def _simulate(n, seed, inst_cdf, inst_guide, fair0, codes, mix_cdf, mix_guide, halt_rate, mean_halt, cap, n_mpids,
              fair_move, kind, locate, ref, new_ref, side, shares, price, match, mpid, flag):
    """Fill the per-message columns of ``n`` order-flow messages (prices in ticks).

    ``codes`` are the type letters ``mix_cdf`` chooses from (``inst_cdf`` chooses
    the instrument; the guides speed both up). ``kind`` gets the type letter,
    ``flag`` the printable flag of ``C`` and the trading state of ``H``; ``side``
    is 0 (buy) or 1 (sell); ``locate`` is 1-based. The instrument's fair value moves a tick up or down
    with chance ``fair_move / 2`` each.
    """
    rng = np.full(1, np.uint64(seed), np.uint64)
    k = len(fair0)
    fair = fair0.copy()
    nlive = np.zeros(k, np.int64)
    s_ref = np.zeros((k, cap), np.uint64)
    s_side = np.zeros((k, cap), np.int8)
    s_price = np.zeros((k, cap), np.int64)
    s_shares = np.zeros((k, cap), np.int64)
    best = np.empty((2, k), np.int64)
    best[0, :] = -1
    best[1, :] = np.int64(1) << 40
    nbest = np.zeros((2, k), np.int64)
    halted = np.zeros(k, np.bool_)
    never = np.int64(1) << 62
    resume_at = np.full(k, never, np.int64)
    next_resume, resume_inst = never, -1
    next_ref = np.uint64(1)
    next_match = np.uint64(1)
    for i in range(n):
        ref[i] = 0
        new_ref[i] = 0
        side[i] = 0
        shares[i] = 0
        price[i] = 0
        match[i] = 0
        mpid[i] = 0
        flag[i] = 32
        if i >= next_resume:
            inst = resume_inst
            kind[i], locate[i], flag[i] = _H, inst + 1, _T
            halted[inst] = False
            resume_at[inst] = never
            next_resume, resume_inst = never, -1
            for q in range(k):
                if resume_at[q] < next_resume:
                    next_resume, resume_inst = resume_at[q], q
            continue
        inst = _pick(inst_cdf, inst_guide, _uniform(rng))
        if _uniform(rng) < halt_rate and not halted[inst]:
            kind[i], locate[i], flag[i] = _H, inst + 1, _H
            halted[inst] = True
            resume_at[inst] = i + 1 + np.int64(_geometric(rng, np.log(1.0 - 1.0 / mean_halt)))
            if resume_at[inst] < next_resume:
                next_resume, resume_inst = resume_at[inst], inst
            continue
        r = _uniform(rng)
        if r < 0.5 * fair_move:
            fair[inst] += 1
        elif r < fair_move and fair[inst] > 2:
            fair[inst] -= 1
        c = codes[_pick(mix_cdf, mix_guide, _uniform(rng))]
        live = nlive[inst]
        if live == 0 and c != _A and c != _F and c != _P:
            c = _A
        if halted[inst] and (c == _E or c == _C or c == _P):
            c = _D if live > 0 else _A
        if live >= cap and (c == _A or c == _F):
            c = _D
        kind[i], locate[i] = c, inst + 1
        if c == _A or c == _F:
            sd = np.int64(_randint(rng, 0, 2))
            p = _quote_price(rng, sd, fair[inst], best, inst)
            q = _lot(rng)
            j = live
            s_ref[inst, j], s_side[inst, j], s_price[inst, j], s_shares[inst, j] = next_ref, sd, p, q
            nlive[inst] = live + 1
            _level_add(inst, sd, p, best, nbest)
            ref[i], side[i], shares[i], price[i] = next_ref, sd, q, p
            if c == _F:
                mpid[i] = _randint(rng, 0, n_mpids)
            next_ref += np.uint64(1 + (_randint(rng, 1, 5) if _uniform(rng) < 0.3 else 0))
        elif c == _D:
            j = _randint(rng, 0, live)
            sd, p = s_side[inst, j], s_price[inst, j]
            ref[i] = s_ref[inst, j]
            _remove_slot(inst, j, nlive, s_ref, s_side, s_price, s_shares)
            _level_remove(inst, sd, p, nlive, s_side, s_price, best, nbest)
        elif c == _X:
            j = _randint(rng, 0, live)
            q = s_shares[inst, j]
            x = q if (q == 1 or _uniform(rng) < 0.2) else np.int64(_randint(rng, 1, q))
            ref[i], shares[i] = s_ref[inst, j], x
            if x == q:
                sd, p = s_side[inst, j], s_price[inst, j]
                _remove_slot(inst, j, nlive, s_ref, s_side, s_price, s_shares)
                _level_remove(inst, sd, p, nlive, s_side, s_price, best, nbest)
            else:
                s_shares[inst, j] = q - x
        elif c == _E or c == _C:
            sd = np.int64(_randint(rng, 0, 2))
            if nbest[sd, inst] == 0:
                sd = 1 - sd
            p = best[sd, inst]
            j = 0
            while s_side[inst, j] != sd or s_price[inst, j] != p:
                j += 1
            q = s_shares[inst, j]
            x = q if (q == 1 or _uniform(rng) < 0.5) else np.int64(_randint(rng, 1, q))
            ref[i], shares[i], match[i] = s_ref[inst, j], x, next_match
            next_match += np.uint64(1)
            if c == _C:
                flag[i] = _Y if _uniform(rng) < 0.9 else _N
                improve = np.int64(_randint(rng, 0, 2))
                price[i] = max(p - improve if sd == 0 else p + improve, np.int64(1))
            if x == q:
                _remove_slot(inst, j, nlive, s_ref, s_side, s_price, s_shares)
                _level_remove(inst, sd, p, nlive, s_side, s_price, best, nbest)
            else:
                s_shares[inst, j] = q - x
        elif c == _U:
            j = _randint(rng, 0, live)
            sd, p_old = s_side[inst, j], s_price[inst, j]
            p = _quote_price(rng, np.int64(sd), fair[inst], best, inst)
            q = _lot(rng)
            ref[i], new_ref[i], shares[i], price[i], side[i] = s_ref[inst, j], next_ref, q, p, sd
            _remove_slot(inst, j, nlive, s_ref, s_side, s_price, s_shares)
            _level_remove(inst, sd, p_old, nlive, s_side, s_price, best, nbest)
            j = nlive[inst]
            s_ref[inst, j], s_side[inst, j], s_price[inst, j], s_shares[inst, j] = next_ref, sd, p, q
            nlive[inst] = j + 1
            _level_add(inst, sd, p, best, nbest)
            next_ref += np.uint64(1 + (_randint(rng, 1, 5) if _uniform(rng) < 0.3 else 0))
        else:  # P: a hidden order trades inside the spread
            lo, hi = best[0, inst], best[1, inst]
            if lo < 0 or hi >= (np.int64(1) << 40):
                p = fair[inst]
            else:
                p = np.int64(_randint(rng, lo, hi + 1))
            side[i], shares[i], price[i], match[i] = _randint(rng, 0, 2), _lot(rng), max(p, 1), next_match
            next_match += np.uint64(1)
    return nlive.sum()


# --------------------------------------------------------------------------- #
# the day
# --------------------------------------------------------------------------- #


def make_symbols(instruments: int, rng: np.random.Generator) -> list[str]:
    """``instruments`` distinct tickers: real NASDAQ names first, then made-up 3-5 letter ones."""
    symbols = list(REAL_SYMBOLS[:instruments])
    seen = set(symbols)
    letters = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", np.uint8)
    while len(symbols) < instruments:
        s = bytes(rng.choice(letters, int(rng.integers(3, 6)))).decode()
        if s not in seen:
            seen.add(s)
            symbols.append(s)
    return symbols


def start_of_day(symbols: Sequence[str]) -> list:
    """The messages before the open: ``S O``, ``S S``, ``R`` and ``H T`` per instrument, ``S Q`` at 9:30."""
    msgs = [itch.message("S", timestamp=START_OF_MESSAGES_NS, event_code="O"),
            itch.message("S", timestamp=START_OF_SYSTEM_HOURS_NS, event_code="S")]
    t = START_OF_SYSTEM_HOURS_NS + 1_000_000
    for locate, sym in enumerate(symbols, 1):
        msgs.append(itch.message(
            "R", stock_locate=locate, timestamp=t, stock=sym, market_category="Q" if locate % 3 else "G",
            financial_status="N", round_lot_size=100, round_lots_only="N", issue_classification="C",
            issue_sub_type="Z", authenticity="P", short_sale_threshold="N", ipo_flag="N",
            luld_tier="1" if locate % 4 else "2", etp_flag="N", etp_leverage_factor=0, inverse_indicator="N"))
        t += 1000
    t = MARKET_OPEN_NS - 60 * NS_PER_S
    for locate, sym in enumerate(symbols, 1):
        msgs.append(itch.message("H", stock_locate=locate, timestamp=t, stock=sym, trading_state="T"))
        t += 1000
    msgs.append(itch.message("S", timestamp=MARKET_OPEN_NS, event_code="Q"))
    return msgs


def end_of_day() -> list:
    """``S M`` at 16:00, ``S E`` and ``S C``."""
    return [itch.message("S", timestamp=MARKET_CLOSE_NS, event_code="M"),
            itch.message("S", timestamp=END_OF_SYSTEM_HOURS_NS, event_code="E"),
            itch.message("S", timestamp=END_OF_MESSAGES_NS, event_code="C")]


def arrival_times(n: int, rng: np.random.Generator, start_ns: int = MARKET_OPEN_NS,
                  end_ns: int = MARKET_CLOSE_NS) -> np.ndarray:
    """``n`` strictly increasing Poisson arrival times in ``(start_ns, end_ns)`` (ns since midnight)."""
    if n == 0:
        return np.empty(0, np.int64)
    t = np.cumsum(rng.exponential(1.0, n + 1))
    ts = start_ns + 1 + (t[:-1] / t[-1] * (end_ns - start_ns - n - 2)).astype(np.int64)
    ar = np.arange(n, dtype=np.int64)
    return np.maximum.accumulate(ts - ar) + ar


@dataclass
class ItchFeed:
    """A generated day in NASDAQ binary form.

    ``data`` is the NASDAQ file's bytes (``uint8``), message ``i`` is
    ``data[starts[i]:starts[i] + lengths[i]]``; ``symbols[locate - 1]`` names stock locate ``locate``.
    """

    data: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    symbols: list[str]

    def __len__(self) -> int:
        return len(self.starts)

    def messages(self) -> list[bytes]:
        """Every message's bytes, in order."""
        raw = self.data.tobytes()
        return [raw[s:e] for s, e in zip(self.starts.tolist(), (self.starts + self.lengths).tolist())]

    def nasdaq(self) -> bytes:
        """The NASDAQ binary file's bytes."""
        return self.data.tobytes()

    def timestamps(self) -> np.ndarray:
        """Every message's timestamp (ns since midnight), read with the table's header offset."""
        f = MESSAGES["S"].field("timestamp")
        rows = gather_rows(self.data, self.starts + f.offset, f.width).astype(np.uint64)
        acc = np.zeros(len(rows), np.uint64)
        for k in range(f.width):
            acc = (acc << np.uint64(8)) | rows[:, k]
        return acc


def _layout(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    starts = np.cumsum(lengths + 2) - lengths
    data = np.empty(int(lengths.sum()) + 2 * len(lengths), np.uint8)
    data[starts - 2] = lengths >> 8
    data[starts - 1] = lengths & 0xFF
    return data, starts


def generate_feed(messages: int, instruments: int, seed: int, *, mix: Mapping[str, float] | None = None,
                  halt_rate: float = HALT_RATE, mean_halt_messages: int = MEAN_HALT_MESSAGES,
                  book_capacity: int = BOOK_CAPACITY, fair_move: float = FAIR_MOVE) -> ItchFeed:
    """A whole day of exactly ``messages`` ITCH messages over ``instruments`` stocks (see the module doc).

    The same arguments give the same bytes. ``mix`` overrides :data:`MIX` (shares
    of ``A F D X E C U P``, normalised); ``fair_move`` is the chance per message of an
    instrument that its fair value moves a tick (:data:`FAIR_MOVE`, the volatility).
    """
    if not 0.0 <= fair_move <= 1.0:
        raise ValueError(f"fair_move is a probability in [0, 1], not {fair_move}")
    if instruments < 1:
        raise ValueError(f"instruments must be at least 1, not {instruments}")
    rng = np.random.default_rng(seed)
    symbols = make_symbols(instruments, rng)
    head, tail = start_of_day(symbols), end_of_day()
    n_flow = messages - len(head) - len(tail)
    if n_flow < 0:
        raise ValueError(f"{messages} messages cannot hold the {len(head) + len(tail)} start- and end-of-day "
                         f"messages of {instruments} instruments")
    mix = dict(MIX if mix is None else mix)
    unknown = set(mix) - set(_FLOW_CODES)
    if unknown:
        raise ValueError(f"mix has types {sorted(unknown)}, only {_FLOW_CODES}")
    weights = np.array([mix.get(c, 0.0) for c in _FLOW_CODES])
    mix_cdf = np.cumsum(weights / weights.sum())
    activity = 1.0 / np.arange(1, instruments + 1) ** 0.9
    inst_cdf = np.cumsum(activity / activity.sum())
    fair0 = np.round(np.exp(rng.uniform(np.log(500), np.log(50_000), instruments))).astype(np.int64)

    cols = {name: np.empty(n_flow, dt) for name, dt in (
        ("kind", np.uint8), ("locate", np.int64), ("ref", np.uint64), ("new_ref", np.uint64),
        ("side", np.int64), ("shares", np.int64), ("price", np.int64), ("match", np.uint64),
        ("mpid", np.int64), ("flag", np.uint8))}
    _simulate(n_flow, int(rng.integers(0, 2**63)), inst_cdf, _guide(inst_cdf), fair0,
              np.frombuffer(_FLOW_CODES.encode(), np.uint8), mix_cdf, _guide(mix_cdf), float(halt_rate),
              float(mean_halt_messages), int(book_capacity), len(MPIDS), float(fair_move), cols["kind"], cols["locate"],
              cols["ref"], cols["new_ref"], cols["side"], cols["shares"], cols["price"], cols["match"],
              cols["mpid"], cols["flag"])
    times = arrival_times(n_flow, rng)

    head_raw = [itch.encode(m) for m in head]
    tail_raw = [itch.encode(m) for m in tail]
    lengths = np.concatenate([np.fromiter(map(len, head_raw), np.int64, len(head_raw)),
                              TYPE_LENGTHS[cols["kind"]],
                              np.fromiter(map(len, tail_raw), np.int64, len(tail_raw))])
    data, starts = _layout(lengths)
    for s, raw in zip(starts[:len(head)].tolist(), head_raw):
        data[s:s + len(raw)] = np.frombuffer(raw, np.uint8)
    for s, raw in zip(starts[len(head) + n_flow:].tolist(), tail_raw):
        data[s:s + len(raw)] = np.frombuffer(raw, np.uint8)

    stock = np.array([s.encode().ljust(8) for s in symbols], "S8")
    sides = np.frombuffer(b"BS", "S1")
    flow_starts = starts[len(head):len(head) + n_flow]
    for code in np.unique(cols["kind"]):
        code = chr(code)
        sel = np.flatnonzero(cols["kind"] == ord(code))
        loc = cols["locate"][sel]
        flag = cols["flag"][sel].view("S1")
        columns = {
            "stock_locate": loc, "timestamp": times[sel], "order_ref": cols["ref"][sel],
            "new_order_ref": cols["new_ref"][sel], "side": sides[cols["side"][sel]],
            "shares": cols["shares"][sel], "price": cols["price"][sel] * TICK,
            "match_number": cols["match"][sel], "stock": stock[loc - 1],
            "attribution": np.array(MPIDS, "S4")[cols["mpid"][sel]],
            "printable": flag, "trading_state": flag,
            "reason": np.where(flag == b"H", b"LUDP", b"    ").astype("S4"),
        }
        put_rows(data, flow_starts[sel], encode_rows(code, columns, len(sel)))
    return ItchFeed(data, starts, lengths, symbols)


def generate_itch(messages: int, instruments: int, seed: int, **kw) -> list[bytes]:
    """A day of exactly ``messages`` encoded ITCH messages (see :func:`generate_feed`)."""
    return generate_feed(messages, instruments, seed, **kw).messages()


# --------------------------------------------------------------------------- #
# writing
# --------------------------------------------------------------------------- #


def _as_feed_bytes(messages: ItchFeed | Iterable[bytes]) -> bytes:
    if isinstance(messages, ItchFeed):
        return messages.nasdaq()
    messages = [bytes(m) for m in messages]
    for i, m in enumerate(messages):
        if len(m) > 0xFFFF:
            raise ValueError(f"message {i} is {len(m)} bytes, a 2-byte length holds at most 65535")
    prefixes = {n: n.to_bytes(2, "big") for n in set(map(len, messages))}
    return b"".join(b for m in messages for b in (prefixes[len(m)], m))


def write_itch_file(path: str | os.PathLike, messages: ItchFeed | Iterable[bytes]) -> int:
    """Write messages in NASDAQ's binary format (2-byte big-endian length, then the
    message) to ``path`` atomically (a temporary file beside it, then ``os.replace``).
    Returns the bytes written."""
    path = Path(path)
    data = _as_feed_bytes(messages)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(data)


def write_itch_pcap(path: str | os.PathLike, messages: ItchFeed | Iterable[bytes], max_payload: int = 1400,
                    session: bytes | str = SESSION, *, midnight_ns: int = SESSION_MIDNIGHT_NS) -> int:
    """Pack messages into MoldUDP64 datagrams (sequence numbers from 1) in
    Ethernet/IPv4/UDP frames to the feed group and write a nanosecond pcap
    atomically. Each frame is stamped with its last message's ITCH timestamp
    (``midnight_ns`` plus ns since midnight; never earlier than the frame before).
    Returns the number of frames."""
    if isinstance(messages, ItchFeed):
        messages = messages.messages()
    packets = mold.packetise(messages, session=session, max_payload=max_payload)

    def records():
        last = 0
        for p in packets:
            m = p.messages[-1]
            mt = MESSAGES.get(chr(m[0])) if m else None
            if mt is not None and len(m) == mt.length:
                f = mt.field("timestamp")
                last = max(last, int.from_bytes(m[f.offset:f.offset + f.width], "big"))
            yield midnight_ns + last, _frame(mold.encode_packet(p))

    return write_pcap(path, records())
