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


# --------------------------------------------------------------------------- #
# ITCH feeds: `feed generate --format pcap|itch|mold` and `decode` of ITCH
# --------------------------------------------------------------------------- #

import pytest  # noqa: E402

from protocols import itch  # noqa: E402
from sim import itchfeed  # noqa: E402


def _itch_lines(raw, session=None):
    base = (lambda seq: {"session": session, "seq": seq}) if session else (lambda seq: {"seq": seq})
    return [dict(base(i), **itch.as_json(itch.decode(m))) for i, m in enumerate(raw, 1)]


@pytest.mark.parametrize("fmt", ["pcap", "itch", None])
def test_feed_generate_itch_then_decode_gives_the_generators_messages(tmp_path, fmt):
    out = tmp_path / ("day.itch" if fmt == "itch" else "day.pcap")
    runner = CliRunner()
    args = ["feed", "generate", "--out", str(out), "--messages", "3000", "--instruments", "6", "--seed", "8"]
    gen = runner.invoke(main, args + (["--format", fmt] if fmt else []))
    assert gen.exit_code == 0, gen.output
    report = json.loads(gen.stdout)
    assert report["format"] == (fmt or "pcap") and report["messages"] == 3000
    expected = itchfeed.generate_itch(3000, 6, seed=8)
    result = runner.invoke(main, ["decode", str(out)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    session = None if fmt == "itch" else itchfeed.SESSION.decode()
    assert lines == _itch_lines(expected, session)
    summary = json.loads(result.stderr.strip().splitlines()[-1])["summary"]
    assert summary["messages"] == 3000 and summary["decoded"] == "itch"
    assert summary["file"] == ("itch" if fmt == "itch" else "pcap")
    if fmt == "itch":
        assert out.read_bytes() == itchfeed.generate_feed(3000, 6, seed=8).nasdaq()


def test_feed_generate_mold_format_keeps_the_random_generator(tmp_path):
    out = tmp_path / "mold.pcap"
    runner = CliRunner()
    gen = runner.invoke(main, ["feed", "generate", "--out", str(out), "--format", "mold", "--frames", "60",
                               "--seed", "5", "--fault-rate", "0.1"])
    assert gen.exit_code == 0, gen.output
    expected = moldfeed.generate(60, seed=5, fault_rate=0.1)
    assert json.loads(gen.stdout)["faults"] == dict(expected.faults)
    result = runner.invoke(main, ["decode", str(out), "--port", str(moldfeed.FEED_PORT)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    delivered = {(d["seq"], bytes.fromhex(d["hex"])) for d in lines}
    assert set(expected.messages) <= delivered            # faulty frames may carry extra (duplicate) messages
    assert json.loads(result.stderr.strip().splitlines()[-1])["summary"]["decoded"] == "hex"


def test_feed_generate_refuses_options_of_the_other_format(tmp_path):
    runner = CliRunner()
    out = str(tmp_path / "x.pcap")
    for args in (["--format", "mold", "--messages", "10"], ["--format", "itch", "--frames", "3"],
                 ["--messages", "100", "--fault-rate", "0.5"]):
        result = runner.invoke(main, ["feed", "generate", "--out", out] + args)
        assert result.exit_code == 2 and "does not apply" in result.output
    result = runner.invoke(main, ["feed", "generate", "--out", out, "--messages", "5", "--instruments", "4"])
    assert result.exit_code == 2 and "start- and end-of-day" in result.output


def test_decode_raw_prints_itch_as_hex(tmp_path):
    raw = itchfeed.generate_itch(500, 3, seed=1)
    path = tmp_path / "day.pcap"
    itchfeed.write_itch_pcap(path, raw)
    result = CliRunner().invoke(main, ["decode", "--raw", str(path)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(d["seq"], bytes.fromhex(d["hex"])) for d in lines] == list(enumerate(raw, 1))


def test_decode_prints_and_counts_messages_that_are_not_itch(tmp_path):
    raw = itchfeed.generate_itch(300, 3, seed=2)
    bad = {40: b"Z" + bytes(11), 41: raw[41][:-1], 200: raw[200] + b"!"}
    sent = [bad.get(i, m) for i, m in enumerate(raw)]
    path = tmp_path / "bad.pcap"
    itchfeed.write_itch_pcap(path, sent, session="BADITCH001")
    result = CliRunner().invoke(main, ["decode", str(path)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 300
    errors = {d["seq"]: d for d in lines if "error" in d}
    assert sorted(errors) == [41, 42, 201]
    assert "unknown_type" in errors[41]["error"] and "'Z'" in errors[41]["error"]
    assert "truncated" in errors[42]["error"] and "wrong_length" in errors[201]["error"]
    assert all(bytes.fromhex(errors[i + 1]["hex"]) == m for i, m in bad.items())
    assert all(list(d)[:3] == ["error", "session", "seq"] for d in errors.values())
    good = [d for d in lines if "error" not in d]
    assert good == [line for line in _itch_lines(raw, "BADITCH001") if line["seq"] not in errors]
    summary = json.loads(result.stderr.strip().splitlines()[-1])["summary"]
    assert summary["itch_errors"] == 3 and summary["messages"] == 297
    assert summary["itch_unknown_type"] == summary["itch_truncated"] == summary["itch_wrong_length"] == 1


def test_decode_itch_file_reports_a_truncated_tail(tmp_path):
    raw = itchfeed.generate_itch(200, 2, seed=3)
    path = tmp_path / "cut.itch"
    itchfeed.write_itch_file(path, raw)
    path.write_bytes(path.read_bytes()[:-5])
    result = CliRunner().invoke(main, ["decode", str(path)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[:-1] == _itch_lines(raw[:-1])
    assert lines[-1]["seq"] == 200 and "truncated" in lines[-1]["error"]
    assert lines[-1]["hex"] == raw[-1][:-5].hex()
    assert json.loads(result.stderr.strip().splitlines()[-1])["summary"]["itch_errors"] == 1


@pytest.mark.sim
def test_replay_book_prints_the_same_tob_lines_from_software_and_gateware(tmp_path):
    """``replay --book``: TOB JSON lines from the software path and the Verilated gateware are identical,
    and (the window and table keep every order of this file) equal the reference book's events."""
    from host.book import tob_events

    path = tmp_path / "day.itch"
    messages = itchfeed.generate_itch(6000, 8, seed=21)
    itchfeed.write_itch_file(path, messages)
    runner = CliRunner()
    soft = runner.invoke(main, ["replay", str(path), "--book"], catch_exceptions=False)
    hard = runner.invoke(main, ["replay", str(path), "--book", "--gateware"], catch_exceptions=False)
    assert soft.exit_code == 0 and hard.exit_code == 0
    soft_lines = [line for line in soft.stdout.splitlines() if line.startswith("{\"event\"")]
    hard_lines = [line for line in hard.stdout.splitlines() if line.startswith("{\"event\"")]
    assert len(soft_lines) > 1000
    assert soft_lines == hard_lines
    ref = [json.dumps(ev.as_json()) for ev in tob_events((seq, itch.decode(m)) for seq, m in enumerate(messages, 1))]
    assert soft_lines == ref
