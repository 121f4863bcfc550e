"""The ``calarb`` command line, run through click's test runner on generated files."""

import json

from click.testing import CliRunner

from calarb.cli import main
from protocols import moldudp64 as mold
from protocols.net import parse_udp_frame
from protocols.pcap import write_pcap
from sim import moldfeed


def test_help_lists_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("decode", "feed", "demo"):
        assert command in result.output


def test_feed_generate_then_decode_gives_every_message(tmp_path):
    out = tmp_path / "feed.pcap"
    runner = CliRunner()
    gen = runner.invoke(main, ["feed", "generate", "--out", str(out), "--frames", "200", "--seed", "4"])
    assert gen.exit_code == 0, gen.output
    expected = moldfeed.generate(200, seed=4)          # same generator, same seed: the messages sent
    result = runner.invoke(main, ["decode", str(out)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(d["seq"], bytes.fromhex(d["hex"])) for d in lines] == expected.messages
    assert {d["session"] for d in lines} == {moldfeed.SESSION.decode()}


def test_decode_skips_and_counts_what_is_not_moldudp64(tmp_path):
    good = moldfeed.generate(3, seed=1)
    frames = [b"\x00" * 20, good.frames[0], moldfeed._frame(b"short"), moldfeed._frame(b"x" * 30, dst_port=9)]
    path = tmp_path / "mixed.pcap"
    write_pcap(path, ((i, f) for i, f in enumerate(frames)))
    result = CliRunner().invoke(main, ["decode", str(path), "--port", str(moldfeed.FEED_PORT)])
    assert result.exit_code == 0
    summary = json.loads(result.stderr.strip().splitlines()[-1])["summary"]
    assert summary["frames"] == 4
    assert summary["skipped_runt"] == 1 and summary["skipped_port"] == 1
    assert summary["skipped_mold_short_header"] == 1
    packet = mold.decode_packet(parse_udp_frame(good.frames[0]).payload)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [bytes.fromhex(d["hex"]) for d in lines] == list(packet.messages)
    assert summary.get("messages", 0) == len(packet.messages)


def test_decode_refuses_a_file_that_is_not_pcap(tmp_path):
    path = tmp_path / "junk.pcap"
    path.write_bytes(b"not a pcap file at all")
    result = CliRunner().invoke(main, ["decode", str(path)])
    assert result.exit_code != 0
    assert "bad_magic" in result.output


def test_listen_turns_live_datagrams_into_events():
    """`calarb listen` on a loopback port: datagrams sent while it runs come out as events."""
    import socket
    import subprocess
    import sys
    import time

    from protocols import moldudp64 as mold

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "calarb.cli", "listen", "--port", str(port),
                             "--duration", "8"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = proc.stderr.readline()           # printed once the socket is bound
        assert "listening" in banner
        packets = mold.packetise([bytes([i]) * 12 for i in range(30)], session="LIVE000001", max_payload=200)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for p in packets:
                tx.sendto(mold.encode_packet(p), ("127.0.0.1", port))
                time.sleep(0.01)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["seq"], e["hex"]) for e in events] == [(i + 1, (bytes([i]) * 12).hex()) for i in range(30)]
    assert json.loads(err.strip().splitlines()[-1])["summary"]["counters"]["mold.messages"] == 30
