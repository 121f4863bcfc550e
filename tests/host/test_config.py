"""Engine configuration (host/config.py): TOML loading, defaults, refusals that name the key."""

import pytest

from host.config import ConfigError, EngineConfig, RetentionConfig, config_from_dict, load_config

EXAMPLE = """
[[instruments]]
name = "AAPL"
sector = "tech"
tick = 100

[[instruments]]
name = "MSFT"
sector = "tech"

[[pairs]]
y = "AAPL"
x = "MSFT"
hedge_ratio = 1.5

[signals.pairs]
window = 30
bands = "ou"

[aggregation]
min_confidence = 0.65
source_weights = { volarb = 2.0 }

[risk]
max_order_qty = 500
var_limit = false

[[routing.venues]]
name = "XNAS"
latency_us = 40

[[routing.venues]]
name = "BATS"
latency_us = 65.5

[storage.tob]
hot_days = 3
warm_days = 30
cold_days = 1000
"""


def test_example_loads(tmp_path):
    path = tmp_path / "engine.toml"
    path.write_text(EXAMPLE)
    cfg = load_config(path)
    assert cfg.sectors == {"AAPL": "tech", "MSFT": "tech"}
    assert cfg.pairs[0].hedge_ratio == 1.5
    assert (cfg.signals.pairs.window, cfg.signals.pairs.bands, cfg.signals.pairs.entry_z) == (30, "ou", 2.0)
    assert cfg.aggregation.source_weights == {"volarb": 2.0}
    assert cfg.risk.max_order_qty == 500 and cfg.risk.var_limit is None
    assert [(v.name, v.latency_us) for v in cfg.routing.venues] == [("XNAS", 40.0), ("BATS", 65.5)]
    assert cfg.storage.tob == RetentionConfig(3, 30, 1000)
    assert cfg.storage.executions == RetentionConfig(5 * 365, None, None)


def test_defaults_follow_the_design():
    cfg = EngineConfig()
    assert cfg.aggregation.min_confidence == 0.6
    assert (cfg.signals.pairs.entry_z, cfg.signals.pairs.exit_z) == (2.0, 0.5)
    assert cfg.retry.retries == 3
    assert cfg.storage.tob == RetentionConfig(7, 90, 5 * 365)
    assert cfg.storage.signals == RetentionConfig(365, 5 * 365, None)
    assert cfg.latency.budgets_ns()["risk"] == 1_000_000_000
    assert cfg.latency.budgets_ns()["order_submission"] == 500_000_000
    assert len(cfg.routing.venues) >= 2


@pytest.mark.parametrize("data,key", [
    ({"risk": {"max_ordr_qty": 5}}, "risk.max_ordr_qty"),
    ({"riskk": {}}, "riskk"),
    ({"risk": {"max_order_qty": 0}}, "risk.max_order_qty"),
    ({"risk": {"max_order_qty": 1.5}}, "risk.max_order_qty"),
    ({"risk": {"var_method": "monte-carlo"}}, "risk.var_method"),
    ({"risk": "tight"}, "risk"),
    ({"instruments": [{"name": "A"}, {"name": "B", "sector": 3}]}, "instruments[1].sector"),
    ({"instruments": [{"sector": "x"}]}, "instruments[0].name"),
    ({"instruments": [{"name": "A"}, {"name": "A"}]}, "instruments"),
    ({"instruments": [{"name": "A"}], "pairs": [{"y": "A", "x": "Q"}]}, "pairs[0].x"),
    ({"signals": {"pairs": {"exit_z": 2.5}}}, "signals.pairs.exit_z"),
    ({"signals": {"volarb": {"threshold": -1}}}, "signals.volarb.threshold"),
    ({"aggregation": {"source_weights": {"pairs": -1.0}}}, "aggregation.source_weights.pairs"),
    ({"routing": {"venues": [{"name": "X"}, {"name": "X"}]}}, "routing.venues"),
    ({"routing": {"venues": [{"name": "X", "latency": 3}]}}, "routing.venues[0].latency"),
    ({"storage": {"tob": {"hot_days": 10, "warm_days": 5}}}, "storage.tob.warm_days"),
    ({"storage": {"tob": {"hot_days": 10}}}, "storage.tob.warm_days"),
    ({"metrics": {"address": "0.0.0.0"}}, "metrics.address"),
    ({"sizing": {"kelly_fraction": 1.5}}, "sizing.kelly_fraction"),
])
def test_wrong_config_is_refused_naming_the_key(data, key):
    with pytest.raises(ConfigError) as exc:
        config_from_dict(data)
    assert exc.value.key == key
    assert str(exc.value).startswith(f"{key}: ")


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[risk\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
