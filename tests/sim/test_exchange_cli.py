"""Tests for calarb/exchange_cmd.py: ``calarb exchange`` prints what it serves and its stats, refuses
a bad config naming the key, and says clearly when QuickFIX is missing."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from calarb.exchange_cmd import exchange

CONFIG = """
[exchange]
stats_interval_s = 0.2

[[venue]]
name = "CLIA"
fix_port = 0
md_port = 0
retransmit_port = 0

[venue.flow]
rate = 500.0

[[venue.symbol]]
symbol = "AAPL"
locate = 3
price = 190.00

[[venue]]
name = "CLIB"
fix_port = 0
md_port = 0
retransmit_port = 0
clients = ["CALARB", "OTHER"]

[[venue.symbol]]
symbol = "MSFT"
locate = 1
price = 410.00
"""


def test_exchange_prints_what_it_serves_then_stats(tmp_path):
    p = tmp_path / "ex.toml"
    p.write_text(CONFIG)
    r = CliRunner().invoke(exchange, ["--config", str(p), "--duration", "0.7"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.output.splitlines()]
    serving = [x for x in lines if x["event"] == "serving"]
    assert [s["venue"] for s in serving] == ["CLIA", "CLIB"]
    assert serving[0]["symbols"] == {"AAPL": 3} and serving[0]["session"] == "CLIA000000"
    assert int(serving[0]["fix"].rsplit(":", 1)[1]) > 0 and int(serving[0]["retransmit"].rsplit(":", 1)[1]) > 0
    stats = [x for x in lines if x["event"] == "stats" and x["venue"] == "CLIA"]
    assert len(stats) >= 2 and stats[-1]["orders"] > stats[0]["orders"] > 0
    bid, ask = stats[-1]["top"]["AAPL"]
    assert bid < ask


def test_exchange_refuses_a_bad_key(tmp_path):
    p = tmp_path / "ex.toml"
    p.write_text(CONFIG.replace("md_port = 0", "md_prot = 0", 1))
    r = CliRunner().invoke(exchange, ["--config", str(p), "--duration", "0.1"])
    assert r.exit_code != 0 and "venue[0].md_prot" in r.output


def test_quickfix_missing_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_quickfix(name, *a, **kw):
        if name == "quickfix":
            raise ImportError("No module named 'quickfix'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_quickfix)
    p = tmp_path / "ex.toml"
    p.write_text(CONFIG)
    r = CliRunner().invoke(exchange, ["--config", str(p), "--venue", "quickfix", "--duration", "0.1"])
    assert r.exit_code != 0 and "QuickFIX" in r.output and "pip install quickfix" in r.output
