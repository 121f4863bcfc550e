"""MDIO master (``hw/mac/mdio.py``) bit by bit against a clause 22 PHY model, in amaranth.sim."""

import random

import pytest
from amaranth.sim import Simulator

from hw.mac.mdio import Mdio
from sim.streams import SimBench

pytestmark = pytest.mark.sim
RESET_CYCLES = 5
BENCH = SimBench(Mdio(reset_cycles=RESET_CYCLES))


class PhyModel:
    """IEEE 802.3 clause 22 management slave: samples MDIO at MDC rising edges, drives read data after them."""

    def __init__(self, address: int, regs: dict[int, int]):
        self.address, self.regs = address, dict(regs)
        self.ones, self.bits, self.out = 0, None, []
        self.drive = None              # bit the PHY drives, or None
        self.transactions = []

    def rising_edge(self, line: int) -> None:
        """One MDC rising edge with ``line`` on MDIO; sets what the PHY drives until the next one."""
        if self.out:                   # answering a read: the next bit, None to release the line
            self.drive = self.out.pop(0)
            return
        if self.bits is None:          # preamble: 32 ones, then the start bit 0
            if line == 0 and self.ones >= 32:
                self.bits = [0]
            self.ones = self.ones + 1 if line else 0
            return
        self.bits.append(line)
        b = self.bits
        if len(b) == 14:               # ST OP PHYAD REGAD
            st, op = b[0:2], b[2:4]
            phy = int("".join(map(str, b[4:9])), 2)
            reg = int("".join(map(str, b[9:14])), 2)
            assert st == [0, 1], f"start bits {st}"
            self.op, self.phy, self.reg = op, phy, reg
            if op == [1, 0]:           # read: back to waiting for a preamble (and answer if addressed)
                if phy == self.address:    # turnaround Z then 0, then 16 data bits
                    value = self.regs.get(reg, 0)
                    self.out = [0] + [(value >> (15 - i)) & 1 for i in range(16)] + [None]
                    self.transactions.append(("read", reg, value))
                self.bits, self.ones = None, 0
        elif len(b) == 32:             # write: TA "10" then 16 data bits
            assert self.op == [0, 1], f"opcode {self.op}"
            assert b[14:16] == [1, 0], f"write turnaround {b[14:16]}"
            value = int("".join(map(str, b[16:32])), 2)
            if self.phy == self.address:
                self.regs[self.reg] = value
                self.transactions.append(("write", self.reg, value))
            self.bits, self.ones = None, 0


def run(commands, phys, divider=2):
    """Issue (read, phy, reg, value) commands; returns the read results and the bus faults seen."""
    dut = BENCH.dut
    results, faults = [], []

    async def phy_bus(ctx):
        last_mdc = 0
        async for *_, mdc, o, oe in ctx.tick().sample(dut.pins.mdc, dut.pins.mdio_o, dut.pins.mdio_oe):
            driven = [p.drive for p in phys if p.drive is not None]
            if oe and driven:
                faults.append("contention")
            line = o if oe else (driven[0] if driven else 1)    # pull-up when nobody drives
            ctx.set(dut.pins.mdio_i, line)
            if mdc and not last_mdc:
                for p in phys:
                    p.rising_edge(line)
            last_mdc = mdc

    async def host(ctx):
        ctx.set(dut.csr.divider, divider)
        for read, phy, reg, value in commands:
            ctx.set(dut.csr.command, value | reg << 16 | phy << 21 | read << 26)
            ctx.set(dut.csr.command_w, 1)
            await ctx.tick()
            ctx.set(dut.csr.command_w, 0)
            await ctx.tick()
            while ctx.get(dut.csr.status) >> 16 & 1:
                await ctx.tick()
            if read:
                results.append(ctx.get(dut.csr.status) & 0xFFFF)

    sim = Simulator(dut)               # the PHY model runs beside the host as a background testbench
    sim.add_clock(1e-8)
    sim.add_testbench(phy_bus, background=True)
    sim.add_testbench(host)
    sim.run()
    return results, faults


def test_reads_and_writes_on_two_phys():
    """Writes land in the addressed PHY's registers, reads return them; no bus contention, no stray bits."""
    rng = random.Random(22)
    phys = [PhyModel(1, {r: rng.randrange(1 << 16) for r in range(32)}),
            PhyModel(3, {r: rng.randrange(1 << 16) for r in range(32)})]
    model = {p.address: dict(p.regs) for p in phys}
    commands, want = [], []
    for _ in range(30):
        phy, reg = rng.choice([1, 3]), rng.randrange(32)
        if rng.random() < 0.5:
            value = rng.randrange(1 << 16)
            commands.append((0, phy, reg, value))
            model[phy][reg] = value
        else:
            commands.append((1, phy, reg, 0))
            want.append(model[phy][reg])
    results, faults = run(commands, phys)
    assert faults == []
    assert results == want
    for p in phys:
        assert p.regs == model[p.address]
    assert sum(len(p.transactions) for p in phys) == len(commands)


def test_phy_reset_after_power_on_and_on_request():
    dut = BENCH.dut
    seen = []

    async def job(ctx):
        for _ in range(RESET_CYCLES + 3):
            seen.append(ctx.get(dut.pins.phy_rst))
            await ctx.tick()
        ctx.set(dut.csr.phy_reset, 1)
        await ctx.tick()
        seen.append(ctx.get(dut.pins.phy_rst))
        seen.append(ctx.get(dut.csr.status) >> 17 & 1)
    BENCH.run(job)
    assert seen[:RESET_CYCLES] == [1] * RESET_CYCLES and seen[RESET_CYCLES + 1] == 0
    assert seen[-2:] == [1, 1]


def test_command_while_busy_is_ignored_and_counted():
    dut = BENCH.dut
    ignored = []

    async def job(ctx):
        ctx.set(dut.csr.divider, 2)
        ctx.set(dut.csr.command, 1 << 26)
        ctx.set(dut.csr.command_w, 1)
        await ctx.tick()
        ignored.append(ctx.get(dut.csr.ignored))     # the second write, one cycle in
        await ctx.tick()
        ctx.set(dut.csr.command_w, 0)
        done = 0
        for _ in range(2000):
            done += ctx.get(dut.csr.transactions)
            await ctx.tick()
        ignored.append(done)
    BENCH.run(job)
    assert ignored == [1, 1]
