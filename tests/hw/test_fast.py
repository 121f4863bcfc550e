"""Tests of the FAST decoder generator (hw/fast.py): what the template compiler makes of the options
templates, and the constructs it refuses at build time with a message that names them."""

from __future__ import annotations

import pytest

from hw.fast import FastBuildError, FastDecoder, compile_templates
from protocols.fast import parse_templates
from sim import fastfeed

NS = 'xmlns="http://www.fixprotocol.org/ns/fast/td/1.1"'


def tpl(body: str) -> str:
    return f'<templates {NS}><template name="T" id="7">{body}</template></templates>'


def test_options_templates_compile_to_one_block_per_entry():
    ts = parse_templates(fastfeed.TEMPLATES_PATH)
    prog = {ct.name.rsplit("}", 1)[-1]: ct for ct in compile_templates(ts, ("SecurityDefinition",))}
    inc = prog["MDIncRefresh"]
    assert len(inc.element) == 1 and inc.element[0].pmap            # an entry is one cycle
    names = [op.name for op in inc.element[0].ops]
    assert names == ["MDUpdateAction", "MDEntryType", "SecurityID", "RptSeq", "MDPriceLevel",
                     "MDEntryPx/exponent", "MDEntryPx/mantissa", "MDEntrySize"]
    # presence map bits as the codec allocates them (templates.py): delta fields take none
    assert [op.bit for op in inc.element[0].ops] == [0, 1, 2, 3, 4, 5, None, None]
    assert inc.before[-1].length.name == "NoMDEntries"
    assert prog["SecurityDefinition"].host and not prog["Heartbeat"].host
    # SendingTime is a global-dictionary delta: one entry shared by every template
    keys = {op.key for ct in prog.values() for b in ct.before for op in b.ops if op.name == "SendingTime"}
    assert keys == {("global", "{calarb:options}SendingTime")}


@pytest.mark.parametrize("body, construct", [
    ('<byteVector name="B"/>', "byteVector"),
    ('<string name="U" charset="unicode"/>', "unicode"),
    ('<string name="S"><delta/></string>', "delta operator on a ascii"),
    ('<string name="S"><tail/></string>', "tail operator"),
    ('<group name="G"><uInt32 name="A"/></group>', "group G"),
    ('<sequence name="Q"><length name="N"/><sequence name="R"><length name="M"/>'
     '<uInt32 name="A"><copy/></uInt32></sequence></sequence>', "nested sequence R"),
    ('<sequence name="Q"><uInt32 name="A"><copy/></uInt32></sequence>'
     '<sequence name="P"><uInt32 name="B"><copy/></uInt32></sequence>', "2 sequences"),
    ('<templateRef/>', "dynamic template reference"),
])
def test_unsupported_constructs_are_refused_by_name(body, construct):
    ts = parse_templates(tpl(body))
    with pytest.raises(FastBuildError, match=construct) as e:
        FastDecoder(ts, host=())
    assert "template T" in str(e.value)


def test_security_definitions_need_the_host():
    ts = parse_templates(fastfeed.TEMPLATES_PATH)
    with pytest.raises(FastBuildError, match="SecurityDefinition.*(delta|unicode)"):
        compile_templates(ts, host=())


def test_a_sequence_with_no_element_presence_map_is_refused():
    ts = parse_templates(tpl('<sequence name="Q"><uInt32 name="A"/></sequence>'))
    with pytest.raises(FastBuildError, match="presence map"):
        compile_templates(ts)
