"""The simulated NIC (``sim/simnic.py`` and ``sim/nic/harness.cpp``): the Verilated core behind ctypes.

The gateware's outputs are compared with the software receive path (``host/rxpath.py``) on the
same generated feeds: messages, gap events and every counter.
"""

from __future__ import annotations

import random

import pytest

from host.rxpath import EthRx, EthRxConfig, Gap, Message, MoldRx
from protocols.events import GapEvent, MessageEvent, decode_event
from protocols.net import ip_to_int
from protocols.registers import REGISTER_MAP, RegisterError
from sim import moldfeed
from sim.simnic import STATUS_CODES, NicError, SimNic, build_library, load_library

pytestmark = pytest.mark.sim

FILTER = EthRxConfig(filter=3, ip_dst=ip_to_int(moldfeed.FEED_IP), udp_port=moldfeed.FEED_PORT)


@pytest.fixture(scope="module")
def library():
    return build_library()


@pytest.fixture
def nic(library):
    with SimNic(library) as nic:
        yield nic


def configure(nic: SimNic, cfg: EthRxConfig = FILTER, messages: bool = True) -> None:
    """Set the filter like ``tests/hw/cocotb_rx.py`` does and ask for message events."""
    nic.write("eth.ip_dst", cfg.ip_dst)
    nic.write("eth.udp_port", cfg.udp_port)
    nic.write("eth.filter", cfg.filter)
    nic.write("events.control", int(messages))


def software(frames, cfg: EthRxConfig = FILTER):
    """The software path's messages, gaps and counters (named as the registers) for ``frames``."""
    eth, mold = EthRx(cfg), MoldRx()
    outputs = []
    for frame in frames:
        payload = eth.receive(frame)
        if payload is not None:
            outputs += mold.receive(payload)
    msgs = [(o.seq, None if o.aborted else o.data, o.aborted) for o in outputs if isinstance(o, Message)]
    gaps = [(o.expected, o.seq) for o in outputs if isinstance(o, Gap)]
    counters = {f"eth.{k}": v for k, v in eth.counters.items()}
    counters.update({f"mold.{k}": v for k, v in mold.counters.items()})
    return msgs, gaps, counters


def decoded(packets):
    events = [decode_event(data, aborted) for data, aborted in packets]
    msgs = [(e.seq, None if e.aborted else e.data, e.aborted) for e in events if isinstance(e, MessageEvent)]
    gaps = [(e.expected, e.seq) for e in events if isinstance(e, GapEvent)]
    return msgs, gaps


def counters(nic: SimNic, *blocks: str) -> dict[str, int]:
    return {m.name: nic.read(m.name) for m in REGISTER_MAP.counters() if m.block in blocks}


def assert_counters_match(nic: SimNic, reference: dict[str, int]) -> None:
    got = counters(nic, "eth", "mold")
    for name, value in got.items():
        assert value == reference.get(name, 0), f"{name}: gateware {value}, software path {reference.get(name, 0)}"


def test_status_codes_match_the_harness(library):
    lib = load_library(library)
    for name, code in STATUS_CODES.items():
        assert lib.nic_strerror(code).decode().startswith(name + ":"), name


def test_magic(nic):
    assert nic.read("top.magic") == 0xCA1A4B00


def test_scratch_write_read(nic):
    for value in (0, 0x0123_4567_89AB_CDEF, (1 << 64) - 1):
        nic.write("top.scratch", value)
        assert nic.read("top.scratch") == value


def test_unknown_register_raises(nic):
    with pytest.raises(RegisterError, match="no_such"):
        nic.read("top.no_such")
    with pytest.raises(RegisterError):
        nic.write("nope.scratch", 1)


def test_read_only_and_oversized_writes_raise(nic):
    with pytest.raises(NicError, match="top.magic"):
        nic.write("top.magic", 1)
    with pytest.raises(NicError, match="eth.frames"):
        nic.write("eth.frames", 0)
    with pytest.raises(NicError, match="2 bits"):
        nic.write("eth.filter", 4)
    assert nic.read("top.magic") == 0xCA1A4B00


def test_feed_matches_software_path(nic):
    feed = moldfeed.generate(2000, seed=3, fault_rate=0.05)
    ref_msgs, ref_gaps, ref_counters = software(feed.frames)
    configure(nic)
    nic.push_frames(feed.frames)
    cycles = nic.run()
    packets = nic.pop_events()
    msgs, gaps = decoded(packets)
    assert cycles > 0 and len(ref_msgs) > 5000 and ref_gaps
    assert len(msgs) == len(ref_msgs)
    for i, (want, got) in enumerate(zip(ref_msgs, msgs)):
        assert got == want, f"message {i}"
    assert gaps == ref_gaps
    assert_counters_match(nic, ref_counters)
    for name, value in feed.expected.items():
        assert nic.read(name) == value, name
    assert nic.read("events.events") == len(packets)
    assert nic.read("events.message_events") == len(msgs)
    assert nic.read("events.gap_events") == len(gaps)
    ingress = nic.pop_ingress()
    assert len(ingress) == len(feed.frames)
    assert all(b > a for a, b in zip(ingress, ingress[1:]))
    assert nic.framing_errors == 0
    assert nic.pop_events() == [] and nic.pop_ingress() == []


def test_batch_larger_than_the_input_buffer_raises_and_leaves_the_nic_usable(nic):
    frame = moldfeed.generate(1, seed=1).frames[0]
    with pytest.raises(NicError, match=f"{nic.queue_frames} frames"):
        nic.push_frames([frame] * (nic.queue_frames + 1))
    big = bytes(nic.max_frame)
    with pytest.raises(NicError, match=f"{nic.queue_bytes} bytes"):
        nic.push_frames([big] * (nic.queue_bytes // len(big) + 1))
    # fits the buffer, but not what is left of it: refused whole, nothing accepted
    half = nic.queue_frames // 2 + 1
    nic.push_frames([frame] * half)
    with pytest.raises(NicError, match="room for"):
        nic.push_frames([frame] * half)
    with pytest.raises(NicError, match="frame 1 "):
        nic.push_frames([frame, b""])
    with pytest.raises(NicError, match="frame 0 "):
        nic.push_frames([bytes(nic.max_frame + 1)])
    nic.run()
    assert nic.read("eth.frames") == half
    assert len(nic.pop_ingress()) == half
    assert nic.read("top.magic") == 0xCA1A4B00
    feed = moldfeed.generate(50, seed=4)
    nic.reset()
    configure(nic)
    nic.push_frames(feed.frames)
    nic.run()
    assert decoded(nic.pop_events())[0] == software(feed.frames)[0]


def test_malformed_frames_are_counted(nic):
    rng = random.Random(7)
    frames = [rng.randbytes(rng.randint(1, 200)) for _ in range(3000)]
    configure(nic)
    nic.push_frames(frames)
    nic.run()
    assert nic.read("eth.frames") == len(frames)
    _, _, ref_counters = software(frames)
    assert_counters_match(nic, ref_counters)
    assert nic.read("top.magic") == 0xCA1A4B00


def test_reset_mid_run_gives_exactly_the_fresh_feeds_outputs(nic, library):
    old = moldfeed.generate(1000, seed=5)
    fresh = moldfeed.generate(600, seed=9, fault_rate=0.05)
    configure(nic)
    nic.push_frames(old.frames[:500])
    nic.run(300, until_idle=False)
    assert nic.read("eth.frames") > 0
    nic.reset()
    configure(nic)
    nic.push_frames(fresh.frames)
    nic.run()
    packets = nic.pop_events()
    ref_msgs, ref_gaps, ref_counters = software(fresh.frames)
    assert decoded(packets) == (ref_msgs, ref_gaps)
    assert_counters_match(nic, ref_counters)
    ingress = nic.pop_ingress()
    assert len(ingress) == len(fresh.frames)
    # The same as a NIC that never saw the old feed, down to the cycle stamps.
    with SimNic(library) as clean:
        configure(clean)
        clean.push_frames(fresh.frames)
        clean.run()
        assert clean.pop_events() == packets
        assert clean.pop_ingress() == ingress


def test_host_frames_come_out_of_tx_unchanged(nic):
    rng = random.Random(11)
    frames = [rng.randbytes(rng.randint(1, 1600)) for _ in range(300)] + [bytes(range(256)) * 64]
    feed = moldfeed.generate(300, seed=12)
    configure(nic)
    nic.push_host_frames(frames)
    nic.push_frames(feed.frames)           # rx traffic at the same time
    nic.run()
    assert nic.pop_tx() == [(f, False) for f in frames]
    assert nic.read("tx.frames") == len(frames)
    assert decoded(nic.pop_events())[0] == software(feed.frames)[0]


def test_trace_file_is_written(nic, tmp_path, library):
    path = tmp_path / "nic.fst"
    nic.trace(path)
    configure(nic)
    nic.push_frames(moldfeed.generate(20, seed=2).frames)
    nic.run()
    nic.trace(None)
    assert path.stat().st_size > 1000
    with pytest.raises(NicError, match="trace"):
        nic.trace(tmp_path / "no" / "such" / "dir.fst")
    with SimNic(library, trace=tmp_path / "from_start.fst") as traced:
        traced.run(100, until_idle=False)
    assert (tmp_path / "from_start.fst").stat().st_size > 1000


def test_cycle_counts(nic):
    start = nic.cycle
    assert nic.run(1000, until_idle=False) == 1000
    assert nic.cycle == start + 1000
    core = nic.core_cycle
    nic.reset()
    assert nic.cycle > start + 1000          # cumulative
    assert nic.core_cycle == 0 < core        # the core's counter restarts
    assert nic.run() == 0                    # nothing queued: already idle


def test_closed_nic_raises(library):
    nic = SimNic(library)
    nic.close()
    with pytest.raises(NicError, match="closed"):
        nic.read("top.magic")


@pytest.mark.slow
def test_full_output_queue_is_drained_not_dropped(nic):
    """More than the harness's 64 MiB tx queue without popping: run() drains it into Python."""
    rng = random.Random(13)
    frames = []
    for _ in range(5):
        batch = [rng.randbytes(16) + bytes(nic.max_frame - 16) for _ in range(1000)]
        nic.push_host_frames(batch)
        nic.run()
        frames += batch
    assert sum(map(len, frames)) > 64 << 20
    assert nic.pop_tx() == [(f, False) for f in frames]
    assert nic.read("tx.frames") == len(frames)
