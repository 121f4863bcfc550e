"""Property tests of protocols/fast: any message built from a template encodes and
decodes to itself, over long random streams with dictionary state and resets.

The templates below use every field type and operator, both presences, the
global, template, type and a user dictionary, explicit keys, static and
dynamic template references, groups and sequences (with and without their own
presence map); the options feed's own templates are exercised the same way.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.fast import Decoder, Encoder, Message, ScaledNumber, parse_templates
from protocols.fast.templates import INTEGER_TYPES, Field, Group, Sequence, TemplateRef
from sim.fastfeed import TEMPLATES_PATH

ALL_XML = """
<templates xmlns="http://www.fixprotocol.org/ns/fast/td/1.1" ns="t">
  <template name="Base">
    <uInt32 name="Seq"><increment value="1"/></uInt32>
    <string name="Sender"><copy dictionary="template"/></string>
  </template>
  <template name="Everything" id="10" dictionary="type">
    <typeRef name="Everything"/>
    <templateRef name="Base"/>
    <uInt32 name="u32"/> <int32 name="i32" presence="optional"/>
    <uInt64 name="u64" presence="optional"/> <int64 name="i64"/>
    <uInt32 name="cu"><copy/></uInt32> <int64 name="ci" presence="optional"><copy value="-5"/></int64>
    <int32 name="inc" presence="optional"><increment/></int32>
    <uInt64 name="du" presence="optional"><delta value="7"/></uInt64> <int64 name="di"><delta/></int64>
    <uInt32 name="defu" presence="optional"><default value="3"/></uInt32>
    <int32 name="defn" presence="optional"><default/></int32>
    <uInt32 name="k1" presence="optional"><copy key="shared" dictionary="user1"/></uInt32>
    <uInt32 name="k2" presence="optional"><copy key="shared" dictionary="user1"/></uInt32>
    <int32 name="const" presence="optional"><constant value="-9"/></int32>
    <decimal name="d"/> <decimal name="dn" presence="optional"/>
    <decimal name="dc" presence="optional"><copy value="1.5"/></decimal>
    <decimal name="dd"><delta/></decimal> <decimal name="ddn" presence="optional"><delta value="100"/></decimal>
    <decimal name="ddef" presence="optional"><default value="0.25"/></decimal>
    <decimal name="ind" presence="optional"><exponent><copy value="-2"/></exponent><mantissa><delta/></mantissa></decimal>
    <decimal name="ind2"><exponent><default value="0"/></exponent><mantissa><increment value="1"/></mantissa></decimal>
    <string name="s"/> <string name="sn" presence="optional"/>
    <string name="sc" presence="optional"><copy/></string> <string name="sd"><delta/></string>
    <string name="sdn" presence="optional"><delta value="AB"/></string>
    <string name="st" presence="optional"><tail/></string> <string name="stm"><tail value="XXXX"/></string>
    <string name="uc" charset="unicode" presence="optional"><copy/></string>
    <string name="ud" charset="unicode"><delta/></string>
    <string name="ut" charset="unicode" presence="optional"><tail/></string>
    <byteVector name="b" presence="optional"/> <byteVector name="bd"><delta/></byteVector>
    <byteVector name="bt" presence="optional"><tail/></byteVector>
    <byteVector name="bconst"><constant value="C0 FF EE"/></byteVector>
    <group name="g" presence="optional"><uInt32 name="gx"><copy/></uInt32><string name="gy"/></group>
    <group name="gp"><int32 name="gz"/></group>
    <sequence name="seq" presence="optional">
      <length name="n"><copy/></length>
      <uInt32 name="a"><increment value="0"/></uInt32>
      <decimal name="px"><delta/></decimal>
      <sequence name="inner"><int32 name="x"/></sequence>
    </sequence>
    <sequence name="plain"><int32 name="x"/><string name="y" presence="optional"/></sequence>
    <templateRef/>
  </template>
  <template name="Small" id="11">
    <uInt32 name="v"><copy/></uInt32>
    <string name="w" presence="optional"><tail/></string>
  </template>
  <template name="Other" id="12" dictionary="template">
    <templateRef name="Base"/>
    <uInt32 name="cu"><copy/></uInt32>
  </template>
</templates>
"""

ALL = parse_templates(ALL_XML)
OPTIONS = parse_templates(TEMPLATES_PATH)

TAIL_LEN = 4
"""Tail values are generated with a fixed length: a tail can only replace the
end of the base value or all of it (section 6.3.8), so a shorter value has no
encoding."""


def _scalar(f: Field):
    k = f.kind
    op = f.op
    if op is not None and op.kind == "constant":
        return st.just(op.value if k != "unicode" else op.value.decode())
    if k in INTEGER_TYPES:
        lo, hi = INTEGER_TYPES[k]
        return st.one_of(st.integers(lo, hi), st.integers(max(lo, -3), min(hi, 3)))
    if k == "decimal":
        return st.builds(ScaledNumber, st.integers(-63, 63), st.integers(-(1 << 63), (1 << 63) - 1)) | \
            st.builds(ScaledNumber, st.integers(-3, 3), st.integers(-1000, 1000))
    tail = op is not None and op.kind == "tail"
    if k == "ascii":
        alphabet = st.characters(min_codepoint=0, max_codepoint=127)
        return st.text(alphabet, min_size=TAIL_LEN, max_size=TAIL_LEN) if tail else \
            st.text(alphabet, max_size=6) | st.sampled_from(["", "\0", "\0A", "AB", "ABC"])
    if k == "unicode":
        alphabet = st.characters(blacklist_categories=("Cs",))
        return st.text(alphabet, min_size=TAIL_LEN, max_size=TAIL_LEN).filter(
            lambda s: len(s.encode()) == TAIL_LEN) if tail else st.text(alphabet, max_size=5)
    return st.binary(min_size=TAIL_LEN, max_size=TAIL_LEN) if tail else st.binary(max_size=6)


def _optional(f, s):
    return st.one_of(st.none(), s) if f.optional else s


def fields_of(ts, instrs, depth=0):
    """A strategy for the field dict of ``instrs`` (static references flattened)."""
    parts = {}
    extra = []
    for ins in instrs:
        if isinstance(ins, Field):
            parts[ins.name] = _optional(ins, _scalar(ins))
        elif isinstance(ins, Group):
            parts[ins.name] = _optional(ins, fields_of(ts, ins.instructions, depth + 1))
        elif isinstance(ins, Sequence):
            parts[ins.name] = _optional(ins, st.lists(fields_of(ts, ins.instructions, depth + 1), max_size=3))
        elif isinstance(ins, TemplateRef) and ins.name is not None:
            extra.append(fields_of(ts, ts.templates[ins.name].instructions, depth))
        else:
            ids = sorted(i for i in ts.by_id if i != 10) if depth == 0 else []
            parts["templateRef"] = st.sampled_from(ids).flatmap(
                lambda i: fields_of(ts, ts.by_id[i].instructions, 1).map(
                    lambda f, i=i: Message(ts.by_id[i].name, i, f)))
    base = st.fixed_dictionaries(parts)
    for e in extra:
        base = st.tuples(base, e).map(lambda t: {**t[1], **t[0]})
    return base


def messages(ts):
    ids = sorted(ts.by_id)
    return st.sampled_from(ids).flatmap(
        lambda i: fields_of(ts, ts.by_id[i].instructions).map(lambda f, i=i: Message(ts.by_id[i].name, i, f)))


def streams(ts):
    """Messages, with ``None`` marking a dictionary reset."""
    return st.lists(st.one_of(messages(ts), messages(ts), messages(ts), st.none()), min_size=1, max_size=40)


def roundtrip(ts, stream):
    enc, dec = Encoder(ts), Decoder(ts)
    wire = []
    for m in stream:
        if m is None:
            enc.reset()
            wire.append(None)
        else:
            wire.append(enc.encode_message(m))
    for m, w in zip(stream, wire):
        if m is None:
            dec.reset()
            continue
        got, end = dec.decode(w)
        assert end == len(w)
        assert got == m, (got, m)
    # the same stream back to back in one buffer, one reset at the start
    enc, dec = Encoder(ts), Decoder(ts)
    msgs = [m for m in stream if m is not None]
    buf = b"".join(enc.encode_message(m) for m in msgs)
    assert dec.decode_all(buf) == msgs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(streams(ALL))
def test_every_type_and_operator_roundtrips_with_dictionary_state(stream):
    roundtrip(ALL, stream)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(streams(OPTIONS))
def test_options_templates_roundtrip(stream):
    roundtrip(OPTIONS, stream)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(messages(ALL))
def test_decoded_prefix_of_a_stream_never_crashes(m):
    """Every truncation of a valid message is a FastError (never another exception)."""
    from protocols.fast import FastError

    w = Encoder(ALL).encode_message(m)
    for cut in range(len(w)):
        try:
            Decoder(ALL).decode(w[:cut])
        except FastError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_decode_or_raise_fast_error(data):
    """Garbage decodes to something or raises FastError: never a crash."""
    from protocols.fast import FastError

    dec = Decoder(ALL)
    try:
        dec.decode_all(data)
    except FastError:
        pass
