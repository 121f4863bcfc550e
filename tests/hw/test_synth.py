"""Tests for hw/synth.py: out-of-context ECP5 synthesis of a small counter.

The slow test runs the real YoWASP Yosys and nextpnr (a few seconds once the
WebAssembly cache is warm). `build_counter` doubles as a development top:

    python -m hw.synth --top tests.hw.test_synth:build_counter --device LFE5U-25F
"""

import json
import sys

import pytest
from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw import synth
from hw.synth import DEVICES, SynthError, parse_report, synthesize


class Counter(wiring.Component):
    """A free-running 32-bit counter with enable and a registered compare output."""

    en: In(1)
    limit: In(32)
    count: Out(32)
    hit: Out(1)

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            m.d.sync += self.count.eq(self.count + 1)
        m.d.sync += self.hit.eq(self.count == self.limit)
        return m


def build_counter() -> Counter:
    return Counter()


@pytest.fixture(scope="module")
def counter_25f(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = synthesize(build_counter(), name="counter", device="LFE5U-25F", out_dir=out)
    return out, summary


@pytest.mark.slow
def test_counter_lfe5u_25f(counter_25f):
    out, summary = counter_25f
    path = out / "counter-LFE5U-25F.json"
    assert path.is_file()
    on_disk = json.loads(path.read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["name"] == "counter" and on_disk["device"] == "LFE5U-25F"
    assert on_disk["target_mhz"] == 200.0

    # Out of context the clock is the plain `clk` port, and nextpnr times it.
    assert set(summary["fmax_mhz"]) == {"clk"}
    assert 50.0 < summary["fmax_mhz"]["clk"] < 1000.0
    assert summary["timing"]["clk"]["constraint"] == 200.0
    assert summary["warnings"] == []

    util = summary["utilisation"]
    ff = util["TRELLIS_FF"]
    assert ff["available"] == 24288  # LFE5U-25F
    assert 32 <= ff["used"] <= 64  # the 32-bit count register (+ hit), nothing else
    assert 32 <= util["TRELLIS_COMB"]["used"] <= 200  # carry chain and comparator
    assert util["DP16KD"] == {"used": 0, "available": 56}
    assert util["MULT18X18D"] == {"used": 0, "available": 28}
    assert "TRELLIS_IO" not in util  # out of context: no IO buffers

    assert "--out-of-context" in summary["nextpnr_args"]
    assert summary["yosys_seconds"] > 0 and summary["nextpnr_seconds"] > 0
    for f in summary["files"].values():
        assert (out / "counter").is_dir() and f.startswith(str(out))


@pytest.mark.slow
def test_netlist_is_reused_and_tool_failure_raises(counter_25f, monkeypatch):
    out, first = counter_25f
    assert first["yosys_cached"] is False
    # The same RTLIL again (a second device, a second seed): Yosys is not rerun.
    again = synthesize(build_counter(), name="counter", device="LFE5U-25F", out_dir=out,
                       seed=2)
    assert again["yosys_cached"] is True
    assert again["utilisation"]["TRELLIS_FF"] == first["utilisation"]["TRELLIS_FF"]
    # A real nextpnr failure: the log's tail is in the message.
    with pytest.raises(SynthError,
                       match=r"(?s)nextpnr-ecp5 \(LFE5U-25F\) failed.*unrecognised option"):
        synthesize(build_counter(), name="counter", device="LFE5U-25F", out_dir=out,
                   nextpnr_args=["--no-such-flag"])
    # A tool that fails without nextpnr's help.
    monkeypatch.setenv(
        "NEXTPNR_ECP5", f"{sys.executable} -c \"import sys; print('boom'); sys.exit(3)\"")
    with pytest.raises(SynthError, match=r"(?s)exit code 3.*boom"):
        synthesize(build_counter(), name="counter", device="LFE5U-25F", out_dir=out)


def _refused(obj):
    """A component the flow refuses is never elaborated: tell Amaranth that is fine."""
    obj._MustUse__silence = True
    return obj


def test_bad_inputs_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"unknown device 'LFE5U-12X'.*LFE5U-25F"):
        synthesize(_refused(build_counter()), name="counter", device="LFE5U-12X",
                   out_dir=tmp_path)
    with pytest.raises(ValueError, match="identifier"):
        synthesize(_refused(build_counter()), name="my-counter", device="LFE5U-25F",
                   out_dir=tmp_path)
    with pytest.raises(TypeError, match="wiring.Component"):
        synthesize(_refused(Module()), name="m", device="LFE5U-25F", out_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # refused before any work


def test_missing_tool_is_a_synth_error(tmp_path, monkeypatch):
    monkeypatch.setenv("YOSYS", "no-such-yosys-binary")
    with pytest.raises(SynthError, match="YOSYS="):
        synthesize(build_counter(), name="counter", device="LFE5U-25F", out_dir=tmp_path)


def test_parse_report():
    report = {
        "fmax": {"clk": {"achieved": 216.9, "constraint": 200}},
        "utilization": {
            "TRELLIS_COMB": {"available": 24288, "used": 77},
            "TRELLIS_FF": {"available": 24288, "used": 33},
            "DP16KD": {"available": 56, "used": 0},
            "MULT18X18D": {"available": 28, "used": 0},
            "DCCA": {"available": 56, "used": 0},
            "EHXPLLL": {"available": 2, "used": 1},
        },
    }
    timing, util = parse_report(report)
    assert timing == {"clk": {"achieved": 216.9, "constraint": 200.0}}
    assert util["TRELLIS_FF"] == {"used": 33, "available": 24288}
    assert util["EHXPLLL"] == {"used": 1, "available": 2}  # used, so listed
    assert "DCCA" not in util  # unused and not a key resource


def test_cli_helpers():
    assert set(DEVICES) == {"LFE5U-25F", "LFE5UM5G-85F"}
    assert synth.default_name("hw.top:build_top") == "top"
    assert synth.default_name("tests.hw.test_synth:build_counter") == "counter"
    assert synth.load_factory("tests.hw.test_synth:build_counter") is build_counter
    with pytest.raises(ValueError, match="module:callable"):
        synth.load_factory("hw.top")
    args = synth.nextpnr_argv("LFE5UM5G-85F", "n.json", "r.json", freq_mhz=125, seed=3)
    assert args[:5] == ["--um5g-85k", "--package", "CABGA381", "--speed", "8"]
    assert "--out-of-context" in args and args[args.index("--freq") + 1] == "125"
