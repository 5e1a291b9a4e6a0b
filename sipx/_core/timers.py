"""Transaction timer values (RFC 3261 section 17 and table 4, RFC 6026 Timers L and M).

A :class:`TimerConfig` belongs to one transaction layer (one client), never to the module:
two clients in one process may run with different T1. Durations are in seconds. The timers
that depend on the transport are methods taking ``reliable``; over a reliable transport
(TCP, TLS, SCTP, WebSocket) they are 0, meaning "terminate at once".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """The base values: T1 (RTT estimate), T2 (maximum retransmit interval for non-INVITE
    requests and INVITE responses) and T4 (maximum time a message stays in the network)."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    def __post_init__(self) -> None:
        if not self.t1 > 0:
            raise ValueError(f"T1 must be positive, not {self.t1!r}")
        if not self.t2 >= self.t1:
            raise ValueError(f"T2 ({self.t2!r}) must not be smaller than T1 ({self.t1!r})")
        if not self.t4 >= 0:
            raise ValueError(f"T4 must not be negative, not {self.t4!r}")

    @property
    def timer_a(self) -> float:
        """Initial INVITE request retransmit interval (unreliable transports): T1."""
        return self.t1

    @property
    def timer_b(self) -> float:
        """INVITE transaction timeout: 64*T1."""
        return 64 * self.t1

    def timer_d(self, reliable: bool) -> float:
        """Wait time for response retransmits (client INVITE, Completed): >32 s or 0."""
        return 0.0 if reliable else max(32.0, 64 * self.t1)

    @property
    def timer_e(self) -> float:
        """Initial non-INVITE request retransmit interval (unreliable transports): T1."""
        return self.t1

    @property
    def timer_f(self) -> float:
        """Non-INVITE transaction timeout: 64*T1."""
        return 64 * self.t1

    @property
    def timer_g(self) -> float:
        """Initial INVITE response retransmit interval (unreliable transports): T1."""
        return self.t1

    @property
    def timer_h(self) -> float:
        """Wait time for ACK receipt: 64*T1."""
        return 64 * self.t1

    def timer_i(self, reliable: bool) -> float:
        """Wait time for ACK retransmits (server INVITE, Confirmed): T4 or 0."""
        return 0.0 if reliable else self.t4

    def timer_j(self, reliable: bool) -> float:
        """Wait time for non-INVITE request retransmits (server, Completed): 64*T1 or 0."""
        return 0.0 if reliable else 64 * self.t1

    def timer_k(self, reliable: bool) -> float:
        """Wait time for response retransmits (client non-INVITE, Completed): T4 or 0."""
        return 0.0 if reliable else self.t4

    @property
    def timer_l(self) -> float:
        """Wait time for accepted INVITE request retransmits (server, Accepted): 64*T1."""
        return 64 * self.t1

    @property
    def timer_m(self) -> float:
        """Wait time for 2xx retransmissions (client INVITE, Accepted): 64*T1."""
        return 64 * self.t1


DEFAULT_TIMERS = TimerConfig()

__all__ = ["DEFAULT_TIMERS", "TimerConfig"]
