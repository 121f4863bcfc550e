"""Tests for sim/exchange/config.py: the shipped example loads, and a wrong key, type or value is
refused with an error naming the key."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest

from sim.exchange import config as cfgmod
from sim.exchange.config import ConfigError, load, parse

EXAMPLE = Path(cfgmod.__file__).with_name("example.toml")


def example_doc():
    with open(EXAMPLE, "rb") as f:
        return tomllib.load(f)


def test_example_loads():
    cfg = load(EXAMPLE)
    assert [v.name for v in cfg.venues] == ["SIMA", "SIMB"]
    a = cfg.venues[0]
    assert a.symbols[0].symbol == "AAPL" and a.symbols[0].price == 1_900_000 and a.symbols[0].tick == 100
    assert a.session == "SIMA000001" and a.fix_port == 9876 and a.flow.rate == 200.0
    b = cfg.venues[1]
    assert b.comp_id == "SIMB" and b.latency_ms == 0.5 and b.flow.seed == 2 and b.host == "127.0.0.1"


def edit(path, value):
    doc = example_doc()
    node = doc
    for k in path[:-1]:
        node = node[k]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


@pytest.mark.parametrize("path,value,key", [
    (("venue", 0, "fix_prot"), 1, "venue[0].fix_prot"),
    (("exchange", "stats"), 1, "exchange.stats"),
    (("venue", 1, "symbol", 0, "lot"), 1, "venue[1].symbol[0].lot"),
    (("venue", 0, "flow", "speed"), 1, "venue[0].flow.speed"),
    (("venue", 0, "fix_port"), "9876", "venue[0].fix_port"),
    (("venue", 0, "fix_port"), 70000, "venue[0].fix_port"),
    (("venue", 0, "symbol", 1, "price"), 410.005, "venue[0].symbol[1].price"),
    (("venue", 0, "symbol", 1, "locate"), 1, "venue[0].symbol[1].locate"),
    (("venue", 0, "symbol", 1, "symbol"), "AAPL", "venue[0].symbol[1].symbol"),
    (("venue", 0, "symbol", 1, "symbol"), "msft", "venue[0].symbol[1].symbol"),
    (("venue", 0, "symbol", 0, "price"), KeyError, "venue[0].symbol[0].price"),
    (("venue", 0, "session"), "TOO-LONG-SESSION", "venue[0].session"),
    (("venue", 1, "name"), "SIMA", "venue[1].name"),
    (("venue", 1, "fix_port"), 9876, "venue[1].fix_port"),
    (("venue", 0, "latency_ms"), -1, "venue[0].latency_ms"),
    (("venue", 0, "flow", "rate"), 0, "venue[0].flow.rate"),
    (("venue", 0, "symbol"), [], "venue[0].symbol"),
    (("venue",), [], "venue"),
])
def test_bad_config_is_refused_naming_the_key(path, value, key):
    with pytest.raises(ConfigError) as e:
        parse(edit(path, value))
    assert e.value.key == key
    assert str(e.value).startswith(key + ":")


def test_flow_can_be_disabled_and_ports_zero_allowed():
    doc = edit(("venue", 0, "flow", "enabled"), False)
    doc["venue"][0]["fix_port"] = 0
    doc["venue"][1]["fix_port"] = 0
    cfg = parse(doc)
    assert cfg.venues[0].flow is None and cfg.venues[0].fix_port == 0


def test_bad_toml_names_the_file(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text("[venue\n")
    with pytest.raises(ConfigError, match="not valid TOML") as e:
        load(p)
    assert e.value.key == str(p)
