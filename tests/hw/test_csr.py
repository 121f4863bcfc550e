"""Tests for hw/csr.py (the register bank) and protocols/registers.py (the register table).

The bank is simulated on a small register map built here, so every access kind,
width and counter mode appears at known addresses; a cycle-by-cycle Python
model of the bank (:class:`BankModel`) is the reference for a random workload.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.sim import Simulator

from hw.csr import CsrBank
from protocols.registers import (
    BUS_ADDR_WIDTH,
    BUS_DATA_WIDTH,
    REGISTER_MAP,
    Access,
    Register,
    RegisterBlock,
    RegisterError,
    RegisterMap,
    counter,
    ro,
    rw,
)

REPO = Path(__file__).resolve().parents[2]

CTRL = RegisterBlock("ctrl", "Control registers of a pretend stage.", (
    rw("mode", 8, "An 8-bit RW register.", reset=0xA5),
    rw("wide", 64, "A full-width RW register.", reset=0x0123_4567_89AB_CDEF),
    rw("go", 16, "An RW register whose write is an action.", reset=3, strobe=True),
    ro("status", 12, "A status field driven by the stage."),
))
STATS = RegisterBlock("stats", "Counters of a pretend stage.", (
    counter("events", "Wraps at 2^4.", width=4),
    counter("capped", "Saturates at 2^4 - 1.", width=4, saturate=True),
    counter("bytes", "Adds up to 15 per cycle, wraps at 2^8.", width=8, inc_width=4),
    counter("bytes_capped", "Adds up to 255 per cycle, saturates.", width=8, inc_width=8, saturate=True),
    rw("after", 4, "An RW register placed after the counters.", reset=0x9),
))
MAP = RegisterMap((CTRL, STATS))
ADDR = {m.name: m.address for m in MAP}
UNMAPPED = (len(MAP), len(MAP) + 1, (1 << BUS_ADDR_WIDTH) - 1)


def port_of(bank, name):
    block, reg = name.split(".")
    return getattr(getattr(bank, block), reg)


async def bus_write(ctx, bank, addr, value):
    ctx.set(bank.bus.addr, addr)
    ctx.set(bank.bus.w_data, value)
    ctx.set(bank.bus.w_stb, 1)
    await ctx.tick()
    ctx.set(bank.bus.w_stb, 0)


async def bus_read(ctx, bank, addr):
    ctx.set(bank.bus.addr, addr)
    ctx.set(bank.bus.r_stb, 1)
    await ctx.tick()
    ctx.set(bank.bus.r_stb, 0)
    return ctx.get(bank.bus.r_data)


def run(testbench):
    """Simulate a fresh bank on :data:`MAP` with ``testbench(ctx, bank)``."""
    bank = CsrBank(MAP)
    sim = Simulator(bank)
    sim.add_clock(1e-8)

    async def tb(ctx):
        await testbench(ctx, bank)

    sim.add_testbench(tb)
    sim.run()


# --------------------------------------------------------------------------- #
# The bank
# --------------------------------------------------------------------------- #

@pytest.mark.sim
def test_csr_rw_reset_values_on_bus_and_ports():
    async def tb(ctx, bank):
        for m in MAP:
            if m.register.access is Access.RW:
                assert ctx.get(port_of(bank, m.name)) == m.register.reset, m.name
                assert await bus_read(ctx, bank, m.address) == m.register.reset, m.name
    run(tb)


@pytest.mark.sim
def test_csr_rw_write_read_back_truncates_to_width():
    values = {"ctrl.mode": 0x5A, "ctrl.wide": 0xFEDC_BA98_7654_3210, "ctrl.go": 0xBEEF, "stats.after": 0x6}

    async def tb(ctx, bank):
        for name, value in values.items():
            await bus_write(ctx, bank, ADDR[name], value)
        for name, value in values.items():
            assert await bus_read(ctx, bank, ADDR[name]) == value, name
            assert ctx.get(port_of(bank, name)) == value, name
        # Bits above the register's width are dropped; reads are zero-extended.
        all_ones = (1 << BUS_DATA_WIDTH) - 1
        for name in values:
            await bus_write(ctx, bank, ADDR[name], all_ones)
            width = MAP[name].register.width
            assert await bus_read(ctx, bank, ADDR[name]) == (1 << width) - 1, name
    run(tb)


@pytest.mark.sim
def test_csr_read_latency_is_one_cycle_and_data_holds():
    async def tb(ctx, bank):
        await bus_write(ctx, bank, ADDR["ctrl.mode"], 0x11)
        await bus_write(ctx, bank, ADDR["ctrl.wide"], 0x22)
        ctx.set(bank.bus.addr, ADDR["ctrl.mode"])
        ctx.set(bank.bus.r_stb, 1)
        assert ctx.get(bank.bus.r_data) != 0x11          # not combinational
        await ctx.tick()
        ctx.set(bank.bus.r_stb, 0)
        assert ctx.get(bank.bus.r_data) == 0x11          # the cycle after the request
        ctx.set(bank.bus.addr, ADDR["ctrl.wide"])        # no r_stb: r_data holds
        await ctx.tick().repeat(3)
        assert ctx.get(bank.bus.r_data) == 0x11
        assert await bus_read(ctx, bank, ADDR["ctrl.wide"]) == 0x22
    run(tb)


@pytest.mark.sim
def test_csr_write_strobe_pulses_once_per_write_with_new_value():
    """``go_w`` is high for exactly one cycle per write to ``go``: the first cycle ``go`` shows the new value."""
    # Per cycle: None (idle) or (address, value) written in that cycle.
    ops = [None, ("ctrl.go", 7), None, None, ("ctrl.go", 8), ("ctrl.go", 9), ("ctrl.mode", 1),
           None, ("ctrl.go", 9), ("stats.after", 2), ("ctrl.wide", 3), None, None]

    async def tb(ctx, bank):
        go, go_w = bank.ctrl.go, bank.ctrl.go_w
        trace = []                                       # (value, strobe) during cycle k, sampled at its edge
        for op in ops + [None]:
            if op is None:
                ctx.set(bank.bus.w_stb, 0)
            else:
                ctx.set(bank.bus.addr, ADDR[op[0]])
                ctx.set(bank.bus.w_data, op[1])
                ctx.set(bank.bus.w_stb, 1)
            _, _, value, strobe = await ctx.tick().sample(go, go_w)
            trace.append((value, strobe))
        assert trace[0] == (3, 0)
        value = 3
        for k, op in enumerate(ops):
            wrote = op is not None and op[0] == "ctrl.go"
            if wrote:
                value = op[1]
            assert trace[k + 1] == (value, int(wrote)), (k, op, trace[k + 1])
        assert sum(s for _, s in trace) == sum(op is not None and op[0] == "ctrl.go" for op in ops)
    run(tb)


@pytest.mark.sim
def test_csr_writes_to_ro_counter_and_unmapped_addresses_are_ignored():
    async def tb(ctx, bank):
        ctx.set(bank.ctrl.status, 0xABC)
        ctx.set(bank.stats.events, 1)
        await ctx.tick().repeat(3)
        ctx.set(bank.stats.events, 0)
        before = {m.name: await bus_read(ctx, bank, m.address) for m in MAP}
        assert before["ctrl.status"] == 0xABC and before["stats.events"] == 3
        for name in ("ctrl.status", "stats.events", "stats.capped", "stats.bytes", "stats.bytes_capped"):
            await bus_write(ctx, bank, ADDR[name], 0)
            await bus_write(ctx, bank, ADDR[name], (1 << BUS_DATA_WIDTH) - 1)
        for addr in UNMAPPED:
            await bus_write(ctx, bank, addr, 0x5555)
        after = {m.name: await bus_read(ctx, bank, m.address) for m in MAP}
        assert after == before
        assert ctx.get(bank.ctrl.go_w) == 0
    run(tb)


@pytest.mark.sim
def test_csr_unmapped_address_reads_zero():
    async def tb(ctx, bank):
        for addr in UNMAPPED:
            assert await bus_read(ctx, bank, ADDR["ctrl.wide"]) != 0  # r_data is non-zero before
            assert await bus_read(ctx, bank, addr) == 0, addr
    run(tb)


@pytest.mark.sim
def test_csr_counter_wraps_and_saturates():
    cycles = 21                                          # 21 increments: wraps to 21 % 16 == 5

    async def tb(ctx, bank):
        ctx.set(bank.stats.events, 1)
        ctx.set(bank.stats.capped, 1)
        await ctx.tick().repeat(cycles)
        ctx.set(bank.stats.events, 0)
        ctx.set(bank.stats.capped, 0)
        assert await bus_read(ctx, bank, ADDR["stats.events"]) == cycles % 16
        assert await bus_read(ctx, bank, ADDR["stats.capped"]) == 15
        # A saturated counter stays saturated.
        ctx.set(bank.stats.capped, 1)
        await ctx.tick().repeat(2)
        ctx.set(bank.stats.capped, 0)
        assert await bus_read(ctx, bank, ADDR["stats.capped"]) == 15
    run(tb)


@pytest.mark.sim
def test_csr_counter_adds_multi_bit_increments():
    incs = [15, 0, 7, 15, 15, 1, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 9]   # sum 257: wraps to 1
    big = [200, 0, 54, 1, 1]                             # 254, 255, then 256 -> saturates at 255

    async def tb(ctx, bank):
        for k, inc in enumerate(incs):
            ctx.set(bank.stats.bytes, inc)
            ctx.set(bank.stats.bytes_capped, big[k] if k < len(big) else 0)
            await ctx.tick()
            if k == 2:
                ctx.set(bank.stats.bytes, 0)
                ctx.set(bank.stats.bytes_capped, 0)
                assert await bus_read(ctx, bank, ADDR["stats.bytes_capped"]) == 254
                assert await bus_read(ctx, bank, ADDR["stats.bytes"]) == 22
        ctx.set(bank.stats.bytes, 0)
        ctx.set(bank.stats.bytes_capped, 0)
        assert await bus_read(ctx, bank, ADDR["stats.bytes"]) == sum(incs) % 256
        assert await bus_read(ctx, bank, ADDR["stats.bytes_capped"]) == 255
    run(tb)


class BankModel:
    """What the bank holds, cycle by cycle: RW values, counter totals, the read register."""

    def __init__(self, register_map: RegisterMap):
        self.values = {m.name: m.register.reset for m in register_map}
        self.by_addr = {m.address: m for m in register_map}
        self.r_data = 0

    def cycle(self, op, incs: dict, ro_values: dict):
        """One clock edge: ``op`` is None, ("w", addr, data) or ("r", addr); ``incs`` counter increments."""
        read_now = dict(self.values, **ro_values)
        if op and op[0] == "r":
            m = self.by_addr.get(op[1])
            self.r_data = read_now[m.name] if m else 0
        if op and op[0] == "w":
            m = self.by_addr.get(op[1])
            if m and m.register.access is Access.RW:
                self.values[m.name] = op[2] & m.register.mask
        for name, inc in incs.items():
            reg = MAP[name].register
            total = self.values[name] + inc
            self.values[name] = min(total, reg.mask) if reg.saturate else total & reg.mask


@pytest.mark.sim
def test_csr_random_bus_traffic_matches_model():
    rng = random.Random(2024)
    model = BankModel(MAP)
    counters = [m for m in MAP if m.register.access is Access.COUNTER]
    addrs = [m.address for m in MAP] + list(UNMAPPED)

    async def tb(ctx, bank):
        for _ in range(400):
            kind = rng.choice("rrww-")
            addr = rng.choice(addrs)
            op = None
            ctx.set(bank.bus.w_stb, 0)
            ctx.set(bank.bus.r_stb, 0)
            if kind == "r":
                op = ("r", addr)
                ctx.set(bank.bus.addr, addr)
                ctx.set(bank.bus.r_stb, 1)
            elif kind == "w":
                op = ("w", addr, rng.getrandbits(64))
                ctx.set(bank.bus.addr, addr)
                ctx.set(bank.bus.w_data, op[2])
                ctx.set(bank.bus.w_stb, 1)
            incs = {m.name: rng.choice([0, 0, 1, (1 << m.register.inc_width) - 1,
                                        rng.getrandbits(m.register.inc_width)]) for m in counters}
            for name, inc in incs.items():
                ctx.set(port_of(bank, name), inc)
            status = rng.getrandbits(12)
            ctx.set(bank.ctrl.status, status)
            model.cycle(op, incs, {"ctrl.status": status})
            await ctx.tick()
            assert ctx.get(bank.bus.r_data) == model.r_data, op
            for m in MAP:
                if m.register.access is Access.RW:
                    assert ctx.get(port_of(bank, m.name)) == model.values[m.name], m.name
        for m in counters:
            ctx.set(port_of(bank, m.name), 0)
            model.cycle(None, {}, {})
        for m in counters:
            assert await bus_read(ctx, bank, m.address) == model.values[m.name], m.name
    run(tb)


# --------------------------------------------------------------------------- #
# The register table
# --------------------------------------------------------------------------- #

def test_registers_unknown_name_raises_register_error_naming_it():
    with pytest.raises(RegisterError, match=r"'mold\.no_such_register'") as info:
        REGISTER_MAP["mold.no_such_register"]
    assert isinstance(info.value, KeyError)              # dict-style lookups can catch it
    assert str(info.value).startswith("unknown register 'mold.no_such_register'")
    assert "mold.expected" in str(info.value)            # the message lists what exists
    with pytest.raises(RegisterError, match="'nope'"):
        REGISTER_MAP.block("nope")
    with pytest.raises(RegisterError, match=r"block 'eth' has no register 'bogus'"):
        REGISTER_MAP.block("eth")["bogus"]


def test_registers_lookup_by_name_and_addresses_are_consecutive():
    assert [m.address for m in REGISTER_MAP] == list(range(len(REGISTER_MAP)))
    assert REGISTER_MAP["mold.next_seq"].register.strobe
    assert REGISTER_MAP["mold.control"].register.reset == 0b01
    assert MAP["stats.events"].address == len(CTRL.registers)
    assert REGISTER_MAP.block("eth").counters == tuple(
        r for r in REGISTER_MAP.block("eth").registers if r.access is Access.COUNTER)


def test_registers_duplicate_names_rejected():
    with pytest.raises(ValueError, match=r"duplicate registers \['a'\]"):
        RegisterBlock("blk", "", (rw("a", 1, ""), ro("b", 1, ""), counter("a", "")))
    block = RegisterBlock("blk", "", (rw("a", 1, ""),))
    with pytest.raises(ValueError, match=r"duplicate register blk\.a"):
        RegisterMap((block, block))


@pytest.mark.parametrize("make, match", [
    (lambda: rw("w0", 0, ""), "width 0"),
    (lambda: rw("w65", BUS_DATA_WIDTH + 1, ""), "width 65"),
    (lambda: rw("neg", 8, "", reset=-1), "reset value does not fit"),
    (lambda: rw("big", 8, "", reset=256), "reset value does not fit"),
    (lambda: Register("ro_strobe", 8, Access.RO, "", strobe=True), "only RW registers have a write strobe"),
    (lambda: counter("inc0", "", width=8, inc_width=0), "inc_width out of range"),
    (lambda: counter("inc9", "", width=8, inc_width=9), "inc_width out of range"),
    (lambda: rw("not an identifier", 8, ""), "not an identifier"),
], ids=["width0", "width65", "reset_negative", "reset_too_big", "strobe_on_ro", "inc_width0",
        "inc_width_over_width", "bad_name"])
def test_registers_bad_declarations_rejected(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_registers_too_many_for_the_address_space_rejected():
    regs = tuple(ro(f"r{k}", 1, "") for k in range(1 << BUS_ADDR_WIDTH))
    RegisterMap((RegisterBlock("full", "", regs),))
    with pytest.raises(ValueError, match="do not fit"):
        RegisterMap((RegisterBlock("full", "", regs), RegisterBlock("one", "", (ro("x", 1, ""),))))


def test_registers_docs_are_up_to_date():
    """``docs/registers.md`` is what ``python -m protocols.registers`` generates."""
    result = subprocess.run([sys.executable, "-m", "protocols.registers", "--check"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (REPO / "docs" / "registers.md").read_text() == REGISTER_MAP.markdown()


def test_registers_check_fails_on_stale_docs(tmp_path):
    stale = tmp_path / "registers.md"
    stale.write_text(REGISTER_MAP.markdown() + "edited\n")
    result = subprocess.run([sys.executable, "-m", "protocols.registers", "--check", "--out", str(stale)],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1
    assert "out of date" in result.stderr
