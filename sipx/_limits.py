"""Bounds on what the network can make a sipx endpoint hold: :class:`Limits`.

One frozen value, given to ``AsyncClient(limits=...)``, ``Client(limits=...)`` and
``DevServer(limits=...)`` (``sipx serve --max-transactions ...``). Each bound and why its
default is what it is (docs/SECURITY.md has the measurements):

* ``max_server_transactions`` (100 000): server transactions alive at once. Over UDP a
  non-INVITE one lives 32 s after its answer (Timer J, 64·T1) to absorb retransmissions,
  and an answered INVITE 32 s too (Timer L), so a flood of new requests piles them up:
  once answered each is a record of about 1.2 KiB (100 000: about 120 MiB), and the cap
  still takes about 3 000 new requests/s (1 500 calls/s) over UDP for ever (far more
  over TCP, where a transaction ends with its answer). Beyond it a new request is answered
  ``503 Service Unavailable`` with ``Retry-After: retry_after`` without a transaction
  (RFC 3261 21.5.4), and counted; retransmissions, ACKs and CANCELs of live transactions
  are matched as usual.
* ``max_connections`` (512) and ``max_connections_per_address`` (32): TCP/TLS connections
  open at once, in all and from one remote IP address. A connection over either is
  accepted and closed at once, and counted. 512 keeps half of the usual 1024 file
  descriptors of a process for RTP sockets and files; connections the client opens
  itself are never refused, but count toward the total.
* ``first_message_timeout`` (10 s): an accepted connection (its TLS handshake included)
  that has not delivered one complete SIP message by then is closed, and counted. A peer
  connects because it has a request to send: 10 s is the TLS handshake bound and carries a
  65 535-byte message at 64 kbit/s, while a sender of one byte per second is cut after 10
  bytes instead of holding the connection for the 300 s idle timeout.
* ``message_timeout`` (10 s): on any TCP/TLS connection, a message whose first bytes
  arrived must be complete within this, else the connection is closed and counted. The
  first-message bound does not cover what comes after a first message: without this, a
  peer that sent one message could then trickle a second one forever, each byte resetting
  the idle timeout.
* ``max_message_size`` (65 535 bytes), ``max_headers`` (256), ``max_line_length`` (8 192):
  the parser's bounds (:class:`~sipx.ParserLimits`), for datagrams and stream messages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._core.parser import ParserLimits

__all__ = ["DEFAULT_LIMITS", "LimitStats", "Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource bounds against hostile or broken peers; see the module docstring."""

    max_server_transactions: int = 100_000
    retry_after: int = 10
    max_connections: int = 512
    max_connections_per_address: int = 32
    first_message_timeout: float = 10.0
    message_timeout: float = 10.0
    max_message_size: int = 65_535
    max_headers: int = 256
    max_line_length: int = 8_192

    def __post_init__(self) -> None:
        for name in (
            "max_server_transactions",
            "max_connections",
            "max_connections_per_address",
            "max_message_size",
            "max_headers",
            "max_line_length",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Limits.{name} is an int, not {value!r}")
            if value < 1:
                raise ValueError(f"Limits.{name} must be at least 1, not {value!r}")
        retry = self.retry_after
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
            raise ValueError(f"Limits.retry_after is a number of seconds >= 0, not {retry!r}")
        for name in ("first_message_timeout", "message_timeout"):
            timeout = getattr(self, name)
            if isinstance(timeout, bool) or not isinstance(timeout, int | float):
                raise TypeError(f"Limits.{name} is a number of seconds, not {timeout!r}")
            if math.isnan(timeout) or timeout <= 0:
                raise ValueError(f"Limits.{name} must be > 0 seconds, not {timeout!r}")

    @property
    def parser(self) -> ParserLimits:
        """The message bounds, as the parser and the stream framer take them."""
        return ParserLimits(self.max_message_size, self.max_headers, self.max_line_length)


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class LimitStats:
    """What the limits turned away since the endpoint started (a snapshot).

    ``requests_refused``: new requests answered 503 (``max_server_transactions``);
    ``connections_refused``: connections closed at accept (``max_connections``,
    ``max_connections_per_address``); ``connections_timed_out``: connections closed for
    sending no complete message within ``first_message_timeout``, or for not completing a
    message within ``message_timeout``; ``malformed_messages``:
    messages that did not parse (answered 400/505 where possible, else dropped).
    """

    requests_refused: int = 0
    connections_refused: int = 0
    connections_timed_out: int = 0
    malformed_messages: int = 0
