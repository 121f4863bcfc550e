"""Fast market-by-order book: all instruments rebuilt from a columnar ITCH table in one numba pass.

:func:`rebuild` takes a :class:`protocols.itch_reader.ItchTable` and replays its
messages in feed order with exactly the rules of :class:`host.book.BookSet`
(the reference it is tested against): the same top-of-book events, trades and
counters, in strict or lenient mode. It returns the events as NumPy structured
arrays (:data:`TOB_DTYPE`, :data:`TRADE_DTYPE`) and the final top levels of
every book.

Design (one core, no Python per message):

* the kernel reads each message's fields straight from the table's row bytes
  (big-endian wire bytes at the offsets of :func:`protocols.itch_reader.dtype`),
  walking the feed in order through a per-message type array;
* live orders are the rows of one open-addressing hash table keyed by
  reference (linear probing, backward-shift deletion, at most half full), so a
  lookup is one cache line and any 64-bit reference works;
* each book side is a sorted run of price levels (key, shares, orders) with
  the best level last (bid key = price, ask key = -price, so both ascend): a
  level is found by walking down from the best, then by binary search, and
  inserting or removing near the touch, where nearly all the flow is, moves
  only a few rows. The runs share one pool and move to a twice larger slot
  when full. This is exact for any prices;
* the pass never reallocates: before each message it checks there is room for
  the message's worst case, else it returns, the caller grows the table that
  is short and resumes (so numba keeps no reference counting in the loop);
* a second cursor runs a few messages ahead and prefetches the order-table row
  of each coming reference (``llvm.prefetch``), so the table's cache misses
  overlap the work instead of stalling it;
* only the side a message touches can change its top, so that side's best is
  compared before and after, and an event reads the other side's best.

On the 10-million-message day of ``python -m bench.book`` this rebuilds all
books at a few million messages per second on one core (``build/bench/book.json``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from host.book import COUNTERS, BookError, TopOfBook, Trade
from protocols.itch_reader import ItchTable, dtype

TYPES = "AFECXDUP"
"""The book's message types, in the order of the kernel's type numbers."""
FIELDS = (("index", 8), ("stock_locate", 2), ("timestamp", 8), ("order_ref", 8), ("new_order_ref", 8),
          ("side", 1), ("shares", 4), ("price", 4), ("match_number", 8))
"""Fields the kernel reads and their widths: ``index`` and ``timestamp`` are native
little-endian ``uint64`` slots, the rest big-endian wire bytes."""
NO_TYPE = 255

TOB_DTYPE = np.dtype([("instrument", "<i8"), ("bid_price", "<i8"), ("bid_size", "<i8"), ("ask_price", "<i8"),
                      ("ask_size", "<i8"), ("timestamp", "<i8"), ("seq", "<u8")])
"""One top-of-book change, as :class:`host.book.TopOfBook` (every field 8 bytes, so the kernel's
int64 rows are viewed as this dtype without a copy)."""
TRADE_DTYPE = np.dtype([("instrument", "<i8"), ("side", "<i8"), ("price", "<i8"), ("shares", "<i8"),
                        ("order_ref", "<u8"), ("match_number", "<u8"), ("timestamp", "<i8"), ("seq", "<u8"),
                        ("kind", "<i8")])
"""One trade, as :class:`host.book.Trade`; ``side`` and ``kind`` are ASCII codes (``ord("B")``, ``ord("E")``)."""

_ERR = {k: i for i, k in enumerate(COUNTERS)}
_C_TOB, _C_TRADES, _C_UNTRACKED = _ERR["tob_events"], _ERR["trades"], _ERR["untracked"]
_C_UNKNOWN, _C_OVERFILL, _C_DUP, _C_ZERO, _C_SIDE = (_ERR[k] for k in (
    "unknown_order", "overfill", "duplicate_order", "zero_shares", "bad_side"))
_T_A, _T_F, _T_E, _T_C, _T_X, _T_D, _T_U, _T_P = range(8)
_B, _S = ord("B"), ord("S")
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_KIND_BYTES = np.frombuffer(TYPES.encode(), np.uint8)


@intrinsic
def _prefetch_row(typingctx, arr, row):
    """Hint the CPU to bring row ``row`` of a C-contiguous 2-D array into cache (``llvm.prefetch``:
    read, high locality, data cache). It never faults and does not change any result."""
    sig = types.void(arr, row)

    def codegen(context, builder, signature, args):
        ary_t = signature.args[0]
        ary = context.make_array(ary_t)(context, builder, args[0])
        ptr = cgutils.get_item_pointer2(context, builder, data=ary.data,
                                        shape=cgutils.unpack_tuple(builder, ary.shape),
                                        strides=cgutils.unpack_tuple(builder, ary.strides), layout=ary_t.layout,
                                        inds=[args[1], context.get_constant(types.intp, 0)], wraparound=False)
        i8p = builder.bitcast(ptr, ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p.type, i32, i32, i32]),
                                            "llvm.prefetch.p0")
        builder.call(fn, [i8p, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


# --------------------------------------------------------------------------- #
# field access
# --------------------------------------------------------------------------- #


@njit(cache=True)
def _be(buf, pos, width):
    v = np.uint64(0)
    for k in range(width):
        v = (v << np.uint64(8)) | np.uint64(buf[pos + k])
    return v


@njit(cache=True)
def _le8(buf, pos):
    v = np.uint64(0)
    for k in range(7, -1, -1):
        v = (v << np.uint64(8)) | np.uint64(buf[pos + k])
    return v


# --------------------------------------------------------------------------- #
# the orders: one open-addressing table (linear probing, backward-shift deletion) whose rows are
# the orders themselves, (ref, book side, price, shares): a lookup is one cache line
# --------------------------------------------------------------------------- #

_REF, _SIDE, _PRICE, _SHARES = range(4)
"""Columns of an order row; ``_SIDE`` holds ``2 * locate + side`` (0 bid, 1 ask), -1 for a free row."""


@njit(cache=True)
def _home(ref, shift):
    return np.int64((ref * _GOLDEN) >> np.uint64(shift))


@njit(cache=True)
def _find(ot, shift, ref):
    """Row of live order ``ref``, or -1."""
    mask = len(ot) - 1
    i = _home(ref, shift)
    r = np.int64(ref)
    while ot[i, _SIDE] >= 0:
        if ot[i, _REF] == r:
            return i
        i = (i + 1) & mask
    return np.int64(-1)


@njit(cache=True)
def _insert(ot, shift, ref, side, price, shares):
    mask = len(ot) - 1
    i = _home(ref, shift)
    while ot[i, _SIDE] >= 0:
        i = (i + 1) & mask
    ot[i, _REF], ot[i, _SIDE], ot[i, _PRICE], ot[i, _SHARES] = np.int64(ref), side, price, shares


@njit(cache=True)
def _erase(ot, shift, i):
    """Free row ``i`` and close the gap (Knuth's algorithm R)."""
    mask = len(ot) - 1
    ot[i, _SIDE] = -1
    j = i
    while True:
        j = (j + 1) & mask
        if ot[j, _SIDE] < 0:
            return
        k = _home(np.uint64(ot[j, _REF]), shift)
        if (i <= j and i < k <= j) or (i > j and (k > i or k <= j)):
            continue        # its home lies between the gap and it: it stays
        ot[i, _REF], ot[i, _SIDE], ot[i, _PRICE], ot[i, _SHARES] = \
            ot[j, _REF], ot[j, _SIDE], ot[j, _PRICE], ot[j, _SHARES]
        ot[j, _SIDE] = -1
        i = j


@njit(cache=True)
def _rehash(ot, bits):
    """The table with ``2 ** bits`` rows holding the same orders."""
    new = np.zeros((1 << bits, 4), np.int64)
    new[:, _SIDE] = -1
    shift = 64 - bits
    for i in range(len(ot)):
        if ot[i, _SIDE] >= 0:
            _insert(new, shift, np.uint64(ot[i, _REF]), ot[i, _SIDE], ot[i, _PRICE], ot[i, _SHARES])
    return new


# --------------------------------------------------------------------------- #
# price levels: per book side a sorted run of (key, shares, orders) rows in one pool, best last
# --------------------------------------------------------------------------- #


@njit(cache=True)
def _search(lv, s, n, key):
    """First index in ``[0, n)`` of the run at ``s`` whose key is >= ``key`` (n if none): walk
    down from the best end, where nearly all the flow is, then binary search what is left."""
    stop = max(s + n - 8, s)
    j = s + n - 1
    while j >= stop:
        if lv[j, 0] < key:
            return j + 1 - s
        j -= 1
    lo, hi = 0, stop - s
    while lo < hi:
        mid = (lo + hi) >> 1
        if lv[s + mid, 0] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _level_add(b, key, shares, bk, lv, used):
    """Add one order of ``shares`` at ``key`` to side ``b``; returns the pool's new used size.
    The caller guarantees room for moving the side to a slot twice its size."""
    s, n = bk[b, 0], bk[b, 1]
    i = _search(lv, s, n, key)
    if i < n and lv[s + i, 0] == key:
        lv[s + i, 1] += shares
        lv[s + i, 2] += 1
        return used
    if n == bk[b, 2]:                       # full: move to a twice larger slot at the end of the pool
        for j in range(n):
            lv[used + j, 0], lv[used + j, 1], lv[used + j, 2] = lv[s + j, 0], lv[s + j, 1], lv[s + j, 2]
        s = bk[b, 0] = used
        bk[b, 2] = max(2 * n, 8)
        used += bk[b, 2]
    for j in range(s + n, s + i, -1):
        lv[j, 0], lv[j, 1], lv[j, 2] = lv[j - 1, 0], lv[j - 1, 1], lv[j - 1, 2]
    lv[s + i, 0], lv[s + i, 1], lv[s + i, 2] = key, shares, 1
    bk[b, 1] = n + 1
    return used


@njit(cache=True)
def _level_take(b, key, shares, leaves, bk, lv):
    """Take ``shares`` off the level at ``key`` of side ``b``; ``leaves``: an order leaves it."""
    s, n = bk[b, 0], bk[b, 1]
    i = _search(lv, s, n, key)
    lv[s + i, 1] -= shares
    if leaves:
        lv[s + i, 2] -= 1
        if lv[s + i, 2] == 0:
            for j in range(s + i, s + n - 1):
                lv[j, 0], lv[j, 1], lv[j, 2] = lv[j + 1, 0], lv[j + 1, 1], lv[j + 1, 2]
            bk[b, 1] = n - 1


@njit(cache=True)
def _best(b, bk, lv):
    """``(price, shares)`` of side ``b``'s best level, (0, 0) when empty."""
    n = bk[b, 1]
    if n == 0:
        return np.int64(0), np.int64(0)
    j = bk[b, 0] + n - 1
    return (lv[j, 0] if (b & 1) == 0 else -lv[j, 0]), lv[j, 1]


# --------------------------------------------------------------------------- #
# the pass
# --------------------------------------------------------------------------- #

# the pass's scalars, kept in an int64 array between resumptions
_USED, _BITS, _LIVE, _NTOB, _NTRADES, _MAXCAP, _ROW = range(7)
_AHEAD = 8
"""How many messages ahead the pass prefetches the order-table row of a message's reference."""


@njit(cache=True)
def _trade(trades, j, loc, side, price, shares, ref, match, ts, seq, code):
    trades[j, 0], trades[j, 1], trades[j, 2], trades[j, 3] = loc, side, price, shares
    trades[j, 4], trades[j, 5], trades[j, 6], trades[j, 7] = np.int64(ref), np.int64(match), ts, seq
    trades[j, 8] = code


@njit(cache=True, nogil=True)
def _run(i, kind, bufs, itemsize, offs, seq_of, seq_base, tracked, strict, st, counters, err, ot, bk, lv,
         tob, trades):
    """Replay messages from ``i`` until the end, a bad message (strict: ``err`` is set to
    ``(reason, type, ref, seq)``) or a full table; returns where it stopped.

    ``kind[i]`` is message ``i``'s type number (:data:`TYPES`) or :data:`NO_TYPE`; its fields
    are in ``bufs[kind]`` at (rows of that type seen so far) x ``itemsize[kind]`` +
    ``offs[kind, field]``. Before each message the pass checks there is room for its worst case
    (an event, a trade, an order, a level side moving), so it stops before touching anything and
    the caller grows the tables and resumes. No array is reassigned here, so the loop keeps no
    reference counts.
    """
    n = len(kind)
    used, bits, live = st[_USED], st[_BITS], st[_LIVE]
    n_tob, n_trades, maxcap = st[_NTOB], st[_NTRADES], st[_MAXCAP]
    shift = 64 - bits
    # a second cursor runs _AHEAD messages ahead and prefetches the row of each reference's
    # home in the order table, so its cache miss overlaps the work on the messages before it
    arow = st[_ROW:_ROW + 8].copy()
    j = i
    for _ in range(_AHEAD):
        if j < n:
            kj = kind[j]
            if kj != NO_TYPE:
                arow[kj] += 1
            j += 1
    while i < n:
        if j < n:
            kj = kind[j]
            if kj != NO_TYPE:
                rj = _be(bufs[kj], arow[kj] * itemsize[kj] + offs[kj, 3], 8)
                _prefetch_row(ot, _home(rj, shift))
                arow[kj] += 1
            j += 1
        k = kind[i]
        if k == NO_TYPE:
            i += 1
            continue
        if (n_tob == len(tob) or n_trades == len(trades) or 2 * (live + 1) > len(ot)
                or used + 2 * maxcap + 8 > len(lv)):
            break
        buf = bufs[k]
        base = st[_ROW + k] * itemsize[k]
        loc = np.int64(_be(buf, base + offs[k, 1], 2))
        if not tracked[loc]:
            st[_ROW + k] += 1
            counters[_C_UNTRACKED] += 1
            i += 1
            continue
        seq = np.int64(seq_of[i]) if len(seq_of) else seq_base + i
        ts = np.int64(_le8(buf, base + offs[k, 2]))
        ref = _be(buf, base + offs[k, 3], 8)
        code = _KIND_BYTES[k]
        if k == _T_P:                                     # a trade, no book
            _trade(trades, n_trades, loc, buf[base + offs[k, 5]], np.int64(_be(buf, base + offs[k, 7], 4)),
                   np.int64(_be(buf, base + offs[k, 6], 4)), ref, _be(buf, base + offs[k, 8], 8), ts, seq, code)
            n_trades += 1
            counters[_C_TRADES] += 1
            st[_ROW + k] += 1
            i += 1
            continue

        b = np.int64(-1)                                  # the book side the message touches
        p0 = np.int64(0)
        q0 = np.int64(0)
        fail = -1
        fail_ref = ref
        add_ref = ref                                     # the order to add, if any
        add_price = np.int64(0)
        add_shares = np.int64(0)
        do_add = False
        if k == _T_A or k == _T_F:
            side_byte = buf[base + offs[k, 5]]
            if side_byte == _B or side_byte == _S:
                b = 2 * loc + (0 if side_byte == _B else 1)
                p0, q0 = _best(b, bk, lv)
                add_price = np.int64(_be(buf, base + offs[k, 7], 4))
                add_shares = np.int64(_be(buf, base + offs[k, 6], 4))
                do_add = True
            else:
                fail = _C_SIDE
        else:                                             # E C X D U: a live order of this book
            pos = _find(ot, shift, ref)
            if pos < 0 or (ot[pos, _SIDE] >> 1) != loc:
                fail = _C_UNKNOWN
            else:
                b, price, open_ = ot[pos, _SIDE], ot[pos, _PRICE], ot[pos, _SHARES]
                p0, q0 = _best(b, bk, lv)
                take = open_                              # D and U retire the whole order
                if k == _T_E or k == _T_C or k == _T_X:
                    shares = np.int64(_be(buf, base + offs[k, 6], 4))
                    if shares > open_:
                        if strict:
                            fail = _C_OVERFILL
                        else:
                            counters[_C_OVERFILL] += 1
                    take = min(shares, open_)
                    if k != _T_X and fail < 0:
                        _trade(trades, n_trades, loc, _B if (b & 1) == 0 else _S,
                               price if k == _T_E else np.int64(_be(buf, base + offs[k, 7], 4)),
                               shares, ref, _be(buf, base + offs[k, 8], 8), ts, seq, code)
                        n_trades += 1
                        counters[_C_TRADES] += 1
                elif k == _T_U:                           # the new order keeps the original's side
                    add_ref = _be(buf, base + offs[k, 4], 8)
                    add_shares = np.int64(_be(buf, base + offs[k, 6], 4))
                    add_price = np.int64(_be(buf, base + offs[k, 7], 4))
                    do_add = True
                    if strict:                            # check the new order before retiring
                        if add_ref != ref and _find(ot, shift, add_ref) >= 0:
                            fail, fail_ref = _C_DUP, add_ref
                        elif add_shares == 0:
                            fail, fail_ref = _C_ZERO, add_ref
                if fail < 0:
                    key = price if (b & 1) == 0 else -price
                    if take == open_:
                        _level_take(b, key, open_, True, bk, lv)
                        _erase(ot, shift, pos)
                        live -= 1
                    else:
                        _level_take(b, key, take, False, bk, lv)
                        ot[pos, _SHARES] = open_ - take

        if do_add and fail < 0:
            if _find(ot, shift, add_ref) >= 0:
                fail, fail_ref = _C_DUP, add_ref
            elif add_shares == 0:
                fail, fail_ref = _C_ZERO, add_ref
            else:
                _insert(ot, shift, add_ref, b, add_price, add_shares)
                live += 1
                used = _level_add(b, add_price if (b & 1) == 0 else -add_price, add_shares, bk, lv, used)
                maxcap = max(maxcap, bk[b, 2])
        if fail >= 0:
            if strict:
                err[0], err[1], err[2], err[3] = fail, code, np.int64(fail_ref), seq
                break
            counters[fail] += 1

        st[_ROW + k] += 1
        i += 1
        if b >= 0:
            p1, q1 = _best(b, bk, lv)
            if p1 != p0 or q1 != q0:                      # only this side can have changed
                po, qo = _best(b ^ 1, bk, lv)
                tob[n_tob, 0], tob[n_tob, 5], tob[n_tob, 6] = loc, ts, seq
                if (b & 1) == 0:
                    tob[n_tob, 1], tob[n_tob, 2], tob[n_tob, 3], tob[n_tob, 4] = p1, q1, po, qo
                else:
                    tob[n_tob, 1], tob[n_tob, 2], tob[n_tob, 3], tob[n_tob, 4] = po, qo, p1, q1
                n_tob += 1
                counters[_C_TOB] += 1
    st[_USED], st[_BITS], st[_LIVE] = used, bits, live
    st[_NTOB], st[_NTRADES], st[_MAXCAP] = n_tob, n_trades, maxcap
    return i


def _grown(a: np.ndarray, fill=None) -> np.ndarray:
    """``a`` with twice the rows (the new rows uninitialised, or ``fill``)."""
    b = np.empty((2 * len(a),) + a.shape[1:], a.dtype) if fill is None else \
        np.full((2 * len(a),) + a.shape[1:], fill, a.dtype)
    b[:len(a)] = a
    return b


# --------------------------------------------------------------------------- #
# the Python side
# --------------------------------------------------------------------------- #


def _offsets() -> np.ndarray:
    """``offs[type, field]``: byte offset of each :data:`FIELDS` entry in a row of the type (-1 if absent)."""
    offs = np.full((len(TYPES), len(FIELDS)), -1, np.int64)
    for k, code in enumerate(TYPES):
        dt = dtype(code)
        for j, (name, width) in enumerate(FIELDS):
            if name in dt.names:
                f_dt, off = dt.fields[name][:2]
                assert f_dt.itemsize == width, (code, name, f_dt)
                assert f_dt.str == "<u8" if name in ("index", "timestamp") else f_dt.str[0] in ">|", (code, name, f_dt)
                offs[k, j] = off
    return offs


_OFFS = _offsets()


@dataclass
class FastBooks:
    """What :func:`rebuild` returns: the event streams, the counters (:data:`host.book.COUNTERS`),
    the final top ``depth`` levels of every book and the number of live orders at the end."""

    tob: np.ndarray
    trades: np.ndarray
    counters: dict[str, int]
    depth: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    live_orders: int = 0

    def levels(self, instrument: int, side: str, n: int | None = None) -> list[tuple[int, int, int]]:
        """``(price, shares, orders)`` best first, as :meth:`host.book.BookSet.levels` (up to ``depth``)."""
        if instrument not in self.depth:
            return []
        a = self.depth[instrument][0 if side == "B" else 1][:n]
        return [tuple(r) for r in a.tolist()]

    def tob_events(self) -> list[TopOfBook]:
        """The top-of-book stream as :class:`host.book.TopOfBook` objects (for comparisons; slow)."""
        return [TopOfBook(*r) for r in self.tob.tolist()]

    def trade_events(self) -> list[Trade]:
        """The trades as :class:`host.book.Trade` objects (for comparisons; slow)."""
        return [Trade(i, chr(s).rstrip(" \0"), p, q, r, m, t, sq, chr(k))
                for i, s, p, q, r, m, t, sq, k in self.trades.tolist()]


def _view(dt: np.dtype, rows: np.ndarray) -> np.ndarray:
    """Int64 event rows as a structured array of ``dt`` (all fields 8 bytes), without a copy."""
    assert dt.itemsize == 8 * rows.shape[1]
    return np.ascontiguousarray(rows).view(dt).reshape(len(rows))


def rebuild(table: ItchTable, *, strict: bool = False, instruments: Iterable[int] | None = None,
            depth: int | None = 10, first_seq: int = 1) -> FastBooks:
    """Rebuild every book of ``table`` (see the module doc), as :class:`host.book.BookSet` would
    with ``apply(msg, seq)`` for each decoded message in feed order.

    A message's ``seq`` is its MoldUDP64 sequence number for pcap tables
    (``table.seq``), else its position in the feed plus ``first_seq``. In strict
    mode the first bad message raises :class:`host.book.BookError`. ``depth``
    levels a side are kept in the result (None: all).
    """
    kind = np.full(table.n_messages, NO_TYPE, np.uint8)
    bufs, sizes = [], np.empty(len(TYPES), np.int64)
    for k, code in enumerate(TYPES):
        t = np.ascontiguousarray(table[code])
        kind[t["index"]] = k
        bufs.append(t.view(np.uint8).reshape(-1) if len(t) else np.zeros(1, np.uint8))
        sizes[k] = t.dtype.itemsize
    n_locates = 1 + max((int(table[c]["stock_locate"].max()) for c in TYPES if len(table[c])), default=0)
    tracked = np.ones(n_locates, np.bool_)       # stock locates above the table's largest never occur
    if instruments is not None:
        tracked[:] = False
        keep = np.fromiter((int(i) for i in instruments), np.int64)
        tracked[keep[(keep >= 0) & (keep < n_locates)]] = True
    seq_of = np.asarray(table.seq, np.uint64) if table.seq is not None else np.empty(0, np.uint64)

    st = np.zeros(_ROW + len(TYPES), np.int64)
    st[_BITS] = 12
    counters = np.zeros(len(COUNTERS), np.int64)
    err = np.full(4, -1, np.int64)
    ot = np.zeros((1 << 12, 4), np.int64)
    ot[:, _SIDE] = -1
    bk = np.zeros((2 * n_locates, 3), np.int64)
    lv = np.empty((1 << 14, 3), np.int64)
    n_book = sum(len(table[c]) for c in TYPES)
    tob = np.empty((max(n_book // 2, 1024), 7), np.int64)       # grows if tops change more often
    trades = np.empty((sum(len(table[c]) for c in "ECP") + 1, 9), np.int64)   # one per E, C, P at most
    bufs = tuple(bufs)
    i = 0
    while True:
        i = _run(i, kind, bufs, sizes, _OFFS, seq_of, np.int64(first_seq), tracked, bool(strict), st, counters,
                 err, ot, bk, lv, tob, trades)
        if err[0] >= 0:
            raise BookError(COUNTERS[err[0]], chr(err[1]), int(np.int64(err[2]).view(np.uint64)),
                            int(np.int64(err[3]).view(np.uint64)))
        if i >= len(kind):
            break
        # the pass stopped for room: grow what is short and resume at message i
        if st[_NTOB] == len(tob):
            tob = _grown(tob)
        if st[_NTRADES] == len(trades):
            trades = _grown(trades)
        if 2 * (st[_LIVE] + 1) > len(ot):
            st[_BITS] += 1
            ot = _rehash(ot, int(st[_BITS]))
        if st[_USED] + 2 * st[_MAXCAP] + 8 > len(lv):
            lv = _grown(lv)

    counts = dict(zip(COUNTERS, counters.tolist()))
    counts["messages"] = len(table)
    out = {}
    for b in np.flatnonzero(bk[:, 2] > 0).tolist():
        inst, side = divmod(b, 2)
        s, n = int(bk[b, 0]), int(bk[b, 1])
        run = lv[s + max(n - (n if depth is None else depth), 0):s + n][::-1].copy()
        if side:
            run[:, 0] = -run[:, 0]
        sides = out.setdefault(inst, [np.empty((0, 3), np.int64), np.empty((0, 3), np.int64)])
        sides[side] = run
    return FastBooks(_view(TOB_DTYPE, tob[:st[_NTOB]]), _view(TRADE_DTYPE, trades[:st[_NTRADES]]), counts,
                     {i: tuple(v) for i, v in sorted(out.items())}, int(st[_LIVE]))
