"""Generated MoldUDP64-over-UDP traffic, with optional injected faults.

:func:`generate` builds a seeded stream of Ethernet frames carrying MoldUDP64
packets with random message counts and lengths, and can inject malformed
frames. Each injection records the counters it must move (``expected``), worked
out from what was injected, so tests check the gateware's counter totals
against the injection log rather than against another implementation.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from protocols import moldudp64 as mold
from protocols.net import build_udp_frame, ipv4_checksum

FEED_IP = "233.54.12.1"
FEED_PORT = 26400
SRC_IP = "10.0.0.2"
SESSION = b"CALARB0001"

FAULTS = (
    "bad_ip_checksum", "ethertype", "runt", "wrong_port", "not_udp", "fragment", "ip_options",
    "bad_ip_length", "short_mold", "wrong_session", "duplicate", "gap", "trailing", "message_overrun",
    "truncated_frame",
)
"""The fault kinds :func:`generate` can inject."""


@dataclass
class Feed:
    """Frames plus what a correct receiver must report for them."""

    frames: list[bytes]
    messages: list[tuple[int, bytes]]          # (seq, message) every correct receiver delivers in order
    expected: Counter = field(default_factory=Counter)   # "eth.<counter>" / "mold.<counter>" totals
    faults: Counter = field(default_factory=Counter)


def random_messages(rng: random.Random, count: int, min_len: int = 1, max_len: int = 64) -> list[bytes]:
    """``count`` random messages with lengths in ``[min_len, max_len]``."""
    return [rng.randbytes(rng.randint(min_len, max_len)) for _ in range(count)]


def _frame(payload: bytes, **kw) -> bytes:
    return build_udp_frame(payload, dst_ip=kw.pop("dst_ip", FEED_IP), src_ip=SRC_IP,
                           dst_port=kw.pop("dst_port", FEED_PORT), src_port=40000, **kw)


def _recompute_ip_checksum(frame: bytearray) -> bytearray:
    ihl = (frame[14] & 0x0F) * 4
    frame[24:26] = b"\0\0"
    frame[24:26] = ipv4_checksum(bytes(frame[14:14 + ihl])).to_bytes(2, "big")
    return frame


def generate(n_frames: int, *, seed: int = 1, fault_rate: float = 0.0, max_messages: int = 12,
             min_len: int = 1, max_len: int = 64, first_seq: int = 1) -> Feed:
    """Generate ``n_frames`` frames (a ``fault_rate`` share of them faulty) and a closing heartbeat.

    The receiver is assumed to run with the destination filter on ``FEED_IP``
    and ``FEED_PORT``, learning the session from the first packet, and the
    skip-ahead gap policy. The first frame is always good.
    """
    rng = random.Random(seed)
    feed = Feed([], [])
    exp = feed.expected
    seq = first_seq

    def good(pkt_seq: int, msgs: list[bytes]) -> bytes:
        return _frame(mold.encode_packet(mold.MoldPacket(SESSION, pkt_seq, tuple(msgs))))

    def count_good(frame: bytes, msgs: list[bytes]) -> None:
        exp["eth.frames"] += 1
        exp["eth.forwarded"] += 1
        exp["mold.packets"] += 1
        if msgs:
            exp["mold.messages"] += len(msgs)
        else:
            exp["mold.heartbeats"] += 1

    def count_eth_drop(frame: bytes, reason: str) -> None:
        exp["eth.frames"] += 1
        exp[f"eth.{reason}"] += 1
        exp["eth.dropped_bytes"] += len(frame)

    for i in range(n_frames):
        if i > 0 and rng.random() < fault_rate:
            kind = rng.choice(FAULTS)
            feed.faults[kind] += 1
            msgs = random_messages(rng, rng.randint(1, max_messages), min_len, max_len)
            base = bytearray(good(seq, msgs))
            if kind == "bad_ip_checksum":
                base[24] ^= 0x5A
                count_eth_drop(bytes(base), "drop_ip_checksum")
            elif kind == "ethertype":
                base[12:14] = b"\x86\xdd"
                count_eth_drop(bytes(base), "drop_ethertype")
            elif kind == "runt":
                base = base[:rng.randint(1, 41)]
                count_eth_drop(bytes(base), "drop_runt")
            elif kind == "wrong_port":
                base = bytearray(_frame(bytes(base[42:]), dst_port=FEED_PORT + 1))
                count_eth_drop(bytes(base), "drop_filter")
            elif kind == "not_udp":
                base[23] = 6
                _recompute_ip_checksum(base)
                count_eth_drop(bytes(base), "drop_protocol")
            elif kind == "fragment":
                base[20] |= 0x20
                _recompute_ip_checksum(base)
                count_eth_drop(bytes(base), "drop_fragment")
            elif kind == "ip_options":
                base = bytearray(_frame(bytes(base[42:]), ip_options=b"\x01\x01\x01\x00"))
                count_eth_drop(bytes(base), "drop_ip_header")
            elif kind == "bad_ip_length":
                base[16:18] = (int.from_bytes(base[38:40], "big") + 19).to_bytes(2, "big")
                _recompute_ip_checksum(base)
                count_eth_drop(bytes(base), "drop_ip_length")
            else:
                payload = mold.encode_packet(mold.MoldPacket(SESSION, seq, tuple(msgs)))
                exp["eth.frames"] += 1
                exp["eth.forwarded"] += 1
                exp["mold.packets"] += 1
                if kind == "short_mold":
                    payload = payload[:rng.randint(0, 19)]
                    exp["mold.drop_short"] += 1
                    exp["mold.dropped_bytes"] += len(payload)
                elif kind == "wrong_session":
                    payload = b"OTHERSESS1" + payload[10:]
                    exp["mold.drop_session"] += 1
                    exp["mold.dropped_bytes"] += len(payload)
                elif kind == "duplicate":
                    # Re-send the messages just before ``seq``: a whole duplicate.
                    if feed.messages:
                        back = feed.messages[-min(len(feed.messages), rng.randint(1, 3)):]
                        dup = [m for _, m in back]
                        payload = mold.encode_packet(mold.MoldPacket(SESSION, back[0][0], tuple(dup)))
                        exp["mold.dup_packets"] += 1
                        exp["mold.dup_messages"] += len(dup)
                        exp["mold.dropped_bytes"] += len(payload)
                    else:
                        payload = payload[:10]
                        exp["mold.drop_short"] += 1
                        exp["mold.dropped_bytes"] += len(payload)
                elif kind == "gap":
                    # These messages are never sent: the next good packet opens a gap.
                    payload = mold.encode_packet(mold.heartbeat(SESSION, seq))
                    exp["mold.heartbeats"] += 1
                    exp["mold.gaps"] += 1
                    exp["mold.gap_messages"] += len(msgs)
                    seq += len(msgs)
                    # the heartbeat itself announces ``seq - len(msgs)``; the gap is seen on the next packet
                    payload = mold.encode_packet(mold.heartbeat(SESSION, seq - len(msgs)))
                elif kind == "trailing":
                    extra = rng.randbytes(rng.randint(1, 9))
                    payload += extra
                    exp["mold.trailing"] += 1
                    exp["mold.dropped_bytes"] += len(extra)
                    exp["mold.messages"] += len(msgs)
                    feed.messages += [(seq + k, m) for k, m in enumerate(msgs)]
                    seq += len(msgs)
                elif kind == "message_overrun":
                    # The last message's length prefix claims more bytes than the datagram holds.
                    keep = len(payload) - len(msgs[-1]) - 2
                    claimed = len(msgs[-1]) + rng.randint(1, 50)
                    payload = payload[:keep] + claimed.to_bytes(2, "big") + msgs[-1]
                    exp["mold.truncated"] += 1
                    exp["mold.lost_messages"] += 1
                    exp["mold.dropped_bytes"] += 2 + len(msgs[-1])
                    exp["mold.messages"] += len(msgs) - 1
                    feed.messages += [(seq + k, m) for k, m in enumerate(msgs[:-1])]
                    # the lost message is expected again: the next packet (seq + count) opens a gap of one
                    exp["mold.gaps"] += 1
                    exp["mold.gap_messages"] += 1
                    seq += len(msgs)
                elif kind == "truncated_frame":
                    # Cut the frame inside the last message (keeping at least its length prefix).
                    keep = len(payload) - len(msgs[-1])
                    cut = rng.randint(keep, len(payload) - 1)
                    frame = _frame(payload)[:42 + cut]
                    feed.frames.append(frame)
                    exp["eth.truncated"] += 1
                    exp["mold.truncated"] += 1
                    exp["mold.lost_messages"] += 1
                    exp["mold.dropped_bytes"] += 2 + cut - keep
                    exp["mold.messages"] += len(msgs) - 1
                    feed.messages += [(seq + k, m) for k, m in enumerate(msgs[:-1])]
                    exp["mold.gaps"] += 1
                    exp["mold.gap_messages"] += 1
                    seq += len(msgs)
                    continue
                base = bytearray(_frame(payload))
            feed.frames.append(bytes(base))
            continue
        count = rng.choice([0] + [rng.randint(1, max_messages)] * 9)
        msgs = random_messages(rng, count, min_len, max_len)
        frame = good(seq, msgs)
        feed.frames.append(frame)
        count_good(frame, msgs)
        feed.messages += [(seq + k, m) for k, m in enumerate(msgs)]
        seq += count
    # A closing heartbeat announces the next sequence number, so a gap opened by the
    # last injected fault is detected too.
    frame = good(seq, [])
    feed.frames.append(frame)
    count_good(frame, [])
    return feed
