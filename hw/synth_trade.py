"""Out-of-context ECP5 synthesis of the tick-to-trade path (``hw/tick2trade.py``): LUTs and fmax.

Uses ``hw.synth.synthesize`` unchanged; ``python -m hw.synth_trade [--device D] [--slots N]`` prints the
table and writes ``build/synth/tick2trade-<device>.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hw.synth import DEVICES, format_table, synthesize


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hw.synth_trade", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="LFE5UM5G-85F", choices=list(DEVICES))
    parser.add_argument("--slots", type=int, default=32)
    parser.add_argument("--freq", type=float, default=200.0)
    parser.add_argument("--out", type=Path, default=Path("build/synth"))
    args = parser.parse_args(argv)
    from hw.tick2trade import TickToTrade
    summary = synthesize(TickToTrade(args.slots), name="tick2trade", device=args.device, out_dir=args.out,
                         freq_mhz=args.freq)
    print(format_table([summary]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
