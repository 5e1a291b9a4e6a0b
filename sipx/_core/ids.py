"""Identifiers a user agent draws at random: branches, tags, Call-IDs, cnonces.

The core never draws randomness itself: an :class:`IdSource` wraps a ``token(nbytes) -> hex``
callable that the I/O layer injects (``secrets.token_hex`` in production, a seeded
generator in tests).
"""

from __future__ import annotations

from collections.abc import Callable

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 8.1.1.7: every branch we generate starts with it


class IdSource:
    """Makes branch, tag, Call-ID and cnonce values from an injected random source."""

    __slots__ = ("_token",)

    def __init__(self, token: Callable[[int], str]) -> None:
        self._token = token

    def branch(self) -> str:
        return MAGIC_COOKIE + self._token(10)

    def tag(self) -> str:
        return self._token(8)

    def call_id(self, host: str | None = None) -> str:
        value = self._token(16)
        return f"{value}@{host}" if host else value

    def token(self, nbytes: int) -> str:
        """Random hex of ``nbytes`` bytes (for waits such as the 491 back-off)."""
        return self._token(nbytes)

    def cnonce(self) -> str:
        return self._token(8)


def counter_token(seed: int = 0) -> Callable[[int], str]:
    """A deterministic token source for tests: hex of an increasing counter."""
    state = [seed]

    def token(nbytes: int) -> str:
        state[0] += 1
        return format(state[0], f"0{nbytes * 2}x")[-nbytes * 2 :]

    return token
