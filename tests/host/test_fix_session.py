"""host/fix/session.py without sockets: two sessions wired back to back, a fake clock,
and a wire that can drop, inject or tamper with frames."""

from __future__ import annotations

from host.fix import Application, FileStore, Session, SessionConfig, new_order_single
from protocols import fix
from protocols.fix import Message

T0 = 1_700_000_000.0


class Recorder(Application):
    def __init__(self):
        self.messages, self.logons, self.logouts, self.rejects = [], 0, 0, []

    def on_logon(self, session):
        self.logons += 1

    def on_logout(self, session):
        self.logouts += 1

    def on_message(self, session, msg):
        self.messages.append(msg)

    def on_reject(self, session, msg):
        self.rejects.append(msg)


class Pair:
    """Initiator ``a`` (CALARB) and acceptor ``b`` (EXCH) over an in-memory wire."""

    def __init__(self, a_cfg=None, b_cfg=None, a_store=None, b_store=None, **a_kw):
        self.now = T0
        clock = lambda: self.now  # noqa: E731
        self.ra, self.rb = Recorder(), Recorder()
        self.a = Session(a_cfg or SessionConfig("CALARB", "EXCH", heartbeat_s=10, **a_kw), self.ra,
                         initiator=True, clock=clock, store=a_store)
        self.b = Session(b_cfg or SessionConfig("EXCH", "CALARB", heartbeat_s=30), self.rb, initiator=False,
                         clock=clock, store=b_store)
        self.wire: list[tuple[str, bytes]] = []
        self.log: list[tuple[str, Message]] = []
        self.drop = lambda direction, msg: False

    def connect(self):
        up = {"on": True}

        def closer():
            if up["on"]:
                up["on"] = False
                for s in (self.a, self.b):
                    s.connection_lost()
        self.b.connected(lambda d: self.wire.append(("ba", d)), closer)
        self.a.connected(lambda d: self.wire.append(("ab", d)), closer)
        self.pump()

    def pump(self):
        while self.wire:
            direction, data = self.wire.pop(0)
            try:
                msg = fix.decode(data)
                self.log.append((direction, msg))
                if self.drop(direction, msg):
                    continue
            except fix.FixError:
                pass
            (self.b if direction == "ab" else self.a).data_received(data)

    def advance(self, seconds, step=0.5):
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            self.a.poll()
            self.b.poll()
            self.pump()

    def sent(self, direction, msg_type=None):
        return [m for d, m in self.log if d == direction and (msg_type is None or m.msg_type == msg_type)]

    def inject_to_b(self, fields, msg_type="D", seq=None, sender="CALARB", target="EXCH", sending_time=None):
        """A hand-made frame from a's side, with a's next seq by default (a's store advances)."""
        if seq is None:
            seq = self.a.store.next_sender_seq
            self.a.store.set_next_sender(seq + 1)
        header = [(34, seq), (49, sender), (56, target), (52, fix.format_utc(sending_time or self.now))]
        self.b.data_received(Message(msg_type, header + list(fields)).encode())
        self.pump()


def order(i=1):
    return new_order_single(f"c{i}", "AAPL", "1", 100, 1_502_500, transact_time=T0)


def test_logon_adopts_initiators_heartbeat_and_counts_sequence():
    p = Pair()
    p.connect()
    assert p.a.logged_on and p.b.logged_on and p.ra.logons == p.rb.logons == 1
    assert p.b.heartbeat_s == 10
    logon = p.sent("ab", "A")[0]
    assert (logon.get_int(108), logon.get(98), logon.seq_num) == (10, "0", 1)
    assert p.a.next_sender_seq == 2 and p.b.next_target_seq == 2 and p.a.next_target_seq == 2


def test_application_messages_flow_both_ways():
    p = Pair()
    p.connect()
    p.a.send(order(1))
    p.pump()
    assert [m.cl_ord_id for m in p.rb.messages] == ["c1"]
    got = p.rb.messages[0]
    assert (got.seq_num, got.sender_comp_id, got.order_qty, got.price_e4) == (2, "CALARB", 100, 1_502_500)


def test_heartbeat_after_silence():
    p = Pair()
    p.connect()
    p.advance(10.5)
    assert len(p.sent("ab", "0")) >= 1 and len(p.sent("ba", "0")) >= 1
    assert p.a.logged_on and p.b.logged_on


def test_test_request_on_silence_and_disconnect_when_unanswered():
    p = Pair()
    p.connect()
    p.drop = lambda d, m: d == "ba"                      # a hears nothing from b
    p.advance(12.5)
    trs = p.sent("ab", "1")
    assert len(trs) == 1 and trs[0].get(112)
    hb = [m for m in p.sent("ba", "0") if m.get(112) == trs[0].get(112)]
    assert hb, "b answers the TestRequest with a Heartbeat carrying its TestReqID"
    assert p.a.logged_on
    p.advance(12.5)
    assert not p.a.logged_on and "TestRequest" in p.a.logout_reason and p.ra.logouts == 1


def test_test_request_answered_keeps_session():
    p = Pair()
    p.connect()
    p.drop = lambda d, m: d == "ba" and m.msg_type == "0" and m.get(112) is None   # only plain heartbeats lost
    p.advance(40)
    assert p.sent("ab", "1") and p.a.logged_on


def test_inbound_gap_resend_request_and_possdup_resend():
    p = Pair()
    p.connect()
    lost = {"c2"}
    p.drop = lambda d, m: d == "ab" and m.cl_ord_id in lost and not m.poss_dup
    for i in (1, 2, 3, 4):
        p.a.send(order(i))
    p.pump()
    rr = p.sent("ba", "2")
    assert len(rr) == 1 and (rr[0].get_int(7), rr[0].get_int(16)) == (3, 0)
    assert [m.cl_ord_id for m in p.rb.messages] == ["c1", "c2", "c3", "c4"]      # in order after healing
    resent = [m for m in p.sent("ab", "D") if m.poss_dup]
    c2 = [m for m in resent if m.cl_ord_id == "c2"][0]
    assert c2.seq_num == 3 and c2.get(122) == p.sent("ab", "D")[1].get(52)
    assert p.b.next_target_seq == p.a.next_sender_seq


def test_resend_replaces_session_messages_with_gap_fill():
    p = Pair()
    p.connect()
    p.drop = lambda d, m: d == "ab" and not m.poss_dup and m.msg_type in ("0", "D") and m.seq_num in (2, 3)
    p.advance(10.5)                                   # heartbeat (seq 2) lost
    p.a.send(order(1))                                # seq 3 lost
    p.a.send(order(2))                                # seq 4 arrives: gap 2..3
    p.pump()
    fills = [m for m in p.sent("ab", "4") if m.get(123) == "Y"]
    assert [(m.seq_num, m.get_int(36), m.poss_dup) for m in fills] == [(2, 3, True)]
    assert [m.cl_ord_id for m in p.rb.messages] == ["c1", "c2"]
    assert p.b.next_target_seq == p.a.next_sender_seq


def test_sender_skipping_sequence_numbers_is_gap_filled():
    p = Pair()
    p.connect()
    p.a.store.set_next_sender(p.a.next_sender_seq + 5)   # messages that never existed
    p.a.send(order(1))
    p.pump()
    fills = [m for m in p.sent("ab", "4") if m.get(123) == "Y"]
    assert len(fills) == 1 and fills[0].get_int(36) == 7
    assert [m.cl_ord_id for m in p.rb.messages] == ["c1"] and p.b.next_target_seq == p.a.next_sender_seq == 8


def test_sequence_reset_reset_mode():
    p = Pair()
    p.connect()
    p.a.reset_sequence(50)
    p.pump()
    assert p.b.next_target_seq == 50
    p.a.send(order(1))
    p.pump()
    assert p.rb.messages[-1].seq_num == 50
    p.inject_to_b([(123, "N"), (36, 10)], msg_type="4", seq=1)        # backwards: refused with a Reject
    rej = p.sent("ba", "3")[-1]
    assert (rej.get_int(373), rej.get_int(371)) == (fix.REJECT_VALUE_OUT_OF_RANGE, 36)
    assert p.b.next_target_seq == 51 and p.b.logged_on


def test_reject_for_malformed_message_consumes_seq():
    p = Pair()
    p.connect()
    seq = p.a.next_sender_seq
    p.inject_to_b([(11, "x"), (55, "AAPL"), (54, "Z"), (60, fix.format_utc(T0)), (38, 1), (40, "1")])
    rej = p.sent("ba", "3")[-1]
    assert (rej.get_int(45), rej.get_int(373), rej.get_int(371), rej.get(372)) == (seq, 5, 54, "D")
    assert p.b.next_target_seq == seq + 1 and p.b.logged_on and not p.rb.messages
    p.inject_to_b([(11, "x"), (55, "AAPL"), (54, "1"), (38, 1), (40, "1")])     # TransactTime missing
    assert p.sent("ba", "3")[-1].get_int(373) == fix.REJECT_REQUIRED_MISSING
    p.a.send(order(1))
    p.pump()
    assert [m.cl_ord_id for m in p.rb.messages] == ["c1"]


def test_field_level_decode_error_rejected_with_peeked_seq():
    p = Pair()
    p.connect()
    seq = p.a.next_sender_seq
    p.a.store.set_next_sender(seq + 1)
    body = b"35=D\x0134=%d\x0149=CALARB\x0156=EXCH\x0152=%s\x0111=\x01" % (seq, fix.format_utc(p.now))
    head = b"8=FIX.4.4\x019=%d\x01" % len(body)
    p.b.data_received(head + body + b"10=%03d\x01" % (sum(head + body) % 256))
    p.pump()
    rej = p.sent("ba", "3")[-1]
    assert (rej.get_int(45), rej.get_int(373), rej.get_int(371)) == (seq, fix.REJECT_NO_VALUE, 11)
    assert p.b.next_target_seq == seq + 1


def test_garbled_message_ignored_without_consuming_seq():
    p = Pair()
    p.connect()
    raw = bytearray(order(1).copy().set(34, 99).set(49, "CALARB").set(56, "EXCH").set(52, "x").encode())
    raw[-3] = ord("0") + (raw[-3] - ord("0") + 1) % 10             # wrong CheckSum
    before = p.b.next_target_seq
    p.b.data_received(b"garbage" + bytes(raw))
    assert p.b.next_target_seq == before and p.b.logged_on and not p.sent("ba", "3")
    assert len(p.b.errors) == 2
    p.a.send(order(2))
    p.pump()
    assert [m.cl_ord_id for m in p.rb.messages] == ["c2"]


def test_logout_handshake():
    p = Pair()
    p.connect()
    p.a.logout("bye")
    p.pump()
    assert [m.get(58) for m in p.sent("ab", "5")] == ["bye"] and len(p.sent("ba", "5")) == 1
    assert not p.a.connected_now and not p.b.connected_now and p.ra.logouts == p.rb.logouts == 1


def test_logout_times_out_without_reply():
    p = Pair()
    p.connect()
    p.drop = lambda d, m: d == "ab" and m.msg_type == "5"
    p.a.logout()
    p.advance(3)
    assert not p.a.connected_now and p.a.logout_reason == "no Logout reply"


def test_wrong_comp_id_rejected_and_logged_out():
    p = Pair()
    p.connect()
    p.inject_to_b([(112, "x")], msg_type="1", sender="INTRUDER")
    rej = p.sent("ba", "3")[-1]
    assert rej.get_int(373) == fix.REJECT_COMP_ID
    assert p.sent("ba", "5") and not p.b.connected_now


def test_sending_time_accuracy_checked():
    p = Pair()
    p.connect()
    p.inject_to_b([(112, "x")], msg_type="1", sending_time=T0 - 600)
    assert p.sent("ba", "3")[-1].get_int(373) == fix.REJECT_SENDING_TIME and not p.b.connected_now


def test_seq_too_low_without_possdup_ends_session_with_possdup_is_ignored():
    p = Pair()
    p.connect()
    p.inject_to_b([(112, "a")], msg_type="1", seq=1)
    assert "too low" in p.b.logout_reason and not p.b.connected_now
    p2 = Pair()
    p2.connect()
    p2.inject_to_b([(43, "Y"), (122, fix.format_utc(T0)), (112, "a")], msg_type="1", seq=1)
    assert p2.b.logged_on


def test_reset_seq_num_flag_on_logon():
    p = Pair()
    p.connect()
    for i in range(3):
        p.a.send(order(i))
    p.pump()
    p.a.logout()
    p.pump()
    p.a.config.reset_on_logon = True
    p.connect()
    logon = p.sent("ab", "A")[-1]
    assert logon.get(141) == "Y" and logon.seq_num == 1 and p.sent("ba", "A")[-1].get(141) == "Y"
    assert p.a.logged_on and p.a.next_sender_seq == 2 and p.b.next_target_seq == 2


def test_username_password_required_by_acceptor():
    b_cfg = SessionConfig("EXCH", "CALARB", username="calarb", password="s3cret")
    good = Pair(a_cfg=SessionConfig("CALARB", "EXCH", username="calarb", password="s3cret"), b_cfg=b_cfg)
    good.connect()
    assert good.b.logged_on
    bad = Pair(a_cfg=SessionConfig("CALARB", "EXCH", username="calarb", password="guess"),
               b_cfg=SessionConfig("EXCH", "CALARB", username="calarb", password="s3cret"))
    bad.connect()
    assert not bad.b.logged_on and "Username/Password" in bad.b.logout_reason


def test_first_message_must_be_logon():
    p = Pair()
    p.b.connected(lambda d: None, lambda: None)
    p.b.data_received(Message("0", [(34, 1), (49, "CALARB"), (56, "EXCH"), (52, fix.format_utc(T0))]).encode())
    assert not p.b.connected_now and "not a Logon" in p.b.logout_reason


def test_restart_with_persisted_stores_resends_what_was_missed(tmp_path):
    def pair():
        return Pair(a_store=FileStore(tmp_path / "a.store"), b_store=FileStore(tmp_path / "b.store"))
    p = pair()
    p.connect()
    p.a.send(order(1))
    p.pump()
    p.drop = lambda d, m: d == "ab" and m.msg_type == "D"         # c2 sent, then "crash" before delivery
    p.a.send(order(2))
    p.pump()
    seqs = (p.a.next_sender_seq, p.b.next_target_seq)
    p.a.store.close(), p.b.store.close()
    q = pair()                                                  # both processes restart from their files
    assert (q.a.next_sender_seq, q.b.next_target_seq) == seqs
    q.connect()
    assert [m.cl_ord_id for m in q.rb.messages] == ["c2"] and q.sent("ab", "D")[0].poss_dup
    assert q.b.next_target_seq == q.a.next_sender_seq
    q.a.store.close(), q.b.store.close()


def test_downstream_stamping_mode():
    """The sequencer after the engine stamps MsgSeqNum/CheckSum; the store still serves resends."""
    p = Pair(stamping="downstream")
    p.connect()
    assert p.a.logged_on and p.b.logged_on
    wire = []
    p.a._write_cb = (lambda w: (lambda d: (wire.append(d), w(d))))(p.a._write_cb)
    p.drop = lambda d, m: d == "ab" and m.cl_ord_id == "c1" and not m.poss_dup
    p.a.send(order(1))
    p.a.send(order(2))
    p.pump()
    stamped = [w for w in wire if b"\x0135=D\x01" in w][:2]
    assert [fix.decode(w).raw(34) for w in stamped] == [b"000000002", b"000000003"]
    assert p.a.store.get(2, 3) == [(2, stamped[0]), (3, stamped[1])]
    assert [m.cl_ord_id for m in p.rb.messages] == ["c1", "c2"]
    assert p.a.next_sender_seq == p.b.next_target_seq == 4 + len(p.sent("ab", "0"))
