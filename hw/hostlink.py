"""The gateware end of the host link (``docs/hostlink.md``, ``protocols/hostlink.py``).

It sits on the board's host port, in the core's ``sync`` domain, between that
port's MAC and the core:

* Requests come in as Ethernet/IPv4/UDP frames to the board's address and
  link port. READ and WRITE are executed on the core's register bus or the
  board's (address bit 15) once the whole frame has arrived and was not
  aborted; the answer goes back to the request's source, which becomes the
  peer that pushes go to. A WRITE repeating the last executed one (same
  ``seq``) is acknowledged without being executed again. SEND frames are
  forwarded cut-through to the market port; one the MAC aborts ends with
  ``abort``, so the market MAC cuts it with TX_ER.
* Event packets (and order-entry messages) are pushed as EVENT (ORDER)
  datagrams numbered by ``seq``. The IPv4 and UDP lengths come first on the
  wire, so a push is stored whole (up to 1024 bytes) before its frame starts.

The link header is six bytes, so a datagram's body starts at byte 48, on a
beat boundary, and no byte is ever shifted between lanes. The board's MAC
and IPv4 address are build parameters; the UDP checksum is not sent (0) nor
checked; the IPv4 header checksum is checked and generated.
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hw.csr import BusSignature, block_signature
from hw.stream import Beat
from protocols import hostlink as link
from protocols.net import mac_to_bytes

BODY_BEATS = link.MAX_BODY // 8
BodyWord = data.StructLayout({"data": 64, "n": 4})
PushMeta = data.StructLayout({"order": 1, "drop": 1, "aborted": 1, "length": 11, "beats": 8})


def _bytes_of(value, nbytes):
    """The bytes of ``value``, most significant first (network order)."""
    return [value[8 * (nbytes - 1 - k):8 * (nbytes - k)] for k in range(nbytes)]


def _be16(d, lane):
    return Cat(d[8 * lane + 8:8 * lane + 16], d[8 * lane:8 * lane + 8])


class HostLink(wiring.Component):
    """Host link endpoint.

    Parameters
    ----------
    mac : str or bytes
        The board's Ethernet address on the host port.
    ip : int
        The board's IPv4 address.
    port : int
        The link's UDP port.

    Attributes
    ----------
    rx, tx : streams of Beat
        Frames from and to the host port's MAC (``rx`` may end with ``abort``).
    events, orders : streams of Beat
        Event packets and order-entry messages to push to the host.
    market : stream of Beat
        Frames of SEND requests, for the market port (the core's ``host_tx``).
    core_bus, board_bus : register buses this link drives
    csr : registers of the ``hostlink`` block
    """

    rx: In(stream.Signature(Beat))
    tx: Out(stream.Signature(Beat))
    events: In(stream.Signature(Beat))
    orders: In(stream.Signature(Beat))
    market: Out(stream.Signature(Beat))
    core_bus: Out(BusSignature())
    board_bus: Out(BusSignature())
    csr: In(block_signature(link.HOSTLINK))

    def __init__(self, *, mac, ip: int, port: int = link.PORT):
        self.mac = mac_to_bytes(mac) if isinstance(mac, str) else bytes(mac)
        self.ip, self.port = ip, port
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        csr = self.csr

        # ---- peer and the response waiting for the transmitter ----
        peer_mac, peer_ip, peer_port, have_peer = Signal(48), Signal(32), Signal(16), Signal()
        m.d.comb += [csr.peer_ip.eq(peer_ip), csr.peer_port.eq(peer_port)]
        resp_pending = Signal()
        resp_kind, resp_seq, resp_addr, resp_value = Signal(8), Signal(32), Signal(16), Signal(64)

        self._receive(m, peer_mac, peer_ip, peer_port, have_peer, resp_pending,
                      resp_kind, resp_seq, resp_addr, resp_value)
        body, meta = self._ingest(m, have_peer)
        self._transmit(m, body, meta, peer_mac, peer_ip, peer_port, resp_pending,
                       resp_kind, resp_seq, resp_addr, resp_value)
        return m

    # ------------------------------------------------------------------ receive
    def _receive(self, m, peer_mac, peer_ip, peer_port, have_peer, resp_pending,
                 resp_kind, resp_seq, resp_addr, resp_value):
        csr, beat = self.csr, self.rx.payload
        d = beat.data
        idx = Signal(range(8))
        frame_bytes = Signal(16)
        src_mac, src_ip, src_port = Signal(48), Signal(32), Signal(16)
        ethertype, ver_ihl, total_len, frag, proto = Signal(16), Signal(8), Signal(16), Signal(16), Signal(8)
        dst_ip, dst_port, udp_len = Signal(32), Signal(16), Signal(16)
        csum = Signal(20)
        kind, seq = Signal(8), Signal(32)
        addr, value = Signal(16), Signal(64)
        remaining = Signal(16)                 # SEND bytes still to forward
        last_write_seq, have_write = Signal(32), Signal()

        def fold(v):
            s1 = v[:16] + v[16:]
            return (s1[:16] + s1[16:])[:16]

        def words(lanes):
            return sum(_be16(d, 2 * w) for w in lanes)

        accept = self.rx.valid & self.rx.ready
        frame_end = frame_bytes + beat.n
        complete = frame_end >= total_len + 14      # the frame holds the whole IPv4 datagram

        def finish(ok, request=True):
            """At the frame's last beat: count it, learn the peer."""
            with m.If(ok):
                m.d.comb += csr.requests.eq(request)
                m.d.sync += [peer_mac.eq(src_mac), peer_ip.eq(src_ip), peer_port.eq(src_port),
                             have_peer.eq(1)]
            with m.Else():
                m.d.comb += csr.ignored.eq(1)

        with m.FSM(name="rx_fsm"):
            with m.State("Header"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(accept):
                    m.d.sync += idx.eq(idx + 1)
                    with m.Switch(idx):
                        with m.Case(0):
                            m.d.sync += src_mac[32:].eq(Cat(d[56:64], d[48:56]))
                        with m.Case(1):
                            m.d.sync += [src_mac[:32].eq(Cat(d[24:32], d[16:24], d[8:16], d[0:8])),
                                         ethertype.eq(_be16(d, 4)), ver_ihl.eq(d[48:56]),
                                         csum.eq(_be16(d, 6))]
                        with m.Case(2):
                            m.d.sync += [total_len.eq(_be16(d, 0)), frag.eq(_be16(d, 4)), proto.eq(d[56:64]),
                                         csum.eq(csum + words([0, 1, 2, 3]))]
                        with m.Case(3):
                            m.d.sync += [src_ip.eq(Cat(d[40:48], d[32:40], d[24:32], d[16:24])),
                                         dst_ip[16:].eq(_be16(d, 6)), csum.eq(csum + words([0, 1, 2, 3]))]
                        with m.Case(4):
                            m.d.sync += [dst_ip[:16].eq(_be16(d, 0)), src_port.eq(_be16(d, 2)),
                                         dst_port.eq(_be16(d, 4)), udp_len.eq(_be16(d, 6)),
                                         csum.eq(csum + words([0]))]
                        with m.Case(5):
                            m.d.sync += [kind.eq(d[16:24]), seq.eq(d[32:64])]
                            body_len = udp_len - (8 + link.HEADER_LEN)
                            k = d[16:24]
                            ok = ((ethertype == 0x0800) & (ver_ihl == 0x45) & (fold(csum) == 0xFFFF) &
                                  (frag[:14] == 0) & (proto == 17) & (dst_ip == self.ip) &
                                  (dst_port == self.port) & (d[28:32] == link.VERSION) &
                                  (udp_len >= 8 + link.HEADER_LEN) & (udp_len + 20 <= total_len) &
                                  (((k == link.Kind.READ) & (body_len == 8)) |
                                   ((k == link.Kind.WRITE) & (body_len == 16)) |
                                   ((k == link.Kind.SEND) & (body_len >= 14))))
                            m.d.sync += remaining.eq(body_len)
                            with m.If(beat.last):
                                finish(0)
                            with m.Elif(~ok):
                                m.next = "Skip"
                            with m.Elif(k == link.Kind.SEND):
                                m.next = "Forward"
                            with m.Else():
                                m.next = "Body"
                    with m.If(beat.last & (idx != 5)):
                        finish(0)
            with m.State("Skip"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(accept & beat.last):
                    finish(0)
                    m.next = "Header"
            with m.State("Body"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(accept):
                    m.d.sync += idx.eq(Mux(idx == 7, 7, idx + 1))
                    with m.If(idx == 6):
                        m.d.sync += addr.eq(d[:16])
                    with m.If(idx == 7):
                        m.d.sync += value.eq(d)
                    with m.If(beat.last):
                        with m.If(beat.abort | ~complete):
                            finish(0)
                            m.next = "Header"
                        with m.Else():
                            finish(1)
                            m.next = "Execute"
            with m.State("Forward"):
                o = self.market.payload
                m.d.comb += [self.market.valid.eq(self.rx.valid), self.rx.ready.eq(self.market.ready),
                             o.data.eq(d), o.n.eq(Mux(remaining < beat.n, remaining, beat.n)),
                             o.first.eq(idx == 6)]
                done = remaining <= 8
                truncated = beat.last & (remaining > beat.n)
                m.d.comb += [o.last.eq(done | beat.last), o.abort.eq(beat.last & (beat.abort | truncated))]
                with m.If(accept):
                    m.d.sync += [remaining.eq(remaining - 8), idx.eq(7)]
                    with m.If(beat.last):
                        finish(~(beat.abort | truncated))
                        m.d.comb += csr.sent.eq(~(beat.abort | truncated))
                        m.next = "Header"
                    with m.Elif(done):
                        m.next = "Drain"
            with m.State("Drain"):      # bytes after the frame to send (none in a well-formed request)
                m.d.comb += self.rx.ready.eq(1)
                with m.If(accept & beat.last):
                    finish(~beat.abort)
                    m.d.comb += csr.sent.eq(~beat.abort)
                    m.next = "Header"
            with m.State("Execute"):
                board = addr[15]
                for bus, sel in ((self.core_bus, ~board), (self.board_bus, board)):
                    m.d.comb += [bus.addr.eq(addr), bus.w_data.eq(value)]
                dup = have_write & (last_write_seq == seq)
                with m.If(~resp_pending):
                    m.d.sync += [resp_kind.eq(kind | 0x80), resp_seq.eq(seq), resp_addr.eq(addr),
                                 resp_value.eq(value)]
                    with m.If(kind == link.Kind.READ):
                        m.d.comb += [self.core_bus.r_stb.eq(~board), self.board_bus.r_stb.eq(board)]
                        m.next = "ReadWait"
                    with m.Else():
                        with m.If(dup):
                            m.d.comb += csr.duplicates.eq(1)
                        with m.Else():
                            m.d.comb += [self.core_bus.w_stb.eq(~board), self.board_bus.w_stb.eq(board)]
                            m.d.sync += [last_write_seq.eq(seq), have_write.eq(1)]
                        m.d.sync += resp_pending.eq(1)
                        m.next = "Header"
            with m.State("ReadWait"):
                m.d.sync += [resp_value.eq(Mux(addr[15], self.board_bus.r_data, self.core_bus.r_data)),
                             resp_pending.eq(1)]
                m.next = "Header"
        # After the FSM, so that a frame's last beat resets the beat index whatever the state did.
        with m.If(accept):
            m.d.sync += frame_bytes.eq(frame_end)
            with m.If(beat.last):
                m.d.sync += [frame_bytes.eq(0), idx.eq(0)]
        self._resp_done = Signal()
        with m.If(self._resp_done):
            m.d.sync += resp_pending.eq(0)

    # ------------------------------------------------------------------ pushes in
    def _ingest(self, m, have_peer):
        """Store each event / order packet whole; its metadata (length, drop) follows its last beat."""
        csr = self.csr
        m.submodules.body = body = SyncFIFOBuffered(width=BodyWord.size, depth=BODY_BEATS + 2)
        m.submodules.meta = meta = SyncFIFOBuffered(width=PushMeta.size, depth=16)
        busy, src_r, drop = Signal(), Signal(), Signal()
        length, beats = Signal(11), Signal(8)
        src = Mux(busy, src_r, ~self.events.valid & self.orders.valid)
        cur = Mux(src, self.orders.payload.as_value(), self.events.payload.as_value())
        cur = Beat(cur)
        cur_valid = Mux(src, self.orders.valid, self.events.valid)
        overflow = length + cur.n > link.MAX_BODY
        keep = ~drop & ~overflow & (cur.n != 0)
        accept = cur_valid & body.w_rdy & meta.w_rdy
        m.d.comb += [self.events.ready.eq(accept & ~src), self.orders.ready.eq(accept & src),
                     body.w_data.eq(Cat(cur.data, cur.n)), body.w_en.eq(accept & keep)]
        new_len, new_beats = Signal(11), Signal(8)
        m.d.comb += [new_len.eq(Mux(keep, length + cur.n, length)), new_beats.eq(Mux(keep, beats + 1, beats))]
        info = Signal(PushMeta)
        m.d.comb += [info.order.eq(src), info.drop.eq(drop | overflow | ~have_peer),
                     info.aborted.eq(cur.abort), info.length.eq(new_len), info.beats.eq(new_beats),
                     meta.w_data.eq(info.as_value())]
        with m.If(accept):
            m.d.sync += [length.eq(new_len), beats.eq(new_beats), drop.eq(drop | overflow), busy.eq(1),
                         src_r.eq(src)]
            with m.If(cur.last):
                m.d.comb += meta.w_en.eq(1)
                m.d.sync += [length.eq(0), beats.eq(0), drop.eq(0), busy.eq(0)]
        return body, meta

    # ------------------------------------------------------------------ transmit
    def _transmit(self, m, body, meta, peer_mac, peer_ip, peer_port, resp_pending,
                  resp_kind, resp_seq, resp_addr, resp_value):
        csr, o = self.csr, self.tx.payload
        info = PushMeta(meta.r_data)
        push_seq = Signal(32)
        is_resp = Signal()
        kind, flags, seq = Signal(8), Signal(8), Signal(32)
        body_len = Signal(11)
        left = Signal(8)                  # body beats still to send (pushes) or discard
        beat_i = Signal(range(8))

        # The 48 header bytes, from the registers latched when the frame started.
        total_len, udp_len = Signal(16), Signal(16)
        m.d.comb += [total_len.eq(20 + 8 + link.HEADER_LEN + body_len), udp_len.eq(8 + link.HEADER_LEN + body_len)]
        src_ip = Const(self.ip, 32)
        const_sum = 0x4500 + 0x4000 + 0x4011 + (self.ip >> 16) + (self.ip & 0xFFFF)
        s = Signal(20)
        m.d.comb += s.eq(const_sum + total_len + peer_ip[16:] + peer_ip[:16])
        s1 = Signal(17)
        m.d.comb += s1.eq(s[:16] + s[16:])
        ip_csum = ~(s1[:16] + s1[16:])[:16]
        hdr = (_bytes_of(peer_mac, 6) + [Const(b, 8) for b in self.mac] + _bytes_of(Const(0x0800, 16), 2)
               + _bytes_of(Const(0x4500, 16), 2) + _bytes_of(total_len, 2) + _bytes_of(Const(0x0000_4000, 32), 4)
               + _bytes_of(Const(0x4011, 16), 2) + _bytes_of(ip_csum, 2) + _bytes_of(src_ip, 4)
               + _bytes_of(peer_ip, 4) + _bytes_of(Const(self.port, 16), 2) + _bytes_of(peer_port, 2)
               + _bytes_of(udp_len, 2) + [Const(0, 8), Const(0, 8)]
               + [kind, flags, seq[0:8], seq[8:16], seq[16:24], seq[24:32]])
        assert len(hdr) == link.FRAME_HEADER_LEN
        hdr_beats = [Cat(*hdr[8 * k:8 * k + 8]) for k in range(6)]

        with m.FSM(name="tx_fsm"):
            with m.State("Idle"):
                m.d.sync += beat_i.eq(0)
                with m.If(resp_pending):
                    m.d.sync += [is_resp.eq(1), kind.eq(resp_kind), flags.eq(link.VERSION << 4),
                                 seq.eq(resp_seq), body_len.eq(16)]
                    m.next = "Header"
                with m.Elif(meta.r_rdy):
                    m.d.comb += meta.r_en.eq(1)
                    m.d.sync += [is_resp.eq(0), left.eq(info.beats), body_len.eq(info.length),
                                 kind.eq(Mux(info.order, link.Kind.ORDER, link.Kind.EVENT)),
                                 flags.eq((link.VERSION << 4) | info.aborted), seq.eq(push_seq)]
                    with m.If(info.drop):
                        m.d.comb += csr.push_dropped.eq(1)
                        m.next = "Discard"
                    with m.Else():
                        m.d.sync += push_seq.eq(push_seq + 1)
                        m.d.comb += [csr.events.eq(~info.order), csr.orders.eq(info.order)]
                        m.next = "Header"
            with m.State("Header"):
                m.d.comb += [self.tx.valid.eq(1), o.n.eq(8), o.first.eq(beat_i == 0),
                             o.data.eq(Mux(beat_i == 0, hdr_beats[0], 0))]
                with m.Switch(beat_i):
                    for k in range(1, 6):
                        with m.Case(k):
                            m.d.comb += o.data.eq(hdr_beats[k])
                m.d.comb += o.last.eq((beat_i == 5) & ~is_resp & (left == 0))
                with m.If(self.tx.ready):
                    m.d.sync += beat_i.eq(beat_i + 1)
                    with m.If(beat_i == 5):
                        m.d.sync += beat_i.eq(0)
                        with m.If(is_resp):
                            m.next = "Response"
                        with m.Elif(left == 0):
                            m.next = "Idle"
                        with m.Else():
                            m.next = "Body"
            with m.State("Response"):
                m.d.comb += [self.tx.valid.eq(1), o.n.eq(8), o.data.eq(Mux(beat_i[0], resp_value, resp_addr)),
                             o.last.eq(beat_i[0])]
                with m.If(self.tx.ready):
                    m.d.sync += beat_i.eq(1)
                    with m.If(beat_i[0]):
                        m.d.comb += self._resp_done.eq(1)
                        m.next = "Idle"
            with m.State("Body"):
                word = BodyWord(body.r_data)
                m.d.comb += [self.tx.valid.eq(body.r_rdy), o.data.eq(word.data), o.n.eq(word.n),
                             o.last.eq(left == 1), body.r_en.eq(self.tx.ready)]
                with m.If(self.tx.valid & self.tx.ready):
                    m.d.sync += left.eq(left - 1)
                    with m.If(left == 1):
                        m.next = "Idle"
            with m.State("Discard"):
                m.d.comb += body.r_en.eq(1)
                with m.If(left == 0):
                    m.next = "Idle"
                with m.Elif(body.r_rdy):
                    m.d.sync += left.eq(left - 1)
                    with m.If(left == 1):
                        m.next = "Idle"
