"""The FAST market-data path on its own: decoder (``hw/fast.py``) into the market-by-price book
(``hw/mbpbook.py``), for the Verilator tests and for out-of-context synthesis.

:class:`FastPath` exposes the update stream between the two stages as a tap
(``upd_valid`` / ``upd``: the updates the book takes) and the counters of
both register blocks as per-cycle increments (``fast_<counter>``,
``mbp_<counter>``). ``python -m hw.synth_fast`` synthesises it for the
LFE5UM5G-85F and the LFE5U-25F with ``hw.synth.synthesize`` and prints the
fmax and utilisation.
"""

import argparse
import json
import sys
from pathlib import Path

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect

from hw.fast import FastDecoder, UpdateRecord
from hw.mbpbook import MbpBook, MbpParams, TobRecord
from hw.stream import Beat
from protocols.fast import parse_templates
from protocols.registers import Access
from protocols.registers_fast import FAST, MBP

TEMPLATES = Path(__file__).resolve().parent.parent / "protocols" / "spec" / "fast" / "options.xml"


class FastPath(wiring.Component):
    """FAST decoder -> market-by-price book, with the update stream tapped and counters exposed."""

    def __init__(self, templates=None, *, max_sequence: int = 32, book: MbpParams = MbpParams()):
        self.templates = parse_templates(templates or TEMPLATES)
        self.max_sequence = max_sequence
        self.book = book
        members = {"i": In(stream.Signature(Beat)), "tob": Out(stream.Signature(TobRecord)),
                   "upd_valid": Out(1), "upd": Out(UpdateRecord), "fast_control": In(2)}
        for block in (FAST, MBP):
            for reg in block.registers:
                if reg.access is Access.COUNTER:
                    members[f"{block.name}_{reg.name}"] = Out(reg.inc_width)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dec = dec = FastDecoder(self.templates, max_sequence=self.max_sequence)
        m.submodules.book = book = MbpBook(self.book)
        connect(m, wiring.flipped(self.i), dec.i)
        connect(m, dec.o, book.i)
        connect(m, book.tob, wiring.flipped(self.tob))
        m.d.comb += [self.upd_valid.eq(dec.o.valid & dec.o.ready), self.upd.eq(dec.o.payload),
                     dec.csr.control.eq(self.fast_control)]
        for block, port in ((FAST, dec.csr), (MBP, book.csr)):
            for reg in block.counters:
                m.d.comb += getattr(self, f"{block.name}_{reg.name}").eq(getattr(port, reg.name))
        return m


def synth(devices=("LFE5UM5G-85F", "LFE5U-25F"), out_dir=Path("build/synth"), *, book=None,
          freq_mhz: float = 100.0) -> list[dict]:
    """Out-of-context synthesis of :class:`FastPath` for each device; returns hw.synth's summaries."""
    from hw.synth import synthesize

    out = []
    for device in devices:
        params = book or MbpParams()      # one design for both parts: yosys runs once
        name = f"fast_path_{params.slots}x{params.depth}"
        out.append(synthesize(FastPath(book=params), name=name, device=device, out_dir=Path(out_dir),
                              freq_mhz=freq_mhz))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", action="append", help="LFE5UM5G-85F and/or LFE5U-25F (default both)")
    ap.add_argument("--out", default="build/synth")
    args = ap.parse_args(argv)
    for s in synth(tuple(args.device or ("LFE5UM5G-85F", "LFE5U-25F")), Path(args.out)):
        print(json.dumps({k: s[k] for k in ("name", "device", "fmax_mhz", "utilisation")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
