"""The software NIC and the wire-side feeds."""

import socket

import pytest

from host.feeds import FeedError, LoopbackFeed, frames_from_file, messages_from_itch_file
from host.nic import NicError
from host.rxpath import EthRx, MoldRx
from host.softnic import SoftwareNic
from protocols import moldudp64 as mold
from protocols.events import GapEvent, MessageEvent
from protocols.pcap import write_pcap
from protocols.registers import RegisterError
from sim import moldfeed


def test_registers_behave_like_the_map():
    nic = SoftwareNic()
    assert nic.read("top.magic") == 0xCA1A4B00
    assert nic.read("mold.next_seq") == 1 and nic.read("mold.control") == 1
    nic.write("top.scratch", 0x1234_5678_9ABC_DEF0)
    assert nic.read("top.scratch") == 0x1234_5678_9ABC_DEF0
    with pytest.raises(RegisterError, match="no_such"):
        nic.read("eth.no_such")
    with pytest.raises(NicError, match="cannot be written"):
        nic.write("eth.frames", 1)
    with pytest.raises(NicError, match="does not fit"):
        nic.write("eth.udp_port", 1 << 16)


def test_events_follow_the_receive_path_and_the_message_switch():
    feed = moldfeed.generate(300, seed=9, fault_rate=0.1)
    nic = SoftwareNic()
    nic.deliver(feed.frames)
    quiet = nic.poll()
    assert all(isinstance(e, GapEvent) for e in quiet)      # messages are off after reset
    nic.reset()
    nic.write("events.control", 1)
    nic.deliver(feed.frames)
    events = nic.poll()
    eth, rx = EthRx(), MoldRx()
    ref = [o for f in feed.frames if (p := eth.receive(f)) is not None for o in rx.receive(p)]
    assert [(e.seq, e.data, e.aborted) for e in events if isinstance(e, MessageEvent)] == \
           [(o.seq, o.data, o.aborted) for o in ref if hasattr(o, "data")]
    assert len([e for e in events if isinstance(e, GapEvent)]) == len(quiet) == rx.counters["gaps"]
    assert nic.read("mold.messages") == rx.counters["messages"]
    assert nic.read("events.events") == len(events)


def test_itch_file_is_packed_into_moldudp64_frames(tmp_path):
    msgs = [bytes([65 + i % 26]) * (10 + i % 30) for i in range(500)]
    path = tmp_path / "day.itch"
    path.write_bytes(b"".join(len(m).to_bytes(2, "big") + m for m in msgs))
    assert list(messages_from_itch_file(path)) == msgs
    nic = SoftwareNic()
    nic.write("events.control", 1)
    nic.deliver(list(frames_from_file(path)))
    got = [(e.seq, e.data) for e in nic.poll()]
    assert got == list(enumerate(msgs, start=1))
    (tmp_path / "bad.itch").write_bytes(b"\x00\x10abc")
    with pytest.raises(FeedError, match="offset 0"):
        list(frames_from_file(tmp_path / "bad.itch"))


def test_pcap_and_itch_are_told_apart_by_magic(tmp_path):
    feed = moldfeed.generate(5, seed=1)
    write_pcap(tmp_path / "f.pcap", ((i, f) for i, f in enumerate(feed.frames)))
    assert list(frames_from_file(tmp_path / "f.pcap")) == feed.frames


def test_loopback_feed_receives_datagrams_as_frames():
    packets = mold.packetise([bytes([i]) * 20 for i in range(50)], session="LOOPBACK01", max_payload=300)
    with LoopbackFeed(port=0) as feed, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for p in packets:
            tx.sendto(mold.encode_packet(p), ("127.0.0.1", feed.port))
        frames = []
        for _ in range(50):
            frames += feed.poll(timeout=0.1)
            if len(frames) == len(packets):
                break
    nic = SoftwareNic()
    nic.write("events.control", 1)
    nic.deliver(frames)
    assert [(e.seq, e.data) for e in nic.poll()] == [(i + 1, bytes([i]) * 20) for i in range(50)]
