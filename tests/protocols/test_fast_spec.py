"""Conformance of protocols/fast against the worked examples of the FAST Specification 1.x.1.

Every expected byte string of a field is copied from the specification (the
appendix 3 tables, or the text of section 10 where it gives an encoding);
the section is cited in each test's docstring. Each example is wrapped in a
one-field message of template identifier 1, whose header is written out by
hand from section 10 (the first presence map bit is the template
identifier's copy operator): ``c0 81`` is "presence map with only the
template identifier bit set, identifier 1"; ``e0 81`` also sets the field's
bit; in later messages of the same stream ``80`` / ``a0`` leave the
identifier out (its copy operator repeats it).

Where the specification's table contradicts itself the test follows the
binary column and the rule in the text, and says so.
"""

from __future__ import annotations

import pytest

from protocols.fast import Decoder, Encoder, FastError, FastTemplateError, ScaledNumber, parse_templates

FIRST = b"\xc0\x81"        # pmap: template id bit only; template id 1
FIRST_BIT = b"\xe0\x81"    # pmap: template id bit + field bit; template id 1
NEXT = b"\x80"             # pmap: nothing set (template id copied)
NEXT_BIT = b"\xa0"         # pmap: field bit only


def one_field(field_xml: str):
    return parse_templates(
        '<templates xmlns="http://www.fixprotocol.org/ns/fast/td/1.1">'
        f'<template name="T" id="1">{field_xml}</template></templates>')


def check_stream(field_xml: str, name: str, rows):
    """``rows`` of (value, message bytes): decoding the bytes gives the value and
    encoding the value gives the bytes, message after message with dictionary state."""
    ts = one_field(field_xml)
    dec, enc = Decoder(ts), Encoder(ts)
    for i, (value, wire) in enumerate(rows):
        msg, end = dec.decode(wire)
        assert end == len(wire), f"row {i}"
        assert msg.fields[name] == value, f"row {i}: decoded {msg.fields[name]!r}"
        assert enc.encode("T", {name: value}) == wire, f"row {i}: encoding of {value!r}"


D = ScaledNumber


# --------------------------------------------------------------------------- #
# Appendix 3.1 data types
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("presence,value,field_bytes", [
    ("optional", 942755, bytes([0x39, 0x45, 0xa4])),      # 3.1.1 example 1
    ("mandatory", 942755, bytes([0x39, 0x45, 0xa3])),     # 3.1.1 example 2
    ("optional", -942755, bytes([0x46, 0x3a, 0xdd])),     # 3.1.1 example 3
    ("mandatory", -7942755, bytes([0x7c, 0x1b, 0x1b, 0x9d])),  # 3.1.1 example 4
    ("mandatory", 8193, bytes([0x00, 0x40, 0x81])),       # 3.1.1 example 5
    # 3.1.1 example 6 prints hex "0x73 0x3f 0xff" but binary 01111111 00111111 11111111;
    # the binary is the two's complement of -8193, the hex is a typo.
    ("mandatory", -8193, bytes([0x7f, 0x3f, 0xff])),
])
def test_int32_examples(presence, value, field_bytes):
    """FAST 1.x.1 appendix 3.1.1 (signed integer examples): nullable non-negative
    values are sent plus one, negative values unchanged; sign-bit extension."""
    check_stream(f'<int32 id="1" presence="{presence}" name="Value"/>', "Value", [(value, FIRST + field_bytes)])


@pytest.mark.parametrize("presence,value,field_bytes", [
    ("optional", None, b"\x80"),
    ("optional", 0, b"\x81"),
    ("optional", 1, b"\x82"),
    ("optional", 942755, bytes([0x39, 0x45, 0xa4])),
    ("mandatory", 0, b"\x80"),
    ("mandatory", 1, b"\x81"),
    ("mandatory", 942755, bytes([0x39, 0x45, 0xa3])),
])
def test_uint32_examples(presence, value, field_bytes):
    """FAST 1.x.1 appendix 3.1.2 (unsigned integer examples)."""
    check_stream(f'<uInt32 id="1" presence="{presence}" name="Value"/>', "Value", [(value, FIRST + field_bytes)])


def test_nullable_uint32_max_needs_33_bits():
    """FAST 1.x.1 section 10.6.1 note: nullable 4294967295 is sent as 4294967296,
    ``0x10 0x00 0x00 0x00 0x80``."""
    check_stream('<uInt32 name="V" presence="optional"/>', "V",
                 [(4294967295, FIRST + bytes([0x10, 0x00, 0x00, 0x00, 0x80]))])


def test_signed_64_needs_a_leading_zero_byte():
    """FAST 1.x.1 section 10.6.1.1 note: 64 must be encoded ``0x00 0xC0``."""
    check_stream('<int64 name="V"/>', "V", [(64, FIRST + b"\x00\xc0")])


@pytest.mark.parametrize("presence,value,field_bytes", [
    ("optional", None, b"\x80"),
    ("optional", "ABC", bytes([0x41, 0x42, 0xc3])),
    ("optional", "", bytes([0x00, 0x80])),
    ("mandatory", "ABC", bytes([0x41, 0x42, 0xc3])),
    ("mandatory", "", b"\x80"),
])
def test_ascii_string_examples(presence, value, field_bytes):
    """FAST 1.x.1 appendix 3.1.3 (US ASCII string examples)."""
    check_stream(f'<string id="1" presence="{presence}" name="Value"/>', "Value", [(value, FIRST + field_bytes)])


@pytest.mark.parametrize("presence,entity,value", [
    ("mandatory", b"\x00", ""),
    ("mandatory", b"\x00\x00", "\0"),
    ("optional", b"\x00", None),
    ("optional", b"\x00\x00", ""),
    ("optional", b"\x00\x00\x00", "\0"),
])
def test_zero_preamble_table(presence, entity, value):
    """FAST 1.x.1 section 10.6.3, the zero-preamble table (entity values; the last
    byte carries the stop bit on the wire)."""
    wire = entity[:-1] + bytes([entity[-1] | 0x80])
    check_stream(f'<string name="V" presence="{presence}"/>', "V", [(value, FIRST + wire)])


@pytest.mark.parametrize("presence,entity", [
    ("mandatory", b"\x00\x41"), ("optional", b"\x00\x41"), ("optional", b"\x00\x00\x41")])
def test_overlong_strings_are_r9(presence, entity):
    """FAST 1.x.1 section 10.6.3: the rows marked "Overlong" of the zero-preamble
    table are reportable error R9."""
    ts = one_field(f'<string name="V" presence="{presence}"/>')
    wire = FIRST + entity[:-1] + bytes([entity[-1] | 0x80])
    with pytest.raises(FastError) as e:
        Decoder(ts).decode(wire)
    assert e.value.code == "R9" and e.value.offset == 2 and "V" in str(e.value)


@pytest.mark.parametrize("presence,value,field_bytes", [
    ("optional", None, b"\x80"),
    ("optional", b"ABC", bytes([0x84, 0x41, 0x42, 0x43])),
    ("optional", b"", b"\x81"),
    ("mandatory", b"ABC", bytes([0x83, 0x41, 0x42, 0x43])),
    ("mandatory", b"", b"\x80"),
])
def test_byte_vector_examples(presence, value, field_bytes):
    """FAST 1.x.1 appendix 3.1.4 (byte vector examples): nullable length preamble."""
    check_stream(f'<byteVector id="1" presence="{presence}" name="Value"/>', "Value",
                 [(value, FIRST + field_bytes)])


def test_unicode_string_is_a_utf8_byte_vector():
    """FAST 1.x.1 section 10.6.4: a Unicode string is a byte vector of its UTF-8
    bytes (``"é"`` is C3 A9, so length 2 then the two bytes; nullable adds one to the length)."""
    check_stream('<string name="V" charset="unicode"/>', "V", [("é", FIRST + b"\x82\xc3\xa9")])
    check_stream('<string name="V" charset="unicode" presence="optional"/>', "V",
                 [("é", FIRST + b"\x83\xc3\xa9"), (None, NEXT + b"\x80")])


@pytest.mark.parametrize("presence,value,field_bytes", [
    ("mandatory", D(2, 942755), bytes([0x82, 0x39, 0x45, 0xa3])),           # 3.1.5 example 1
    ("mandatory", D(1, 9427550), bytes([0x81, 0x04, 0x3f, 0x34, 0xde])),    # 3.1.5 example 2
    ("optional", D(2, 942755), bytes([0x83, 0x39, 0x45, 0xa3])),            # 3.1.5 example 3
    ("mandatory", D(-2, 942755), bytes([0xfe, 0x39, 0x45, 0xa3])),          # 3.1.5 example 4
    ("optional", D(-2, -942755), bytes([0xfe, 0x46, 0x3a, 0xdd])),          # 3.1.5 example 5
    # 3.1.5 example 8: hex column says 0x73 but binary 01111111 (0x7f), as in 3.1.1 example 6.
    ("optional", D(-3, -8193), bytes([0xfd, 0x7f, 0x3f, 0xff])),
])
def test_decimal_examples(presence, value, field_bytes):
    """FAST 1.x.1 appendix 3.1.5 (decimal examples): nullable exponent, non-nullable
    mantissa (section 10.6.2); the layout (exponent, mantissa) is kept as sent."""
    check_stream(f'<decimal id="1" presence="{presence}" name="Value"/>', "Value", [(value, FIRST + field_bytes)])


def test_decimal_single_operator_uses_one_bit():
    """FAST 1.x.1 appendix 3.1.5 example 6: optional decimal with ``<copy/>``: one
    pmap bit, then 0xfe 0x39 0x45 0xa3."""
    check_stream('<decimal id="1" presence="optional" name="Value"><copy/></decimal>', "Value",
                 [(D(-2, 942755), FIRST_BIT + bytes([0xfe, 0x39, 0x45, 0xa3]))])


def test_decimal_individual_operators():
    """FAST 1.x.1 appendix 3.1.5 example 7: exponent ``<copy/>`` takes a bit, mantissa
    ``<delta/>`` takes none; 9427.55 is 0xfe then 0x39 0x45 0xa3 (delta from base 0)."""
    check_stream('<decimal id="1" presence="optional" name="Value"><exponent><copy/></exponent>'
                 '<mantissa><delta/></mantissa></decimal>', "Value",
                 [(D(-2, 942755), FIRST_BIT + bytes([0xfe, 0x39, 0x45, 0xa3]))])


# --------------------------------------------------------------------------- #
# Appendix 3.2 field operators
# --------------------------------------------------------------------------- #


def test_constant_mandatory_sends_nothing():
    """FAST 1.x.1 appendix 3.2.1 example 1: mandatory constant 0: no bit, no bytes;
    99 or no value cannot be encoded ("Error")."""
    xml = '<uInt32 id="1" presence="mandatory" name="Flag"><constant value="0"/></uInt32>'
    check_stream(xml, "Flag", [(0, FIRST), (0, NEXT)])
    ts = one_field(xml)
    with pytest.raises(FastError):
        Encoder(ts).encode("T", {"Flag": 99})
    with pytest.raises(FastError):
        Encoder(ts).encode("T", {})


def test_constant_optional_uses_one_bit():
    """FAST 1.x.1 appendix 3.2.1 example 2: optional constant: bit 1 for the value, 0 for absent."""
    check_stream('<uInt32 id="1" presence="optional" name="Flag"><constant value="0"/></uInt32>', "Flag",
                 [(0, FIRST_BIT), (None, NEXT), (0, NEXT_BIT)])


def test_default_operator():
    """FAST 1.x.1 appendix 3.2.2: mandatory default 0: 0 leaves the bit clear, 1 is
    sent as 0x81; optional default without value: absent leaves the bit clear."""
    check_stream('<uInt32 id="1" presence="mandatory" name="Flag"><default value="0"/></uInt32>', "Flag",
                 [(0, FIRST), (1, NEXT_BIT + b"\x81")])
    check_stream('<uInt32 id="1" presence="optional" name="Flag"><default/></uInt32>', "Flag",
                 [(None, FIRST)])


def test_copy_operator_mandatory_string():
    """FAST 1.x.1 appendix 3.2.3 example 1: CME (sent), CME (copied), ISE (sent)."""
    check_stream('<string id="1" presence="mandatory" name="Flag"><copy/></string>', "Flag", [
        ("CME", FIRST_BIT + bytes([0x43, 0x4d, 0xc5])),
        ("CME", NEXT),
        ("ISE", NEXT_BIT + bytes([0x49, 0x53, 0xc5])),
    ])


def test_copy_operator_optional_string_null():
    """FAST 1.x.1 appendix 3.2.3 example 2: absent with no prior value is sent as
    NULL (0x80, bit set); absent after NULL is copied (bit clear); CME is sent."""
    check_stream('<string id="1" presence="optional" name="Flag"><copy/></string>', "Flag", [
        (None, FIRST_BIT + b"\x80"),
        (None, NEXT),
        ("CME", NEXT_BIT + bytes([0x43, 0x4d, 0xc5])),
    ])


def test_increment_operator():
    """FAST 1.x.1 appendix 3.2.4: increment with initial value 1: 1 and 2 implied,
    4 sent as 0x84, 5 implied."""
    check_stream('<uInt32 id="1" presence="mandatory" name="Flag"><increment value="1"/></uInt32>', "Flag", [
        (1, FIRST), (2, NEXT), (4, NEXT_BIT + b"\x84"), (5, NEXT)])


def test_delta_signed_integer():
    """FAST 1.x.1 appendix 3.2.5 example 1: 942755 (base 0), -5, -5, 0."""
    check_stream('<int32 id="1" presence="mandatory" name="Price"><delta/></int32>', "Price", [
        (942755, FIRST + bytes([0x39, 0x45, 0xa3])),
        (942750, NEXT + b"\xfb"),
        (942745, NEXT + b"\xfb"),
        (942745, NEXT + b"\x80"),
    ])


def test_delta_decimal():
    """FAST 1.x.1 appendix 3.2.5 example 2: 9427.55 (0xfe 0x39 0x45 0xa3 from base
    0e0), 9427.51 (0x80 0xfc), 9427.46 (0x80 0xfb)."""
    check_stream('<decimal id="1" presence="mandatory" name="Price"><delta/></decimal>', "Price", [
        (D(-2, 942755), FIRST + bytes([0xfe, 0x39, 0x45, 0xa3])),
        (D(-2, 942751), NEXT + bytes([0x80, 0xfc])),
        (D(-2, 942746), NEXT + bytes([0x80, 0xfb])),
    ])


def test_delta_decimal_with_initial_value():
    """FAST 1.x.1 appendix 3.2.5 example 3: initial value 12000 is normalised to
    12e3 (section 6.3.2); 12100 is sent as exponent -2, mantissa 1198 (0xfe 0x09
    0xae) giving 1210e1; 12150 and 12200 as 0x80 0x85. The table's first row (12000,
    "N/A") is not a stream row: a mandatory delta always sends a delta (here 0x80 0x80)."""
    ts = one_field('<decimal id="1" presence="mandatory" name="Price"><delta value="12000"/></decimal>')
    assert ts["T"].instructions[0].op.value == D(3, 12)
    check_stream('<decimal id="1" presence="mandatory" name="Price"><delta value="12000"/></decimal>', "Price", [
        (D(1, 1210), FIRST + bytes([0xfe, 0x09, 0xae])),
        (D(1, 1215), NEXT + bytes([0x80, 0x85])),
        (D(1, 1220), NEXT + bytes([0x80, 0x85])),
    ])
    assert D(1, 1210).to_decimal() == 12100


def test_delta_string():
    """FAST 1.x.1 appendix 3.2.5 example 4: GEH6 (length 0), GEM6 (remove 2 from the
    back, 0x82, "M6"), ESM6 (remove 2 from the front: -2 sent excess-1 as -3, 0xfd,
    "ES"), RSESM6 ("-0", 0xff, prepend "RS") - section 6.3.7.3."""
    check_stream('<string id="1" presence="mandatory" name="Security"><delta/></string>', "Security", [
        ("GEH6", FIRST + bytes([0x80, 0x47, 0x45, 0x48, 0xb6])),
        ("GEM6", NEXT + bytes([0x82, 0x4d, 0xb6])),
        ("ESM6", NEXT + bytes([0xfd, 0x45, 0xd3])),
        ("RSESM6", NEXT + bytes([0xff, 0x52, 0xd3])),
    ])


def test_extended_example_individual_copy_operators():
    """FAST 1.x.1 appendix 3.2.6: optional decimal, exponent and mantissa each
    ``<copy/>``: 9427.55 (bits 11, 0xfe, mantissa), 9427.60 (bits 01, mantissa
    0x39 0x45 0xa8), absent (bit 1, NULL exponent 0x80, no mantissa bit).

    The table's first mantissa, 0x39 0x45 0xa4, is the nullable form, but section
    10.5.1 makes the mantissa mandatory and the second row (0xa8 = 942760, not
    nullable) agrees; the test uses 0xa3 for 942755."""
    xml = ('<decimal id="1" presence="optional" name="Value"><exponent><copy/></exponent>'
           '<mantissa><copy/></mantissa></decimal>')
    check_stream(xml, "Value", [
        (D(-2, 942755), b"\xf0\x81" + bytes([0xfe, 0x39, 0x45, 0xa3])),
        (D(-2, 942760), b"\x90" + bytes([0x39, 0x45, 0xa8])),
        (None, b"\xa0" + b"\x80"),
    ])


# --------------------------------------------------------------------------- #
# Errors the specification names
# --------------------------------------------------------------------------- #


def test_unknown_template_identifier_is_d9():
    """FAST 1.x.1 section 10.3: no template for the identifier is ERR D9."""
    ts = one_field('<uInt32 name="V"/>')
    with pytest.raises(FastError) as e:
        Decoder(ts).decode(b"\xc0\x85\x81")
    assert e.value.code == "D9" and e.value.offset == 1 and "5" in str(e.value)


def test_overlong_integer_is_r6():
    """FAST 1.x.1 section 10.6.1: an integer still the same after dropping 7 leading
    bits is overlong (R6); also for the template identifier (section 10.3)."""
    ts = one_field('<uInt32 name="V"/><int32 name="S"/>')
    with pytest.raises(FastError) as e:
        Decoder(ts).decode(b"\xc0\x81\x00\x81\x81")
    assert e.value.code == "R6" and e.value.offset == 2 and e.value.field.endswith("uInt32[V]")
    with pytest.raises(FastError) as e:
        Decoder(ts).decode(b"\xc0\x81\x81\x7f\xff")     # -1 with a redundant sign byte
    assert e.value.code == "R6" and e.value.offset == 3
    with pytest.raises(FastError) as e:
        Decoder(ts).decode(b"\xc0\x00\x81\x81\x81")
    assert e.value.code == "R6" and e.value.offset == 1


def test_integer_out_of_type_bounds_is_d2():
    """FAST 1.x.1 section 6.2.1: an integer outside its type is ERR D2 (2**32 as uInt32)."""
    ts = one_field('<uInt32 name="V"/>')
    with pytest.raises(FastError) as e:
        Decoder(ts).decode(b"\xc0\x81\x10\x00\x00\x00\x80")
    assert e.value.code == "D2"


def test_overlong_presence_map_is_r7_and_extra_bits_r8():
    """FAST 1.x.1 section 10.5: a presence map ending in seven zero bits is
    overlong (R7); set bits the instructions do not use are R8."""
    ts = one_field('<uInt32 name="V"/>')
    with pytest.raises(FastError) as e:
        Decoder(ts).decode(b"\x40\x80\x81\x81")
    assert e.value.code == "R7" and e.value.offset == 0
    with pytest.raises(FastError) as e:
        Decoder(ts).decode(b"\xe0\x81\x81")
    assert e.value.code == "R8"


def test_copy_mandatory_undefined_without_initial_is_d5_and_empty_is_d6():
    """FAST 1.x.1 section 6.3.5 / appendix 4: bit clear, previous undefined, no initial
    value: D5; previous empty (set by an optional field sharing the key): D6."""
    ts = one_field('<uInt32 name="V"><copy/></uInt32>')
    with pytest.raises(FastError) as e:
        Decoder(ts).decode(b"\xc0\x81")
    assert e.value.code == "D5" and "V" in str(e.value)
    ts = parse_templates('<templates><template name="A" id="1"><uInt32 name="X" presence="optional">'
                         '<copy key="k"/></uInt32></template><template name="B" id="2">'
                         '<uInt32 name="Y"><copy key="k"/></uInt32></template></templates>')
    d = Decoder(ts)
    d.decode(b"\xe0\x81\x80")                    # X = NULL: entry k becomes empty
    with pytest.raises(FastError) as e:
        d.decode(b"\xc0\x82")
    assert e.value.code == "D6"


def test_string_delta_subtraction_too_long_is_d7():
    """FAST 1.x.1 section 6.3.7.3: subtraction length larger than the base is ERR D7."""
    ts = one_field('<string name="S"><delta/></string>')
    with pytest.raises(FastError) as e:
        Decoder(ts).decode(b"\xc0\x81\x83\xc1")   # remove 3 from the empty string
    assert e.value.code == "D7" and e.value.offset == 2


def test_dictionary_type_mismatch_is_d4():
    """FAST 1.x.1 section 6.3.1: an entry read by a field of another type is ERR D4."""
    ts = parse_templates('<templates><template name="A" id="1"><uInt32 name="X"><copy key="k"/></uInt32>'
                         '<string name="Y"><copy key="k"/></string></template></templates>')
    with pytest.raises(FastError) as e:
        Decoder(ts).decode(b"\xf0\x81\x81\xc1")
    assert e.value.code == "D4"


@pytest.mark.parametrize("xml,code", [
    ('<uInt32 name="V"><tail/></uInt32>', "S2"),
    ('<decimal name="V"><increment/></decimal>', "S2"),
    ('<uInt32 name="V"><copy value="x"/></uInt32>', "S3"),
    ('<uInt32 name="V"><constant/></uInt32>', "S4"),
    ('<uInt32 name="V"><default/></uInt32>', "S5"),
    ('<templateRef name="Nope"/>', "D8"),
    ('<uInt32 name="V"', "S1"),
])
def test_static_errors(xml, code):
    """FAST 1.x.1 section 6.3 and appendix 4: static errors S1-S5 and D8 for a
    static reference to an unknown template."""
    with pytest.raises(FastTemplateError) as e:
        one_field(xml)
    assert e.value.code == code


def test_truncated_message_names_field_and_offset():
    """A message cut short is an error naming the field, not an IndexError."""
    ts = one_field('<uInt32 name="V"/><string name="S"/>')
    with pytest.raises(FastError) as e:
        Decoder(ts).decode(b"\xc0\x81\x81\x41")
    assert e.value.reason == "truncated" and e.value.field.endswith("string[S]") and e.value.template == "T"
