"""Tests for protocols/itch.py (the table and the per-message codec) and
protocols/itch_reader.py (the vectorised reader), which must agree with it.

Strategies are generated from :data:`protocols.itch.MESSAGES`, so a field added
to the table is exercised here without editing this file."""

from __future__ import annotations

import struct
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import itch
from protocols import moldudp64 as mold
from protocols.itch import CLASSES, MESSAGES, ItchError, as_json, decode, encode, message, price_str
from protocols.itch_reader import (
    FIRST_ERRORS,
    ItchTable,
    dtype,
    encode_rows,
    read_itch_file,
    read_itch_pcap,
)
from protocols.pcap import write_pcap
from sim import moldfeed
from sim.itchfeed import generate_itch, write_itch_file, write_itch_pcap

PUBLISHED_LENGTHS = {
    "S": 12, "R": 39, "H": 25, "Y": 20, "L": 26, "V": 35, "W": 12, "K": 28, "J": 35, "h": 21, "A": 36,
    "F": 40, "E": 31, "C": 36, "X": 23, "D": 19, "U": 35, "P": 44, "Q": 40, "B": 19, "I": 50, "N": 20,
    "O": 48,
}
"""Total message lengths from the NASDAQ TotalView-ITCH 5.0 specification."""

PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


def field_values(f: itch.Field):
    """Values of one field: ints within its width, alpha as printable ASCII up to its width
    (space-padded, as on the wire)."""
    if f.kind == "alpha":
        return st.text(PRINTABLE, max_size=f.width).map(lambda s, w=f.width: s.encode("ascii").ljust(w))
    return st.integers(0, 2 ** (8 * f.width) - 1)


def messages_of(code: str):
    mt = MESSAGES[code]
    return st.fixed_dictionaries({f.name: field_values(f) for f in mt.fields}).map(lambda d: CLASSES[code](**d))


any_message = st.sampled_from(sorted(MESSAGES)).flatmap(messages_of)


def raw_messages_of(code: str):
    """Any bytes of the type's length after its type byte (alpha fields may hold NULs)."""
    return st.binary(min_size=MESSAGES[code].length - 1, max_size=MESSAGES[code].length - 1).map(
        lambda b, c=code: c.encode() + b)


any_raw_message = st.sampled_from(sorted(MESSAGES)).flatmap(raw_messages_of)


def nasdaq(messages: list[bytes]) -> bytes:
    return b"".join(len(m).to_bytes(2, "big") + m for m in messages)


# --------------------------------------------------------------------------- #
# the table
# --------------------------------------------------------------------------- #


def test_all_23_types_have_the_published_lengths():
    assert {code: mt.length for code, mt in MESSAGES.items()} == PUBLISHED_LENGTHS


@pytest.mark.parametrize("code", sorted(MESSAGES))
def test_fields_tile_the_message(code):
    mt = MESSAGES[code]
    offset = 1
    for f in mt.fields:
        assert f.offset == offset and f.width > 0 and f.kind in itch.KINDS
        offset += f.width
    assert offset == mt.length
    assert [f.name for f in mt.fields[:3]] == ["stock_locate", "tracking_number", "timestamp"]


# --------------------------------------------------------------------------- #
# the codec
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("code", sorted(MESSAGES))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_encode_decode_round_trip(code, data):
    m = data.draw(messages_of(code))
    raw = encode(m)
    assert len(raw) == MESSAGES[code].length and raw[:1] == code.encode()
    assert decode(raw) == m


@pytest.mark.parametrize("code", sorted(MESSAGES))
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_decode_encode_round_trip_on_any_bytes(code, data):
    raw = data.draw(raw_messages_of(code))
    assert encode(decode(raw)) == raw


def test_add_order_known_answer():
    ts = 34_200_123_456_789          # 09:30:00.123456789
    raw = struct.pack(">cHH6sQcI8sI", b"A", 7, 3, ts.to_bytes(6, "big"), 0x0123456789ABCDEF, b"B", 500,
                      b"AAPL    ", 1_895_000)
    assert len(raw) == 36
    m = decode(raw)
    assert type(m).__name__ == "AddOrder" and m.code == "A"
    assert (m.stock_locate, m.tracking_number, m.timestamp) == (7, 3, ts)
    assert (m.order_ref, m.side, m.shares, m.stock, m.price) == (0x0123456789ABCDEF, b"B", 500, b"AAPL    ",
                                                                 1_895_000)
    assert encode(message("A", stock_locate=7, tracking_number=3, timestamp=ts, order_ref=0x0123456789ABCDEF,
                          side="B", shares=500, stock="AAPL", price=1_895_000)) == raw
    assert as_json(m) == {"type": "A", "name": "add_order", "stock_locate": 7, "tracking_number": 3,
                          "timestamp": ts, "order_ref": 0x0123456789ABCDEF, "side": "B", "shares": 500,
                          "stock": "AAPL", "price": 1_895_000}
    assert price_str(m.price) == "189.5000"


def test_unknown_type_names_the_type_and_offset():
    with pytest.raises(ItchError) as e:
        decode(b"Z" + bytes(20), offset=1000)
    assert (e.value.reason, e.value.offset, e.value.code) == ("unknown_type", 1000, "Z")
    assert "'Z'" in str(e.value) and "offset 1000" in str(e.value)


def test_truncated_names_the_type_and_offset():
    raw = encode(message("A", order_ref=1))
    with pytest.raises(ItchError) as e:
        decode(raw[:30], offset=100)
    assert (e.value.reason, e.value.offset, e.value.code) == ("truncated", 130, "A")
    assert "'A'" in str(e.value) and "offset 130" in str(e.value) and "30 of 36" in str(e.value)


def test_wrong_length_names_the_type_and_offset():
    raw = encode(message("D", order_ref=1)) + b"xx"
    with pytest.raises(ItchError) as e:
        decode(raw, offset=50)
    assert (e.value.reason, e.value.offset, e.value.code) == ("wrong_length", 69, "D")
    assert "'D'" in str(e.value) and "offset 69" in str(e.value)


def test_empty_and_bad_fields_are_refused():
    with pytest.raises(ItchError, match="empty"):
        decode(b"", offset=3)
    with pytest.raises(ItchError, match="field_too_long"):
        encode(message("A", stock=b"TOOLONGNAME"))
    with pytest.raises(ItchError, match="field_out_of_range"):
        encode(message("A", shares=2**32))
    with pytest.raises(ItchError, match="unknown_field"):
        message("A", color="red")


# --------------------------------------------------------------------------- #
# the vectorised reader
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("code", sorted(MESSAGES))
def test_dtype_is_generated_from_the_table(code):
    dt, mt = dtype(code), MESSAGES[code]
    assert dt.names == ("index",) + tuple(f.name for f in mt.fields)
    for f in mt.fields:
        col = dt[f.name]
        if f.kind == "alpha":
            assert col == np.dtype(f"S{f.width}")
        elif f.kind == "timestamp":
            assert col == np.dtype(np.uint64)
        else:
            assert col.kind == "u" and col.itemsize == f.width and col.byteorder in (">", "|")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(any_raw_message, max_size=60))
def test_reader_equals_the_codec_on_any_messages(raws):
    table = read_itch_file(nasdaq(raws))
    assert table.to_messages() == [decode(r) for r in raws]
    assert table.n_messages == len(raws) and table.errors == {}
    counter = Counter(chr(r[0]) for r in raws)
    assert list(table.counts().items()) == [(c, counter[c]) for c in MESSAGES if counter[c]]
    assert table.to_nasdaq() == nasdaq(raws)


@settings(max_examples=40, deadline=None)
@given(st.lists(any_message, max_size=40))
def test_encode_rows_equals_the_codec(msgs):
    by_code = {}
    for m in msgs:
        by_code.setdefault(m.code, []).append(m)
    for code, ms in by_code.items():
        columns = {f.name: np.array([getattr(m, f.name) for m in ms],
                                    f"S{f.width}" if f.kind == "alpha" else np.uint64)
                   for f in MESSAGES[code].fields}
        rows = encode_rows(code, columns, len(ms))
        assert [r.tobytes() for r in rows] == [encode(m) for m in ms]


def test_encode_rows_refuses_values_that_do_not_fit():
    with pytest.raises(ItchError, match="shares=4294967296"):
        encode_rows("A", {"shares": np.array([1, 2**32])})
    with pytest.raises(ItchError, match="price=-1"):
        encode_rows("A", {"price": np.array([-1])})
    rows = encode_rows("A", {"stock": np.array([b"AB      "], "S8")}, 1)
    assert rows[0].tobytes() == encode(message("A", stock="AB"))      # missing fields: zero, alpha spaces
    rows = encode_rows("A", {"stock": np.array([b"AB"], "S8")}, 1)
    assert decode(rows[0].tobytes()).stock == b"AB\0\0\0\0\0\0"        # NumPy's NUL padding, kept


@pytest.fixture(scope="module")
def feed():
    return generate_itch(30_000, 10, seed=21)


def test_reader_equals_the_codec_on_a_generated_file(tmp_path, feed):
    path = tmp_path / "day.itch"
    write_itch_file(path, feed)
    table = read_itch_file(path)
    decoded = [decode(m) for m in feed]
    assert table.to_messages() == decoded
    assert table.n_messages == len(table) == len(feed)
    assert table.counts() == dict(Counter(m.code for m in decoded))
    assert table.errors == {}
    adds = table["A"]
    first_add = next(m for m in decoded if m.code == "A")
    assert adds["order_ref"][0] == first_add.order_ref and adds["stock"][0] == first_add.stock
    assert adds["timestamp"].dtype == np.uint64 and np.all(np.diff(adds["timestamp"].astype(np.int64)) > 0)
    assert np.all(np.diff(adds["index"].astype(np.int64)) > 0)
    assert read_itch_file(path.read_bytes()).to_messages() == decoded


def test_reader_counts_injected_bad_messages(feed):
    good = feed[:2000]
    bad_at = {100: b"Z" + bytes(10), 500: encode(message("D", order_ref=5)) + b"!",
              900: b"", 901: b"A" + bytes(20), 1500: b"\x00" * 7}
    raws, kinds = [], []
    for i, m in enumerate(good):
        if i in bad_at:
            raws.append(bad_at[i])
            kinds.append(i)
        raws.append(m)
    data = nasdaq(raws)
    offsets = np.cumsum([0] + [2 + len(m) for m in raws])
    table = read_itch_file(data)
    assert table.to_messages() == [decode(m) for m in good]
    assert table.n_messages == len(raws)
    pos = {i: raws.index(bad_at[i]) for i in bad_at}
    assert table.errors["unknown_type"]["count"] == 2
    assert [(e["index"], e["offset"], e["type"]) for e in table.errors["unknown_type"]["first"]] == [
        (pos[100], offsets[pos[100]], "Z"), (pos[1500], offsets[pos[1500]], "\x00")]
    assert table.errors["wrong_length"]["count"] == 2
    assert [(e["offset"], e["type"], e["length"], e["expected"]) for e in table.errors["wrong_length"]["first"]] \
        == [(offsets[pos[500]], "D", 20, 19), (offsets[pos[901]], "A", 21, 36)]
    assert table.errors["empty"] == {"count": 1, "first": [{"index": pos[900], "offset": int(offsets[pos[900]]),
                                                            "type": None, "length": 0}]}
    assert table.error_count() == 5


def test_reader_keeps_only_the_first_few_error_offsets():
    raws = [b"Z" + bytes(3)] * 20 + [encode(message("S", event_code="O"))]
    table = read_itch_file(nasdaq(raws))
    assert table.errors["unknown_type"]["count"] == 20
    assert [e["offset"] for e in table.errors["unknown_type"]["first"]] == [6 * i for i in range(FIRST_ERRORS)]
    assert table.counts() == {"S": 1} and table["S"]["index"].tolist() == [20]


def test_truncated_final_message_raises_with_its_offset(feed):
    data = nasdaq(feed[:50])
    last = len(nasdaq(feed[:49]))
    with pytest.raises(ItchError) as e:
        read_itch_file(data[:-3])
    assert (e.value.reason, e.value.offset, e.value.code) == ("truncated", last, chr(feed[49][0]))
    assert f"offset {last}" in str(e.value)
    with pytest.raises(ItchError) as e:
        read_itch_file(data + b"\x00")
    assert (e.value.reason, e.value.offset) == ("truncated", len(data))


def test_empty_file_gives_empty_tables():
    table = read_itch_file(b"")
    assert table.n_messages == 0 and table.counts() == {} and table.to_messages() == []
    assert set(table.tables) == set(MESSAGES) and table["A"].dtype == dtype("A")


def test_reader_equals_the_codec_on_a_generated_pcap(tmp_path, feed):
    path = tmp_path / "day.pcap"
    write_itch_pcap(path, feed, max_payload=1000, session="PCAPTEST01")
    table = read_itch_pcap(path)
    assert table.to_messages() == [decode(m) for m in feed]
    assert table.errors == {}
    assert table.seq.tolist() == list(range(1, len(feed) + 1))
    assert table.sessions == (b"PCAPTEST01",)


def test_pcap_reader_counts_damaged_frames_and_bad_messages(tmp_path, feed):
    good = feed[:40]
    session = b"PCAPTEST01"

    def frame(seq, msgs, extra=b""):
        return moldfeed._frame(mold.encode_packet(mold.MoldPacket(session, seq, tuple(msgs))) + extra)

    overrun = bytearray(mold.encode_packet(mold.MoldPacket(session, 32, tuple(good[30:35]))))
    overrun[-len(good[34]) - 2:-len(good[34])] = (len(good[34]) + 9).to_bytes(2, "big")
    frames = [
        frame(1, good[:10]),
        b"\x00" * 20,                                              # runt
        frame(11, good[10:15] + [b"Q" + bytes(5)] + good[15:20]),  # a wrong-length message
        moldfeed._frame(b"short"),                                 # shorter than a MoldUDP64 header
        frame(22, good[20:30], extra=b"junk"),                     # trailing bytes after the messages
        moldfeed._frame(bytes(overrun)),                           # the last message runs past the end
        moldfeed._frame(b"x" * 30, dst_port=9),                   # another port
        frame(37, good[35:40]),
        moldfeed._frame(mold.encode_packet(mold.end_of_session(session, 42))),
    ]
    path = tmp_path / "damaged.pcap"
    write_pcap(path, ((i, f) for i, f in enumerate(frames)))
    table = read_itch_pcap(path, port=moldfeed.FEED_PORT)
    kept = good[:34] + good[35:40]
    assert table.to_messages() == [decode(m) for m in kept]
    assert table.seq.tolist() == list(range(1, 36)) + list(range(37, 42))
    assert table.n_messages == 40              # 39 good, 1 wrong length
    errors = {k: (v["count"], v["first"][0]) for k, v in table.errors.items()}
    assert errors["net_runt"] == (1, {"frame": 1, "offset": 0})
    assert errors["mold_short_header"] == (1, {"frame": 3, "offset": 0})
    assert errors["mold_trailing_bytes"][0] == 1 and errors["mold_trailing_bytes"][1]["frame"] == 4
    assert errors["mold_truncated"][0] == 1 and errors["mold_truncated"][1]["frame"] == 5
    assert errors["skipped_port"] == (1, {"frame": 6, "port": 9})
    wrong = table.errors["wrong_length"]
    assert wrong["count"] == 1
    assert {k: wrong["first"][0][k] for k in ("frame", "seq", "type", "length", "expected")} == {
        "frame": 2, "seq": 16, "type": "Q", "length": 6, "expected": 40}
    assert wrong["first"][0]["offset"] == 20 + sum(2 + len(m) for m in good[10:15])


def test_table_from_arrays_round_trips_through_nasdaq_bytes(feed):
    table = read_itch_file(nasdaq(feed[:500]))
    rebuilt = ItchTable.from_arrays(table.tables)
    assert rebuilt.n_messages == 500
    assert rebuilt.to_nasdaq() == nasdaq(feed[:500])


def test_empty_messages_are_counted_wherever_they_are():
    s = encode(message("S", event_code="O"))
    for raws in ([b"", s], [s, b""], [b""], [s, b"", b"", s]):
        table = read_itch_file(nasdaq(raws))
        assert table.errors["empty"]["count"] == raws.count(b"")
        assert table.counts() == ({"S": raws.count(s)} if s in raws else {})
    # an empty message followed by an unknown type byte is still empty, not a message
    table = read_itch_file(b"\x00\x00\x00\x01Z")
    assert {k: v["count"] for k, v in table.errors.items()} == {"empty": 1, "unknown_type": 1}
