"""The ITCH decoder through the simulated NIC on 100,000 generated messages, against the software NIC."""

import pytest

from host.softnic import SoftwareNic
from protocols import itch
from protocols import moldudp64 as mold
from protocols.events import ItchEvent
from sim import moldfeed
from sim.itchfeed import generate_itch

TRACKED = range(1, 21)


def configure(nic):
    nic.write("events.control", 2)
    nic.write("itch.control", 1)
    for locate in TRACKED:
        nic.write("itch.track", (1 << 16) | locate)


def records(nic, frames):
    configure(nic)
    nic.deliver(frames)
    return [(e.seq, e.record) for e in nic.poll() if isinstance(e, ItchEvent)], nic.counters("itch", "mold")


@pytest.mark.sim
def test_100k_messages_with_random_gaps_and_backpressure_match_the_codec():
    from sim.gatewarenic import GatewareNic

    messages = generate_itch(100_000, 24, seed=77)
    packets = mold.packetise(messages, session=moldfeed.SESSION, max_payload=1400)
    frames = [moldfeed._frame(mold.encode_packet(p)) for p in packets]
    want, want_counters = records(SoftwareNic(), frames)
    with GatewareNic() as hw:
        hw.sim.stress(seed=2026, gap=0.25, stall=0.25)
        got, counters = records(hw, frames)
    assert len(got) == len(want) > 80_000
    assert got == want
    assert counters == want_counters
    # Every record equals the codec's decoding of its message, field by field.
    by_seq = dict(enumerate(messages, start=1))
    for seq, record in got:
        decoded = itch.decode(by_seq[seq])
        assert record["type"] == ord(decoded.code)
        for i, name in enumerate(itch.DECODED_FIELDS):
            if hasattr(decoded, name):
                value = getattr(decoded, name)
                assert record[name] == (int.from_bytes(value, "big") if isinstance(value, bytes) else value)
                assert record["carries"] >> i & 1
            else:
                assert record[name] == 0 and not record["carries"] >> i & 1
