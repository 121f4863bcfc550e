"""``calarb run`` and ``calarb run-demo``: the whole loop from one config (see :mod:`calarb.run`).

Registered in :mod:`calarb.cli` with ``main.add_command(run)`` and ``main.add_command(run_demo)``.
Prints the live view (Rich on a terminal, JSON lines otherwise), then one JSON line saying where
the run directory, the summary and the plots are.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import click

from calarb.run import EXAMPLE_CONFIG, NIC_KINDS, RunConfigError, load_run_config

__all__ = ["run", "run_demo"]


def _go(config: Path, duration: float | None, nic: str | None, run_dir: Path | None, quiet: bool) -> dict:
    from calarb.live import LiveView
    from calarb.run import run as run_loop

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        cfg = load_run_config(config)
    except RunConfigError as exc:
        raise click.ClickException(f"config {config}: {exc}") from None
    if (nic or cfg.nic) == "sim":
        import time

        from calarb.run import _nic_library
        click.echo("preparing the simulated NIC (the Verilated gateware; built once, then cached under build/nic/)",
                   err=True)
        t0 = time.monotonic()
        try:
            _nic_library()
        except Exception as exc:  # noqa: BLE001 - say what failed, with the build's own message
            raise click.ClickException(f"the simulated NIC could not be built: {exc}; try --nic software") from None
        click.echo(f"simulated NIC ready in {time.monotonic() - t0:.0f} s", err=True)
    view = None if quiet else LiveView(cfg.log_interval_s)
    try:
        ctx = asyncio.run(run_loop(cfg, duration, nic, run_dir, view=view, handle_signals=True))
    except RunConfigError as exc:
        raise click.ClickException(f"config {config}: {exc}") from None
    finally:
        if view is not None:
            view.close()
    s = ctx.summary or {}
    out = {"event": "done", "run_dir": str(ctx.run_dir), "summary": str(ctx.run_dir / "summary.json"),
           "plots": s.get("plots", {}), "orders": s.get("orders", {}).get("sent"),
           "fills": s.get("orders", {}).get("fills"), "pnl": s.get("pnl", {}).get("total"),
           "calibrations": s.get("calibrations", {}).get("accepted")}
    click.echo(json.dumps(out, separators=(",", ":")))
    return out


@click.command("run")
@click.option("--config", "config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=EXAMPLE_CONFIG, show_default=True,
              help="Run config (TOML; calarb/example_run.toml documents it).")
@click.option("--duration", type=float, default=None,
              help="Seconds to run (default: the config's run.duration_s); Ctrl-C stops earlier.")
@click.option("--nic", type=click.Choice(NIC_KINDS), default=None,
              help="sim: the Verilated gateware; software: the Python receive path (default: the config's nic.kind).")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory (default: the config's run.run_dir).")
@click.option("--quiet", is_flag=True, help="No live view; only the final JSON line.")
def run(config: Path, duration: float | None, nic: str | None, run_dir: Path | None, quiet: bool) -> None:
    """Run the exchange simulator, the NICs and the host engine together; write the run report."""
    _go(config, duration, nic, run_dir, quiet)


@click.command("run-demo")
@click.option("--duration", type=float, default=60.0, show_default=True)
@click.option("--nic", type=click.Choice(NIC_KINDS), default=None, help="Default: the example config's (sim).")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("build/demo-run"),
              show_default=True)
def run_demo(duration: float, nic: str | None, run_dir: Path) -> None:
    """`make demo`: `calarb run` with the example config for about a minute; says where everything is."""
    out = _go(EXAMPLE_CONFIG, duration, nic, run_dir, False)
    click.echo(f"\nrun directory: {out['run_dir']}\nsummary:       {out['summary']}", err=True)
    for name, p in sorted(out["plots"].items()):
        click.echo(f"plot:          {p}", err=True)
