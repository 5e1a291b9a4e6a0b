"""Event hooks: subclass :class:`Events` and decorate methods with :func:`event_handler`.

Handlers receive ``(message, context)`` and may return a changed message (``None`` keeps
the original). ``"request"`` runs before a request is sent, ``"response"`` for every
response (1xx included), ``"auth_challenge"`` for 401/407. AsyncClient accepts plain and
async handlers; a blocking Client runs them on its portal thread.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ._core.message import Request, Response

if TYPE_CHECKING:
    from ._async_client import AsyncClient

EventName = Literal["request", "response", "auth_challenge"]
EVENT_NAMES: tuple[str, ...] = ("request", "response", "auth_challenge")
_ATTRIBUTE = "__sipx_events__"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class RequestContext:
    """What a handler knows about the exchange a message belongs to."""

    request: Request
    client: AsyncClient | None = None
    response: Response | None = None
    attempt: int = 1  # 2 for the retry that answers a challenge
    destination: tuple[str, int] | None = None
    transport: str = "UDP"
    metadata: dict[str, Any] = field(default_factory=dict)


def event_handler(*names: EventName) -> Callable[[F], F]:
    """Mark a method of an :class:`Events` subclass as the handler of the named events."""
    for name in names:
        if name not in EVENT_NAMES:
            raise ValueError(f"unknown event {name!r}; expected one of {', '.join(EVENT_NAMES)}")
    if not names:
        raise ValueError("event_handler() needs at least one event name")

    def mark(function: F) -> F:
        existing = getattr(function, _ATTRIBUTE, ())
        setattr(function, _ATTRIBUTE, (*existing, *names))
        return function

    return mark


class Events:
    """Base class for event hooks; also accepts handlers added with :meth:`on`."""

    def __init__(self) -> None:
        self._extra: dict[str, list[Callable[..., Any]]] = {}

    def on(self, name: EventName, handler: Callable[..., Any]) -> None:
        """Add a plain function (or coroutine function) as a handler."""
        if name not in EVENT_NAMES:
            raise ValueError(f"unknown event {name!r}")
        self.__dict__.setdefault("_extra", {}).setdefault(name, []).append(handler)

    def handlers(self, name: str) -> list[Callable[..., Any]]:
        found: list[Callable[..., Any]] = []
        seen: set[str] = set()
        for klass in type(self).__mro__:
            for attribute, value in vars(klass).items():
                if attribute in seen:
                    continue
                if name in getattr(value, _ATTRIBUTE, ()):
                    seen.add(attribute)
                    found.append(getattr(self, attribute))
        found.extend(self.__dict__.get("_extra", {}).get(name, []))
        return found


async def dispatch(events: Events | None, name: str, message: Any, context: RequestContext) -> Any:
    """Run every handler of ``name``; each may replace the message."""
    if events is None:
        return message
    for handler in events.handlers(name):
        result = handler(message, context)
        if inspect.isawaitable(result):
            result = await result
        if result is not None:
            message = result
    return message
