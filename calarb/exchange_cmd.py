"""``calarb exchange``: run the exchange simulator standalone and say what it serves.

Registered in :mod:`calarb.cli` with ``main.add_command(exchange)``. Prints one
JSON line per venue (its FIX port and CompID, market data destination,
re-request port, MoldUDP64 session, symbols and stock locates), then a stats
line per venue every ``stats_interval_s`` (orders, fills, shares, sequence
number, dropped datagrams, re-requests, top of book), and a last one on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from pathlib import Path

import click

from sim.exchange.config import ConfigError, default_config, load


def _echo(obj: dict) -> None:
    click.echo(json.dumps(obj, separators=(",", ":")))


async def _run(cfg, venue_kind: str, duration: float | None) -> None:
    from sim.exchange.venue import Exchange

    ex = Exchange(cfg, order_entry=venue_kind)
    await ex.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        for v in ex.venues:
            _echo({"event": "serving", **v.describe()})
        t0 = loop.time()
        while not stop.is_set():
            left = None if duration is None else duration - (loop.time() - t0)
            if left is not None and left <= 0:
                break
            wait = cfg.stats_interval_s if left is None else min(cfg.stats_interval_s, left)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            for v in ex.venues:
                _echo({"event": "stats", **v.snapshot()})
    finally:
        await ex.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


@click.command("exchange")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Exchange TOML config (default: sim/exchange/example.toml, two venues on loopback).")
@click.option("--venue", "venue_kind", type=click.Choice(["calarb", "quickfix"]), default="calarb",
              show_default=True, help="FIX acceptor: the project's own, or QuickFIX.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds (default: Ctrl-C).")
def exchange(config_path: Path | None, venue_kind: str, duration: float | None) -> None:
    """Run the exchange simulator: matching engines, ITCH/MoldUDP64 market data, re-request servers and
    FIX 4.4 order entry for every venue of the config."""
    try:
        cfg = load(config_path) if config_path is not None else default_config()
    except ConfigError as e:
        raise click.ClickException(f"config {e}") from None
    if venue_kind == "quickfix":
        from sim.exchange.quickfix_venue import QuickFixMissing, import_quickfix
        try:
            import_quickfix()
        except QuickFixMissing as e:
            raise click.ClickException(str(e)) from None
    try:
        asyncio.run(_run(cfg, venue_kind, duration))
    except OSError as e:
        raise click.ClickException(f"cannot serve: {e}") from None
