"""Background order flow: seeded resting liquidity and random aggressive orders.

:class:`BackgroundFlow` is a request generator, not a feed: every order,
cancel and replace it makes goes through the matching engine like anyone
else's, so the published ITCH is the book's own story and calarb's orders meet
real (simulated) liquidity. It borrows :mod:`sim.itchfeed`'s picture of a
day: a fair value per symbol doing a random walk on the tick grid, passive
orders a geometric number of ticks from it, round lots with a geometric count,
and a mix of adds, cancels, replaces and marketable orders. The same seed and
the same engine answers give the same requests.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

from sim.exchange.matching import (BUY, DAY, IOC, SELL, CancelRequest, ExecReport, NewOrder, ReplaceRequest)

OWNER = "FLOW"


@dataclass(frozen=True)
class FlowConfig:
    """Shape of the background flow. Shares of actions are normalised."""

    seed: int = 1
    rate: float = 200.0          # requests per second (the venue's timer)
    depth: int = 5               # price levels per side placed at start
    max_orders: int = 200        # live flow orders per symbol before cancels take over
    add: float = 0.5
    cancel: float = 0.3
    replace: float = 0.05
    aggressive: float = 0.15
    market_share: float = 0.3    # of aggressive orders, the share that are market orders


def _geometric(rng: random.Random, p: float) -> int:
    return max(1, math.ceil(math.log(1.0 - rng.random()) / math.log(1.0 - p)))


class BackgroundFlow:
    """Requests for ``prices`` (symbol -> starting price, price4) on a ``ticks`` grid."""

    def __init__(self, prices: Mapping[str, int], ticks: Mapping[str, int], cfg: FlowConfig = FlowConfig(),
                 owner: str = OWNER):
        self.cfg = cfg
        self.owner = owner
        self.rng = random.Random(cfg.seed)
        self.ticks = dict(ticks)
        self.fair = {s: max(1, p // self.ticks[s]) for s, p in prices.items()}   # in ticks
        self.symbols = sorted(prices)
        self.live: dict[str, dict[str, ExecReport | None]] = {s: {} for s in self.symbols}
        self.next_id = 1
        total = cfg.add + cfg.cancel + cfg.replace + cfg.aggressive
        self.cdf = [x / total for x in (cfg.add, cfg.add + cfg.cancel, cfg.add + cfg.cancel + cfg.replace)]

    def _cl(self) -> str:
        cl, self.next_id = f"F{self.next_id}", self.next_id + 1
        return cl

    def _lot(self) -> int:
        return 100 * min(_geometric(self.rng, 0.4), 20)

    def _passive(self, sym: str, side: str, offset_ticks: int | None = None) -> NewOrder:
        d = offset_ticks if offset_ticks is not None else _geometric(self.rng, 0.45)
        fair = self.fair[sym]
        px = fair - d if side == BUY else fair + d
        cl = self._cl()
        self.live[sym][cl] = None
        return NewOrder(self.owner, cl, sym, side, self._lot(), max(1, px) * self.ticks[sym], DAY)

    def opening(self) -> list[NewOrder]:
        """Resting orders on ``depth`` levels each side of every symbol."""
        out = []
        for sym in self.symbols:
            for d in range(1, self.cfg.depth + 1):
                for side in (BUY, SELL):
                    out.append(self._passive(sym, side, d))
        return out

    def on_report(self, r: ExecReport) -> None:
        """Follow the flow's own orders (call with every ExecReport it owns)."""
        live = self.live.get(r.symbol)
        if live is None:
            return
        live.pop(r.orig_cl_ord_id, None)
        if r.done:
            live.pop(r.cl_ord_id, None)
        else:
            live[r.cl_ord_id] = r

    def step(self):
        """The next request (a NewOrder, CancelRequest or ReplaceRequest)."""
        rng = self.rng
        sym = rng.choice(self.symbols)
        u = rng.random()
        if u < 0.2:
            self.fair[sym] += 1
        elif u < 0.4 and self.fair[sym] > 2:
            self.fair[sym] -= 1
        live = [(cl, r) for cl, r in self.live[sym].items() if r is not None]
        a = rng.random()
        if len(live) >= self.cfg.max_orders:
            a = self.cdf[0]     # cancel
        if a < self.cdf[0] or (not live and a < self.cdf[2]):
            return self._passive(sym, rng.choice((BUY, SELL)))
        if a < self.cdf[1]:
            cl, r = live[rng.randrange(len(live))]
            return CancelRequest(self.owner, self._cl(), cl, sym, r.side)
        if a < self.cdf[2]:
            cl, r = live[rng.randrange(len(live))]
            tick = self.ticks[sym]
            if rng.random() < 0.5 and r.leaves_qty > 100:
                qty = r.order_qty - 100                              # smaller, same price: keeps priority
                price = r.price
            else:
                qty = r.cum_qty + self._lot()
                d = _geometric(rng, 0.45)
                price = max(1, self.fair[sym] - d if r.side == BUY else self.fair[sym] + d) * tick
            return ReplaceRequest(self.owner, self._cl(), cl, qty, price, sym, r.side)
        side = rng.choice((BUY, SELL))
        cl = self._cl()
        self.live[sym][cl] = None
        if rng.random() < self.cfg.market_share:
            return NewOrder(self.owner, cl, sym, side, self._lot(), None, IOC)
        px = (self.fair[sym] + 1 if side == BUY else self.fair[sym] - 1) * self.ticks[sym]
        return NewOrder(self.owner, cl, sym, side, self._lot(), max(px, self.ticks[sym]), IOC)
