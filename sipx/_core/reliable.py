"""Reliable provisional responses (RFC 3262), sans-I/O.

A 101-199 response sent reliably carries ``Require: 100rel`` and ``RSeq: n``; the UAC
acknowledges it with a PRACK in the (early) dialog whose ``RAck`` names it: ``RAck: n
<CSeq number> <CSeq method>``. This module holds the vocabulary and the two sides' state,
without clock or I/O:

* :class:`RAck`, :func:`parse_rseq`, :func:`rseq_of`, :func:`is_reliable`: the headers;
* :class:`ProvisionalSequence` (UAC, one per early dialog and request): which reliable 1xx
  are new (PRACK them), retransmissions (RFC 3262 4: not acknowledged again) or out of
  order (a gap in RSeq: dropped, not processed);
* :class:`ReliableProvisionals` (UAS, one per INVITE): RSeq numbering from a random first
  value (1 to 2**31 - 1), one unacknowledged reliable 1xx at a time (later ones wait their
  turn), PRACK matching, and whether a 2xx must wait for a PRACK (RFC 3262 3: not while an
  unacknowledged reliable 1xx carried a session description);
* :func:`retransmission_offsets`: the UAS's schedule, T1 doubling without the T2 cap of
  2xx retransmissions, and :func:`give_up_after` (64·T1).
"""

from __future__ import annotations

import enum
from collections import deque
from typing import NamedTuple

from .._errors import ParseError
from .header_types import is_digits, is_token
from .message import Request, Response
from .option_tags import RELIABLE_PROVISIONAL, has_option_tag

MAX_RSEQ = 2**32 - 1
"""RSeq and the response-num of RAck are 32-bit unsigned integers (RFC 3262 7.1)."""
FIRST_RSEQ_MAX = 2**31 - 1
"""The first RSeq of a request is chosen in 1 .. 2**31 - 1 (RFC 3262 3), so that the
numbers that follow it never wrap."""


def _number(text: str, what: str) -> int:
    if not is_digits(text):
        raise ParseError(f"bad {what} {text[:40]!r}")
    value = int(text)
    if not 1 <= value <= MAX_RSEQ:
        raise ParseError(f"{what} {value} is not in 1..{MAX_RSEQ}")
    return value


def parse_rseq(value: str) -> int:
    """The number of an ``RSeq`` header value; ParseError when it is not 1..2**32-1."""
    return _number(value.strip(), "RSeq")


class RAck(NamedTuple):
    """``RAck: response-num CSeq-num Method``: which reliable 1xx a PRACK acknowledges."""

    rseq: int
    cseq: int
    method: str

    @classmethod
    def parse(cls, value: str) -> RAck:
        parts = value.split()
        if len(parts) != 3 or not is_token(parts[2]):
            raise ParseError(f"bad RAck {value[:80]!r}")
        cseq = parts[1]
        if not is_digits(cseq) or int(cseq) >= 2**31:
            raise ParseError(f"bad RAck CSeq number {cseq[:40]!r}")
        return cls(_number(parts[0], "RAck response-num"), int(cseq), parts[2])

    @classmethod
    def of(cls, response: Response) -> RAck:
        """The RAck that acknowledges ``response`` (a reliable provisional response)."""
        rseq = rseq_of(response)
        if rseq is None:
            raise ParseError("the response has no RSeq")
        return cls(rseq, response.cseq.seq, response.cseq.method)

    def __str__(self) -> str:
        return f"{self.rseq} {self.cseq} {self.method}"


def rseq_of(response: Response) -> int | None:
    """The RSeq of ``response``, or None when it has none; ParseError when it is bad."""
    value = response.headers.get_first("RSeq")
    return None if value is None else parse_rseq(value)


def is_reliable(response: Response) -> bool:
    """True for a 101-199 sent reliably: ``Require: 100rel`` and an ``RSeq`` (whose value
    :func:`rseq_of` checks)."""
    return (
        100 < response.status_code < 200
        and "RSeq" in response.headers
        and has_option_tag(response, "Require", RELIABLE_PROVISIONAL)
    )


def rack_of(request: Request) -> RAck:
    """The RAck of a PRACK; ParseError when it is missing or bad."""
    value = request.headers.get_first("RAck")
    if value is None:
        raise ParseError("PRACK without RAck")
    return RAck.parse(value)


# -- the UAC ---------------------------------------------------------------------------------
class Verdict(enum.Enum):
    """What a UAC does with a reliable provisional response (RFC 3262 4)."""

    NEW = "new"  # the next in sequence: process it and send a PRACK
    RETRANSMISSION = "retransmission"  # seen already: no new PRACK, not processed again
    OUT_OF_ORDER = "out of order"  # a gap (or an old number): not acknowledged, dropped


class ProvisionalSequence:
    """The RSeq space of one request's reliable provisional responses in one early dialog:
    the first one seen sets it; each later one must be exactly one higher."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: int | None = None

    def receive(self, rseq: int) -> Verdict:
        if self.last is None or rseq == self.last + 1:
            self.last = rseq
            return Verdict.NEW
        if rseq == self.last:
            return Verdict.RETRANSMISSION
        return Verdict.OUT_OF_ORDER


# -- the UAS ---------------------------------------------------------------------------------
def send_reliably(invite: Request, wanted: bool | None, *, enabled: bool) -> bool:
    """Whether a UAS sends its next 101-199 to ``invite`` reliably (RFC 3262 3).

    ``wanted``: None sends reliably only when the caller requires it (``Require: 100rel``);
    True whenever the caller supports it (``Supported`` or ``Require``), else falls back to
    an unreliable response (RFC 3262: never reliably to a caller that did not ask); False
    never, which a caller that requires 100rel does not allow (ValueError). ``enabled``:
    this user agent supports 100rel at all.
    """
    required = has_option_tag(invite, "Require", RELIABLE_PROVISIONAL)
    if wanted is False:
        if required and enabled:
            raise ValueError(
                "the caller requires 100rel (RFC 3262): its provisional responses are reliable"
            )
        return False
    if not enabled:
        return False
    if wanted is None:
        return required
    return required or has_option_tag(invite, "Supported", RELIABLE_PROVISIONAL)


def first_rseq(token: int) -> int:
    """The first RSeq of a request from a random non-negative integer: 1 .. 2**31 - 1."""
    return 1 + token % FIRST_RSEQ_MAX


def retransmission_offsets(t1: float) -> list[float]:
    """When a reliable provisional response is sent again, in seconds after its first
    sending: the interval starts at T1 and doubles, with no cap (RFC 3262 3: PRACKs are not
    triggered by retransmissions, unlike ACKs), while it falls within 64·T1:
    T1, 3·T1, 7·T1, 15·T1, 31·T1, 63·T1."""
    offsets: list[float] = []
    interval, at = t1, t1
    while at < give_up_after(t1):
        offsets.append(at)
        interval *= 2
        at += interval
    return offsets


def give_up_after(t1: float) -> float:
    """64·T1 after the first sending without a PRACK the UAS stops retransmitting and
    rejects the request with a 5xx (RFC 3262 3)."""
    return 64 * t1


def mark_reliable(response: Response, rseq: int) -> None:
    """Make ``response`` a reliable provisional response: ``Require: 100rel`` (added to
    any other required tag) and ``RSeq``."""
    if not has_option_tag(response, "Require", RELIABLE_PROVISIONAL):
        present = [tag for tag in response.headers.get_list("Require") if tag.strip()]
        response.headers["Require"] = ", ".join([*present, RELIABLE_PROVISIONAL])
    response.headers["RSeq"] = str(rseq)


class PrackResult(NamedTuple):
    """What a PRACK did: ``matched`` (answer 200, else 481) and the queued reliable 1xx
    that may go now (``send``), if any."""

    matched: bool
    send: Response | None


class ReliableProvisionals:
    """A UAS's reliable provisional responses to one request (RFC 3262 3).

    :meth:`add` numbers a 1xx (first RSeq given, then +1 each) and says whether it may be
    sent now: only one may be unacknowledged at a time, so a later one waits in a queue
    until the PRACK of the one before. :meth:`prack` matches a PRACK's RAck against the
    unacknowledged response. :meth:`final_sent`: a final response went out, queued 1xx are
    dropped (the unacknowledged one still matches a late PRACK: RFC 3262 3 says the UAS
    must be ready for it).
    """

    __slots__ = ("_next", "queue", "unacknowledged")

    def __init__(self, first: int) -> None:
        if not 1 <= first <= FIRST_RSEQ_MAX:
            raise ValueError(f"the first RSeq is 1..{FIRST_RSEQ_MAX}, not {first}")
        self._next = first
        self.unacknowledged: Response | None = None
        self.queue: deque[Response] = deque()

    def add(self, response: Response) -> bool:
        """Give ``response`` its RSeq and ``Require: 100rel``; True if it goes now (it is
        then the unacknowledged one), False if it waits for the PRACK of an earlier one."""
        if not 100 < response.status_code < 200:
            raise ValueError("only a 101-199 response is sent reliably")
        if self._next > MAX_RSEQ:
            raise ValueError("RSeq space exhausted")
        mark_reliable(response, self._next)
        self._next += 1
        if self.unacknowledged is None and not self.queue:
            self.unacknowledged = response
            return True
        self.queue.append(response)
        return False

    def prack(self, rack: RAck) -> PrackResult:
        """A PRACK with ``rack`` arrived: does it acknowledge the unacknowledged 1xx? The
        next queued 1xx (if any) becomes the unacknowledged one and is returned to send."""
        pending = self.unacknowledged
        if pending is None or rack != RAck.of(pending):
            return PrackResult(False, None)
        self.unacknowledged = self.queue.popleft() if self.queue else None
        return PrackResult(True, self.unacknowledged)

    def final_sent(self) -> None:
        """The final response went out: nothing more is sent reliably."""
        self.queue.clear()

    @property
    def holds_2xx(self) -> bool:
        """A 2xx must wait: the unacknowledged reliable 1xx carries a session description
        (RFC 3262 3). Queued ones were never sent: the final response drops them."""
        pending = self.unacknowledged
        return pending is not None and bool(pending.content)


__all__ = [
    "FIRST_RSEQ_MAX",
    "MAX_RSEQ",
    "PrackResult",
    "ProvisionalSequence",
    "RAck",
    "ReliableProvisionals",
    "Verdict",
    "first_rseq",
    "give_up_after",
    "is_reliable",
    "mark_reliable",
    "parse_rseq",
    "rack_of",
    "retransmission_offsets",
    "rseq_of",
    "send_reliably",
]
