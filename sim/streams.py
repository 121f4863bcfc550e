"""Async ``amaranth.sim`` helpers that hide the stream handshake.

``stream_put`` and ``stream_get`` move one payload; ``put_packets`` and
``get_packets`` move whole packets as beats, with random ``valid`` gaps and
``ready`` backpressure drawn from a seeded generator so failures reproduce.
"""

from __future__ import annotations

import random

from amaranth.sim import Simulator

from hw.stream import beats_to_packets, packet_to_beats


async def stream_put(ctx, stream, payload) -> None:
    """Offer ``payload`` on ``stream`` and return once the sink has taken it."""
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream):
    """Accept one payload from ``stream`` and return it (a ``data.Const`` for layouts)."""
    ctx.set(stream.ready, 1)
    (payload,) = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


def const_to_dict(value) -> dict:
    """Turn a sampled struct payload into a dict of field ints."""
    return {name: int(getattr(value, name)) for name, _ in value.shape()}


async def put_packets(ctx, stream, packets, *, rng: random.Random | None = None, gap: float = 0.0) -> None:
    """Send every packet as beats; with probability ``gap`` idle a cycle before each beat."""
    for packet in packets:
        for beat in packet_to_beats(packet):
            while rng is not None and rng.random() < gap:
                await ctx.tick()
            await stream_put(ctx, stream, beat)


async def get_beats(ctx, stream, count: int, *, rng: random.Random | None = None, stall: float = 0.0) -> list[dict]:
    """Collect ``count`` beats; with probability ``stall`` hold ``ready`` low for a cycle first."""
    beats = []
    while len(beats) < count:
        while rng is not None and rng.random() < stall:
            ctx.set(stream.ready, 0)
            await ctx.tick()
        beats.append(const_to_dict(await stream_get(ctx, stream)))
    return beats


async def get_packets(ctx, stream, count: int, **kw) -> list[tuple[bytes, dict]]:
    """Collect beats until ``count`` packets have ended; returns ``(bytes, last beat)`` pairs."""
    beats: list[dict] = []
    done = 0
    while done < count:
        beat = (await get_beats(ctx, stream, 1, **kw))[0]
        beats.append(beat)
        done += beat["last"]
    return beats_to_packets(beats)


class SimBench:
    """One compiled ``amaranth.sim`` simulation of ``harness``, reset and re-run for every case.

    Compiling the simulation costs about 0.2 s, running a small case a few ms;
    ``Simulator.reset`` restores every signal and restarts the testbench.
    """

    def __init__(self, harness):
        self.dut = harness
        self._sim = Simulator(harness)
        self._sim.add_clock(1e-8)
        self._sim.add_testbench(self._testbench)
        self._job = None
        self._fresh = True

    async def _testbench(self, ctx):
        await self._job(ctx)

    def run(self, job) -> None:
        """Run ``job(ctx)`` from reset."""
        if not self._fresh:
            self._sim.reset()
        self._fresh = False
        self._job = job
        try:
            self._sim.run()
        finally:
            self._job = None


async def bus_write(ctx, bus, address: int, value: int) -> None:
    """Write a register over the bus (``hw/csr.py``'s protocol) in one cycle."""
    ctx.set(bus.addr, address)
    ctx.set(bus.w_data, value)
    ctx.set(bus.w_stb, 1)
    await ctx.tick()
    ctx.set(bus.w_stb, 0)


async def bus_read(ctx, bus, address: int) -> int:
    """Read a register over the bus: the value is there the cycle after the strobe."""
    ctx.set(bus.addr, address)
    ctx.set(bus.r_stb, 1)
    await ctx.tick()
    ctx.set(bus.r_stb, 0)
    return ctx.get(bus.r_data)
