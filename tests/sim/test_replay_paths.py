"""One generated feed through three paths: the simulated NIC (ctypes bridge), cocotb, and the software NIC."""

import json

import pytest
from click.testing import CliRunner

from calarb.cli import main
from host.rxpath import EthRxConfig
from host.softnic import SoftwareNic
from protocols.events import GapEvent, MessageEvent
from protocols.net import ip_to_int
from protocols.pcap import write_pcap
from sim import moldfeed
from sim.replay import replay_gateware

CFG = EthRxConfig(filter=3, ip_dst=ip_to_int(moldfeed.FEED_IP), udp_port=moldfeed.FEED_PORT)


def through(nic, frames):
    nic.write("eth.ip_dst", CFG.ip_dst)
    nic.write("eth.udp_port", CFG.udp_port)
    nic.write("eth.filter", CFG.filter)
    nic.write("events.control", 1)
    nic.deliver(frames)
    events = nic.poll()
    msgs = [(e.seq, "" if e.aborted else e.data.hex(), e.aborted) for e in events if isinstance(e, MessageEvent)]
    gaps = [(e.expected, e.seq) for e in events if isinstance(e, GapEvent)]
    return msgs, gaps, nic.counters("eth", "mold", "events")


@pytest.fixture(scope="module")
def feed(tmp_path_factory):
    feed = moldfeed.generate(2000, seed=31, fault_rate=0.05)
    path = tmp_path_factory.mktemp("feed") / "feed.pcap"
    write_pcap(path, ((i * 1000, f) for i, f in enumerate(feed.frames)))
    return feed, path


@pytest.mark.sim
def test_bridge_cocotb_and_software_agree(feed):
    from sim.gatewarenic import GatewareNic

    frames, pcap = feed[0].frames, feed[1]
    with GatewareNic() as hw:
        hw_msgs, hw_gaps, hw_counters = through(hw, frames)
    soft_msgs, soft_gaps, soft_counters = through(SoftwareNic(), frames)
    cocotb = replay_gateware(pcap, CFG)
    assert len(hw_msgs) > 5000 and hw_gaps
    assert hw_msgs == soft_msgs
    assert hw_gaps == soft_gaps
    assert hw_counters == soft_counters
    assert [(m["seq"], m["hex"], m["aborted"]) for m in cocotb["messages"]] == hw_msgs
    assert [(g["expected"], g["seq"]) for g in cocotb["gaps"]] == hw_gaps
    for name, value in hw_counters.items():
        assert cocotb["registers"][name] == value, name


@pytest.mark.sim
def test_calarb_replay_prints_the_same_events_on_both_paths(feed):
    runner = CliRunner()
    soft = runner.invoke(main, ["replay", str(feed[1])])
    hw = runner.invoke(main, ["replay", str(feed[1]), "--gateware"])
    assert soft.exit_code == 0 and hw.exit_code == 0, hw.output
    assert soft.stdout == hw.stdout
    assert len(soft.stdout.splitlines()) > 5000
    summary = json.loads(hw.stderr.strip().splitlines()[-1])["summary"]
    assert summary["cycles"] > 0 and summary["latency_cycles"]["min"] > 0
    soft_summary = json.loads(soft.stderr.strip().splitlines()[-1])["summary"]
    assert summary["counters"] == soft_summary["counters"]
