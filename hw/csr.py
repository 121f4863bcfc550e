"""The register file generated from ``protocols/registers.py``.

A stage declares ``csr: In(block_signature(BLOCK))`` and sees its registers as
plain signals: RW registers (and their write pulses) come in, status registers
go out, and counters go out as per-cycle increments. :class:`CsrBank` holds the
storage and the counters for a whole :class:`~protocols.registers.RegisterMap`
and serves them on a simple bus with a fixed one-cycle read latency.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from protocols.registers import BUS_ADDR_WIDTH, BUS_DATA_WIDTH, Access, RegisterBlock, RegisterMap


class BusSignature(wiring.Signature):
    """The register bus, from the host side (the bank is its target).

    A write happens in the cycle ``w_stb`` is high. A read is requested with
    ``r_stb``; ``r_data`` holds the value in the next cycle and stays until
    the next read.
    """

    def __init__(self):
        super().__init__({
            "addr": Out(BUS_ADDR_WIDTH),
            "w_stb": Out(1),
            "w_data": Out(BUS_DATA_WIDTH),
            "r_stb": Out(1),
            "r_data": In(BUS_DATA_WIDTH),
        })


def block_signature(block: RegisterBlock) -> wiring.Signature:
    """The registers of ``block`` as a stage sees them (use it as ``In(...)`` on the stage).

    RW registers are inputs of the stage (``<name>``, plus ``<name>_w`` for a
    write strobe); RO registers are outputs; counters are outputs named
    ``<name>`` carrying the increment for the current cycle.
    """
    members = {}
    for reg in block.registers:
        if reg.access is Access.RW:
            members[reg.name] = Out(reg.width, init=reg.reset)
            if reg.strobe:
                members[reg.name + "_w"] = Out(1)
        elif reg.access is Access.RO:
            members[reg.name] = In(reg.width)
        else:
            members[reg.name] = In(reg.inc_width)
    return wiring.Signature(members)


class CsrBank(wiring.Component):
    """Register storage, counters and the bus decoder for a register map.

    ``bus`` is the host's port; each block of the map is a member named after
    the block, to be connected to the stage's ``csr`` port.
    """

    def __init__(self, register_map: RegisterMap):
        self._map = register_map
        members = {"bus": In(BusSignature())}
        for block in register_map.blocks:
            members[block.name] = Out(block_signature(block))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        readable = []          # (address, value) for the read multiplexer
        for mapped in self._map:
            reg = mapped.register
            port = getattr(self, mapped.block)
            if reg.access is Access.RW:
                value = getattr(port, reg.name)
                hit = bus.w_stb & (bus.addr == mapped.address)
                with m.If(hit):
                    m.d.sync += value.eq(bus.w_data[:reg.width])
                if reg.strobe:
                    m.d.sync += getattr(port, reg.name + "_w").eq(hit)
            elif reg.access is Access.RO:
                value = getattr(port, reg.name)
            else:
                value = Signal(reg.width, name=f"{mapped.block}_{reg.name}_count")
                total = value + getattr(port, reg.name)
                if reg.saturate:
                    m.d.sync += value.eq(total[reg.width:].any().replicate(reg.width) | total[:reg.width])
                else:
                    m.d.sync += value.eq(total)
            readable.append((mapped.address, value))
        read_value = Signal(BUS_DATA_WIDTH)
        with m.Switch(bus.addr):
            for address, value in readable:
                with m.Case(address):
                    m.d.comb += read_value.eq(value)
        with m.If(bus.r_stb):
            m.d.sync += bus.r_data.eq(read_value)
        return m
