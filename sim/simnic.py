"""The simulated NIC: the Verilated core behind a small C harness, driven from Python through ctypes.

:func:`build_library` exports ``hw.top.build_top()`` as Verilog module ``calarb_nic``, Verilates it
together with ``sim/nic/harness.cpp`` and links ``libcalarbnic.so`` under ``build/nic/<hash>/``;
the hash covers the Verilog, the harness, the generated header and shell and the build flags, so
an unchanged design reuses the library. :class:`SimNic` loads it and offers the NIC's operations:
push frames, run the clock, pop events and transmitted frames, read and write registers by name.

Two small files are generated per build: ``nic_config.h`` (beat field offsets from
``hw.stream.Beat``, the register count) and the shell module ``calarb_nic_sim``, which registers
every input of the core (see :func:`shell_verilog`): with the core's logic depending on state
only, Verilator evaluates it once per clock edge. FST tracing is compiled in (``--trace-fst``);
``SimNic(trace=path)`` or :meth:`SimNic.trace` opens a waveform without a rebuild.

Work crosses into C in batches: one call pushes a whole list of frames, one call runs the clock
for up to millions of cycles, one call returns every completed packet. The harness's queues are
bounded (see ``harness.cpp``); :meth:`SimNic.run` drains the output queues into Python whenever
they fill, so no output is lost, and :meth:`SimNic.push_frames` refuses a batch that does not
fit the input queue rather than splitting it.

A :class:`SimNic` is not thread-safe; use one per thread.

Cycle counts: :attr:`SimNic.cycle` counts every clock edge since the NIC was created (reset and
register-bus cycles included; :meth:`SimNic.reset` does not clear it). Ingress timestamps
(:meth:`SimNic.pop_ingress`) and event timestamps both use the core's cycle counter (register
``top.cycle``, cleared by reset), so ``event.cycle - ingress`` is a latency in cycles.
"""

from __future__ import annotations

import array
import ctypes
import fcntl
import hashlib
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

from host import nic as host_nic
from protocols.registers import BUS_ADDR_WIDTH, BUS_DATA_WIDTH, REGISTER_MAP, Access

HERE = Path(__file__).resolve().parent
HARNESS = HERE / "nic" / "harness.cpp"
MODULE = "calarb_nic"
LIBRARY = "libcalarbnic.so"
JOBS = 2

SHELL = "calarb_nic_sim"
VERILATOR_FLAGS = ("--cc", "--exe", "--build", "-O3", "--x-assign", "fast", "--x-initial", "fast",
                   "-Wno-fatal", "--top-module", SHELL, "--prefix", "Vnic")
TRACE_FLAGS = ("--trace-fst",)
CFLAGS = "-fPIC -O2"
MAKE_VARS = "OPT_FAST=-O2 OPT_GLOBAL=-O2"
"""Make variables for Verilator's generated makefile: its defaults (-Os) would come last for the harness."""
LDFLAGS = "-shared -pthread -Wl,-z,defs"

# Status codes of harness.cpp (nic_strerror names them; tests/sim/test_simnic.py checks the pairing).
NIC_OK = 0
NIC_E_ARG = -1
NIC_E_FULL = -2
NIC_E_FRAME = -3
NIC_E_ADDR = -4
NIC_E_BUFSIZE = -5
NIC_E_TRACE = -6
NIC_E_NOTRACE = -7
NIC_E_INTERNAL = -8
STATUS_CODES = {name: value for name, value in globals().items() if name.startswith("NIC_E_") or name == "NIC_OK"}

# nic_query keys and status bits.
Q_STATUS, Q_RX_FRAMES, Q_RX_BYTES, Q_HOST_FRAMES, Q_HOST_BYTES, Q_EVENTS_BYTES, Q_TX_BYTES, Q_INGRESS = range(8)
Q_CAP_FRAMES, Q_CAP_BYTES, Q_MAX_FRAME, Q_CORE_CYCLE, Q_TRACING, Q_TRACE_BUILT = range(8, 14)
Q_EVENTS_CAP, Q_TX_CAP, Q_INGRESS_CAP, Q_FRAMING_ERRORS, Q_LOST = range(14, 19)
S_IDLE, S_EVENTS_FULL, S_TX_FULL, S_INGRESS_FULL = 1, 2, 4, 8

RUN_CHUNK = 1 << 22
"""Cycles per call into the library when :meth:`SimNic.run` has no cycle budget."""


class NicError(host_nic.NicError):
    """The simulated NIC refused an operation, or its library could not be built or loaded."""


# ---- building ---------------------------------------------------------------------------------


def _mangle(name: str) -> str:
    """The C++ member name Verilator gives a port: an underscore after an underscore becomes ``__05F``."""
    out, prev = [], ""
    for ch in name:
        out.append("__05F" if ch == "_" and prev == "_" else ch)
        prev = ch
    return "".join(out)


def _ports(verilog: str, module: str) -> dict[str, tuple[str, int]]:
    """Port name -> (direction, width) of ``module`` in ``verilog``."""
    match = re.search(rf"^module {re.escape(module)}\b(.*?)^endmodule", verilog, re.S | re.M)
    if not match:
        raise NicError(f"module {module} not found in the exported Verilog")
    ports = {}
    for direction, msb, lsb, name in re.findall(r"^\s*(input|output)\s+(?:\[(\d+):(\d+)\]\s*)?(\S+?)\s*;",
                                                match.group(1), re.M):
        ports[name] = (direction, int(msb) - int(lsb) + 1 if msb else 1)
    return ports


STREAMS = {"rx": "input", "host_tx": "input", "tx": "output", "events": "output"}
BUS = {"addr": ("input", BUS_ADDR_WIDTH), "w_stb": ("input", 1), "w_data": ("input", BUS_DATA_WIDTH),
       "r_stb": ("input", 1), "r_data": ("output", BUS_DATA_WIDTH)}


def check_ports(verilog: str) -> None:
    """Check the exported core's ports against what the shell connects."""
    from hw.stream import Beat

    ports = _ports(verilog, MODULE)
    want = {"clk": ("input", 1), "rst": ("input", 1)}
    for stream, direction in STREAMS.items():
        other = "output" if direction == "input" else "input"
        want[f"{stream}__valid"] = (direction, 1)
        want[f"{stream}__ready"] = (other, 1)
        want[f"{stream}__payload"] = (direction, Beat.size)
    want.update({f"bus__{k}": v for k, v in BUS.items()})
    for name, spec in want.items():
        if ports.get(name) != spec:
            raise NicError(f"port {name} of {MODULE}: exported as {ports.get(name)}, the shell expects {spec}")
    extra = sorted(set(ports) - set(want))
    if extra:
        raise NicError(f"{MODULE} has ports the simulated NIC does not drive: {', '.join(extra)}")


def config_header() -> str:
    """``nic_config.h``: beat field offsets (from ``hw.stream.Beat``), the register count, the FIFO depth."""
    from hw.stream import Beat

    lines = ["// Generated by sim/simnic.py from hw.stream.Beat and protocols.registers.",
             "// Do not edit; it is rewritten on every build.", "#pragma once", "",
             f"#define NIC_BEAT_WIDTH {Beat.size}"]
    for name, field in Beat:
        lines += [f"#define NIC_BEAT_{name.upper()}_OFFSET {field.offset}",
                  f"#define NIC_BEAT_{name.upper()}_WIDTH {field.width}"]
    lines += ["", f"#define NIC_NUM_REGS {len(REGISTER_MAP)}", f"#define NIC_FIFO_DEPTH {FIFO_DEPTH}"]
    return "\n".join(lines) + "\n"


FIFO_DEPTH = 4
"""Beats the shell buffers in front of ``rx`` and ``host_tx``; enough to keep them streaming back to back."""


def shell_verilog() -> str:
    """``calarb_nic_sim``: the core behind registers, so that no logic of the core depends on a top input.

    Amaranth folds ``rst`` into every next-state expression, and Verilator evaluates all logic
    that depends on a top-level input in every ``eval()`` (its input-combinational region),
    twice per clock cycle. Here every input of the core comes from a flip-flop: ``rx`` and
    ``host_tx`` from small FIFOs the harness fills a beat per cycle, the sinks' ``ready``, the bus
    and ``rst`` from registers the harness sets a cycle ahead. What moved at an edge is reported
    in registers (``*_fire``, the beat) read right after it. The core sees the same cycles as with
    direct drive: the FIFOs stay full while frames are queued.
    """
    from hw.stream import Beat

    w = Beat.size
    last = Beat["last"].offset
    p = (FIFO_DEPTH - 1).bit_length()
    c = FIFO_DEPTH.bit_length()
    if FIFO_DEPTH != 1 << p:
        raise NicError("FIFO_DEPTH must be a power of two")
    text = f"""// Generated by sim/simnic.py (shell_verilog); do not edit.
module calarb_nic_sim (
    input  wire clk,
    input  wire rst_in,
    input  wire rx_w_en,
    input  wire [{w - 1}:0] rx_w_data,
    output reg  [{c - 1}:0] rx_count,
    output reg  rx_fire,
    output reg  rx_fire_last,
    input  wire host_w_en,
    input  wire [{w - 1}:0] host_w_data,
    output reg  [{c - 1}:0] host_count,
    output reg  host_fire,
    input  wire events_ready_in,
    output reg  events_fire,
    output reg  [{w - 1}:0] events_beat,
    input  wire tx_ready_in,
    output reg  tx_fire,
    output reg  [{w - 1}:0] tx_beat,
    input  wire [{BUS_ADDR_WIDTH - 1}:0] bus_addr_in,
    input  wire bus_w_stb_in,
    input  wire [{BUS_DATA_WIDTH - 1}:0] bus_w_data_in,
    input  wire bus_r_stb_in,
    output wire [{BUS_DATA_WIDTH - 1}:0] bus_r_data
);
    reg rst;
    reg events_ready, tx_ready;
    reg [{BUS_ADDR_WIDTH - 1}:0] bus_addr;
    reg bus_w_stb, bus_r_stb;
    reg [{BUS_DATA_WIDTH - 1}:0] bus_w_data;
"""
    for f in ("rx", "host"):
        text += f"""
    reg [{w - 1}:0] {f}_mem [0:{FIFO_DEPTH - 1}];
    reg [{p - 1}:0] {f}_wp, {f}_rp;
    wire {f}_valid = {f}_count != 0;
    wire [{w - 1}:0] {f}_head = {f}_mem[{f}_rp];
    wire {f}_ready;
    wire {f}_pop = {f}_valid & {f}_ready;
"""
    text += f"""
    wire events_valid, tx_valid;
    wire [{w - 1}:0] events_payload, tx_payload;

    {MODULE} core (
        .clk(clk), .rst(rst),
        .rx__valid(rx_valid), .rx__ready(rx_ready), .rx__payload(rx_head),
        .host_tx__valid(host_valid), .host_tx__ready(host_ready), .host_tx__payload(host_head),
        .events__valid(events_valid), .events__ready(events_ready), .events__payload(events_payload),
        .tx__valid(tx_valid), .tx__ready(tx_ready), .tx__payload(tx_payload),
        .bus__addr(bus_addr), .bus__w_stb(bus_w_stb), .bus__w_data(bus_w_data),
        .bus__r_stb(bus_r_stb), .bus__r_data(bus_r_data)
    );

    always @(posedge clk) begin
        rst <= rst_in;
        events_ready <= events_ready_in;
        tx_ready <= tx_ready_in;
        bus_addr <= bus_addr_in;
        bus_w_stb <= bus_w_stb_in;
        bus_w_data <= bus_w_data_in;
        bus_r_stb <= bus_r_stb_in;
        rx_fire <= rx_pop & ~rst;
        rx_fire_last <= rx_head[{last}];
        host_fire <= host_pop & ~rst;
        events_fire <= events_valid & events_ready & ~rst;
        events_beat <= events_payload;
        tx_fire <= tx_valid & tx_ready & ~rst;
        tx_beat <= tx_payload;
"""
    for f in ("rx", "host"):
        text += f"""        if ({f}_w_en) {f}_mem[{f}_wp] <= {f}_w_data;
        if (rst) begin
            {f}_wp <= 0;
            {f}_rp <= 0;
            {f}_count <= 0;
        end else begin
            if ({f}_w_en) {f}_wp <= {f}_wp + 1'b1;
            if ({f}_pop) {f}_rp <= {f}_rp + 1'b1;
            {f}_count <= {f}_count + {{{{{c - 1}{{1'b0}}}}, {f}_w_en}} - {{{{{c - 1}{{1'b0}}}}, {f}_pop}};
        end
"""
    text += "    end\nendmodule\n"
    return text


LZ4_SHIM = """\
/* The two LZ4 functions Verilator's FST writer calls. Written by sim/simnic.py because this
   system has the LZ4 runtime library (liblz4.so.1) but not its header (liblz4-dev); the
   block-compression API below has been stable since LZ4 r129. */
#pragma once
#ifdef __cplusplus
extern "C" {
#endif
int LZ4_compressBound(int inputSize);
int LZ4_compress_default(const char* src, char* dst, int srcSize, int dstCapacity);
#ifdef __cplusplus
}
#endif
"""


def _lz4(env: dict) -> tuple[str, Path | None]:
    """How FST tracing gets LZ4: ``system``, ``shim`` (header shim plus runtime library) or ``none``."""
    probe = subprocess.run(["c++", "-E", "-x", "c++", "-"], input="#include <lz4.h>\n", text=True,
                           capture_output=True, env=env)
    has_header = probe.returncode == 0
    runtime = None
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    try:
        listing = subprocess.run([ldconfig, "-p"], capture_output=True, text=True).stdout
    except OSError:
        listing = ""
    libs = dict(re.findall(r"^\s*(liblz4\.so(?:\.\d+)?)\s.*=>\s*(\S+)", listing, re.M))
    if has_header and "liblz4.so" in libs:
        return "system", None
    for name in ("liblz4.so.1", "liblz4.so"):
        if name in libs:
            runtime = Path(libs[name])
            break
    if runtime is None:
        return "none", None
    return "shim", runtime


def _verilator_version(env: dict) -> str:
    out = subprocess.run(["verilator", "--version"], capture_output=True, text=True, env=env)
    return out.stdout.strip()


LAST_BUILD: dict = {}
"""What the last :func:`build_library` call did: ``path``, ``built`` (False when reused), ``seconds``."""


def build_library(force: bool = False) -> Path:
    """Export, Verilate and link the core with the harness; returns the (cached) ``libcalarbnic.so``.

    The library lives in ``build/nic/<hash>/`` with its sources, the generated header and shell,
    and ``build.log``; a failed build raises :class:`NicError` quoting the log's tail.
    """
    start = time.perf_counter()
    LAST_BUILD.clear()
    from hw.top import build_top
    from sim import runner

    env = runner.toolchain_env()
    env["MAKEFLAGS"] = f"{env.get('MAKEFLAGS', '')} {MAKE_VARS}".strip()
    root = runner.BUILD / "nic"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "export.lock", "w") as lock:   # export_verilog's temporary file is shared
        fcntl.flock(lock, fcntl.LOCK_EX)
        src = runner.export_verilog(build_top(), MODULE, runner.BUILD / "verilog")
    verilog = src.read_text()
    check_ports(verilog)
    header = config_header()
    shell = shell_verilog()
    harness = HARNESS.read_text()
    lz4, lz4_runtime = _lz4(env)
    flags = list(VERILATOR_FLAGS) + (list(TRACE_FLAGS) if lz4 != "none" else [])
    key = "\n".join([verilog, shell, harness, header, " ".join(flags), CFLAGS, LDFLAGS, MAKE_VARS,
                     lz4, str(lz4_runtime), _verilator_version(env)])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    out_dir = root / digest
    lib = out_dir / LIBRARY
    if lib.exists() and not force:
        LAST_BUILD.update(path=lib, built=False, seconds=time.perf_counter() - start)
        return lib
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)         # concurrent test workers build once
        if lib.exists() and not force:
            LAST_BUILD.update(path=lib, built=False, seconds=time.perf_counter() - start)
            return lib
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        (out_dir / f"{MODULE}.v").write_text(verilog)
        (out_dir / f"{SHELL}.v").write_text(shell)
        (out_dir / "harness.cpp").write_text(harness)
        (out_dir / "nic_config.h").write_text(header)
        cflags, ldflags = f"{CFLAGS} -I{out_dir}", LDFLAGS
        if lz4 == "shim":
            shim = out_dir / "shim"
            shim.mkdir()
            (shim / "lz4.h").write_text(LZ4_SHIM)
            (shim / "liblz4.so").symlink_to(lz4_runtime)   # verilated.mk links -llz4
            cflags += f" -I{shim}"
            ldflags += f" -L{shim}"
        cmd = ["verilator", *flags, "-j", str(JOBS), "--Mdir", "obj", "-CFLAGS", cflags, "-LDFLAGS", ldflags,
               "-o", LIBRARY, f"{SHELL}.v", f"{MODULE}.v", "harness.cpp"]
        log = out_dir / "build.log"
        t0 = time.perf_counter()
        with open(log, "w") as f:
            f.write(f"# lz4: {lz4} {lz4_runtime or ''}\n# MAKEFLAGS={env['MAKEFLAGS']}\n# {' '.join(cmd)}\n")
            f.flush()
            proc = subprocess.run(cmd, cwd=out_dir, env=env, stdout=f, stderr=subprocess.STDOUT)
            f.write(f"# exit {proc.returncode} after {time.perf_counter() - t0:.1f} s\n")
        built = out_dir / "obj" / LIBRARY
        if proc.returncode != 0 or not built.exists():
            tail = "\n".join(log.read_text().splitlines()[-30:])
            raise NicError(f"building {LIBRARY} failed (exit {proc.returncode}); {log} ends with:\n{tail}")
        tmp = out_dir / f"{LIBRARY}.tmp"
        shutil.copy2(built, tmp)
        tmp.replace(lib)
    LAST_BUILD.update(path=lib, built=True, seconds=time.perf_counter() - start)
    return lib


# ---- loading ----------------------------------------------------------------------------------

_LIBS: dict[str, ctypes.CDLL] = {}


def load_library(path: Path | str) -> ctypes.CDLL:
    """Open ``libcalarbnic.so`` and declare its functions (once per path)."""
    path = str(path)
    if path in _LIBS:
        return _LIBS[path]
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        raise NicError(f"cannot load {path}: {e}") from None
    vp, u8p, u32p, u64p = ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint32), \
        ctypes.POINTER(ctypes.c_uint64)
    i, i64, u32, u64 = ctypes.c_int, ctypes.c_int64, ctypes.c_uint32, ctypes.c_uint64
    signatures = {
        "nic_create": ([ctypes.c_char_p], vp),
        "nic_destroy": ([vp], None),
        "nic_reset": ([vp], i),
        "nic_push_frames": ([vp, u8p, u32p, u32], i),
        "nic_push_host_frames": ([vp, u8p, u32p, u32], i),
        "nic_run": ([vp, u64, i], i64),
        "nic_pop_events": ([vp, vp, u64], i64),
        "nic_pop_tx": ([vp, vp, u64], i64),
        "nic_pop_ingress": ([vp, u64p, u64], i64),
        "nic_csr_write": ([vp, u32, u64], i),
        "nic_csr_read": ([vp, u32, u64p], i),
        "nic_cycle": ([vp], u64),
        "nic_query": ([vp, i], i64),
        "nic_trace": ([vp, ctypes.c_char_p], i),
        "nic_trace_close": ([vp], i),
        "nic_stress": ([vp, u64, ctypes.c_double, ctypes.c_double], i),
        "nic_strerror": ([i], ctypes.c_char_p),
        "nic_index_records": ([u8p, u64, u64p, u64p, ctypes.POINTER(ctypes.c_uint8), u64], i64),
    }
    for name, (argtypes, restype) in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, restype
    _LIBS[path] = lib
    return lib


_RECORD = struct.Struct("<IB")


def parse_records(buf: bytes) -> list[tuple[bytes, bool]]:
    """Split serialised output records (``[u32 length][u8 flags][bytes]``) into ``(bytes, aborted)``."""
    out = []
    append = out.append
    unpack = _RECORD.unpack_from
    p, n = 0, len(buf)
    while p < n:
        length, flags = unpack(buf, p)
        q = p + 5
        p = q + length
        append((buf[q:p], bool(flags & 1)))
    return out


class SimNic:
    """The Verilated calarb core as a NIC: frames in, events and frames out, registers by name.

    ``library`` is a built ``libcalarbnic.so`` (built or reused by :func:`build_library` when
    omitted); ``trace`` opens an FST waveform from the first cycle.
    """

    def __init__(self, library: Path | str | None = None, trace: Path | str | None = None):
        self.library = Path(library) if library is not None else build_library()
        self._lib = load_library(self.library)
        self._h = self._lib.nic_create(str(trace).encode() if trace is not None else None)
        if not self._h:
            raise NicError("nic_create failed" + (f" (could not open trace file {trace})" if trace else ""))
        self._events: list[tuple[bytes, bool]] = []
        self._tx: list[tuple[bytes, bool]] = []
        self._ingress: list[int] = []
        q = self._query
        self.max_frame = q(Q_MAX_FRAME)
        self.queue_frames = q(Q_CAP_FRAMES)
        self.queue_bytes = q(Q_CAP_BYTES)

    # -- lifetime --

    def close(self) -> None:
        """Close any trace and free the model."""
        if getattr(self, "_h", None):
            self._lib.nic_destroy(self._h)
            self._h = None

    def __enter__(self) -> SimNic:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _handle(self):
        if not self._h:
            raise NicError("the NIC is closed")
        return self._h

    def _check(self, rc: int, what: str) -> int:
        if rc < 0:
            raise NicError(f"{what}: {self._lib.nic_strerror(rc).decode()}")
        return rc

    def _query(self, key: int) -> int:
        return self._check(self._lib.nic_query(self._handle(), key), "nic_query")

    # -- control --

    def reset(self) -> None:
        """Hold the core in reset for a few cycles and empty every queue (the cycle count goes on)."""
        self._check(self._lib.nic_reset(self._handle()), "reset")
        self._events.clear()
        self._tx.clear()
        self._ingress.clear()

    @property
    def cycle(self) -> int:
        """Clock cycles since the NIC was created (reset and register cycles included)."""
        return self._lib.nic_cycle(self._handle())

    @property
    def core_cycle(self) -> int:
        """The core's cycle counter (``top.cycle``): cycles since the end of the last reset."""
        return self._query(Q_CORE_CYCLE)

    @property
    def framing_errors(self) -> int:
        """Output packets whose beats broke the framing rules (flag bit 1 of a record)."""
        return self._query(Q_FRAMING_ERRORS)

    def stress(self, seed: int, gap: float = 0.0, stall: float = 0.0) -> None:
        """Withhold rx beats (probability ``gap``) and output ready (``stall``) at random, from ``seed``.

        ``seed=0`` turns it off. For differential tests: the design must produce the same
        results under any valid/ready pattern.
        """
        self._check(self._lib.nic_stress(self._handle(), seed, gap, stall), "stress")

    def trace(self, path: Path | str | None) -> None:
        """Write an FST waveform of every following cycle to ``path`` (``None`` closes the trace)."""
        if path is None:
            self._check(self._lib.nic_trace_close(self._handle()), "trace")
            return
        rc = self._lib.nic_trace(self._handle(), str(path).encode())
        if rc == NIC_E_TRACE:
            raise NicError(f"cannot open trace file {path}")
        self._check(rc, "trace")

    # -- input --

    def _push(self, fn, frames, queue: str, q_frames: int, q_bytes: int) -> None:
        frames = [f if isinstance(f, bytes) else bytes(memoryview(f)) for f in frames]
        if not frames:
            return
        lengths = array.array("I", map(len, frames))
        total = sum(lengths)
        if len(frames) > self.queue_frames or total > self.queue_bytes:
            raise NicError(f"a batch of {len(frames)} frames ({total} bytes) exceeds the {queue} input buffer "
                           f"({self.queue_frames} frames, {self.queue_bytes} bytes); push smaller batches")
        for k, n in enumerate(lengths):
            if not 1 <= n <= self.max_frame:
                raise NicError(f"frame {k} of the batch has {n} bytes; frames must have 1 to {self.max_frame}")
        data = b"".join(frames)
        rc = fn(self._handle(), data, (ctypes.c_uint32 * len(lengths)).from_buffer(lengths), len(frames))
        if rc == NIC_E_FULL:
            free_f = self.queue_frames - self._query(q_frames)
            free_b = self.queue_bytes - self._query(q_bytes)
            raise NicError(f"the {queue} input queue has room for {free_f} frames and {free_b} bytes; the batch "
                           f"needs {len(frames)} frames and {total} bytes (run() to drain it first)")
        self._check(rc, f"push to {queue}")

    def push_frames(self, frames) -> None:
        """Queue whole Ethernet frames (no FCS) for ``rx``; all or nothing."""
        self._push(self._lib.nic_push_frames, frames, "rx", Q_RX_FRAMES, Q_RX_BYTES)

    def push_host_frames(self, frames) -> None:
        """Queue frames the host sends (``host_tx``, out on ``tx``); all or nothing."""
        self._push(self._lib.nic_push_host_frames, frames, "host_tx", Q_HOST_FRAMES, Q_HOST_BYTES)

    # -- clock --

    def run(self, cycles: int | None = None, until_idle: bool = True) -> int:
        """Clock the core; returns the cycles run.

        With ``until_idle``, stop once the input queues are empty and nothing has moved for 64 cycles
        (at most ``cycles`` cycles if given). ``cycles=None`` requires ``until_idle`` and raises
        :class:`NicError` if the core does not go idle within a generous bound of the queued input.
        """
        if cycles is None and not until_idle:
            raise ValueError("run() needs a cycle count or until_idle")
        h = self._handle()
        limit = None
        if cycles is None:
            pending = self._query(Q_RX_BYTES) + self._query(Q_HOST_BYTES)
            limit = 16 * pending + 1_000_000
        total = 0
        while True:
            chunk = RUN_CHUNK if cycles is None else min(RUN_CHUNK, cycles - total)
            if chunk <= 0:
                break
            n = self._check(self._lib.nic_run(h, chunk, int(until_idle)), "run")
            total += n
            status = self._query(Q_STATUS)
            if status & (S_EVENTS_FULL | S_TX_FULL | S_INGRESS_FULL):
                self._drain()
                continue
            if until_idle and status & S_IDLE:
                break
            if limit is not None and total > limit:
                raise NicError(f"the core is not idle after {total} cycles")
        return total

    # -- output --

    def _pop_records(self, fn, key: int) -> list[tuple[bytes, bool]]:
        out = []
        while True:
            pending = self._query(key)
            if not pending:
                return out
            buf = ctypes.create_string_buffer(pending)
            n = self._check(fn(self._handle(), buf, pending), "pop")
            out += self._split(buf.raw[:n] if n < pending else buf.raw)

    def _split(self, raw: bytes) -> list[tuple[bytes, bool]]:
        """``parse_records`` with the record boundaries found by the library (twice as fast)."""
        index = self._lib.nic_index_records
        count = self._check(index(raw, len(raw), None, None, None, 0), "index records")
        if not count:
            return []
        starts, ends = array.array("Q", bytes(8 * count)), array.array("Q", bytes(8 * count))
        aborted = array.array("B", bytes(count))
        u64 = ctypes.c_uint64 * count
        self._check(index(raw, len(raw), u64.from_buffer(starts), u64.from_buffer(ends),
                          (ctypes.c_uint8 * count).from_buffer(aborted), count), "index records")
        return [(raw[s:e], a == 1) for s, e, a in zip(starts, ends, aborted)]

    def _pop_ingress(self) -> list[int]:
        pending = self._query(Q_INGRESS)
        if not pending:
            return []
        buf = (ctypes.c_uint64 * pending)()
        n = self._check(self._lib.nic_pop_ingress(self._handle(), buf, pending), "pop_ingress")
        return list(buf[:n])

    def _drain(self) -> None:
        self._events += self._pop_records(self._lib.nic_pop_events, Q_EVENTS_BYTES)
        self._tx += self._pop_records(self._lib.nic_pop_tx, Q_TX_BYTES)
        self._ingress += self._pop_ingress()

    def pop_events(self) -> list[tuple[bytes, bool]]:
        """Completed event packets since the last call, as ``(bytes, aborted)`` (``protocols.events``)."""
        out = self._events + self._pop_records(self._lib.nic_pop_events, Q_EVENTS_BYTES)
        self._events = []
        return out

    def pop_tx(self) -> list[tuple[bytes, bool]]:
        """Frames the NIC sent to the network since the last call, as ``(bytes, aborted)``."""
        out = self._tx + self._pop_records(self._lib.nic_pop_tx, Q_TX_BYTES)
        self._tx = []
        return out

    def pop_ingress(self) -> list[int]:
        """For every rx frame taken in since the last call, in order, the core cycle its last beat went in."""
        out = self._ingress + self._pop_ingress()
        self._ingress = []
        return out

    # -- registers --

    def read(self, name: str) -> int:
        """Read register ``name`` (``block.register``); unknown names raise ``RegisterError``."""
        mapped = REGISTER_MAP[name]
        value = ctypes.c_uint64()
        self._check(self._lib.nic_csr_read(self._handle(), mapped.address, ctypes.byref(value)), f"read {name}")
        return value.value

    def write(self, name: str, value: int) -> None:
        """Write register ``name``; read-only registers and counters raise :class:`NicError`."""
        mapped = REGISTER_MAP[name]
        reg = mapped.register
        if reg.access is not Access.RW:
            raise NicError(f"register {name} is {reg.behaviour}; the host cannot write it")
        if not 0 <= int(value) <= reg.mask:
            raise NicError(f"value {value:#x} does not fit register {name} ({reg.width} bits)")
        self._check(self._lib.nic_csr_write(self._handle(), mapped.address, int(value)), f"write {name}")

    def read_all(self) -> dict[str, int]:
        """Every register by name."""
        return {m.name: self.read(m.name) for m in REGISTER_MAP}


__all__ = ["NicError", "SimNic", "build_library", "load_library", "config_header", "parse_records"]
