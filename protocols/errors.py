"""The error type every wire-format codec in ``protocols/`` raises: a reason and a byte offset."""

from __future__ import annotations


class WireError(ValueError):
    """Bytes that cannot be encoded or decoded; ``reason`` names the fault and ``offset``
    is its byte offset in the unit being parsed (frame, payload, file)."""

    def __init__(self, reason: str, offset: int, detail: str = "") -> None:
        self.reason = reason
        self.offset = offset
        self.detail = detail
        msg = f"{reason} at offset {offset}"
        super().__init__(f"{msg}: {detail}" if detail else msg)
