"""Portfolio risk before any order: limits, VaR, exposure, drawdown, kill switch.

What
    :class:`RiskManager` holds positions, marks (last prices) and return
    histories, and answers :meth:`~RiskManager.check` for an
    :class:`~host.types.OrderIntent` with a :class:`RiskDecision`. An order is
    accepted only if

    * order limits hold: quantity, notional (``quantity * limit``), and the
      fat-finger band ``|limit / mark - 1| <= max_price_deviation``;
    * and either the order only *reduces* the instrument's position (same
      sign, smaller size: risk-reducing orders are always let through so a
      breach can be unwound), or the *post-trade* portfolio passes every
      limit: position and notional per instrument, gross and net exposure,
      gross and net per sector, VaR (historical, parametric or both), and the
      manager is neither in drawdown breach nor killed.

    :func:`historical_var` and :func:`parametric_var` are the VaR functions
    (loss at ``confidence`` over one return period, currency units):
    historical is the empirical quantile of ``returns @ exposure`` (the
    ``inverted_cdf`` quantile: an observed loss, never interpolated below
    it); parametric is ``z * sqrt(e' C e)`` with ``C`` the sample covariance
    of the same returns.

    A breach of the *current* portfolio (drawdown from :meth:`update_equity`,
    or limits after marks move, :meth:`check_portfolio`) blocks new risk and,
    with ``kill_on_breach``, calls ``on_kill(reason)`` once - the hook that
    trips the gateware kill switch.

Why
    DESIGN.md: risk checks (VaR, exposure, drawdown) before every order, under
    1 s (this is microseconds). Money is in currency units (floats); marks
    come from top-of-book mids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable

import numpy as np

from host.config import RiskLimits
from host.types import OrderIntent, e4_to_price

__all__ = ["RiskDecision", "RiskError", "RiskManager", "historical_var", "parametric_var"]


class RiskError(ValueError):
    """Invalid input to the risk stage (return histories of different lengths, ...)."""


def historical_var(returns: np.ndarray, exposure: np.ndarray, confidence: float) -> float:
    """Historical VaR: the ``confidence`` quantile of losses ``-(returns @ exposure)`` (>= 0)."""
    if returns.shape[0] == 0:
        return 0.0
    losses = -(returns @ exposure)
    return max(0.0, float(np.quantile(losses, confidence, method="inverted_cdf")))


def parametric_var(returns: np.ndarray, exposure: np.ndarray, confidence: float) -> float:
    """Parametric (normal, zero-mean) VaR: ``z_confidence * sqrt(e' C e)``."""
    if returns.shape[0] < 2:
        return 0.0
    cov = np.atleast_2d(np.cov(returns, rowvar=False))
    var = float(exposure @ cov @ exposure)
    return NormalDist().inv_cdf(confidence) * math.sqrt(max(var, 0.0))


@dataclass(frozen=True)
class RiskDecision:
    """Outcome of a pre-trade check: ``breaches`` are limit names, ``reasons`` say why in words."""

    accepted: bool
    breaches: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    reducing: bool = False
    var: dict | None = None


class RiskManager:
    """Pre-trade and portfolio risk (see the module docstring).

    ``sectors`` maps instruments to sectors (unknown ones fall in
    ``"default"``); ``on_kill(reason)`` is called when a breach trips the
    kill switch; ``on_breach(limit)`` once per breached limit (metrics).
    """

    def __init__(self, limits: RiskLimits = RiskLimits(), sectors: dict[str, str] | None = None, *,
                 on_kill: Callable[[str], None] | None = None, on_breach: Callable[[str], None] | None = None):
        self.limits = limits
        self.sectors = dict(sectors or {})
        self.on_kill = on_kill
        self.on_breach = on_breach
        self.positions: dict[str, int] = {}
        self.marks: dict[str, float] = {}
        self.returns: dict[str, np.ndarray] = {}
        self.peak_equity: float | None = None
        self.equity: float | None = None
        self.drawdown_breached = False
        self.killed: str | None = None
        self.breach_counts: dict[str, int] = {}

    # ---------------------------------------------------------------- state

    def mark(self, instrument: str, price: float) -> None:
        """Last price (currency units) used for notional and exposure."""
        if not (price > 0 and math.isfinite(price)):
            raise RiskError(f"mark for {instrument} must be > 0, got {price!r}")
        self.marks[instrument] = float(price)

    def set_returns(self, instrument: str, returns) -> None:
        """Return history (fractions per period, oldest first); every instrument's must have the same length."""
        r = np.asarray(returns, dtype=float)
        if r.ndim != 1 or not np.all(np.isfinite(r)):
            raise RiskError(f"returns for {instrument} must be a finite 1-d array")
        other = next((v for k, v in self.returns.items() if k != instrument), None)
        if other is not None and other.size != r.size:
            raise RiskError(f"returns for {instrument} have {r.size} periods, others have {other.size}")
        self.returns[instrument] = r

    def apply_fill(self, instrument: str, signed_qty: int) -> None:
        self.positions[instrument] = self.positions.get(instrument, 0) + int(signed_qty)

    def update_equity(self, equity: float) -> bool:
        """Track equity (realised + unrealised P&L + capital); returns whether the drawdown limit is breached."""
        self.equity = float(equity)
        self.peak_equity = self.equity if self.peak_equity is None else max(self.peak_equity, self.equity)
        lim = self.limits.max_drawdown
        if lim is not None and self.peak_equity - self.equity > lim and not self.drawdown_breached:
            self.drawdown_breached = True
            self._breach("drawdown", trip=True)
        return self.drawdown_breached

    @property
    def drawdown(self) -> float:
        return 0.0 if self.equity is None else self.peak_equity - self.equity

    def kill(self, reason: str) -> None:
        """Stop all new risk and call ``on_kill`` (once)."""
        if self.killed is None:
            self.killed = reason
            if self.on_kill is not None:
                self.on_kill(reason)

    def reset(self) -> None:
        """Operator reset after review: clear the kill and drawdown state (peak restarts at current equity)."""
        self.killed = None
        self.drawdown_breached = False
        self.peak_equity = self.equity

    def _breach(self, limit: str, *, trip: bool = False) -> None:
        self.breach_counts[limit] = self.breach_counts.get(limit, 0) + 1
        if self.on_breach is not None:
            self.on_breach(limit)
        if trip and self.limits.kill_on_breach:
            self.kill(f"{limit} limit breached")

    # ---------------------------------------------------------------- measures

    def _sector(self, instrument: str) -> str:
        return self.sectors.get(instrument, "default")

    def exposures(self, positions: dict[str, int] | None = None) -> dict[str, float]:
        """Notional per instrument (signed, currency units) at the marks."""
        positions = self.positions if positions is None else positions
        return {k: q * self.marks[k] for k, q in positions.items() if q and k in self.marks}

    def var(self, positions: dict[str, int] | None = None) -> dict[str, float]:
        """``{"historical": ..., "parametric": ...}`` of ``positions`` (default: current)."""
        exp = self.exposures(positions)
        names = sorted(exp)
        missing = [k for k in names if k not in self.returns]
        if missing:
            raise RiskError(f"no return history for {', '.join(missing)}")
        if not names:
            return {"historical": 0.0, "parametric": 0.0}
        R = np.column_stack([self.returns[k] for k in names])
        e = np.array([exp[k] for k in names])
        c = self.limits.var_confidence
        return {"historical": historical_var(R, e, c), "parametric": parametric_var(R, e, c)}

    def portfolio_breaches(self, positions: dict[str, int]) -> tuple[list[str], list[str], dict | None]:
        """Limits that ``positions`` break: ``(limit names, reasons, var)``."""
        lim = self.limits
        names, reasons = [], []

        def breach(name, why):
            names.append(name)
            reasons.append(why)

        exp = self.exposures(positions)
        for k, q in sorted(positions.items()):
            if q and k not in self.marks:
                breach("no_mark", f"{k}: position {q} without a reference price")
            if abs(q) > lim.max_position:
                breach("max_position", f"{k}: position {q} beyond {lim.max_position}")
            if abs(exp.get(k, 0.0)) > lim.max_instrument_gross:
                breach("max_instrument_gross", f"{k}: notional {exp[k]:.2f} beyond {lim.max_instrument_gross}")
        gross = math.fsum(abs(v) for v in exp.values())
        net = math.fsum(exp.values())
        if gross > lim.max_gross:
            breach("max_gross", f"gross exposure {gross:.2f} beyond {lim.max_gross}")
        if abs(net) > lim.max_net:
            breach("max_net", f"net exposure {net:.2f} beyond {lim.max_net}")
        sectors: dict[str, list[float]] = {}
        for k, v in exp.items():
            sectors.setdefault(self._sector(k), []).append(v)
        for sec, vals in sorted(sectors.items()):
            sg, sn = math.fsum(abs(v) for v in vals), math.fsum(vals)
            if lim.max_sector_gross is not None and sg > lim.max_sector_gross:
                breach("max_sector_gross", f"sector {sec}: gross {sg:.2f} beyond {lim.max_sector_gross}")
            if lim.max_sector_net is not None and abs(sn) > lim.max_sector_net:
                breach("max_sector_net", f"sector {sec}: net {sn:.2f} beyond {lim.max_sector_net}")
        var = None
        if lim.var_limit is not None:
            try:
                var = self.var(positions)
            except RiskError as exc:
                breach("var", str(exc))
            else:
                methods = ("historical", "parametric") if lim.var_method == "both" else (lim.var_method,)
                for m in methods:
                    if var[m] > lim.var_limit:
                        breach("var", f"{m} VaR {var[m]:.2f} beyond {lim.var_limit}")
        return names, reasons, var

    def check_portfolio(self) -> tuple[str, ...]:
        """Limits the *current* portfolio breaks (after marks moved); each trips the kill switch."""
        names, _, _ = self.portfolio_breaches(self.positions)
        for n in dict.fromkeys(names):
            self._breach(n, trip=True)
        return tuple(dict.fromkeys(names))

    # ---------------------------------------------------------------- the check

    def check(self, order: OrderIntent) -> RiskDecision:
        """Accept or refuse ``order`` (see the module docstring); never raises for a bad order."""
        lim = self.limits
        names, reasons = [], []

        def breach(name, why):
            names.append(name)
            reasons.append(why)

        k = order.instrument
        limit_price = e4_to_price(order.limit_price)
        mark = self.marks.get(k)
        if order.quantity > lim.max_order_qty:
            breach("max_order_qty", f"quantity {order.quantity} beyond {lim.max_order_qty}")
        if order.quantity * limit_price > lim.max_order_notional:
            breach("max_order_notional",
                   f"notional {order.quantity * limit_price:.2f} beyond {lim.max_order_notional}")
        if mark is None:
            breach("no_mark", f"{k}: no reference price")
        elif not limit_price > 0 or abs(limit_price / mark - 1.0) > lim.max_price_deviation:
            breach("fat_finger", f"{k}: limit {limit_price} is more than {lim.max_price_deviation:.1%} from {mark}")
        before = self.positions.get(k, 0)
        after = before + order.signed_quantity
        reducing = before != 0 and abs(after) < abs(before) and (after == 0 or (after > 0) == (before > 0))
        var = None
        if not reducing and mark is not None:
            if self.killed is not None:
                breach("kill_switch", f"killed: {self.killed}")
            if self.drawdown_breached:
                breach("drawdown", f"drawdown {self.drawdown:.2f} beyond {lim.max_drawdown}")
            post = dict(self.positions)
            post[k] = after
            p_names, p_reasons, var = self.portfolio_breaches(post)
            names += p_names
            reasons += p_reasons
        for n in dict.fromkeys(names):
            self.breach_counts[n] = self.breach_counts.get(n, 0) + 1
            if self.on_breach is not None:
                self.on_breach(n)
        return RiskDecision(not names, tuple(dict.fromkeys(names)), tuple(reasons), reducing, var)
