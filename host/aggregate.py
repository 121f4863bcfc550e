"""Signal aggregation: weight by confidence, resolve conflicts, drop the weak.

What
    :func:`aggregate` turns the signals of every generator into at most one
    :class:`AggregatedSignal` per instrument:

    1. signals under ``min_confidence`` (0.6) are dropped;
    2. per instrument, each direction (+1 long, -1 short, 0 flat) gets the
       vote ``w_d = sum(weight_source * confidence)``;
    3. the direction with the largest vote wins; a tie between the top two
       resolves to flat (0) - conflicting views never open risk;
    4. the result's confidence is ``margin * mean``: ``margin = (w_win -
       w_second) / sum(w)`` (1 when all agree) times the confidence-weighted
       mean confidence of the winning signals; its strength is their
       confidence-weighted mean strength;
    5. results under ``min_confidence`` are dropped.

Why
    DESIGN.md's aggregation stage. Sums are ``math.fsum`` (exactly rounded)
    and the output is sorted by instrument, so the result does not depend on
    the order the signals arrived in (a tested property).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

from host.config import AggregationConfig
from host.types import Signal

__all__ = ["AggregatedSignal", "aggregate"]


@dataclass(frozen=True)
class AggregatedSignal:
    """The combined view of one instrument.

    sources: the sources of the winning signals, sorted; expected_return:
    the confidence-weighted mean of the winners' (None if none had one);
    ratio/group: from the strongest winner (ties broken by source and group names).
    """

    instrument: str
    direction: int
    confidence: float
    strength: float
    sources: tuple[str, ...]
    n_signals: int
    expected_return: float | None = None
    group: str = ""
    ratio: float = 1.0


def aggregate(signals: Iterable[Signal], config: AggregationConfig = AggregationConfig()) -> list[AggregatedSignal]:
    """Combine ``signals`` per instrument (see the module docstring); sorted by instrument."""
    by_instrument: dict[str, list[Signal]] = defaultdict(list)
    for s in signals:
        if s.confidence >= config.min_confidence:
            by_instrument[s.instrument].append(s)
    out = []
    for instrument in sorted(by_instrument):
        group = by_instrument[instrument]
        weight = [config.source_weights.get(s.source, 1.0) * s.confidence for s in group]
        votes = {d: math.fsum(w for w, s in zip(weight, group) if s.direction == d) for d in (-1, 0, 1)}
        total = math.fsum(votes.values())
        if total <= 0:
            continue
        ranked = sorted(votes.values(), reverse=True)
        if ranked[0] == ranked[1]:
            winner = 0  # a tie between views never opens risk
        else:
            winner = max(votes, key=votes.get)
        margin = (votes[winner] - max(v for d, v in votes.items() if d != winner)) / total
        win = [(w, s) for w, s in zip(weight, group) if s.direction == winner]
        if not win:
            continue  # a tie of +1 and -1 with no flat signal: nothing to do
        wsum = math.fsum(w for w, _ in win)
        if wsum <= 0:
            continue
        mean_conf = math.fsum(w * s.confidence for w, s in win) / wsum
        confidence = min(1.0, max(0.0, margin * mean_conf))
        if confidence < config.min_confidence:
            continue
        strength = math.fsum(w * s.strength for w, s in win) / wsum
        with_er = [(w, s.expected_return) for w, s in win if s.expected_return is not None]
        er_w = math.fsum(w for w, _ in with_er)
        expected = math.fsum(w * e for w, e in with_er) / er_w if with_er and er_w > 0 else None
        lead = max(win, key=lambda ws: (ws[0], ws[1].source, ws[1].group, ws[1].ratio))[1]
        out.append(AggregatedSignal(instrument, winner, confidence, strength,
                                    tuple(sorted({s.source for _, s in win})), len(group), expected,
                                    lead.group, lead.ratio))
    return out
