"""FIX session settings, validated when built: a wrong value is refused naming its key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class ConfigError(ValueError):
    """A FIX setting that cannot work; the message names the key."""


@dataclass
class SessionConfig:
    """One FIX session, seen from our side.

    ``heartbeat_s`` is the HeartBtInt an initiator asks for (an acceptor adopts the
    initiator's). ``username``/``password``: sent on Logon by an initiator, required
    on Logon by an acceptor. ``store``: a file path for a persistent
    :class:`host.fix.store.FileStore` (None keeps messages in memory) with ``fsync``
    its policy. ``stamping``: ``"engine"`` (this process stamps MsgSeqNum and
    CheckSum) or ``"downstream"`` (a sequencer after the engine does, and reports
    every stamped frame back with :meth:`Session.record_stamped`).
    """

    sender_comp_id: str
    target_comp_id: str
    heartbeat_s: int = 30
    reset_on_logon: bool = False
    username: str | None = None
    password: str | None = None
    store: str | Path | None = None
    fsync: str | int = "always"
    stamping: str = "engine"
    begin_string: str = "FIX.4.4"
    sending_time_tolerance_s: float = 120.0
    test_request_factor: float = 1.2
    logon_timeout_s: float = 10.0
    logout_timeout_s: float = 2.0
    validate: bool = True
    max_message: int = 64 * 1024

    def __post_init__(self) -> None:
        for key in ("sender_comp_id", "target_comp_id"):
            v = getattr(self, key)
            if not isinstance(v, str) or not v or "\x01" in v or "=" in v:
                raise ConfigError(f"fix.{key}: must be a non-empty string without SOH or '=', not {v!r}")
        if not isinstance(self.heartbeat_s, int) or self.heartbeat_s < 1:
            raise ConfigError(f"fix.heartbeat_s: must be a whole number of seconds >= 1, not {self.heartbeat_s!r}")
        if self.stamping not in ("engine", "downstream"):
            raise ConfigError(f"fix.stamping: must be 'engine' or 'downstream', not {self.stamping!r}")
        if not (self.fsync in ("always", "never") or (isinstance(self.fsync, int) and self.fsync >= 1)):
            raise ConfigError(f"fix.fsync: must be 'always', 'never' or a record count >= 1, not {self.fsync!r}")
        if self.test_request_factor < 1:
            raise ConfigError(f"fix.test_request_factor: must be >= 1, not {self.test_request_factor!r}")
        if (self.password is None) != (self.username is None) and self.password is not None:
            raise ConfigError("fix.password: given without fix.username")

    @property
    def session_id(self) -> str:
        return f"{self.begin_string}:{self.sender_comp_id}->{self.target_comp_id}"
