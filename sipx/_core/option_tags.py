"""SIP option tags (RFC 3261 19.2): what this user agent supports, and the checks on them.

:data:`SUPPORTED` is the one list of the extensions a sipx user agent understands: it is
what the UAS compares a request's ``Require`` with (RFC 3261 8.2.2.3: anything else gets
``420 Bad Extension`` with ``Unsupported``), what ``OPTIONS`` advertises in ``Supported``
and, for the tags a UAC announces itself, what goes into an outgoing INVITE's
``Supported``. A feature that adds an extension adds its tag here.
"""

from __future__ import annotations

from collections.abc import Iterable

from .message import Message

RELIABLE_PROVISIONAL = "100rel"  # RFC 3262

SUPPORTED: tuple[str, ...] = (RELIABLE_PROVISIONAL, "replaces")
"""Option tags a sipx user agent understands, in the order ``Supported`` lists them."""


def option_tags(message: Message, header: str) -> list[str]:
    """The option tags of ``header`` (``Require``, ``Supported``, ``Proxy-Require`` ...),
    every occurrence and comma-joined value, in order, without duplicates."""
    tags: list[str] = []
    for value in message.headers.get_list(header):
        tag = value.strip()
        if tag and tag not in tags:
            tags.append(tag)
    return tags


def has_option_tag(message: Message, header: str, tag: str) -> bool:
    """True when ``header`` lists ``tag`` (compared without regard to case)."""
    wanted = tag.lower()
    return any(value.lower() == wanted for value in option_tags(message, header))


def unsupported(message: Message, supported: Iterable[str]) -> list[str]:
    """The tags of ``message``'s ``Require`` that are not in ``supported`` (RFC 3261
    8.2.2.3), for the ``Unsupported`` header of a 420."""
    required = option_tags(message, "Require")
    if not required:  # the usual case: nothing to compare
        return required
    known = {tag.lower() for tag in supported}
    return [tag for tag in required if tag.lower() not in known]


def add_option_tag(message: Message, header: str, tag: str) -> None:
    """Add ``tag`` to ``header`` (e.g. ``Supported``): appended to the values already there
    (never replacing them), or a new header; nothing if it is listed already."""
    if has_option_tag(message, header, tag):
        return
    present = option_tags(message, header)
    message.headers[header] = ", ".join([*present, tag])


__all__ = [
    "RELIABLE_PROVISIONAL",
    "SUPPORTED",
    "add_option_tag",
    "has_option_tag",
    "option_tags",
    "unsupported",
]
