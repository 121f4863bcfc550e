"""What ``calarb feed generate --format fast`` and ``calarb decode --templates`` call.

Kept apart from ``calarb/cli.py`` so the click layer stays a thin wrapper:
:func:`generate_fast_feed` writes the options quote feed to a pcap and returns
its summary; :func:`decode_fast_pcap` yields one JSON-ready ``dict`` per FAST
message of a pcap (or per fault), resetting the dictionaries at every
datagram as the feed's template file prescribes.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from protocols.fast import Decoder, FastError, parse_templates
from protocols.pcap import udp_payloads


def generate_fast_feed(out: str | os.PathLike, seed: int = 1, *, updates: int = 5000,
                       expiries_days=(30, 60, 91, 182), strikes_per_expiry: int = 11, levels: int = 2) -> dict:
    """Generate the options quote feed (``sim.fastfeed``) and write it to the pcap ``out``."""
    from sim import fastfeed

    feed = fastfeed.generate_fast_feed(updates, seed, expiries_days=expiries_days,
                                       strikes_per_expiry=strikes_per_expiry, levels=levels)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n_frames = fastfeed.write_fast_pcap(out, feed)
    kinds = Counter(name for _, name, _ in feed.messages)
    return {"out": str(out), "format": "fast", "frames": n_frames, "messages": len(feed.messages),
            "by_template": dict(kinds), "series": len(feed.series), "seed": seed,
            "bytes": sum(len(p) for _, p, _ in feed.datagrams),
            "templates": str(fastfeed.TEMPLATES_PATH), "dst": f"{fastfeed.FEED_IP}:{fastfeed.FEED_PORT}"}


def decode_fast_pcap(path: str | os.PathLike, templates: str | os.PathLike, *, port: int | None = None,
                     stats: Counter | None = None) -> Iterator[dict]:
    """Yield every FAST message of the UDP datagrams in the pcap ``path`` as a
    dict (``frame`` index, then the message's template, id and fields); a
    datagram that fails to decode yields ``{"frame", "error", "code", "offset",
    "hex"}`` and decoding goes on with the next datagram. Counts go to ``stats``."""
    stats = Counter() if stats is None else stats
    dec = Decoder(parse_templates(templates))
    for index, dgram in udp_payloads(path, port, stats):
        dec.reset()
        data, pos = dgram.payload, 0
        while pos < len(data):
            try:
                msg, pos = dec.decode(data, pos)
            except FastError as e:
                stats["errors"] += 1
                stats[f"error_{e.code or e.reason}"] += 1
                yield {"frame": index, "error": str(e), "code": e.code, "offset": e.offset, "hex": data.hex()}
                break
            stats["messages"] += 1
            yield {"frame": index, **msg.as_json()}
