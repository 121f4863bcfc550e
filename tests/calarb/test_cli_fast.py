"""``calarb feed generate --format fast`` and ``calarb decode --templates`` end to end.

The decoded JSON lines are compared with the messages the generator built
(``sim.fastfeed``'s own record of what it sent, before encoding), so the test
fails if either the CLI wiring, the pcap framing or the codec is wrong.
"""

import json
from pathlib import Path

from click.testing import CliRunner

from calarb.cli import main
from sim import fastfeed

TEMPLATES = str(fastfeed.TEMPLATES_PATH)


def test_generated_fast_feed_decodes_to_the_generated_messages(tmp_path: Path):
    out = tmp_path / "options.pcap"
    runner = CliRunner()
    gen = runner.invoke(main, ["feed", "generate", "--format", "fast", "--out", str(out), "--updates", "200",
                               "--seed", "3"])
    assert gen.exit_code == 0, gen.output
    summary = json.loads(gen.output)
    dec = runner.invoke(main, ["decode", str(out), "--templates", TEMPLATES])
    assert dec.exit_code == 0, dec.output
    lines = [json.loads(line) for line in dec.stdout.splitlines()]
    assert not [line for line in lines if "error" in line]
    assert len(lines) == summary["messages"]

    sent = fastfeed.generate_fast_feed(200, 3).messages
    assert [line["template"] for line in lines] == [name for _, name, _ in sent]
    for line, (_, _, fields) in zip(lines, sent):
        for key in ("SecurityID", "MsgSeqNum"):
            if key in fields:
                assert line[key] == fields[key]


def test_fast_options_refuse_other_formats(tmp_path: Path):
    runner = CliRunner()
    res = runner.invoke(main, ["feed", "generate", "--format", "fast", "--out", str(tmp_path / "x.pcap"),
                               "--messages", "10"])
    assert res.exit_code != 0 and "--messages does not apply to --format fast" in res.output
    res = runner.invoke(main, ["feed", "generate", "--out", str(tmp_path / "x.pcap"), "--updates", "10"])
    assert res.exit_code != 0 and "--updates does not apply to --format pcap" in res.output


def test_a_corrupt_datagram_is_reported_and_decoding_goes_on(tmp_path: Path):
    from protocols.pcap import read_pcap, write_pcap

    good = tmp_path / "good.pcap"
    assert CliRunner().invoke(main, ["feed", "generate", "--format", "fast", "--out", str(good),
                                     "--updates", "50"]).exit_code == 0
    records = [(r.ts_ns, r.data) for r in read_pcap(good)]
    ts, frame = records[0]
    bad = bytearray(frame)
    bad[42] = 0xFF                      # first payload byte: presence map / template id region, stop bit set
    records[0] = (ts, bytes(bad))
    broken = tmp_path / "broken.pcap"
    write_pcap(broken, records)
    res = CliRunner().invoke(main, ["decode", str(broken), "--templates", TEMPLATES])
    assert res.exit_code == 0
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert "error" in lines[0] and lines[0]["frame"] == 0
    assert any(line.get("frame") == 1 and "error" not in line for line in lines)
