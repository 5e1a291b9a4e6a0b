"""The Event and Subscription-State headers (RFC 6665 8.2.1, 8.2.3).

Shared by every event package: the implicit subscription of a REFER (RFC 3515, package
``refer``) uses them today; a general SUBSCRIBE/NOTIFY framework can build on the same
values. Parsing is strict about the syntax and lenient about unknown parameters (kept).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .._errors import ParseError
from .header_types import is_digits, is_token, parse_params, render_params

ACTIVE = "active"
PENDING = "pending"
TERMINATED = "terminated"


@dataclass(frozen=True)
class EventHeader:
    """``Event: refer;id=93809824``: the package (lower-cased) and its ``id``, if any."""

    package: str
    id: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> EventHeader:
        name, params = _token_and_params(text, "Event")
        event_id = params.pop("id", None)
        return cls(name.lower(), event_id, params)

    def __str__(self) -> str:
        params = dict(self.params)
        if self.id is not None:
            params = {"id": self.id, **params}
        return f"{self.package}{render_params(params)}"


@dataclass(frozen=True)
class SubscriptionState:
    """``Subscription-State: active;expires=60`` or ``terminated;reason=noresource``.

    ``state`` is lower-cased (``active``, ``pending``, ``terminated`` or an extension value);
    ``expires`` and ``retry_after`` are seconds, ``reason`` the termination reason.
    """

    state: str
    expires: int | None = None
    reason: str | None = None
    retry_after: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def terminated(self) -> bool:
        return self.state == TERMINATED

    @classmethod
    def parse(cls, text: str) -> SubscriptionState:
        value, params = _token_and_params(text, "Subscription-State")
        expires = _seconds(params.pop("expires", None), "expires")
        retry_after = _seconds(params.pop("retry-after", None), "retry-after")
        reason = params.pop("reason", None)
        if reason is not None and not is_token(reason):
            raise ParseError(f"bad Subscription-State reason {reason[:40]!r}")
        return cls(value.lower(), expires, reason and reason.lower(), retry_after, params)

    def __str__(self) -> str:
        params: dict[str, str | None] = {}
        if self.reason is not None:
            params["reason"] = self.reason
        if self.expires is not None:
            params["expires"] = str(self.expires)
        if self.retry_after is not None:
            params["retry-after"] = str(self.retry_after)
        params.update(self.params)
        return f"{self.state}{render_params(params)}"


def _token_and_params(text: str, header: str) -> tuple[str, dict[str, str | None]]:
    """``token *(;param)``: the token and its parameters; ParseError if it is no token."""
    value, semi, rest = text.strip(" \t").partition(";")
    value = value.strip(" \t")
    if not value or not is_token(value):
        raise ParseError(f"bad {header} header {text[:80]!r}")
    return value, parse_params(semi + rest, header) if semi else {}


def _seconds(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if not is_digits(value) or len(value) > 10:
        raise ParseError(f"bad Subscription-State {name} {value[:40]!r}")
    return int(value)


__all__ = ["ACTIVE", "PENDING", "TERMINATED", "EventHeader", "SubscriptionState"]
