"""The Colorlight 5A-75B bitstream builds and meets timing (``hw/bitstream.py``).

The build is cached on a hash of ``hw/`` and ``protocols/``: an unchanged
tree reuses ``build/bitstream/colorlight-5a75b/``; a changed one rebuilds
with YoWASP Yosys and nextpnr (several minutes, see the README).
"""

import os

import pytest

from hw import bitstream

# Off until the core fits the LFE5U-25F (today: 103 % of its LUTs with 4 book slots); then drop the skip.
ENABLED = os.environ.get("CALARB_BITSTREAM") == "1"


@pytest.mark.slow
@pytest.mark.skipif(not ENABLED, reason="set CALARB_BITSTREAM=1: the core does not fit the LFE5U-25F yet")
def test_colorlight_bitstream_builds_and_meets_timing():
    report = bitstream.build("colorlight-5a75b", log=lambda *a: None)
    print(bitstream.format_report(report))
    timing = report["timing"]
    # Every clock of the board is timed: the core, the two 125 MHz transmit clocks, both RXCs.
    assert len(timing) >= 4, timing
    for clock, t in timing.items():
        assert t["achieved"] >= t["constraint"], f"{clock}: {t['achieved']:.1f} MHz < {t['constraint']:.1f} MHz"
    assert report["met"]
    util = report["utilisation"]
    assert 0 < util["TRELLIS_COMB"]["used"] <= util["TRELLIS_COMB"]["available"]


def test_tree_hash_changes_with_the_board():
    assert bitstream.tree_hash("colorlight-5a75b") != bitstream.tree_hash("butterstick")
