"""Frames for a NIC's wire side: from a pcap, from a NASDAQ binary file, or live from a loopback UDP port.

A NASDAQ binary file holds ITCH messages each preceded by a 2-byte big-endian
length; to reach a NIC they are packed into MoldUDP64 datagrams (as the
exchange's feed would send them) inside Ethernet/IPv4/UDP frames. The live
feed listens on a UDP port (loopback by default) and wraps each datagram in
the Ethernet/IPv4/UDP headers it would have had on the wire.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

from protocols import moldudp64 as mold
from protocols.net import build_udp_frame
from protocols.pcap import read_pcap

DEFAULT_GROUP = "233.54.12.1"
DEFAULT_PORT = 26400


class FeedError(ValueError):
    """A feed file that cannot be read; names the file and the offset."""


def frames_from_pcap(path: Path) -> Iterator[bytes]:
    for rec in read_pcap(path):
        yield rec.data


def messages_from_itch_file(path: Path) -> Iterator[bytes]:
    """The messages of a NASDAQ binary file (2-byte big-endian length, then the message)."""
    data = Path(path).read_bytes()
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise FeedError(f"{path}: truncated length prefix at offset {pos}")
        length = int.from_bytes(data[pos:pos + 2], "big")
        if pos + 2 + length > len(data):
            raise FeedError(f"{path}: message of {length} bytes at offset {pos} runs past the end of the file")
        yield data[pos + 2:pos + 2 + length]
        pos += 2 + length


def frames_from_itch_file(path: Path, *, session: bytes = b"NASDAQ0001", max_payload: int = 1400,
                          dst_ip: str = DEFAULT_GROUP, dst_port: int = DEFAULT_PORT) -> Iterator[bytes]:
    """The NASDAQ file's messages as MoldUDP64-over-UDP frames, sequence numbers from 1."""
    for packet in mold.packetise(messages_from_itch_file(path), session=session, max_payload=max_payload):
        yield build_udp_frame(mold.encode_packet(packet), dst_ip=dst_ip, src_ip="10.0.0.1",
                              dst_port=dst_port, src_port=40000)


def frames_from_file(path: Path) -> Iterator[bytes]:
    """Frames from a pcap (by its magic number) or else a NASDAQ binary file."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
        return frames_from_pcap(path)
    return frames_from_itch_file(path)


class LoopbackFeed:
    """Receive MoldUDP64 datagrams on a UDP port and return them as Ethernet frames.

    Binds to loopback by default, as a NIC on a test host would see a
    multicast feed. ``poll(timeout)`` returns every datagram that arrived.
    """

    def __init__(self, port: int = DEFAULT_PORT, host: str = "127.0.0.1", *, dst_ip: str = DEFAULT_GROUP):
        self.port, self.dst_ip = port, dst_ip
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((host, port))
        self.port = self.sock.getsockname()[1]
        self.sock.setblocking(False)

    def poll(self, timeout: float = 0.0, limit: int = 4096) -> list[bytes]:
        import select
        frames = []
        if timeout and not select.select([self.sock], [], [], timeout)[0]:
            return frames
        while len(frames) < limit:
            try:
                data, (src, sport) = self.sock.recvfrom(65535)
            except BlockingIOError:
                break
            frames.append(build_udp_frame(data, dst_ip=self.dst_ip, src_ip=src, dst_port=self.port,
                                          src_port=sport))
        return frames

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["FeedError", "LoopbackFeed", "frames_from_file", "frames_from_itch_file", "frames_from_pcap",
           "messages_from_itch_file"]
