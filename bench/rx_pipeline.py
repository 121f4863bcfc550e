"""Receive pipeline throughput: the gateware core (cycles, at nextpnr's fmax) against the software path.

Writes ``build/bench/rx_pipeline.json``. The peer is ``host/rxpath.py``, the
Python software receive path, on the same generated pcap in the same run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from host.rxpath import EthRxConfig
from protocols.net import ip_to_int
from protocols.pcap import write_pcap
from sim import moldfeed
from sim.replay import replay_gateware, replay_software

OUT = Path("build/bench/rx_pipeline.json")


def fmax_mhz() -> dict[str, float]:
    """fmax per device from the last ``make synth`` (empty if it has not run)."""
    result = {}
    for path in sorted(Path("build/synth").glob("*.json")):
        data = json.loads(path.read_text())
        if data.get("fmax_mhz"):
            result[data["device"]] = min(data["fmax_mhz"].values())
    return result


def main() -> None:
    feed = moldfeed.generate(5000, seed=11, max_messages=12, min_len=12, max_len=50)
    pcap = Path("build/bench/rx_feed.pcap")
    pcap.parent.mkdir(parents=True, exist_ok=True)
    write_pcap(pcap, ((i * 1000, f) for i, f in enumerate(feed.frames)))
    cfg = EthRxConfig(filter=3, ip_dst=ip_to_int(moldfeed.FEED_IP), udp_port=moldfeed.FEED_PORT)
    t0 = time.perf_counter()
    soft = replay_software(pcap, cfg)
    soft_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hw = replay_gateware(pcap, cfg)
    hw_s = time.perf_counter() - t0
    n = len(hw["messages"])
    bytes_in = sum(len(f) for f in feed.frames)
    report = {
        "feed": {"frames": len(feed.frames), "messages": n, "bytes": bytes_in},
        "software_path": {"seconds": soft_s, "messages_per_s": len(soft["messages"]) / soft_s},
        "gateware": {"cycles": hw["cycles"], "messages_per_cycle": n / hw["cycles"],
                     "bytes_per_cycle": bytes_in / hw["cycles"],
                     "cocotb_wall_seconds": hw_s, "simulated_cycles_per_s": hw["cycles"] / hw_s},
    }
    for device, mhz in fmax_mhz().items():
        report["gateware"].setdefault("at_fmax", {})[device] = {
            "fmax_mhz": mhz, "messages_per_s": n / hw["cycles"] * mhz * 1e6,
            "gbit_per_s": bytes_in * 8 / hw["cycles"] * mhz * 1e6 / 1e9,
            "speedup_vs_software": n / hw["cycles"] * mhz * 1e6 / report["software_path"]["messages_per_s"]}
    OUT.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
