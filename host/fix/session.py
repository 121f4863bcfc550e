"""The FIX session layer (FIX Session Protocol, FIX 4.4), without sockets.

A :class:`Session` is fed bytes (:meth:`Session.data_received`) and time
(:meth:`Session.poll`, clock injectable) and writes bytes through the callables a
transport attaches with :meth:`Session.connected`; ``host/fix/transport.py``
runs it on asyncio, tests can drive it by hand. It implements Logon (HeartBtInt,
ResetSeqNumFlag, Username/Password), Heartbeat, TestRequest on silence and
disconnect when unanswered, ResendRequest on an inbound gap (later messages are
queued until the gap heals), resends with PossDupFlag and OrigSendingTime,
SequenceReset in GapFill and Reset modes, Reject for malformed messages, the
Logout handshake, CompID and SendingTime checks, and a persistent store.

Outbound messages take one path, :meth:`Session._send_new`; the only switch is
who stamps MsgSeqNum and CheckSum: this engine (``stamping="engine"``) or a
downstream sequencer (``"downstream"``, e.g. the gateware order path), which gets
a finished frame with a fixed-width zero MsgSeqNum (``protocols.fix.SEQ_WIDTH``)
and reports every stamped frame back through :meth:`Session.record_stamped`, so
the resend store stays complete. :class:`SoftwareSequencer` is its golden model.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
import time
from typing import Callable

from protocols import fix, fix44
from protocols.fix import FixError, Message

from .config import SessionConfig
from .store import FileStore, MemoryStore

log = logging.getLogger(__name__)

ADMIN_TYPES = frozenset("012345A")
_STAMPED_HEADER = frozenset({8, 9, 35, 34, 49, 56, 52, 10})


class SessionError(RuntimeError):
    """A session operation that cannot be done in the session's state."""


class Application:
    """Callbacks a session makes; subclass and override what you need."""

    def on_logon(self, session: "Session") -> None:
        pass

    def on_logout(self, session: "Session") -> None:
        pass

    def on_message(self, session: "Session", msg: Message) -> None:
        pass

    def on_reject(self, session: "Session", msg: Message) -> None:
        """A session-level Reject (35=3) the counterparty sent us."""

    def on_admin(self, session: "Session", msg: Message) -> None:
        """Any session message (Heartbeat, TestRequest, ...) after the session processed it."""


class SoftwareSequencer:
    """Golden model of a downstream sequencer: stamps MsgSeqNum and CheckSum into each
    template (:func:`protocols.fix.stamp`), reports the stamped frame to the session's
    store, then writes it. Resends (already stamped) pass through unchanged."""

    def __init__(self, session: "Session") -> None:
        self.session = session
        self.next_seq = session.store.next_sender_seq

    def reset(self, next_seq: int) -> None:
        self.next_seq = next_seq

    def submit(self, template: bytes) -> None:
        raw = fix.stamp(template, self.next_seq)
        self.next_seq += 1
        self.session.record_stamped(raw)
        self.session._write(raw)


class Session:
    """One FIX session (initiator or acceptor side) over one connection at a time."""

    DISCONNECTED, LOGON_SENT, AWAIT_LOGON, ACTIVE, LOGOUT_SENT = "disconnected", "logon sent", \
        "awaiting logon", "active", "logout sent"

    def __init__(self, config: SessionConfig, app: Application | None = None, *, initiator: bool,
                 store: MemoryStore | None = None, clock: Callable[[], float] = time.time,
                 dictionary: fix44.Dictionary | None = None) -> None:
        self.config = config
        self.app = app or Application()
        self.initiator = initiator
        self.clock = clock
        self.dictionary = dictionary or fix44.dictionary()
        if store is None:
            store = FileStore(config.store, config.fsync) if config.store else MemoryStore()
        self.store = store
        self.state = self.DISCONNECTED
        self.heartbeat_s = float(config.heartbeat_s)
        self.sequencer = SoftwareSequencer(self) if config.stamping == "downstream" else None
        self._write_cb: Callable[[bytes], None] | None = None
        self._close_cb: Callable[[], None] | None = None
        self._parser = fix.StreamParser(config.max_message)
        self._queue: dict[int, Message] = {}
        self._resend_until = 0
        self._test_req_id: str | None = None
        self._test_req_ids = itertools.count(1)
        self._last_sent = self._last_received = self._state_since = 0.0
        self._reset_sent = False
        self._begin_b = b"8=%s\x01" % config.begin_string.encode()
        self._header_b = [(49, config.sender_comp_id.encode()), (56, config.target_comp_id.encode())]
        self.errors: list[FixError] = []          # garbled input seen (decode/stream errors), newest last
        self.rejects_sent = 0
        self.logons = 0
        self.received: Counter[str] = Counter()   # decoded inbound messages by MsgType
        self.sent: Counter[str] = Counter()       # new outbound messages by MsgType (resends not counted)
        self.logout_reason = ""

    # ------------------------------------------------------------------------------ properties
    @property
    def id(self) -> str:
        return self.config.session_id

    @property
    def logged_on(self) -> bool:
        return self.state == self.ACTIVE

    @property
    def connected_now(self) -> bool:
        return self.state != self.DISCONNECTED

    @property
    def next_sender_seq(self) -> int:
        return self.store.next_sender_seq

    @property
    def next_target_seq(self) -> int:
        return self.store.next_target_seq

    # ------------------------------------------------------------------------------ transport side
    def connected(self, write: Callable[[bytes], None], close: Callable[[], None]) -> None:
        """A connection is up: the initiator sends Logon, the acceptor waits for one."""
        self._write_cb, self._close_cb = write, close
        self._parser = fix.StreamParser(self.config.max_message)
        self._queue.clear()
        self._resend_until = 0
        self._test_req_id = None
        self.logout_reason = ""
        now = self.clock()
        self._last_sent = self._last_received = now
        if self.initiator:
            self._send_logon()
            self._set_state(self.LOGON_SENT)
        else:
            self._set_state(self.AWAIT_LOGON)

    def connection_lost(self) -> None:
        """The connection is gone (either side closed it)."""
        was_on = self.state in (self.ACTIVE, self.LOGOUT_SENT)
        self._set_state(self.DISCONNECTED)
        self._write_cb = self._close_cb = None
        if was_on:
            self.app.on_logout(self)

    def data_received(self, data: bytes) -> None:
        """Bytes from the wire; each complete frame is processed in order."""
        self._last_received = self.clock()
        for item in self._parser.feed(data):
            if self.state == self.DISCONNECTED:
                return
            if isinstance(item, FixError):
                self._garbled(item)
            else:
                self._on_frame(item)

    def poll(self) -> None:
        """Timers: Heartbeat after HeartBtInt of our silence, TestRequest after
        test_request_factor x HeartBtInt of theirs, disconnect when that goes unanswered,
        Logon and Logout timeouts."""
        if self.state == self.DISCONNECTED:
            return
        now = self.clock()
        if self.state in (self.ACTIVE, self.LOGOUT_SENT):
            if self.state == self.ACTIVE and now - self._last_sent >= self.heartbeat_s:
                self._send_new("0", [])
            silence = now - self._last_received
            limit = self.heartbeat_s * self.config.test_request_factor
            if self._test_req_id is not None and silence >= 2 * limit:
                self.disconnect(f"TestRequest {self._test_req_id} unanswered after {silence:.1f} s")
                return
            if self._test_req_id is None and silence >= limit and self.state == self.ACTIVE:
                self._test_req_id = f"TEST{next(self._test_req_ids)}"
                self._send_new("1", [(112, self._test_req_id.encode())])
        if self.state == self.LOGOUT_SENT and now - self._state_since >= self.config.logout_timeout_s:
            self.disconnect("no Logout reply")
        elif self.state in (self.LOGON_SENT, self.AWAIT_LOGON) and \
                now - self._state_since >= self.config.logon_timeout_s:
            self.disconnect("no Logon")

    # ------------------------------------------------------------------------------ application side
    def send(self, msg: Message) -> int | None:
        """Send an application message (header stamped here). It is stored first, so a message
        sent while disconnected reaches the counterparty by resend after the next Logon.
        Returns its MsgSeqNum (None in downstream mode, where the sequencer assigns it)."""
        if msg.msg_type in ADMIN_TYPES:
            raise SessionError(f"{self.id}: session messages (35={msg.msg_type}) are the session's own")
        header_tags = self.dictionary.header.tags
        fields = [f for f in msg.fields if f[0] not in _STAMPED_HEADER]
        head = [f for f in fields if f[0] in header_tags]
        if head:
            fields = head + [f for f in fields if f[0] not in header_tags]
        return self._send_new(msg.msg_type, fields, connected_only=False)

    def logout(self, text: str = "") -> None:
        """Start the Logout handshake (disconnect on the reply or after logout_timeout_s)."""
        if self.state == self.ACTIVE:
            self._send_new("5", [(58, text.encode())] if text else [])
            self._set_state(self.LOGOUT_SENT)
        elif self.state != self.DISCONNECTED:
            self.disconnect(text or "logout before logon")

    def disconnect(self, reason: str = "") -> None:
        """Close the connection now."""
        if self.state == self.DISCONNECTED:
            return
        if reason:
            self.logout_reason = reason
            log.info("%s: disconnect: %s", self.id, reason)
        close = self._close_cb
        self.connection_lost()
        if close:
            close()

    def test_request(self, test_req_id: str) -> None:
        """Send a TestRequest now (the counterparty must answer with a Heartbeat carrying the id)."""
        if self.state != self.ACTIVE:
            raise SessionError(f"{self.id}: TestRequest needs an active session")
        self._test_req_id = test_req_id
        self._send_new("1", [(112, test_req_id.encode())])

    def reset_sequence(self, new_seq: int) -> None:
        """SequenceReset in Reset mode: tell the counterparty our next MsgSeqNum is new_seq."""
        if new_seq < 1:
            raise SessionError(f"{self.id}: NewSeqNo must be >= 1, not {new_seq}")
        fields = [(123, b"N"), (36, b"%d" % new_seq)]
        self._write(self._build("4", self.store.next_sender_seq, fields))
        self.store.set_next_sender(new_seq)
        if self.sequencer:
            self.sequencer.reset(new_seq)

    def record_stamped(self, raw: bytes) -> None:
        """Downstream mode: a frame the sequencer stamped (store it for resends)."""
        seq = fix.peek(raw)[1]
        if seq is None:
            raise FixError("stamped frame without MsgSeqNum", 0)
        self.store.save(seq, raw)

    # ------------------------------------------------------------------------------ outbound
    def _set_state(self, state: str) -> None:
        self.state = state
        self._state_since = self.clock()

    def _write(self, raw: bytes) -> None:
        if self._write_cb is not None:
            self._last_sent = self.clock()
            self._write_cb(raw)

    def _build(self, msg_type: str, seq: int | bytes, fields, extra_header=()) -> bytes:
        seq_b = seq if isinstance(seq, bytes) else b"%d" % seq
        header = [(34, seq_b), *self._header_b, (52, fix.format_utc(self.clock())), *extra_header]
        return fix.frame(msg_type, header + fields, self.config.begin_string)

    def _send_new(self, msg_type: str, fields, connected_only: bool = True) -> int | None:
        """The one outbound path for new messages: stamp (or leave to the sequencer), store, write."""
        if connected_only and self._write_cb is None:
            return None
        self.sent[msg_type] += 1
        if self.sequencer is None:
            seq = self.store.next_sender_seq
            raw = self._build(msg_type, seq, fields)
            self.store.save(seq, raw)
            self._write(raw)
            return seq
        template = self._build(msg_type, b"0" * fix.SEQ_WIDTH, fields)
        if self._write_cb is None:
            raise SessionError(f"{self.id}: downstream stamping needs a connection to send")
        self.sequencer.submit(template)
        return None

    def _send_logon(self, reply_to: Message | None = None) -> None:
        reset = self.config.reset_on_logon if reply_to is None else reply_to.get_bool(141, False)
        if reset and reply_to is None:
            self.store.reset()
            if self.sequencer:
                self.sequencer.reset(1)
        fields = [(98, b"0"), (108, b"%d" % int(self.heartbeat_s))]
        if reset:
            fields.append((141, b"Y"))
        if self.initiator and self.config.username is not None:
            fields.append((553, self.config.username.encode()))
            if self.config.password is not None:
                fields.append((554, self.config.password.encode()))
        self._reset_sent = reset
        self._send_new("A", fields)

    def _reject(self, ref_seq: int | None, ref_type: str | None, reason: int | None, tag: int | None,
                text: str) -> None:
        fields = []
        if ref_seq is not None:
            fields.append((45, b"%d" % ref_seq))
        if tag is not None:
            fields.append((371, b"%d" % tag))
        if ref_type:
            fields.append((372, ref_type.encode("latin-1")))
        if reason is not None:
            fields.append((373, b"%d" % reason))
        fields.append((58, text.encode("latin-1", "replace")[:200] or b"rejected"))
        self.rejects_sent += 1
        log.warning("%s: Reject seq %s: %s", self.id, ref_seq, text)
        self._send_new("3", fields)

    def _fatal(self, text: str) -> None:
        """A Logout with the reason, then disconnect (errors that end the session)."""
        log.error("%s: %s", self.id, text)
        if self.state in (self.ACTIVE, self.AWAIT_LOGON, self.LOGON_SENT) and self._write_cb is not None:
            self._send_new("5", [(58, text.encode("latin-1", "replace")[:200])])
        self.disconnect(text)

    def _resend(self, begin: int, end: int) -> None:
        """Answer a ResendRequest: stored application messages again with PossDupFlag and
        OrigSendingTime; session messages and missing ones as SequenceReset-GapFill."""
        last = self.store.next_sender_seq - 1
        if end == 0 or end > last:
            end = last
        stored = dict(self.store.get(begin, end))
        gap_start = None
        for seq in range(begin, end + 1):
            raw = stored.get(seq)
            msg = None
            if raw is not None:
                try:
                    msg = fix.decode(raw)
                except FixError:
                    msg = None
            if msg is None or msg.msg_type in ADMIN_TYPES:
                if gap_start is None:
                    gap_start = seq
                continue
            if gap_start is not None:
                self._gap_fill(gap_start, seq)
                gap_start = None
            orig = msg.raw(52)
            body = [f for f in msg.fields if f[0] not in (34, 49, 56, 52, 43, 122, 97)]
            self._write(self._build(msg.msg_type, seq, body, [(43, b"Y"), (122, orig)]))
        if gap_start is not None:
            self._gap_fill(gap_start, end + 1)

    def _gap_fill(self, seq: int, new_seq: int) -> None:
        now = fix.format_utc(self.clock())
        self._write(self._build("4", seq, [(123, b"Y"), (36, b"%d" % new_seq)], [(43, b"Y"), (122, now)]))

    # ------------------------------------------------------------------------------ inbound
    def _garbled(self, err: FixError) -> None:
        """Garbled input is ignored (FIX session protocol): logged, not rejected, seq not consumed."""
        self.errors.append(err)
        del self.errors[:-100]
        log.warning("%s: garbled input ignored: %s", self.id, err)

    def _on_frame(self, raw: bytes) -> None:
        try:
            msg = fix.decode(raw)
        except FixError as e:
            if e.reject_reason is None:
                return self._garbled(e)
            msg_type, seq = fix.peek(raw)
            if self.state == self.ACTIVE and seq is not None and seq == self.store.next_target_seq:
                self._reject(seq, msg_type, e.reject_reason, e.tag, str(e))
                self.store.set_next_target(seq + 1)
                return
            return self._garbled(e)
        self.received[msg.msg_type] += 1
        if not raw.startswith(self._begin_b):
            return self._fatal(f"BeginString {raw[2:raw.find(fix.SOH)]!r} is not {self.config.begin_string}")
        self._test_req_id = None if msg.msg_type != "1" else self._test_req_id
        if self.state in (self.AWAIT_LOGON, self.LOGON_SENT):
            if msg.msg_type != "A":
                return self.disconnect(f"first message is 35={msg.msg_type}, not a Logon")
            return self._on_logon(msg)
        self._process(msg)

    def _check_header(self, msg: Message) -> bool:
        """BeginString, CompIDs and SendingTime; on failure Reject and/or Logout. True if ok."""
        if msg.sender_comp_id != self.config.target_comp_id or msg.target_comp_id != self.config.sender_comp_id:
            seq = msg.get_int(34) if (msg.raw(34) or b"x").isdigit() else None
            self._reject(seq, msg.msg_type, fix.REJECT_COMP_ID, 49 if msg.sender_comp_id != self.config.target_comp_id
                         else 56, f"CompID problem: {msg.sender_comp_id}->{msg.target_comp_id}")
            self._fatal("CompID problem")
            return False
        try:
            sent = msg.get_time(52)
        except FixError:
            sent = None
        if sent is None or abs(self.clock() - sent) > self.config.sending_time_tolerance_s:
            self._reject(msg.seq_num, msg.msg_type, fix.REJECT_SENDING_TIME, 52, "SendingTime accuracy problem")
            self._fatal("SendingTime accuracy problem")
            return False
        return True

    def _on_logon(self, msg: Message) -> None:
        try:
            if self.config.validate:
                fix.validate(msg, self.dictionary)
            seq = msg.seq_num
            hb = msg.get_int(108)
        except FixError as e:
            return self._fatal(f"bad Logon: {e}")
        if not self._check_header(msg):
            return
        if not self.initiator:
            if self.config.username is not None and (msg.get(553) != self.config.username
                                                     or msg.get(554) != self.config.password):
                log.error("%s: Logon refused: bad Username/Password", self.id)
                return self._fatal("invalid Username/Password")
            if hb is None or hb < 1:
                return self._fatal(f"HeartBtInt {hb} refused")
            self.heartbeat_s = float(hb)
        reset = msg.get_bool(141, False)
        if reset and not self._reset_sent:
            if seq != 1:
                return self._fatal(f"ResetSeqNumFlag with MsgSeqNum {seq}, not 1")
            self.store.reset()
            if self.sequencer:
                self.sequencer.reset(1)
        expected = self.store.next_target_seq
        if seq < expected:
            return self._fatal(f"MsgSeqNum too low, expecting {expected} but received {seq}")
        if not self.initiator:
            self._send_logon(reply_to=msg)
        self._reset_sent = False
        self._set_state(self.ACTIVE)
        self.logons += 1
        log.info("%s: logged on (HeartBtInt %d)", self.id, self.heartbeat_s)
        if seq == expected:
            self.store.set_next_target(seq + 1)
        else:
            self._request_resend(expected, seq)
        self.app.on_logon(self)
        self._drain()

    def _request_resend(self, expected: int, seen: int) -> None:
        if self._resend_until >= expected:
            self._resend_until = max(self._resend_until, seen)
            return
        self._resend_until = seen
        log.info("%s: gap: expected %d, received %d; ResendRequest", self.id, expected, seen)
        self._send_new("2", [(7, b"%d" % expected), (16, b"0")])

    def _process(self, msg: Message) -> None:
        mt = msg.msg_type
        seq_b = msg.raw(34)
        if seq_b is None or not seq_b.isdigit():
            return self._fatal("MsgSeqNum missing or malformed")
        seq = int(seq_b)
        if mt == "4" and not msg.get_bool(123, False):
            return self._on_sequence_reset(msg, seq)
        if mt == "2" and seq >= self.store.next_target_seq:
            if not self._check_header(msg):
                return
            begin, end = msg.get_int(7), msg.get_int(16)
            if begin is not None and end is not None:
                self._resend(begin, end)
        expected = self.store.next_target_seq
        if seq > expected:
            self._queue[seq] = msg
            if mt == "5":           # a Logout beyond a gap still ends the session
                return self._on_logout(msg)
            return self._request_resend(expected, seq)
        if seq < expected:
            if msg.poss_dup:
                return
            return self._fatal(f"MsgSeqNum too low, expecting {expected} but received {seq}")
        if not self._check_header(msg):
            return
        self.store.set_next_target(seq + 1)
        if self.config.validate:
            try:
                fix.validate(msg, self.dictionary)
                if msg.poss_dup and mt != "4":
                    orig = msg.get_time(122)
                    if orig is None:
                        raise FixError("required tag missing", 0, "OrigSendingTime (122) on a PossDup", 122,
                                       fix.REJECT_REQUIRED_MISSING)
                    if orig > msg.get_time(52) + 1e-3:
                        raise FixError("SendingTime accuracy problem", 0, "OrigSendingTime after SendingTime", 122,
                                       fix.REJECT_SENDING_TIME)
            except FixError as e:
                self._reject(seq, mt, e.reject_reason, e.tag, str(e))
                return self._drain()
        if mt == "0":
            pass
        elif mt == "1":
            self._send_new("0", [(112, msg.raw(112) or b"")] if msg.raw(112) else [])
        elif mt == "2":
            pass
        elif mt == "3":
            log.warning("%s: counterparty rejected our seq %s: %s", self.id, msg.get(45), msg.get(58))
            self.app.on_reject(self, msg)
        elif mt == "4":
            new = msg.get_int(36)
            if new is None or new <= seq:
                self._reject(seq, mt, fix.REJECT_VALUE_OUT_OF_RANGE, 36, f"GapFill NewSeqNo {new} not above {seq}")
            else:
                self.store.set_next_target(new)
        elif mt == "5":
            return self._on_logout(msg)
        elif mt == "A":
            return self._fatal("Logon received on an active session")
        else:
            self.app.on_message(self, msg)
        if mt in ADMIN_TYPES:
            self.app.on_admin(self, msg)
        self._drain()

    def _drain(self) -> None:
        """Process queued messages that the sequence has caught up with."""
        while self._queue and self.state == self.ACTIVE:
            expected = self.store.next_target_seq
            for s in [s for s in self._queue if s < expected]:
                del self._queue[s]
            msg = self._queue.pop(expected, None)
            if msg is None:
                break
            self._process(msg)
        if self._resend_until and self.store.next_target_seq > self._resend_until:
            self._resend_until = 0

    def _on_sequence_reset(self, msg: Message, seq: int) -> None:
        """SequenceReset in Reset mode: MsgSeqNum is ignored, NewSeqNo sets the expected seq."""
        new = msg.get_int(36)
        expected = self.store.next_target_seq
        if new is None:
            self._reject(seq, "4", fix.REJECT_REQUIRED_MISSING, 36, "NewSeqNo missing")
        elif new < expected:
            self._reject(seq, "4", fix.REJECT_VALUE_OUT_OF_RANGE, 36,
                         f"SequenceReset to {new}, below the expected {expected}")
        else:
            log.info("%s: SequenceReset (Reset) from %d to %d", self.id, expected, new)
            self.store.set_next_target(new)
            self._drain()

    def _on_logout(self, msg: Message) -> None:
        text = msg.get(58) or ""
        if self.state == self.LOGOUT_SENT:
            self.disconnect(f"Logout confirmed {text}".strip())
        else:
            self._send_new("5", [])
            self.disconnect(f"counterparty logged out {text}".strip())
