"""FAST 1.1 (FIX Adapted for STreaming, specification version 1.x.1).

:mod:`~protocols.fast.templates` parses the template XML into a
:class:`TemplateSet` (the one description shared by the codec and the gateware
generator); :mod:`~protocols.fast.codec` decodes and encodes messages with it;
:mod:`~protocols.fast.errors` holds :class:`FastError` with the
specification's error codes.
"""

from protocols.fast.codec import Decoder, Dictionaries, Encoder, Message
from protocols.fast.errors import FastError, FastTemplateError
from protocols.fast.templates import (
    Field,
    Group,
    Operator,
    ScaledNumber,
    Sequence,
    Template,
    TemplateRef,
    TemplateSet,
    parse_templates,
)

__all__ = [
    "Decoder", "Dictionaries", "Encoder", "FastError", "FastTemplateError", "Field", "Group", "Message",
    "Operator", "ScaledNumber", "Sequence", "Template", "TemplateRef", "TemplateSet", "parse_templates",
]
