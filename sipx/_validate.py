"""Checks of what users pass to the public API, with errors that name the argument.

A wrong type or value is reported where the user made the mistake (``TypeError`` /
``ValueError`` saying which argument and what it should be), not deep inside the parser,
the digest code or trio.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from ._auth import Auth
from ._core.sdp import SDPBody
from ._core.uri import URI


def timeout(name: str, value: Any) -> float | None:
    """None, or a finite number of seconds >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} is a number of seconds or None, not {value!r}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
    return float(value)


def port(name: str, value: Any, *, optional: bool = False) -> int | None:
    """A port number 0-65535 (None allowed when ``optional``)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} is a port number (an int), not {value!r}")
    if not 0 <= value <= 65535:
        raise ValueError(f"{name} must be a port number from 0 to 65535, not {value!r}")
    return value


def text(name: str, value: Any, *, optional: bool = False) -> str | None:
    """A string (None allowed when ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        kind = "a string or None" if optional else "a string"
        raise TypeError(f"{name} is {kind}, not {value!r}")
    return value


def uri(name: str, value: Any, *, optional: bool = False) -> str | URI | None:
    """A SIP URI, as text or a :class:`~sipx.URI` (None allowed when ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, str | URI):
        raise TypeError(f"{name} is a SIP URI such as 'sip:bob@example.com', not {value!r}")
    return value


def credentials(name: str, value: Any) -> None:
    """None or an ``Auth.Digest``."""
    if value is not None and not isinstance(value, Auth.Digest):
        raise TypeError(f"{name} is an Auth.Digest(username, password) or None, not {value!r}")


def body(name: str, value: Any) -> None:
    """None, text, bytes or an :class:`~sipx.SDPBody`."""
    if value is not None and not isinstance(value, str | bytes | bytearray | SDPBody):
        raise TypeError(f"{name} is text, bytes or an SDPBody, not {value!r}")


def session_timer(session_expires: Any, min_se: Any) -> int | None:
    """``session_expires``: None or 0 (session timers off), else whole seconds, not below
    ``min_se`` (whole seconds >= 1). Returns the interval, None when off."""
    if isinstance(min_se, bool) or not isinstance(min_se, int):
        raise TypeError(f"min_se is whole seconds (an int), not {min_se!r}")
    if min_se < 1:
        raise ValueError(f"min_se must be at least 1 second (RFC 4028 says 90), not {min_se}")
    if session_expires is None:
        return None
    if isinstance(session_expires, bool) or not isinstance(session_expires, int):
        raise TypeError(
            f"session_expires is whole seconds (an int) or None, not {session_expires!r}"
        )
    if session_expires < 0:
        raise ValueError(f"session_expires must not be negative, not {session_expires}")
    if session_expires == 0:
        return None
    if session_expires < min_se:
        raise ValueError(
            f"session_expires ({session_expires}) is below min_se ({min_se}): lower min_se too"
        )
    return session_expires


def port_argument(text: str) -> int:
    """An argparse ``type=`` for port options: a clear message instead of a traceback."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, not {value}")
    return value


def seconds_argument(text: str) -> float:
    """An argparse ``type=`` for --timeout: a number of seconds > 0."""
    value = _float_argument(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"a number of seconds > 0, not {text!r}")
    return value


def finite_seconds_argument(text: str) -> float:
    """An argparse ``type=`` for a deadline option: seconds > 0 and finite."""
    value = seconds_argument(text)
    if math.isinf(value):
        raise argparse.ArgumentTypeError(f"a finite number of seconds, not {text!r}")
    return value


def count_argument(text: str) -> int:
    """An argparse ``type=`` for a bound: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"a whole number >= 1, not {text!r}")
    return value


def duration_argument(text: str) -> float:
    """An argparse ``type=`` for --duration: seconds, negative (or inf) for "until hung up"."""
    return _float_argument(text)


def _float_argument(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if math.isnan(value):
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    return value


__all__ = [
    "body",
    "count_argument",
    "credentials",
    "duration_argument",
    "finite_seconds_argument",
    "port",
    "port_argument",
    "seconds_argument",
    "session_timer",
    "text",
    "timeout",
    "uri",
]
