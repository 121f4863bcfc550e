"""Properties of the software receive path (host/rxpath.py), the golden model of the gateware.

The model is the reference for hw/ethrx.py and hw/moldudp64.py, so its own
invariants are checked here on generated input: the MoldUDP64 byte accounting
that ``protocols/registers.py`` documents, and the sequencing guarantees of the
two gap policies.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from host.rxpath import EthRx, EthRxConfig, Gap, Message, MoldRx
from protocols import moldudp64 as mold
from protocols.net import build_udp_frame

S = b"CALARB0001"
T = b"OTHERSESS1"

messages = st.lists(st.binary(max_size=24), min_size=1, max_size=40)


def packets_of(msgs: list[bytes], max_payload: int) -> list[mold.MoldPacket]:
    return mold.packetise(msgs, session=S, max_payload=max_payload)


@st.composite
def damaged_payloads(draw) -> bytes:
    """A UDP payload that may be anything a MoldUDP64 receiver can meet."""
    kind = draw(st.sampled_from(["good", "good", "cut", "trailing", "recount", "heartbeat", "eos", "raw"]))
    session = draw(st.sampled_from([S, S, S, T]))
    seq = draw(st.integers(0, 40))
    if kind == "raw":
        return draw(st.binary(max_size=30))
    if kind == "heartbeat":
        return mold.encode_packet(mold.heartbeat(session, seq)) + draw(st.binary(max_size=4))
    if kind == "eos":
        return mold.encode_packet(mold.end_of_session(session, seq)) + draw(st.binary(max_size=4))
    payload = mold.encode_packet(mold.MoldPacket(session, seq, tuple(draw(st.lists(st.binary(max_size=12),
                                                                                        min_size=1, max_size=6)))))
    if kind == "cut":
        payload = payload[:draw(st.integers(0, len(payload)))]
    elif kind == "trailing":
        payload += draw(st.binary(min_size=1, max_size=9))
    elif kind == "recount":                       # a header count that disagrees with the body
        count = draw(st.integers(0, 0xFFFF))
        payload = payload[:18] + count.to_bytes(2, "big") + payload[20:]
    return payload


@st.composite
def mold_workloads(draw):
    """(learn, hold, steps): steps are UDP payloads or ``("resync", next_seq)``."""
    learn, hold = draw(st.booleans()), draw(st.booleans())
    step = st.one_of(damaged_payloads(), st.tuples(st.just("resync"), st.integers(0, 40)))
    return learn, hold, draw(st.lists(step, max_size=30))


@settings(max_examples=300, deadline=None)
@given(mold_workloads())
def test_moldrx_byte_accounting_identity(workload):
    """Every UDP payload byte is a header byte, a delivered message block byte, or a dropped byte.

    With the ``mold`` counters after any input::

        sum(len(payload)) == 20 * (packets - drop_short - drop_session - held_packets - dup_packets)
                             + sum(2 + len(m.data) for m in complete delivered messages)
                             + dropped_bytes

    A packet's 20 header bytes count as accepted unless the packet is dropped
    whole (too short, wrong session, held behind a gap, or a whole duplicate),
    in which case all its bytes are in ``dropped_bytes``. Of an accepted packet,
    the blocks (2-byte length and message) of complete delivered messages are
    accounted as delivered; skipped duplicate blocks, everything from the start
    of the block a truncated packet ends in (an aborted message's bytes
    included), and trailing bytes are in ``dropped_bytes``.
    """
    learn, hold, steps = workload
    rx = MoldRx(learn=learn, hold=hold, session=S, written_session=S)
    total = 0
    out = []
    for step in steps:
        if isinstance(step, tuple):
            rx.resync(step[1])
            continue
        total += len(step)
        out += rx.receive(step)
    c = rx.counters
    complete = [m for m in out if isinstance(m, Message) and not m.aborted]
    headers = c["packets"] - c["drop_short"] - c["drop_session"] - c["held_packets"] - c["dup_packets"]
    assert total == mold.HEADER_LEN * headers + sum(2 + len(m.data) for m in complete) + c["dropped_bytes"]
    assert c["messages"] == len(complete)
    assert c["packets"] == sum(not isinstance(s, tuple) for s in steps)
    assert c["gaps"] == sum(isinstance(g, Gap) for g in out)
    assert c["gap_messages"] == sum(g.seq - g.expected for g in out if isinstance(g, Gap))


@st.composite
def shuffled_resends(draw, max_payload: int = 60, cover: bool = False):
    """(messages, packets, order): ``order`` indexes packets in any order, with repeats.

    With ``cover`` every packet appears at least once.
    """
    msgs = draw(messages)
    pkts = packets_of(msgs, max_payload)
    extra = draw(st.lists(st.integers(0, len(pkts) - 1), max_size=2 * len(pkts)))
    order = (list(range(len(pkts))) if cover else []) + extra
    order = draw(st.permutations(order)) if order else []
    if not cover and not order:
        order = [draw(st.integers(0, len(pkts) - 1))]
    return msgs, pkts, order


@settings(max_examples=300, deadline=None)
@given(shuffled_resends(), st.booleans())
def test_moldrx_skip_policy_delivers_in_strictly_increasing_order(case, learn):
    """Under the skip policy, any reordering and repetition of a feed's packets delivers each
    message at most once, in strictly increasing sequence order, with its own bytes; every
    number below the expected one is either delivered or inside exactly one reported gap."""
    msgs, pkts, order = case
    rx = MoldRx(learn=learn, hold=False, session=S, written_session=S)
    out = []
    for k in order:
        out += rx.receive(mold.encode_packet(pkts[k]))
    delivered = [m for m in out if isinstance(m, Message)]
    seqs = [m.seq for m in delivered]
    assert all(a < b for a, b in zip(seqs, seqs[1:]))
    assert all(not m.aborted and m.data == msgs[m.seq - 1] for m in delivered)
    start = pkts[order[0]].seq if learn else 1
    covered = seqs + [s for g in out if isinstance(g, Gap) for s in range(g.expected, g.seq)]
    assert sorted(covered) == list(range(start, rx.expected))


@settings(max_examples=300, deadline=None)
@given(shuffled_resends(cover=True))
def test_moldrx_hold_policy_delivers_everything_in_order_after_refill(case):
    """Under the hold policy, once every packet has arrived (any order, repeats) and the packets
    from the gap on are re-sent, exactly messages 1..N have been delivered, in order."""
    msgs, pkts, order = case
    rx = MoldRx(learn=False, hold=True, written_session=S, expected=1)
    out = []
    for k in order:
        out += rx.receive(mold.encode_packet(pkts[k]))
        seqs = [m.seq for m in out if isinstance(m, Message)]
        assert seqs == list(range(1, len(seqs) + 1))      # always a gap-free prefix
    # The re-request server re-sends from the first missing message on.
    for _ in range(len(pkts)):
        if rx.expected > len(msgs):
            break
        holder = next(p for p in pkts if p.seq <= rx.expected < p.next_seq)
        before = rx.expected
        out += rx.receive(mold.encode_packet(holder))
        assert rx.expected == holder.next_seq > before
    delivered = [m for m in out if isinstance(m, Message)]
    assert [m.seq for m in delivered] == list(range(1, len(msgs) + 1))
    assert [m.data for m in delivered] == msgs
    assert all(g.expected < g.seq for g in out if isinstance(g, Gap))
    assert rx.counters["messages"] == len(msgs)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80), st.integers(0, 80))
def test_ethrx_forwards_udp_payload_or_drops_with_one_reason(payload, cut):
    """A built frame, possibly cut: forwarded as far as it goes, or (under 42 bytes) a runt."""
    frame = build_udp_frame(payload, dst_ip="233.54.12.1", src_ip="10.0.0.2", dst_port=26400, src_port=1)
    frame = frame[:42 + cut] if cut < len(frame) - 42 else frame
    rx = EthRx(EthRxConfig())
    got = rx.receive(frame)
    c = rx.counters
    assert c["frames"] == 1
    assert sum(v for k, v in c.items() if k == "forwarded" or k.startswith("drop_")) == 1
    assert got == payload[:max(0, len(frame) - 42)]
    assert c["truncated"] == int(len(frame) < 42 + len(payload))
