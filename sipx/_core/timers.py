"""Transaction timer values (RFC 3261 section 17 and table 4, RFC 6026 Timers L and M).

A :class:`TimerConfig` belongs to one transaction layer (one client), never to the module:
two clients in one process may run with different T1. Durations are in seconds. The timers
that depend on the transport are methods taking ``reliable``; over a reliable transport
(TCP, TLS, SCTP, WebSocket) they are 0, meaning "terminate at once".
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """The base values: T1 (RTT estimate), T2 (maximum retransmit interval for non-INVITE
    requests and INVITE responses) and T4 (maximum time a message stays in the network).

    The timers that do not depend on the transport are attributes computed once from
    them (a transaction reads one or two for every message: no property call each time);
    they are not arguments, and are left out of ``repr`` and comparisons."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_a: float = field(init=False, repr=False, compare=False)
    """Initial INVITE request retransmit interval (unreliable transports): T1."""
    timer_b: float = field(init=False, repr=False, compare=False)
    """INVITE transaction timeout: 64*T1."""
    timer_e: float = field(init=False, repr=False, compare=False)
    """Initial non-INVITE request retransmit interval (unreliable transports): T1."""
    timer_f: float = field(init=False, repr=False, compare=False)
    """Non-INVITE transaction timeout: 64*T1."""
    timer_g: float = field(init=False, repr=False, compare=False)
    """Initial INVITE response retransmit interval (unreliable transports): T1."""
    timer_h: float = field(init=False, repr=False, compare=False)
    """Wait time for ACK receipt: 64*T1."""
    timer_l: float = field(init=False, repr=False, compare=False)
    """Wait time for accepted INVITE request retransmits (server, Accepted): 64*T1."""
    timer_m: float = field(init=False, repr=False, compare=False)
    """Wait time for 2xx retransmissions (client INVITE, Accepted): 64*T1."""

    def __post_init__(self) -> None:
        if not self.t1 > 0:
            raise ValueError(f"T1 must be positive, not {self.t1!r}")
        if not self.t2 >= self.t1:
            raise ValueError(f"T2 ({self.t2!r}) must not be smaller than T1 ({self.t1!r})")
        if not self.t4 >= 0:
            raise ValueError(f"T4 must not be negative, not {self.t4!r}")
        t1, timeout = self.t1, 64 * self.t1
        for name, value in (
            ("timer_a", t1),
            ("timer_b", timeout),
            ("timer_e", t1),
            ("timer_f", timeout),
            ("timer_g", t1),
            ("timer_h", timeout),
            ("timer_l", timeout),
            ("timer_m", timeout),
        ):
            object.__setattr__(self, name, value)  # (frozen: set once, here)

    def timer_d(self, reliable: bool) -> float:
        """Wait time for response retransmits (client INVITE, Completed): >32 s or 0."""
        return 0.0 if reliable else max(32.0, 64 * self.t1)

    def timer_i(self, reliable: bool) -> float:
        """Wait time for ACK retransmits (server INVITE, Confirmed): T4 or 0."""
        return 0.0 if reliable else self.t4

    def timer_j(self, reliable: bool) -> float:
        """Wait time for non-INVITE request retransmits (server, Completed): 64*T1 or 0."""
        return 0.0 if reliable else 64 * self.t1

    def timer_k(self, reliable: bool) -> float:
        """Wait time for response retransmits (client non-INVITE, Completed): T4 or 0."""
        return 0.0 if reliable else self.t4


DEFAULT_TIMERS = TimerConfig()

__all__ = ["DEFAULT_TIMERS", "TimerConfig"]
