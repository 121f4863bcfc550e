"""The calibration pipeline (host/calibration.py) and ``calarb calibrate``."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from calarb.cli import main
from host.calibration import (
    Calibrator, ChainError, PrepConfig, ValidationConfig, append_record, calibrate_sabr_surface, fingerprint,
    load_chain_csv, prepare, read_records, validate,
)
from models.heston import HestonParams
from sim.optionchain import DEFAULT_PARAMS, generate_chain, write_chain_csv

HEADER = "expiry_days,strike,type,bid,ask,spot,rate,dividend"


@pytest.fixture(scope="module")
def chain_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("chain") / "chain.csv"
    write_chain_csv(generate_chain(noise=0.5, tick=0.01, seed=3), path)
    return path


def write(tmp_path, *lines, header=HEADER):
    path = tmp_path / "c.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


# ---------------------------------------------------------------- loading


def test_load_reads_every_row(chain_csv):
    chain = load_chain_csv(chain_csv)
    g = generate_chain(noise=0.5, tick=0.01, seed=3)
    assert len(chain) == g.strike.size and chain.spot == g.spot and chain.rate == g.rate
    np.testing.assert_array_equal(chain.strike, g.strike)
    np.testing.assert_array_equal(chain.is_call, g.is_call)
    np.testing.assert_allclose(chain.expiry, g.expiry_years)
    np.testing.assert_array_equal(chain.bid, g.bid)
    assert chain.line[0] == 2


def test_market_values_can_be_passed_instead_of_columns(tmp_path):
    path = write(tmp_path, "0.25,100,C,4.0,4.1", header="expiry,strike,type,bid,ask")
    with pytest.raises(ChainError, match="column 'spot'"):
        load_chain_csv(path)
    chain = load_chain_csv(path, spot=101.0, rate=0.02)
    assert (chain.spot, chain.rate, chain.dividend) == (101.0, 0.02, 0.0)
    assert chain.expiry[0] == 0.25


@pytest.mark.parametrize("header, row, line, column", [
    ("expiry_days,strike,type,bid", "30,100,C,1", 1, "ask"),
    ("strike,type,bid,ask,spot", "100,C,1,2,100", 1, "expiry_days"),
    (HEADER, "30,100,C,2.0,1.5,100,0,0", 2, "bid"),            # bid > ask
    (HEADER, "30,100,C,-0.1,1.5,100,0,0", 2, "bid"),           # negative price
    (HEADER, "30,100,C,0,0,100,0,0", 2, "ask"),                # no ask
    (HEADER, "30,0,C,1,1.5,100,0,0", 2, "strike"),             # non-positive strike
    (HEADER, "30,-5,C,1,1.5,100,0,0", 2, "strike"),
    (HEADER, "0,100,C,1,1.5,100,0,0", 2, "expiry_days"),
    (HEADER, "30,100,X,1,1.5,100,0,0", 2, "type"),
    (HEADER, "30,abc,C,1,1.5,100,0,0", 2, "strike"),
    (HEADER, "30,100,C,,1.5,100,0,0", 2, "bid"),
    (HEADER, "30,100,C,1,nan,100,0,0", 2, "ask"),
])
def test_every_error_names_line_and_column(tmp_path, header, row, line, column):
    path = write(tmp_path, row, header=header)
    with pytest.raises(ChainError) as info:
        load_chain_csv(path)
    assert info.value.line == line and info.value.column == column
    assert f"line {line}" in str(info.value) and repr(column) in str(info.value)


def test_error_on_a_later_row_names_that_row(tmp_path):
    path = write(tmp_path, "30,100,C,1,1.5,100,0,0", "# a comment", "60,100,P,1,1.5,100,0,0",
                 "60,100,C,1,1.5,101,0,0")
    with pytest.raises(ChainError, match=r"line 5, column 'spot'"):
        load_chain_csv(path)


# ---------------------------------------------------------------- preparation


def test_preparation_filters(tmp_path):
    rows = [
        "30,100,C,2.00,2.04,100,0,0",    # kept (OTM call at the forward)
        "30,100,P,2.00,2.04,100,0,0",    # ITM twin of a kept OTM call: dropped
        "30,95,P,0.60,0.62,100,0,0",     # kept (OTM put)
        "30,95,C,5.30,5.40,100,0,0",     # ITM twin: dropped
        "20,100,C,1.6,1.62,100,0,0",     # under 30 days
        "400,100,C,9.0,9.1,100,0,0",     # over 365 days
        "60,70,P,0.01,0.02,100,0,0",     # deep OTM (K/F 0.7)
        "60,105,C,1.00,1.20,100,0,0",    # 18 % spread
        "60,110,P,10.5,10.6,100,0,0",    # ITM put, no OTM call at 110: kept
    ]
    q = prepare(load_chain_csv(write(tmp_path, *rows)))
    assert q.dropped == {"maturity": 2, "moneyness": 1, "spread": 1, "in_the_money": 2, "no_implied_vol": 0}
    assert list(q.line) == [4, 2, 10]           # sorted by expiry then strike
    np.testing.assert_allclose(q.moneyness, q.strike / q.forward)
    np.testing.assert_allclose(q.mid, [0.61, 2.02, 10.55])
    np.testing.assert_allclose(q.spread, [0.02, 0.04, 0.1])
    assert np.all(np.isfinite(q.iv))
    wide = prepare(load_chain_csv(write(tmp_path, *rows)), PrepConfig(max_rel_spread=1.0, moneyness_band=(0.5, 2)))
    assert wide.dropped["spread"] == 0 and wide.dropped["moneyness"] == 0


def test_fingerprint_tracks_the_quotes(chain_csv):
    q = prepare(load_chain_csv(chain_csv))
    assert fingerprint(q) == fingerprint(prepare(load_chain_csv(chain_csv)))
    bumped = prepare(load_chain_csv(chain_csv, spot=100.01))
    assert fingerprint(bumped) != fingerprint(q)


# ---------------------------------------------------------------- validation and the calibrator


def test_calibrator_accepts_records_and_refuses(chain_csv, tmp_path):
    quotes = prepare(load_chain_csv(chain_csv))
    record = tmp_path / "runs" / "heston.jsonl"
    cal = Calibrator("heston", record_path=record, alert_after=3)
    first = cal.calibrate(quotes, timestamp=1.0)
    assert first.accepted, first.reasons
    assert np.allclose(cal.params.as_array(), DEFAULT_PARAMS.as_array(), rtol=0.1, atol=0.01)
    accepted = cal.params
    # an impossible threshold: refused three times, the parameters stay, the alert rises on the third
    strict = Calibrator("heston", record_path=record, validation=ValidationConfig(max_rmse_iv=1e-6))
    strict.params = accepted
    for n in (1, 2, 3):
        out = strict.calibrate(quotes)
        assert not out.accepted and any("rmse_iv" in r for r in out.reasons)
        assert out.params is accepted and out.consecutive_failures == n and out.alert == (n >= 3)
    # a calibration that raises is a failure too, with the reason
    empty = prepare(load_chain_csv(chain_csv), PrepConfig(min_days=400, max_days=500))
    out = strict.calibrate(empty)
    assert not out.accepted and "no quotes" in out.reasons[0] and strict.consecutive_failures == 4
    # success resets the count
    strict.validation = ValidationConfig()
    assert strict.calibrate(quotes).accepted and strict.consecutive_failures == 0 and not strict.alert
    records = read_records(record)
    assert len(records) == 2 and records[0]["time"] == 1.0
    assert records[0]["fingerprint"] == fingerprint(quotes) == first.fingerprint
    assert records[0]["metrics"]["params"]["rho"] == pytest.approx(accepted.rho)
    assert records == cal.records + strict.records


def test_stability_against_the_previous_calibration(chain_csv):
    quotes = prepare(load_chain_csv(chain_csv))
    fit = Calibrator("heston").calibrate(quotes).fit
    far = HestonParams(v0=0.1, kappa=1.5, theta=0.06, sigma=0.4, rho=-0.65)
    v = validate(fit, far)
    assert not v.accepted and any(r.startswith("v0 moved") for r in v.reasons)
    assert validate(fit, fit.params).accepted
    assert v.checks["feller_satisfied"] == fit.feller_satisfied


def test_record_file_survives_a_torn_write(tmp_path):
    path = tmp_path / "r.jsonl"
    append_record(path, {"a": 1})
    append_record(path, {"a": 2})
    with open(path, "a") as f:
        f.write('{"a": 3, "trunc')                 # a crash in the middle of a write
    assert read_records(path) == [{"a": 1}, {"a": 2}]


def test_sabr_per_maturity(chain_csv):
    quotes = prepare(load_chain_csv(chain_csv))
    surface = calibrate_sabr_surface(quotes)
    assert len(surface.fits) == 6
    for f, arb in zip(surface.fits, surface.arbitrage):
        assert f.success and f.rmse < 0.003 and f.params.beta == 0.5 and f.params.rho < -0.3
        assert arb.ok
    cal = Calibrator("sabr")
    out = cal.calibrate(quotes)
    assert out.accepted, out.reasons
    assert set(cal.params) == {30, 60, 91, 182, 273, 365}
    assert cal.calibrate(quotes).accepted    # stable against itself
    fitted = calibrate_sabr_surface(quotes, fit_beta=True)
    assert all(0 <= f.params.beta <= 1 for f in fitted.fits)


# ---------------------------------------------------------------- CLI


def test_cli_calibrate_heston_json_and_plot(chain_csv, tmp_path):
    png = tmp_path / "fit.png"
    result = CliRunner().invoke(main, ["calibrate", "heston", str(chain_csv), "--json", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.splitlines()[0])
    assert summary["accepted"] and summary["rmse_iv"] < 0.003
    assert summary["params"]["rho"] == pytest.approx(DEFAULT_PARAMS.rho, abs=0.1)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_calibrate_sabr_table(chain_csv):
    result = CliRunner().invoke(main, ["calibrate", "sabr", str(chain_csv)])
    assert result.exit_code == 0, result.output
    assert "alpha" in result.output and "accepted True" in result.output


def test_cli_calibrate_reports_chain_errors(tmp_path):
    path = write(tmp_path, "30,100,C,2.0,1.5,100,0,0")
    result = CliRunner().invoke(main, ["calibrate", "heston", str(path)])
    assert result.exit_code == 1
    assert "line 2, column 'bid'" in result.output and "Traceback" not in result.output
