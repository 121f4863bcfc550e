"""FAST 1.1 errors: one exception type carrying the specification's error code.

The FAST Specification 1.x.1 (appendix 4, "Summary of Error Codes") names
static errors (``S1``-``S5``, found in a template definition), dynamic errors
(``D1``-``D12``, which a decoder must signal) and reportable errors
(``R1``-``R9``, which this codec signals too, so an overlong or out-of-range
field is refused rather than silently accepted). Every error says the code,
the template and field (dotted path) at fault and the byte offset in the
buffer being decoded (or the element path in the XML for static errors).
"""

from __future__ import annotations

from protocols.errors import WireError

CODES = {
    "S1": "template XML not well-formed or not valid against the schema",
    "S2": "operator not applicable to the field type",
    "S3": "initial value cannot be converted to the field type",
    "S4": "constant operator without an initial value",
    "S5": "default operator on a mandatory field without an initial value",
    "D2": "integer outside the bounds of its type",
    "D3": "decimal cannot be encoded with the individual operators",
    "D4": "previous value has another type than the field",
    "D5": "mandatory field absent, previous value undefined, no initial value",
    "D6": "mandatory field absent with an empty previous value",
    "D7": "subtraction length exceeds the base value or an int32",
    "D8": "static template reference names no known template",
    "D9": "no template for the template identifier",
    "D12": "block size is zero",
    "R1": "decimal exponent outside [-63, 63] or mantissa outside int64",
    "R2": "unicode string is not valid UTF-8 after delta or tail",
    "R3": "non-ASCII character in an ASCII string",
    "R4": "combined integer value outside its type",
    "R6": "overlong integer",
    "R7": "overlong presence map",
    "R8": "presence map has more bits than the instructions use",
    "R9": "overlong string",
}
"""The specification's error codes used here, with a one-line meaning."""


class FastError(WireError):
    """A FAST stream or value that cannot be decoded or encoded.

    ``code`` is the specification's error code (``"D9"``, ``"R6"``...) or
    ``None`` for faults the specification does not number (a buffer cut
    short, a value of the wrong Python type); ``reason`` is a short token;
    ``template`` and ``field`` name where it happened; ``offset`` is the byte
    offset in the buffer (decoding) or in the encoded output (encoding).
    """

    def __init__(self, reason: str, offset: int, detail: str = "", *, code: str | None = None,
                 template: str | None = None, field: str | None = None) -> None:
        self.code = code
        self.template = template
        self.field = field
        where = []
        if template is not None:
            where.append(f"template {template}")
        if field is not None:
            where.append(f"field {field}")
        text = (f"[ERR {code}] " if code else "") + (f"{detail} " if detail else "")
        text += f"({', '.join(where)})" if where else ""
        super().__init__(reason, offset, text.strip())


class FastTemplateError(ValueError):
    """A template definition that cannot be used (a static error ``S1``-``S5``,
    or ``D8`` for a static reference to an unknown template); ``where`` is the
    element path in the XML (``template[Quote]/sequence[Entries]/decimal[Px]``)."""

    def __init__(self, code: str, where: str, detail: str) -> None:
        self.code = code
        self.where = where
        self.detail = detail
        super().__init__(f"[ERR {code}] {where}: {detail}")
