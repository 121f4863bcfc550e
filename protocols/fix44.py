"""The FIX 4.4 data dictionary as data: fields, enums, messages and repeating groups.

:func:`load` reads QuickFIX's dictionary format (``protocols/spec/FIX44.xml``,
the repository's copy, so the codec works without QuickFIX installed) and
flattens components into each message and group, so the codec
(``protocols/fix.py``) and the session layer (``host/fix/``) look up a message's
allowed and required tags and its groups' shapes in one step.
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

SPEC = Path(__file__).with_name("spec") / "FIX44.xml"

INT_TYPES = frozenset({"INT", "SEQNUM", "LENGTH", "NUMINGROUP", "DAYOFMONTH"})
DECIMAL_TYPES = frozenset({"PRICE", "QTY", "AMT", "FLOAT", "PRICEOFFSET", "PERCENTAGE"})


@dataclass(frozen=True)
class FieldDef:
    """One field: tag number, name, FIX type and its enumerated values (value -> description)."""

    tag: int
    name: str
    type: str
    enums: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class GroupDef:
    """A repeating group: its NumInGroup tag, the delimiter (first) tag of every entry,
    every tag allowed at the entry's own level (flattened components and nested
    groups' NumInGroup tags; the nested entries' tags excluded), the
    entry's required tags, and its nested groups by NumInGroup tag."""

    count_tag: int
    name: str
    delimiter: int
    tags: frozenset[int]
    required: frozenset[int]
    groups: dict[int, "GroupDef"]
    order: tuple[int, ...]

    def all_tags(self) -> frozenset[int]:
        """Every tag that may appear inside an entry, nested groups included."""
        out = set(self.tags)
        for g in self.groups.values():
            out |= g.all_tags()
        return frozenset(out)


@dataclass(frozen=True)
class MessageDef:
    """A message type: MsgType, name, category (admin/app), its allowed and required
    top-level body tags and its repeating groups by NumInGroup tag."""

    msg_type: str
    name: str
    category: str
    tags: frozenset[int]
    required: frozenset[int]
    groups: dict[int, GroupDef]


@dataclass(frozen=True)
class Dictionary:
    """A whole data dictionary: fields by tag and by name, messages by MsgType and name,
    header/trailer tags, and pairs of LENGTH tag -> DATA tag (raw data may hold SOH)."""

    begin_string: str
    fields: dict[int, FieldDef]
    names: dict[str, int]
    messages: dict[str, MessageDef]
    message_names: dict[str, str]
    header: MessageDef
    trailer: MessageDef
    data_lengths: dict[int, int]

    def tag(self, name_or_tag: str | int) -> int:
        """The tag number for a field name (or a tag, returned as is); KeyError names unknown fields."""
        if isinstance(name_or_tag, int):
            return name_or_tag
        try:
            return self.names[name_or_tag]
        except KeyError:
            raise KeyError(f"{self.begin_string} has no field named {name_or_tag!r}") from None

    def msg_type(self, name_or_type: str) -> str:
        """The MsgType for a message name (``NewOrderSingle``) or a MsgType (``D``)."""
        if name_or_type in self.messages:
            return name_or_type
        try:
            return self.message_names[name_or_type]
        except KeyError:
            raise KeyError(f"{self.begin_string} has no message {name_or_type!r}") from None


def _expand(node, components, fields_by_name):
    """Flatten one <message>/<group>/<component> body: (tags in order, required tags, groups)."""
    order, required, groups = [], set(), {}
    for child in node:
        name, req = child.get("name"), child.get("required") == "Y"
        if child.tag == "field":
            tag = fields_by_name[name]
            order.append(tag)
            if req:
                required.add(tag)
        elif child.tag == "component":
            sub_order, sub_req, sub_groups = _expand(components[name], components, fields_by_name)
            order += sub_order
            groups.update(sub_groups)
            if req:
                required |= sub_req
        elif child.tag == "group":
            count = fields_by_name[name]
            g_order, g_req, g_groups = _expand(child, components, fields_by_name)
            order.append(count)
            if req:
                required.add(count)
            nested = set().union(*(g.all_tags() for g in g_groups.values())) if g_groups else set()
            groups[count] = GroupDef(count, name, g_order[0], frozenset(t for t in g_order if t not in nested),
                                     frozenset(g_req), g_groups, tuple(g_order))
    return order, required, groups


def _message_def(node, components, fields_by_name, msg_type="", name="", category="") -> MessageDef:
    order, required, groups = _expand(node, components, fields_by_name)
    nested = set()
    for g in groups.values():
        nested |= g.all_tags()
    return MessageDef(msg_type, name, category, frozenset(t for t in order if t not in nested),
                      frozenset(required), groups)


@functools.lru_cache(maxsize=4)
def load(path: str | Path = SPEC) -> Dictionary:
    """Read a QuickFIX-format data dictionary (cached per path)."""
    root = ET.parse(path).getroot()
    begin = f"{root.get('type')}.{root.get('major')}.{root.get('minor')}"
    fields: dict[int, FieldDef] = {}
    for f in root.find("fields"):
        enums = {v.get("enum"): v.get("description") for v in f.findall("value")}
        fd = FieldDef(int(f.get("number")), f.get("name"), f.get("type"), enums)
        fields[fd.tag] = fd
    names = {f.name: t for t, f in fields.items()}
    components = {c.get("name"): c for c in (root.find("components") or [])}
    messages = {}
    for m in root.find("messages"):
        md = _message_def(m, components, names, m.get("msgtype"), m.get("name"), m.get("msgcat"))
        messages[md.msg_type] = md
    header = _message_def(root.find("header"), components, names, name="Header")
    trailer = _message_def(root.find("trailer"), components, names, name="Trailer")
    data_lengths = {}
    for t, f in fields.items():
        if f.type == "DATA":
            for suffix in ("Length", "Len"):
                lt = names.get(f.name + suffix)
                if lt is not None and fields[lt].type == "LENGTH":
                    data_lengths[lt] = t
                    break
    return Dictionary(begin, fields, names, messages, {m.name: t for t, m in messages.items()}, header, trailer,
                      data_lengths)


def dictionary() -> Dictionary:
    """The repository's FIX 4.4 dictionary."""
    return load(SPEC)
