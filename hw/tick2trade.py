"""Tick to trade: trigger -> risk -> NewOrderSingle encoder -> FIX sequencer, as one component.

Top-of-book records (with their book slot) go in; complete, stamped FIX
messages come out, the host's downstream-stamped messages merged into the
same MsgSeqNum sequence. Latency from a record accepted to the first byte of
its order out: 3 (trigger) + 3 (risk) + 1 (encoder) + 1 (sequencer) = 8
cycles when nothing is in the way (``tests/hw/test_tick2trade.py`` measures
it). Reports go to the host as ORDER_SENT (``sent``), RISK_REJECT
(``reject``) and FIX_STAMPED (``stamped``) records.
"""

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from hw.csr import block_signature
from hw.fixenc import OrderEncoder
from hw.risk import RejectRecord, Risk
from hw.sequencer import OrderSentRecord, Sequencer, StampedRecord
from hw.stream import Beat
from hw.trigger import Trigger, TriggerIn
from protocols.registers_trade import FIXSEQ, ORDER, RISK, TRIGGER


class TickToTrade(wiring.Component):
    """The gateware order path.

    Attributes
    ----------
    i : stream of TriggerIn
        Top-of-book records with the book's slot.
    host : stream of Beat
        Host FIX messages (templates with a zero ``34=`` placeholder).
    o : stream of Beat
        Stamped FIX messages for the session's TCP connection.
    sent, reject, stamped : report streams (ORDER_SENT, RISK_REJECT, FIX_STAMPED)
    cycle : the free-running cycle counter
    trigger, risk, order, fixseq : registers of those blocks
    """

    def __init__(self, slots: int = 32):
        self.slots = slots
        super().__init__({
            "i": In(stream.Signature(TriggerIn)), "host": In(stream.Signature(Beat)),
            "o": Out(stream.Signature(Beat)), "sent": Out(stream.Signature(OrderSentRecord)),
            "reject": Out(stream.Signature(RejectRecord)), "stamped": Out(stream.Signature(StampedRecord)),
            "cycle": In(64),
            "trigger": In(block_signature(TRIGGER)), "risk": In(block_signature(RISK)),
            "order": In(block_signature(ORDER)), "fixseq": In(block_signature(FIXSEQ)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.trigger = trigger = Trigger(self.slots)
        m.submodules.risk = risk = Risk(self.slots)
        m.submodules.encoder = encoder = OrderEncoder(self.slots)
        m.submodules.sequencer = sequencer = Sequencer()
        connect(m, flipped(self.trigger), trigger.csr)
        connect(m, flipped(self.risk), risk.csr)
        connect(m, flipped(self.order), encoder.csr)
        connect(m, flipped(self.fixseq), sequencer.csr)
        connect(m, flipped(self.i), trigger.i)
        connect(m, trigger.o, risk.i)
        connect(m, risk.o, encoder.i)
        connect(m, encoder.o, sequencer.a)
        connect(m, flipped(self.host), sequencer.b)
        connect(m, sequencer.o, flipped(self.o))
        connect(m, sequencer.sent, flipped(self.sent))
        connect(m, sequencer.stamped, flipped(self.stamped))
        connect(m, risk.reject, flipped(self.reject))
        m.d.comb += [risk.cycle.eq(self.cycle), sequencer.cycle.eq(self.cycle)]
        return m


def build_tick2trade() -> TickToTrade:
    """The path with 32 slots, for out-of-context synthesis (``python -m hw.synth_trade``)."""
    return TickToTrade(32)
