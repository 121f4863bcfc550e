"""cocotb drivers and monitors for ``amaranth.lib.stream`` ports and the register bus.

Amaranth exports a stream port ``rx`` as ``rx__valid``, ``rx__ready`` and a
packed ``rx__payload``. One :class:`Bench` coroutine services every source and
sink once per clock cycle (one ``ReadOnly`` and one ``RisingEdge`` per cycle,
however many streams), with random ``valid`` gaps and ``ready`` backpressure
from seeded generators, and timestamps every transfer with the cycle number.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from cocotb.triggers import ReadOnly, RisingEdge

from hw.stream import pack, unpack


@dataclass
class Source:
    """Drives payload dicts into a stream; ``gap`` is the chance of an idle cycle before each one."""

    valid: object
    ready: object
    payload: object
    layout: object
    items: list
    rng: random.Random
    gap: float = 0.0
    pos: int = 0
    offered: bool = False
    cycles: list = field(default_factory=list)   # cycle of each accepted item

    @property
    def done(self) -> bool:
        return self.pos >= len(self.items)

    def drive(self) -> None:
        if self.done or (self.gap and self.rng.random() < self.gap):
            self.valid.value = 0
            self.offered = False
            return
        self.payload.value = pack(self.layout, self.items[self.pos])
        self.valid.value = 1
        self.offered = True

    def sample(self, cycle: int) -> None:
        if self.offered and int(self.ready.value):
            self.cycles.append(cycle)
            self.pos += 1


@dataclass
class Sink:
    """Collects payload dicts from a stream; ``stall`` is the chance of holding ``ready`` low in a cycle."""

    valid: object
    ready: object
    payload: object
    layout: object
    rng: random.Random
    stall: float = 0.0
    items: list = field(default_factory=list)
    cycles: list = field(default_factory=list)
    accepting: bool = False
    packets: int = 0                              # items with ``last`` set, for layouts that have it

    def drive(self) -> None:
        self.accepting = not (self.stall and self.rng.random() < self.stall)
        self.ready.value = int(self.accepting)

    def sample(self, cycle: int) -> None:
        if self.accepting and int(self.valid.value):
            item = unpack(self.layout, int(self.payload.value))
            self.items.append(item)
            self.cycles.append(cycle)
            self.packets += item.get("last", 0)


class Bench:
    """Steps a design cycle by cycle, servicing its stream sources and sinks."""

    def __init__(self, dut, clk=None):
        self.dut = dut
        self.clk = clk if clk is not None else dut.clk
        self.cycle = 0
        self.sources: list[Source] = []
        self.sinks: list[Sink] = []

    def _port(self, prefix):
        return (getattr(self.dut, f"{prefix}__valid"), getattr(self.dut, f"{prefix}__ready"),
                getattr(self.dut, f"{prefix}__payload"))

    def source(self, prefix: str, layout, items, *, seed: int = 0, gap: float = 0.0) -> Source:
        src = Source(*self._port(prefix), layout, list(items), random.Random(seed), gap)
        src.valid.value = 0
        self.sources.append(src)
        return src

    def sink(self, prefix: str, layout, *, seed: int = 0, stall: float = 0.0) -> Sink:
        snk = Sink(*self._port(prefix), layout, random.Random(seed), stall)
        snk.ready.value = 0
        self.sinks.append(snk)
        return snk

    async def step(self, probe=None) -> int | None:
        """One clock cycle: drive, let it settle, record transfers, then the edge.

        Returns the settled value of ``probe`` in this cycle, if one is given.
        """
        for port in self.sources + self.sinks:
            port.drive()
        await ReadOnly()
        for port in self.sources + self.sinks:
            port.sample(self.cycle)
        value = None if probe is None else int(probe.value)
        await RisingEdge(self.clk)
        self.cycle += 1
        return value

    async def run(self, *, until=None, idle: int = 0, max_cycles: int = 10_000_000) -> None:
        """Step until every source is drained and ``until()`` holds (if given), then ``idle`` more cycles."""
        start = self.cycle
        while not (all(s.done for s in self.sources) and (until is None or until())):
            if self.cycle - start > max_cycles:
                raise TimeoutError(f"no completion after {max_cycles} cycles")
            await self.step()
        for _ in range(idle):
            await self.step()


class Bus:
    """Register bus access (``bus__addr``, ``bus__w_stb``, ...) from a cocotb test, between bench steps."""

    def __init__(self, bench: Bench, register_map):
        self.bench = bench
        self.map = register_map
        d = bench.dut
        self.addr, self.w_stb, self.w_data = d.bus__addr, d.bus__w_stb, d.bus__w_data
        self.r_stb, self.r_data = d.bus__r_stb, d.bus__r_data
        self.w_stb.value = 0
        self.r_stb.value = 0

    async def write(self, name: str, value: int) -> None:
        self.addr.value = self.map[name].address
        self.w_data.value = value
        self.w_stb.value = 1
        await self.bench.step()
        self.w_stb.value = 0

    async def read(self, name: str) -> int:
        self.addr.value = self.map[name].address
        self.r_stb.value = 1
        await self.bench.step()
        self.r_stb.value = 0
        return await self.bench.step(probe=self.r_data)

    async def read_all(self) -> dict[str, int]:
        return {m.name: await self.read(m.name) for m in self.map}


async def start_core(dut, register_map, settings) -> tuple[Bench, Bus]:
    """Start the clock, reset the core for three cycles and write ``settings`` (name, value pairs)."""
    from cocotb.clock import Clock

    Clock(dut.clk, 10, unit="ns").start()
    bench = Bench(dut)
    dut.rst.value = 1
    for _ in range(3):
        await bench.step()
    dut.rst.value = 0
    bus = Bus(bench, register_map)
    for name, value in settings:
        await bus.write(name, value)
    return bench, bus
