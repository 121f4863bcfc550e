"""The FAST decoder and the market-by-price book on Verilator, differential against the Python codec.

A generated options feed (``sim/fastfeed.py``, cached under ``build/fastfeed``)
of at least 50,000 messages goes into :class:`hw.synth_fast.FastPath` as UDP
payload beats, with random ``valid`` gaps and ``ready`` backpressure; every
update the decoder hands the book must equal the one the reference
(``protocols.fast.levels.reference_updates``: the Python codec, message by
message) gives, every TOB record the one of ``host/mbpbook.py``, and the
counters must agree. cocotb steps about 12k cycles a second, too slow for
a few hundred thousand cycles under the time budget, so this test drives the
Verilated model from a small C++ loop (below) that reads the beats from a
file and writes what leaves, with cycle stamps, to files.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import struct
import subprocess
from pathlib import Path

import pytest

from host.mbpbook import tob_records
from protocols.fast import parse_templates
from protocols.fast import levels as lv
from protocols.registers_fast import FAST, MBP
from sim import fastfeed, runner

ROOT = Path(__file__).resolve().parents[2]
NAME = "fast_path"
COUNTERS = [f"fast_{r.name}" for r in FAST.counters] + [f"mbp_{r.name}" for r in MBP.counters]
UPD_WORDS = (sum(w for _, w in lv.UPDATE_LAYOUT) + 31) // 32
TOB_BITS = 320 + 64 - 64   # TobRecord: TOB_LAYOUT (256 bits) + seq (64)
TOB_WORDS = 10

HARNESS = r"""
#include "Vfast_path.h"
#include "verilated.h"
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <cstdlib>
#include <vector>

static uint64_t rng_state;
static inline uint32_t rnd() {           // xorshift64*
    rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 2685821657736338717ULL) >> 32);
}

int main(int argc, char **argv) {
    if (argc < 8) { fprintf(stderr, "usage: in out_dir gap_permille stall_permille seed max_cycles control\n"); return 2; }
    FILE *in = fopen(argv[1], "rb");
    std::vector<uint8_t> beats;
    uint8_t buf[16];
    while (fread(buf, 1, 16, in) == 16) beats.insert(beats.end(), buf, buf + 16);
    fclose(in);
    size_t nbeats = beats.size() / 16;
    std::string dir = argv[2];
    FILE *fu = fopen((dir + "/upd.bin").c_str(), "wb");
    FILE *ft = fopen((dir + "/tob.bin").c_str(), "wb");
    FILE *fi = fopen((dir + "/ingress.bin").c_str(), "wb");
    uint32_t gap = atoi(argv[3]), stall = atoi(argv[4]);
    rng_state = strtoull(argv[5], 0, 10) * 0x9E3779B97F4A7C15ULL + 1;
    uint64_t max_cycles = strtoull(argv[6], 0, 10);
    Vfast_path *top = new Vfast_path;
    top->fast_control = atoi(argv[7]);
    top->clk = 0; top->rst = 1; top->i___05Fvalid = 0; top->tob___05Fready = 0;
    for (int k = 0; k < 4; k++) { top->clk = 1; top->eval(); top->clk = 0; top->eval(); }
    top->rst = 0; top->eval();
    uint64_t counts[COUNTERS_N] = {0};
    size_t pos = 0; uint64_t cycle = 0, quiet = 0;
    while (cycle < max_cycles) {
        bool offer = pos < nbeats && (rnd() % 1000) >= gap;
        top->i___05Fvalid = offer;
        if (offer) {
            const uint8_t *b = &beats[pos * 16];
            uint32_t w0, w1; memcpy(&w0, b, 4); memcpy(&w1, b + 4, 4);
            top->i___05Fpayload[0] = w0; top->i___05Fpayload[1] = w1;
            top->i___05Fpayload[2] = (b[8] & 15) | ((b[9] & 7) << 4);
        }
        bool rdy = (rnd() % 1000) >= stall;
        top->tob___05Fready = rdy;
        top->eval();
        bool busy = false;
        if (offer && top->i___05Fready) { fwrite(&cycle, 8, 1, fi); pos++; busy = true; }
        if (top->upd_valid) { fwrite(&cycle, 8, 1, fu); for (int w = 0; w < UPD_WORDS; w++) { uint32_t x = top->upd[w]; fwrite(&x, 4, 1, fu); } busy = true; }
        if (top->tob___05Fvalid && rdy) { fwrite(&cycle, 8, 1, ft); for (int w = 0; w < TOB_WORDS; w++) { uint32_t x = top->tob___05Fpayload[w]; fwrite(&x, 4, 1, ft); } busy = true; }
        COUNTER_SUMS
        top->clk = 1; top->eval(); top->clk = 0; top->eval();
        cycle++;
        quiet = busy ? 0 : quiet + 1;
        if (pos >= nbeats && quiet > 200) break;
    }
    fclose(fu); fclose(ft); fclose(fi);
    printf("{\"cycles\": %llu, \"beats\": %zu", (unsigned long long)cycle, pos);
    COUNTER_PRINT
    printf("}\n");
    delete top;
    return pos >= nbeats ? 0 : 1;
}
"""


def harness_source() -> str:
    sums = " ".join(f"counts[{i}] += top->{c};" for i, c in enumerate(COUNTERS))
    prints = " ".join(f'printf(", \\"{c}\\": %llu", (unsigned long long)counts[{i}]);' for i, c in enumerate(COUNTERS))
    return (f"#define COUNTERS_N {len(COUNTERS)}\n#define UPD_WORDS {UPD_WORDS}\n#define TOB_WORDS {TOB_WORDS}\n"
            + HARNESS.replace("COUNTER_SUMS", sums).replace("COUNTER_PRINT", prints))


SOURCES = ("hw/fast.py", "hw/mbpbook.py", "hw/synth_fast.py", "hw/stream.py", "hw/csr.py", "protocols/fast/levels.py",
           "protocols/fast/templates.py", "protocols/registers_fast.py", "protocols/registers.py",
           "protocols/events.py", "protocols/spec/fast/options.xml")


def build_sim(max_sequence: int = 32) -> Path:
    """Export :class:`FastPath`, Verilate it with the harness; the binary, cached by the hash of the
    gateware's sources (so a rerun skips even the Verilog export) and of the harness."""
    import amaranth
    from hw.synth_fast import FastPath
    cpp = harness_source()
    h = hashlib.sha256(cpp.encode() + amaranth.__version__.encode() + str(max_sequence).encode())
    for rel in SOURCES:
        h.update((ROOT / rel).read_bytes())
    out = runner.BUILD / "fastsim" / h.hexdigest()[:16]
    binary = out / "fastsim"
    if binary.exists():
        return binary
    src = runner.export_verilog(FastPath(max_sequence=max_sequence), NAME, out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "harness.cpp").write_text(cpp)
    env = runner.toolchain_env()
    env["MAKEFLAGS"] = env.get("MAKEFLAGS", "") + " OPT_FAST=-O1 OPT_GLOBAL=-O1"
    cmd = ["verilator", "--cc", "--exe", "--build", "-j", "2", "-O3", "--x-assign", "fast", "--x-initial", "fast",
           "-Wno-fatal", "--top-module", NAME, "-Mdir", str(out / "obj"), "-o", str(binary), str(src),
           str(out / "harness.cpp")]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise runner.SimulationError(f"Verilator build failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return binary


def beats_file(payloads, path: Path) -> list[int]:
    """Write the payloads as beat records; returns the index of each payload's last beat."""
    out = bytearray()
    last = []
    n = 0
    for p in payloads:
        count = max(1, (len(p) + 7) // 8)
        for i in range(count):
            chunk = p[8 * i:8 * i + 8]
            flags = int(i == 0) | int(i == count - 1) << 1
            out += chunk.ljust(8, b"\0") + bytes([len(chunk), flags]) + bytes(6)
        n += count
        last.append(n - 1)
    path.write_bytes(bytes(out))
    return last


_FIELDS = [(width, ((1 << width) - 1), name in lv.SIGNED) for name, width in lv.UPDATE_LAYOUT]


def update_row(v: int) -> tuple:
    """An update's bits as the tuple of its fields (signed ones signed), in layout order."""
    out = []
    for width, mask, sign in _FIELDS:
        x = v & mask
        v >>= width
        out.append(x - (1 << width) if sign and x >> (width - 1) else x)
    return tuple(out)


def row(u: lv.LevelUpdate) -> tuple:
    return tuple(u.as_dict().values())


def unpack(layout, words: bytes) -> dict:
    v = int.from_bytes(words, "little")
    out, shift = {}, 0
    for name, width in layout:
        out[name] = (v >> shift) & ((1 << width) - 1)
        shift += width
    return out


def run_sim(payloads, tmp: Path, *, gap=0.0, stall=0.0, seed=1, control=0, max_sequence=32):
    """Run the Verilated path over ``payloads``; (updates as (cycle, row), TOBs, ingress cycles, summary)."""
    from protocols.events import TOB_LAYOUT
    binary = build_sim(max_sequence)
    tmp.mkdir(parents=True, exist_ok=True)
    beats_file(payloads, tmp / "beats.bin")
    r = subprocess.run([str(binary), str(tmp / "beats.bin"), str(tmp), str(int(gap * 1000)),
                        str(int(stall * 1000)), str(seed), str(50_000_000), str(control)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    summary = json.loads(r.stdout)
    rec = 8 + 4 * UPD_WORDS
    raw = (tmp / "upd.bin").read_bytes()
    updates = [(int.from_bytes(raw[i:i + 8], "little"), update_row(int.from_bytes(raw[i + 8:i + rec], "little")))
               for i in range(0, len(raw), rec)]
    rec = 8 + 4 * TOB_WORDS
    raw = (tmp / "tob.bin").read_bytes()
    tobs = [(struct.unpack_from("<Q", raw, i)[0], unpack(TOB_LAYOUT + (("seq", 64),), raw[i + 8:i + rec]))
            for i in range(0, len(raw), rec)]
    ingress = list(struct.unpack(f"<{len(payloads) and -1 or 0}Q", b"")) if False else \
        [x[0] for x in struct.iter_unpack("<Q", (tmp / "ingress.bin").read_bytes())]
    return updates, tobs, ingress, summary


def counters_of(summary) -> dict:
    return {k[len("fast_"):]: v for k, v in summary.items() if k.startswith("fast_")}


def tob_dicts(tobs):
    return [t.as_dict() for t in tobs]


@pytest.fixture(scope="module")
def templates():
    return parse_templates(fastfeed.TEMPLATES_PATH)


@pytest.mark.sim
def test_small_feed_matches_reference(templates, tmp_path):
    feed = fastfeed.generate_fast_feed(300, 5, expiries_days=(30, 91), strikes_per_expiry=5, levels=3)
    payloads = [p for _, p, _ in feed.datagrams]
    want, _, want_c = lv.reference_updates(payloads, templates)
    got, tobs, _, summary = run_sim(payloads, tmp_path, gap=0.2, stall=0.3, seed=3)
    assert [u for _, u in got] == [row(u) for u in want]
    assert counters_of(summary) == dict(want_c)
    want_tobs, _ = tob_records(want)
    assert [t for _, t in tobs] == tob_dicts(want_tobs)


BIG = dict(updates=int(os.environ.get("CALARB_FAST_UPDATES", "52000")), seed=2026, strikes_per_expiry=8, levels=2)
"""64 option series (4 expiries x 8 strikes x call/put), two levels a side: about 50,000 messages."""


def cached_reference(feed_key: str, payloads, templates):
    """``(update rows, message count, counters)`` of reference_updates over the payloads, cached next to
    the feed (updates as tuples of their fields: quick to load and to compare)."""
    import pickle
    h = hashlib.sha256((feed_key + (ROOT / "protocols/fast/levels.py").read_text()).encode()).hexdigest()[:16]
    path = fastfeed.CACHE_DIR / f"{feed_key}-ref-{h}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    updates, messages, counters = lv.reference_updates(payloads, templates)
    rows = [row(u) for u in updates]
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(pickle.dumps((rows, len(messages), counters), protocol=pickle.HIGHEST_PROTOCOL))
    os.replace(tmp, path)
    return rows, len(messages), counters


@pytest.mark.sim
def test_generated_feed_of_50000_messages(templates, tmp_path):
    """>= 50,000 messages: updates, counters and every TOB record equal the reference's; throughput printed."""
    kw = dict(BIG)
    updates, seed = kw.pop("updates"), kw.pop("seed")
    feed = fastfeed.cached_fast_feed(updates, seed, **kw)
    key = fastfeed.cache_key(updates, seed, **kw)
    payloads = [p for _, p, _ in feed.datagrams]
    want, n_messages, want_c = cached_reference(key, payloads, templates)      # rows (tuples)
    assert n_messages >= 50_000 or updates < 50_000
    got, tobs, ingress, summary = run_sim(payloads, tmp_path, gap=0.05, stall=0.05, seed=seed)
    assert counters_of(summary) == dict(want_c)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g[1] == w, f"update {i}: gateware {g[1]}, reference {w}"
    want_tobs, book = tob_records([lv.LevelUpdate(*w) for w in want])
    assert [t for _, t in tobs] == tob_dicts(want_tobs)
    # top of book per series at the end, from the gateware's records, equals the reference book's
    last = {}
    for _, t in tobs:
        last[t["instrument"]] = (t["bid_price"], t["bid_size"], t["ask_price"], t["ask_size"])
    for s in feed.series:
        assert last.get(s.security_id & 0xFFFF, (0, 0, 0, 0)) == book.best(s.security_id)
    nbytes = sum(len(p) for p in payloads)
    print(f"\n{n_messages} messages, {len(want)} updates, {nbytes} bytes, {summary['cycles']} cycles")


def corrupt(payloads, templates, seed: int):
    """Datagrams with faults mixed in: cut short, an unknown template identifier, a sequence longer
    than the maximum, a stray trailing byte, random bytes; faults the gateware does not model are left out."""
    from protocols.fast import Encoder
    rng = random.Random(seed)
    enc = Encoder(templates)
    out = []
    for p in payloads:
        roll = rng.random()
        if roll < 0.08 and len(p) > 2:
            p = p[:rng.randrange(1, len(p))]                                       # past the end
        elif roll < 0.12:
            p = p + bytes([0xC0, 0x80 | rng.choice([0, 4, 9, 77])]) + p              # unknown template
        elif roll < 0.16:
            enc.reset()
            n = rng.choice([33, 40, 100])
            entries = [{"MDUpdateAction": 1, "MDEntryType": "0", "SecurityID": 1 + k % 5, "RptSeq": k,
                        "MDPriceLevel": 1, "MDEntryPx": None, "MDEntrySize": None} for k in range(n)]
            bad = enc.encode("MDIncRefresh", {"MessageType": "X", "MsgSeqNum": 1, "SendingTime": 5, "MDEntries": entries})
            p = p + (bad if rng.random() < 0.5 else bad[:rng.randrange(4, len(bad))])   # sequence too long
        elif roll < 0.19:
            p = p + bytes([rng.randrange(0, 0x80)])                                 # unterminated trailing byte
        elif roll < 0.21:
            p = rng.randbytes(rng.randrange(0, 40))                                 # noise
        elif roll < 0.22:
            p = b""
        elif roll < 0.25:
            p = p + bytes([0xC0, 0x81] + [1] * 10 + [0x81, 0x80, 0x80])                # an 11-byte integer
        _, _, c = lv.reference_updates([p], templates)
        if c.get("unmodelled"):
            continue
        out.append(p)
    return out


@pytest.mark.sim
def test_bad_input_is_dropped_counted_and_the_next_datagram_decodes(templates, tmp_path):
    feed = fastfeed.generate_fast_feed(400, 11, expiries_days=(30, 91), strikes_per_expiry=5, levels=3)
    payloads = corrupt([p for _, p, _ in feed.datagrams], templates, 11)
    want, _, want_c = lv.reference_updates(payloads, templates)
    got, tobs, _, summary = run_sim(payloads, tmp_path, gap=0.1, stall=0.2, seed=7)
    counters = counters_of(summary)
    assert counters == dict(want_c)
    for reason in lv.ERROR_COUNTERS:
        assert counters[reason] > 0, reason
    assert [u for _, u in got] == [row(u) for u in want]
    assert [t for _, t in tobs] == tob_dicts(tob_records(want)[0])


def measure(payloads, templates, tmp: Path, gap: float = 0.0) -> dict:
    """Throughput and latency of the path on ``payloads`` offered back to back (or with ``gap``, the chance
    of an idle input cycle), the book always ready."""
    ends: list = []
    want, messages, c = lv.reference_updates(payloads, templates, ends=ends)
    got, tobs, ingress, summary = run_sim(payloads, tmp, gap=gap)
    assert [u for _, u in got] == [row(u) for u in want]
    nbytes = sum(len(p) for p in payloads)
    base, b = [], 0
    for p in payloads:
        base.append(b)
        b += max(1, (len(p) + 7) // 8)
    lat, u = [], 0
    for k, pos, n in ends:
        u += n
        if n:
            lat.append(got[u - 1][0] - ingress[base[k] + (pos - 1) // 8])
    busy = ingress[-1] - ingress[0] + 1
    entities = sum(sum(1 for x in p if x & 0x80) for p in payloads)
    lat.sort()
    return {"bytes": nbytes, "messages": len(messages), "updates": len(want), "entities": entities,
            "cycles": busy, "bytes_per_cycle": round(nbytes / busy, 3),
            "fields_per_cycle": round(entities / busy, 3), "updates_per_cycle": round(len(want) / busy, 3),
            "latency_cycles": {"min": lat[0], "median": lat[len(lat) // 2], "p99": lat[int(len(lat) * 0.99)],
                               "max": lat[-1]}}


@pytest.mark.sim
def test_throughput_and_latency(templates, tmp_path):
    """Saturated input: the generated feed and its snapshot (full 1400-byte datagrams); figures printed and
    written to build/fastsim/throughput.json (no assertion on them beyond correctness)."""
    kw = dict(BIG)
    updates, seed = kw.pop("updates"), kw.pop("seed")
    feed = fastfeed.cached_fast_feed(updates, seed, **kw)
    payloads = [p for _, p, _ in feed.datagrams]
    incr = [p for p in payloads[:4000] if p[1] == 0x81]          # incremental refreshes (template 1)
    full = [p for p in payloads if len(p) > 1000 and p[1] == 0x81]
    out = {"feed": measure(incr, templates, tmp_path / "feed"),
           "full_datagrams": measure(full, templates, tmp_path / "full"),
           "feed_at_half_rate": measure(incr[:1000], templates, tmp_path / "half", gap=0.5)}
    path = runner.BUILD / "fastsim" / "throughput.json"
    path.write_text(json.dumps(out, indent=1))
    print("\n" + json.dumps(out, indent=1))


@pytest.mark.sim
def test_control_register_disables_decoding_or_updates(templates, tmp_path):
    feed = fastfeed.generate_fast_feed(60, 5, expiries_days=(30,), strikes_per_expiry=4, levels=2)
    payloads = [p for _, p, _ in feed.datagrams]
    _, _, want_c = lv.reference_updates(payloads, templates)
    got, tobs, _, summary = run_sim(payloads, tmp_path / "quiet", control=2)        # decode, emit nothing
    c = counters_of(summary)
    assert got == [] and tobs == [] and c["messages"] == want_c["messages"] > 0 and c["updates"] == 0
    got, tobs, _, summary = run_sim(payloads, tmp_path / "off", control=1)          # decoder off
    c = counters_of(summary)
    assert got == [] and c["packets"] == len(payloads) and c["messages"] == 0
