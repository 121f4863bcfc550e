"""BoardNic (host/boardnic.py) against the golden model of the board end over a lossy link.

Requests, answers and pushes are dropped and duplicated at random (fixed
seeds): every read must return the register's value, every write must be
executed exactly once, and the pushes the host counts as lost must equal the
ones the link dropped.
"""

import random

import pytest

from host.boardnic import BoardNic, UdpTransport
from host.nic import NicError
from protocols import hostlink as link
from protocols.events import GapEvent, TobEvent, encode_event
from protocols.net import ip_to_int, parse_udp_frame
from protocols.registers import REGISTER_MAP

BOARD = link.Endpoint(b"\x02\xca\x1a\x4b\x00\x01", ip_to_int("10.0.0.2"), link.PORT)
HOST = link.Endpoint(b"\x02\x00\x00\x00\x00\x0a", ip_to_int("10.0.0.1"), 40000)


class LossyLink:
    """A transport into a BoardModel: datagrams both ways dropped with ``p_drop``, duplicated with ``p_dup``."""

    def __init__(self, model, seed, p_drop=0.0, p_dup=0.0):
        self.model, self.rng = model, random.Random(seed)
        self.p_drop, self.p_dup = p_drop, p_dup
        self.inbox = []
        self.dropped_pushes = 0

    def _wire(self, frames, push=False):
        for f in frames:
            if self.rng.random() < self.p_drop:
                self.dropped_pushes += push
                continue
            payload = parse_udp_frame(f).payload
            self.inbox.append(payload)
            if self.rng.random() < self.p_dup:
                self.inbox.append(payload)

    def send(self, payload):
        if self.rng.random() < self.p_drop:
            return
        frame = link.frame(payload, HOST, BOARD)
        for _ in range(2 if self.rng.random() < self.p_dup else 1):
            self._wire(self.model.receive(frame))

    def push(self, frame):
        if frame is not None:
            self._wire([frame], push=True)

    def recv(self, timeout):
        return self.inbox.pop(0) if self.inbox else None


class Regs:
    def __init__(self):
        self.values, self.writes = {}, []

    def read(self, addr):
        return self.values.get(addr, 0)

    def write(self, addr, value):
        self.writes.append((addr, value))
        self.values[addr] = value


def make(seed, p_drop=0.0, p_dup=0.0):
    regs = Regs()
    model = link.BoardModel(BOARD, read=regs.read, write=regs.write)
    wire = LossyLink(model, seed, p_drop, p_dup)
    return BoardNic(wire, timeout=0.0, retries=30, seq=seed), model, wire, regs


@pytest.mark.parametrize("seed", range(4))
def test_reads_and_writes_survive_loss_and_duplication(seed):
    nic, model, wire, regs = make(seed, p_drop=0.25, p_dup=0.25)
    rng = random.Random(seed)
    want, writes = {}, 0
    for _ in range(200):
        name = rng.choice(["top.scratch", "eth.ip_dst", "eth.udp_port", "events.control"])
        reg = REGISTER_MAP[name].register
        if rng.random() < 0.5:
            value = rng.randrange(reg.mask + 1)
            nic.write(name, value)
            want[name] = value
            writes += 1
        else:
            assert nic.read(name) == want.get(name, 0)
    # Every write was executed exactly once although requests and acknowledgements were lost,
    # retried and duplicated.
    assert len(regs.writes) == writes
    assert nic.stats.retries > 0 and model.counters["duplicates"] > 0


def test_each_write_executes_once():
    nic, model, wire, regs = make(7, p_drop=0.3, p_dup=0.3)
    values = list(range(1, 151))
    for v in values:
        nic.write("top.scratch", v)
    assert [v for _, v in regs.writes] == values


def test_pushes_lost_on_the_link_are_counted():
    nic, model, wire, regs = make(3, p_drop=0.2, p_dup=0.2)
    nic.read("top.magic")                       # the board learns the host
    sent = []
    for i in range(500):
        event = TobEvent(cycle=i, seq=i, instrument=1, timestamp=i, bid_price=100, ask_price=101,
                         bid_size=i, ask_size=1) if i % 3 else GapEvent(cycle=i, expected=i, seq=i + 1)
        packet, aborted = encode_event(event)
        wire.push(model.push(link.Kind.EVENT, packet, aborted))
        sent.append(event)
    got = nic.poll()
    # Lost pushes at the very end are invisible until a later one arrives: send a last one reliably.
    wire.p_drop = 0.0
    wire.push(model.push(link.Kind.EVENT, encode_event(sent[0])[0]))
    got += nic.poll()
    assert nic.lost == wire.dropped_pushes
    assert len(got) == 501 - wire.dropped_pushes
    assert nic.stale > 0                        # duplicates were dropped
    assert all(e in sent for e in got)


def test_no_answer_raises_naming_the_register():
    class Dead:
        def send(self, payload):
            pass

        def recv(self, timeout):
            return None

    nic = BoardNic(Dead(), timeout=0.0, retries=2)
    with pytest.raises(NicError, match="READ top.magic after 3 tries"):
        nic.read("top.magic")
    with pytest.raises(NicError, match="read-only"):
        nic.write("top.magic", 1)


def test_udp_transport_against_the_model_over_loopback():
    """The real socket transport: a thread plays the board (the golden model) on 127.0.0.1."""
    import socket
    import threading

    board_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    board_sock.bind(("127.0.0.1", 0))
    port = board_sock.getsockname()[1]
    regs = Regs()
    model = link.BoardModel(BOARD, read=regs.read, write=regs.write)
    stop = threading.Event()

    def serve():
        board_sock.settimeout(0.05)
        while not stop.is_set():
            try:
                payload, addr = board_sock.recvfrom(65535)
            except socket.timeout:
                continue
            for frame in model.receive(link.frame(payload, HOST, BOARD)):
                board_sock.sendto(parse_udp_frame(frame).payload, addr)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with BoardNic(UdpTransport("127.0.0.1", port=port), timeout=0.5, retries=3) as nic:
            nic.write("top.scratch", 0x1234_5678_9ABC)
            assert nic.read("top.scratch") == 0x1234_5678_9ABC
    finally:
        stop.set()
        t.join()
        board_sock.close()
