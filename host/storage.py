"""Embedded history: DuckDB (hot) and Parquet (warm, cold) under the run directory.

What
    :class:`Storage` keeps six tables - ``tob`` (top-of-book history),
    ``calibrations`` (with their metrics), ``signals``, ``orders``,
    ``executions`` and ``audit`` - whose columns are declared once in
    :data:`TABLES`. Rows are buffered in memory by :meth:`~Storage.append`
    and written by :meth:`~Storage.flush` as one DuckDB transaction per
    flush (every table's batch, or none of them). ``time_ns`` is each row's
    time (ns since the epoch); retention ages are measured on it.

    :meth:`~Storage.apply_retention` moves data down the tiers of
    :class:`~host.config.RetentionConfig` (DESIGN.md's table):

    * hot -> warm: rows older than ``hot_days`` are copied to a Parquet file
      under ``warm/<table>/`` (written to a temporary name, fsynced, then
      ``os.replace`` d), and *then* deleted from DuckDB in a transaction that
      also records the file in the ``_moves`` journal. A Parquet file not in
      the journal is the leftover of a move cut short (its rows are still
      hot) and is removed on the next retention pass, so no row is ever lost
      or counted twice.
    * warm -> cold: files whose newest row is older than ``warm_days`` are
      renamed into ``cold/<table>/``; cold files older than ``cold_days`` are
      deleted.

    :meth:`~Storage.scan` reads a table across every tier (DuckDB over the
    hot table and the Parquet files) as a pyarrow table ordered by time.

Why
    DESIGN.md: embedded defaults (files under the run directory), batched
    history inserts under 100 ms, retention hot/warm/cold, and no
    half-written file after a kill (DuckDB's write-ahead log covers the hot
    tables; temp + ``os.replace`` covers Parquet).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from dataclasses import asdict, is_dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from host.config import RetentionConfig, StorageConfig

__all__ = ["TABLES", "Storage", "StorageError"]

NS_PER_DAY = 86_400 * 10**9

TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "tob": (("time_ns", "BIGINT"), ("instrument", "VARCHAR"), ("bid_price", "BIGINT"), ("bid_size", "BIGINT"),
            ("ask_price", "BIGINT"), ("ask_size", "BIGINT"), ("seq", "BIGINT")),
    "calibrations": (("time_ns", "BIGINT"), ("model", "VARCHAR"), ("accepted", "BOOLEAN"),
                     ("fingerprint", "VARCHAR"), ("params", "VARCHAR"), ("metrics", "VARCHAR")),
    "signals": (("time_ns", "BIGINT"), ("instrument", "VARCHAR"), ("source", "VARCHAR"), ("direction", "INTEGER"),
                ("confidence", "DOUBLE"), ("strength", "DOUBLE"), ("grp", "VARCHAR"), ("expected_return", "DOUBLE"),
                ("ratio", "DOUBLE")),
    "orders": (("time_ns", "BIGINT"), ("clordid", "VARCHAR"), ("instrument", "VARCHAR"), ("side", "INTEGER"),
               ("quantity", "BIGINT"), ("limit_price", "BIGINT"), ("venue", "VARCHAR"), ("origin", "VARCHAR")),
    "executions": (("time_ns", "BIGINT"), ("clordid", "VARCHAR"), ("exec_id", "VARCHAR"), ("exec_type", "VARCHAR"),
                   ("instrument", "VARCHAR"), ("side", "INTEGER"), ("last_qty", "BIGINT"), ("last_price", "BIGINT"),
                   ("cum_qty", "BIGINT"), ("leaves_qty", "BIGINT"), ("venue", "VARCHAR")),
    "audit": (("time_ns", "BIGINT"), ("kind", "VARCHAR"), ("detail", "VARCHAR")),
}
"""Columns and DuckDB types of every table; ``time_ns`` first. JSON columns are VARCHAR."""

_ARROW = {"BIGINT": pa.int64(), "INTEGER": pa.int32(), "DOUBLE": pa.float64(), "VARCHAR": pa.string(),
          "BOOLEAN": pa.bool_()}
_ALIASES = {"timestamp": "time_ns", "group": "grp"}


class StorageError(ValueError):
    """A row that does not fit its table; the message names the table and column."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Storage:
    """DuckDB + Parquet history under ``run_dir`` (see the module docstring). Not thread-safe for writers."""

    def __init__(self, run_dir, config: StorageConfig = StorageConfig()):
        self.run_dir = Path(run_dir)
        self.config = config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(self.run_dir / "history.duckdb"))
        for name, cols in TABLES.items():
            self.con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(f'{c} {t}' for c, t in cols)})")
        self.con.execute("CREATE TABLE IF NOT EXISTS _moves (tbl VARCHAR, file VARCHAR, rows BIGINT, "
                         "cutoff_ns BIGINT, moved_ns BIGINT)")
        self._buffers: dict[str, list[list]] = {name: [[] for _ in cols] for name, cols in TABLES.items()}
        self._pending = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        self.flush()
        self.con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---------------------------------------------------------------- writes

    def append(self, table: str, row) -> None:
        """Buffer one row (a dict or dataclass; ``timestamp`` is taken as ``time_ns``, ``group`` as ``grp``;
        dict/list values are stored as JSON). Flushes when ``batch_rows`` rows are pending."""
        if table not in TABLES:
            raise StorageError(f"unknown table {table!r} (tables: {', '.join(TABLES)})")
        if is_dataclass(row):
            row = asdict(row)
        row = {_ALIASES.get(k, k): v for k, v in row.items()}
        cols = TABLES[table]
        names = {c for c, _ in cols}
        extra = sorted(set(row) - names)
        if extra:
            raise StorageError(f"{table}: unknown column {extra[0]!r} (columns: {', '.join(sorted(names))})")
        buf = self._buffers[table]
        with self._lock:
            for i, (c, t) in enumerate(cols):
                v = row.get(c)
                if v is None and c == "time_ns":
                    raise StorageError(f"{table}: time_ns is required")
                if isinstance(v, (dict, list, tuple)) and t == "VARCHAR":
                    v = json.dumps(v, sort_keys=True, default=str)
                elif hasattr(v, "value") and t == "INTEGER":  # enums (Side)
                    v = int(v.value)
                buf[i].append(v)
            self._pending += 1
        if self._pending >= self.config.batch_rows:
            self.flush()

    def audit(self, kind: str, detail: dict, time_ns: int | None = None) -> None:
        """Append an audit record (flushed with the next batch)."""
        self.append("audit", {"time_ns": time.time_ns() if time_ns is None else time_ns, "kind": kind,
                              "detail": detail})

    def flush(self) -> int:
        """Write every buffered row in one transaction; returns the number of rows written."""
        with self._lock:
            batches = {}
            for name, buf in self._buffers.items():
                if buf[0]:
                    cols = TABLES[name]
                    try:
                        batches[name] = pa.table({c: pa.array(v, _ARROW[t]) for (c, t), v in zip(cols, buf)})
                    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
                        raise StorageError(f"{name}: a buffered row does not fit the columns: {exc}") from exc
            self._buffers = {name: [[] for _ in cols] for name, cols in TABLES.items()}
            n, self._pending = self._pending, 0
        if not batches:
            return 0
        self.con.execute("BEGIN TRANSACTION")
        try:
            for name, tbl in batches.items():
                self.con.register("_batch", tbl)
                self.con.execute(f"INSERT INTO {name} SELECT * FROM _batch")
                self.con.unregister("_batch")
            self.con.execute("COMMIT")
        except Exception:
            self.con.execute("ROLLBACK")
            raise
        return n

    # ---------------------------------------------------------------- reads

    def _files(self, tier: str, table: str) -> list[Path]:
        d = self.run_dir / tier / table
        return sorted(d.glob("*.parquet")) if d.is_dir() else []

    def _journal(self, table: str) -> set[str]:
        return {r[0] for r in self.con.execute("SELECT file FROM _moves WHERE tbl = ?", [table]).fetchall()}

    def scan(self, table: str, where: str = "") -> pa.Table:
        """Every row of ``table`` across hot, warm and cold storage, ordered by ``time_ns``."""
        if table not in TABLES:
            raise StorageError(f"unknown table {table!r} (tables: {', '.join(TABLES)})")
        self.flush()
        journal = self._journal(table)
        files = [str(p) for tier in ("warm", "cold") for p in self._files(tier, table) if p.name in journal]
        parts = [f"SELECT * FROM {table}"]
        if files:
            parts.append(f"SELECT * FROM read_parquet({files!r})")
        cond = f" WHERE {where}" if where else ""
        sql = f"SELECT * FROM ({' UNION ALL '.join(parts)}){cond} ORDER BY time_ns"
        return self.con.sql(sql).to_arrow_table()

    def count(self, table: str) -> dict[str, int]:
        """Rows per tier: ``{"hot", "warm", "cold"}``."""
        self.flush()
        out = {"hot": self.con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]}
        journal = self._journal(table)
        for tier in ("warm", "cold"):
            files = [str(p) for p in self._files(tier, table) if p.name in journal]
            out[tier] = (self.con.execute(f"SELECT count(*) FROM read_parquet({files!r})").fetchone()[0]
                         if files else 0)
        return out

    # ---------------------------------------------------------------- retention

    def _retention(self, table: str) -> RetentionConfig:
        return getattr(self.config, table)

    def apply_retention(self, now_ns: int | None = None) -> dict[str, dict[str, int]]:
        """Move rows and files down the tiers; returns ``{table: {"to_warm", "to_cold", "deleted"}}`` counts."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        self.flush()
        report = {}
        for table in TABLES:
            ret = self._retention(table)
            self._remove_orphans(table)
            moved = self._hot_to_warm(table, now_ns - int(ret.hot_days * NS_PER_DAY)) if ret.hot_days else 0
            to_cold = deleted = 0
            if ret.warm_days is not None:
                to_cold = self._age_files(table, "warm", now_ns - int(ret.warm_days * NS_PER_DAY), "cold")
            if ret.cold_days is not None:
                deleted = self._age_files(table, "cold", now_ns - int(ret.cold_days * NS_PER_DAY), None)
            report[table] = {"to_warm": moved, "to_cold": to_cold, "deleted": deleted}
        return report

    def _remove_orphans(self, table: str) -> None:
        journal = self._journal(table)
        for tier in ("warm", "cold"):
            d = self.run_dir / tier / table
            if not d.is_dir():
                continue
            for p in d.iterdir():
                if p.name.startswith(".tmp-") or (p.suffix == ".parquet" and p.name not in journal):
                    p.unlink()

    def _hot_to_warm(self, table: str, cutoff_ns: int) -> int:
        n = self.con.execute(f"SELECT count(*) FROM {table} WHERE time_ns < ?", [cutoff_ns]).fetchone()[0]
        if n == 0:
            return 0
        lo, hi = self.con.execute(f"SELECT min(time_ns), max(time_ns) FROM {table} WHERE time_ns < ?",
                                  [cutoff_ns]).fetchone()
        d = self.run_dir / "warm" / table
        d.mkdir(parents=True, exist_ok=True)
        name = f"{table}-{lo}-{hi}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = d / f".tmp-{name}"
        self.con.execute(f"COPY (SELECT * FROM {table} WHERE time_ns < {int(cutoff_ns)} ORDER BY time_ns) "
                         f"TO '{tmp}' (FORMAT parquet, COMPRESSION zstd)")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, d / name)
        _fsync_dir(d)
        self.con.execute("BEGIN TRANSACTION")
        try:
            self.con.execute(f"DELETE FROM {table} WHERE time_ns < ?", [cutoff_ns])
            self.con.execute("INSERT INTO _moves VALUES (?, ?, ?, ?, ?)", [table, name, n, cutoff_ns, time.time_ns()])
            self.con.execute("COMMIT")
        except Exception:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("CHECKPOINT")
        return int(n)

    def _age_files(self, table: str, tier: str, cutoff_ns: int, dest: str | None) -> int:
        moved = 0
        for p in self._files(tier, table):
            hi = int(p.name.rsplit("-", 2)[1])
            if hi >= cutoff_ns:
                continue
            if dest is None:
                p.unlink()
                self.con.execute("DELETE FROM _moves WHERE tbl = ? AND file = ?", [table, p.name])
            else:
                d = self.run_dir / dest / table
                d.mkdir(parents=True, exist_ok=True)
                try:
                    os.replace(p, d / p.name)
                except OSError:  # another filesystem: copy under a temp name, then rename
                    tmp = d / f".tmp-{p.name}"
                    shutil.copyfile(p, tmp)
                    with open(tmp, "rb+") as fh:
                        os.fsync(fh.fileno())
                    os.replace(tmp, d / p.name)
                    p.unlink()
                _fsync_dir(d)
            moved += 1
        return moved
