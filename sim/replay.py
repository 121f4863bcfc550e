"""Replay a capture through the gateware (Verilated, via cocotb) or through the software path.

Both return the same shape: the messages (sequence number and bytes), the gap
events and the counters, so callers can print or compare them directly.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from host.rxpath import EthRx, EthRxConfig, Gap, Message, MoldRx
from protocols.pcap import read_pcap

HERE = Path(__file__).resolve().parent


def filter_registers(cfg: EthRxConfig) -> dict[str, int]:
    """The register writes that set the gateware's filter like ``cfg``."""
    return {"eth.ip_dst": cfg.ip_dst, "eth.udp_port": cfg.udp_port, "eth.filter": cfg.filter,
            "events.control": 1}


def replay_software(pcap: Path, cfg: EthRxConfig = EthRxConfig()) -> dict:
    """Run the pcap through :mod:`host.rxpath`."""
    eth, mold = EthRx(cfg), MoldRx()
    messages, gaps, per_frame = [], [], []
    for rec in read_pcap(pcap):
        payload = eth.receive(rec.data)
        outs = mold.receive(payload) if payload is not None else []
        per_frame.append(sum(isinstance(o, Message) for o in outs))
        for out in outs:
            if isinstance(out, Message):
                messages.append({"seq": out.seq, "hex": "" if out.aborted else out.data.hex(),
                                 "aborted": out.aborted})
            elif isinstance(out, Gap):
                gaps.append({"expected": out.expected, "seq": out.seq})
    counters = {f"eth.{k}": v for k, v in eth.counters.items()}
    counters.update({f"mold.{k}": v for k, v in mold.counters.items()})
    return {"messages": messages, "gaps": gaps, "counters": counters, "per_frame": per_frame}


def replay_gateware(pcap: Path, cfg: EthRxConfig = EthRxConfig()) -> dict:
    """Run the pcap through the Verilated core (``hw/top.py``); adds cycle counts and latencies."""
    from hw.top import build_top
    from sim import runner

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "replay.json"
        runner.run(build_top(), "calarb_top", "cocotb_replay", test_dir=HERE,
                   env={"CALARB_PCAP": str(Path(pcap).resolve()), "CALARB_OUT": str(out),
                        "CALARB_REGS": json.dumps(filter_registers(cfg)),
                        "COCOTB_LOG_LEVEL": "WARNING", "GPI_LOG_LEVEL": "WARNING"})
        result = json.loads(out.read_text())
    for m in result["messages"]:
        if m["aborted"]:
            m["hex"] = ""
    registers = result.pop("registers")
    result["counters"] = {k: v for k, v in registers.items()
                          if k.split(".")[0] in ("eth", "mold") and v and _is_counter(k)}
    result["registers"] = registers
    return result


def _is_counter(name: str) -> bool:
    from protocols.registers import REGISTER_MAP, Access
    return REGISTER_MAP[name].register.access is Access.COUNTER


def frame_latencies(result: dict, per_frame: list[int]) -> list[int]:
    """Cycles from each frame's last beat in to the last beat of its last message out.

    ``per_frame`` is the number of messages each frame delivers (from the software path).
    """
    ends, msgs = result["frame_end_cycles"], result["messages"]
    out, j = [], 0
    for end, count in zip(ends, per_frame):
        if count:
            j += count
            out.append(msgs[j - 1]["cycle"] - end)
    return out
