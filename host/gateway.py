"""The one place where the host arms the gateware: trigger thresholds, risk limits, kill switch.

What
    :class:`Gateway` wraps one NIC and offers one method per action:
    :meth:`~Gateway.arm` (an :class:`host.arming.ArmedThreshold` into an
    instrument's trigger slot), :meth:`~Gateway.disarm`,
    :meth:`~Gateway.set_limits` (the pre-trade limits the gateware's risk
    stage enforces), :meth:`~Gateway.kill` and :meth:`~Gateway.clear` (the
    kill switch). Each action writes the registers named in
    :data:`REGISTERS` *if the NIC's register map has them*, and always
    records the intent (``intents``, the last state in ``armed``,
    ``limits``, ``killed``), so the engine and its tests see what was asked
    even before the trigger/risk gateware exists.

Why
    The trigger and risk gateware and their registers are being built in
    parallel; binding the host to their final register names is then a
    change to :data:`REGISTERS` alone. Field order of a multi-register
    action is the table's order, with the strobe (``arm``/``commit``)
    register last, so the gateware never sees half an update.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from host.arming import ArmedThreshold
from host.nic import Nic
from protocols.registers import RegisterError

__all__ = ["REGISTERS", "Gateway", "GatewayIntent", "GatewayLimits"]

REGISTERS: dict[str, tuple[tuple[str, str], ...]] = {
    # action: ((field, register name), ...); written in this order, the last one is the commit strobe
    "arm": (("slot", "trigger.slot"), ("buy_below", "trigger.buy_below"), ("sell_above", "trigger.sell_above"),
            ("max_qty", "trigger.max_qty"), ("delta_q16", "trigger.delta"), ("ref_e4", "trigger.ref"),
            ("enable", "trigger.arm")),
    "disarm": (("slot", "trigger.slot"), ("enable", "trigger.arm")),
    "limits": (("max_order_qty", "risk.max_order_qty"), ("max_order_notional_e4", "risk.max_notional"),
               ("max_position", "risk.max_position"), ("max_price_deviation_bps", "risk.fat_finger_bps"),
               ("commit", "risk.commit")),
    "kill": (("kill", "risk.kill"),),
}
"""Register names per action (the coordinator binds them to ``protocols/registers_trade.py`` here)."""


@dataclass(frozen=True)
class GatewayLimits:
    """The limits the gateware's risk stage checks per order (integers, as the registers hold them)."""

    max_order_qty: int
    max_order_notional_e4: int
    max_position: int
    max_price_deviation_bps: int

    @classmethod
    def from_risk(cls, limits) -> "GatewayLimits":
        """From :class:`host.config.RiskLimits` (money in currency units -> 1/10000 units)."""
        return cls(int(limits.max_order_qty), int(round(limits.max_order_notional * 10_000)),
                   int(limits.max_position), int(round(limits.max_price_deviation * 10_000)))


@dataclass(frozen=True)
class GatewayIntent:
    """One action as asked: ``written`` lists the registers actually written (empty: intent only)."""

    action: str
    fields: dict
    written: tuple[str, ...] = ()
    time_ns: int = field(default_factory=time.time_ns)


class Gateway:
    """Arming, limits and kill switch of one NIC (see the module docstring).

    ``slots`` maps instruments to their trigger slot (the book slot table's
    index for that instrument, so the trigger sees the book's TOB).
    """

    def __init__(self, nic: Nic | None, slots: dict[str, int], *, registers=None):
        self.nic = nic
        self.slots = dict(slots)
        self.registers = REGISTERS if registers is None else registers
        self.intents: list[GatewayIntent] = []
        self.armed: dict[str, ArmedThreshold] = {}
        self.limits: GatewayLimits | None = None
        self.killed: str | None = None
        self.arm_count = 0

    def _has(self, name: str) -> bool:
        if self.nic is None:
            return False
        try:
            self.nic.register_map[name]
        except RegisterError:
            return False
        return True

    def bound(self, action: str) -> bool:
        """Whether every register of ``action`` exists in the NIC's register map (writes happen)."""
        return all(self._has(reg) for _, reg in self.registers[action])

    def _do(self, action: str, values: dict) -> GatewayIntent:
        written = []
        if self.bound(action):
            for fld, reg in self.registers[action]:
                mask = self.nic.register_map[reg].register.mask
                self.nic.write(reg, int(values[fld]) & mask)
                written.append(reg)
        intent = GatewayIntent(action, dict(values), tuple(written))
        self.intents.append(intent)
        return intent

    def _slot(self, instrument: str) -> int:
        try:
            return self.slots[instrument]
        except KeyError:
            raise KeyError(f"instrument {instrument!r} has no trigger slot (slots: {sorted(self.slots)})") from None

    # ---------------------------------------------------------------- actions

    def arm(self, threshold: ArmedThreshold) -> GatewayIntent:
        """Arm ``threshold.instrument``'s trigger (replacing what was armed)."""
        self.armed[threshold.instrument] = threshold
        self.arm_count += 1
        return self._do("arm", {"slot": self._slot(threshold.instrument), "buy_below": threshold.buy_below,
                                "sell_above": threshold.sell_above, "max_qty": threshold.max_qty,
                                "delta_q16": threshold.delta_q16, "ref_e4": threshold.ref_e4, "enable": 1})

    def disarm(self, instrument: str) -> GatewayIntent:
        self.armed.pop(instrument, None)
        return self._do("disarm", {"slot": self._slot(instrument), "enable": 0})

    def set_limits(self, limits: GatewayLimits) -> GatewayIntent:
        self.limits = limits
        return self._do("limits", {"max_order_qty": limits.max_order_qty,
                                   "max_order_notional_e4": limits.max_order_notional_e4,
                                   "max_position": limits.max_position,
                                   "max_price_deviation_bps": limits.max_price_deviation_bps, "commit": 1})

    def kill(self, reason: str = "") -> GatewayIntent:
        """Trip the kill switch: the gateware fires nothing until :meth:`clear`."""
        self.killed = reason or "kill"
        return self._do("kill", {"kill": 1, "reason": self.killed})

    def clear(self) -> GatewayIntent:
        self.killed = None
        return self._do("kill", {"kill": 0})
