"""History storage (host/storage.py): batched atomic writes, retention across tiers, crash safety."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from host.config import RetentionConfig, StorageConfig
from host.storage import NS_PER_DAY, Storage, StorageError
from host.types import Execution, Side, Signal, TopOfBook

ROOT = Path(__file__).resolve().parents[2]
DAY = NS_PER_DAY


def tob(t, seq=1, instrument="A"):
    return TopOfBook(instrument, 1_000_000, 100, 1_000_100, 200, t, seq)


def test_rows_round_trip(tmp_path):
    with Storage(tmp_path) as st:
        st.append("tob", tob(5, 7))
        st.append("signals", Signal("A", -1, 0.75, "pairs", -2.1, 6, None, "pairs:A/B"))
        st.append("executions", Execution("c1", "e1", "F", "A", Side.SELL, 10, 999_900, 10, 0, 8, "XNAS"))
        st.append("calibrations", {"time_ns": 9, "model": "heston", "accepted": True, "fingerprint": "ab",
                                   "params": {"v0": 0.04}, "metrics": {"rmse_iv": 0.001}})
        st.audit("kill", {"reason": "drawdown"}, time_ns=10)
        assert st.flush() == 5
        assert st.scan("tob").to_pylist() == [dict(time_ns=5, instrument="A", bid_price=1_000_000, bid_size=100,
                                                   ask_price=1_000_100, ask_size=200, seq=7)]
        assert st.scan("signals").to_pylist()[0]["grp"] == "pairs:A/B"
        assert st.scan("executions").to_pylist()[0]["side"] == -1
        assert st.scan("calibrations").to_pylist()[0]["params"] == '{"v0": 0.04}'
        assert st.scan("audit").to_pylist()[0]["kind"] == "kill"


def test_bad_rows_are_named(tmp_path):
    with Storage(tmp_path) as st:
        with pytest.raises(StorageError, match="unknown table 'ticks'"):
            st.append("ticks", {"time_ns": 1})
        with pytest.raises(StorageError, match="tob: unknown column 'price'"):
            st.append("tob", {"time_ns": 1, "price": 3})
        with pytest.raises(StorageError, match="time_ns is required"):
            st.append("audit", {"kind": "x"})


def test_batch_flushes_automatically(tmp_path):
    with Storage(tmp_path, StorageConfig(batch_rows=10)) as st:
        for i in range(25):
            st.append("tob", tob(i, i))
        assert st.con.execute("SELECT count(*) FROM tob").fetchone()[0] == 20
        assert st.count("tob")["hot"] == 25


def test_retention_moves_hot_to_warm_to_cold_then_deletes(tmp_path):
    cfg = StorageConfig(tob=RetentionConfig(7, 90, 365))
    now = 1000 * DAY
    with Storage(tmp_path, cfg) as st:
        for age_days in (400, 100, 30, 8, 6, 1):
            st.append("tob", tob(now - age_days * DAY, age_days))
        st.flush()
        rep = st.apply_retention(now)["tob"]
        assert rep == {"to_warm": 4, "to_cold": 0, "deleted": 0}  # one file with the four rows older than 7 d
        assert st.count("tob") == {"hot": 2, "warm": 4, "cold": 0}
        # the warm file's newest row is 8 days old: it stays warm until it is 90 days old
        assert st.apply_retention(now + 81 * DAY)["tob"]["to_cold"] == 0
        st.apply_retention(now + 83 * DAY)
        assert st.count("tob") == {"hot": 0, "warm": 2, "cold": 4}  # the 6 and 1 day old rows went warm at +83 d
        assert sorted(r["seq"] for r in st.scan("tob").to_pylist()) == [1, 6, 8, 30, 100, 400]
        st.apply_retention(now + 400 * DAY)
        assert st.count("tob") == {"hot": 0, "warm": 0, "cold": 0}
        files = list((tmp_path / "warm").rglob("*")) + list((tmp_path / "cold").rglob("*.parquet"))
        assert not [f for f in files if f.is_file()]


def test_forever_tables_stay_hot(tmp_path):
    with Storage(tmp_path) as st:
        st.append("executions", Execution("c", "e", "F", "A", Side.BUY, 1, 1, 1, 0, 1))
        st.apply_retention(4 * 365 * DAY)
        assert st.count("executions") == {"hot": 1, "warm": 0, "cold": 0}


def test_an_interrupted_move_loses_and_duplicates_nothing(tmp_path):
    now = 100 * DAY
    with Storage(tmp_path) as st:
        for i in range(5):
            st.append("tob", tob(now - 10 * DAY + i, i))
        st.flush()
        # a move cut short after its Parquet file was renamed into place, before the DuckDB delete committed
        warm = tmp_path / "warm" / "tob"
        warm.mkdir(parents=True)
        st.con.execute(f"COPY (SELECT * FROM tob) TO '{warm / 'tob-1-2-dead.parquet'}' (FORMAT parquet)")
        (warm / ".tmp-tob-3-4-beef.parquet").write_bytes(b"PAR1 half written")
        assert st.count("tob") == {"hot": 5, "warm": 0, "cold": 0}  # the orphan is not read
        st.apply_retention(now)
        assert st.count("tob") == {"hot": 0, "warm": 5, "cold": 0}
        assert [p.name.startswith("tob-") for p in warm.iterdir()] == [True]
        assert sorted(r["seq"] for r in st.scan("tob").to_pylist()) == list(range(5))
        (name,) = [p for p in warm.iterdir()]
        assert pq.read_table(name).num_rows == 5


WRITER = textwrap.dedent("""
    import sys
    from host.storage import Storage
    from host.config import StorageConfig
    st = Storage(sys.argv[1], StorageConfig(batch_rows=1_000_000))
    batch = 0
    while True:
        for i in range(500):
            st.append("tob", {"time_ns": batch * 1000 + i, "instrument": "A", "bid_price": 1, "bid_size": 1,
                              "ask_price": 2, "ask_size": 1, "seq": batch})
        st.flush()
        batch += 1
        print(batch, flush=True)
""")


def test_kill_during_writes_leaves_whole_batches(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, env=env, cwd=ROOT)
    try:
        for _ in range(20):  # wait for twenty committed batches, then kill mid-stream
            assert proc.stdout.readline(), "writer died"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with Storage(tmp_path) as st:
        rows = st.con.execute("SELECT seq, count(*) FROM tob GROUP BY seq ORDER BY seq").fetchall()
    assert len(rows) >= 20
    assert [s for s, _ in rows] == list(range(len(rows)))  # batches in order, none missing
    assert all(n == 500 for _, n in rows)  # and every one whole
