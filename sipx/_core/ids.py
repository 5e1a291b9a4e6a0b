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


class TokenPool:
    """A ``token(nbytes) -> hex`` source that draws ``pool_size`` bytes at a time from
    ``random_bytes`` (``os.urandom``): the same randomness as ``secrets.token_hex``, without
    a system call per identifier (a request takes three: branch, tag, Call-ID). Each byte
    is handed out once."""

    __slots__ = ("_end", "_pool", "_pool_size", "_random_bytes", "_used")

    def __init__(self, random_bytes: Callable[[int], bytes], pool_size: int = 4096) -> None:
        self._random_bytes = random_bytes
        self._pool_size = pool_size
        self._pool = b""
        self._end = 0  # len(self._pool)
        self._used = 0

    def __call__(self, nbytes: int) -> str:
        used = self._used
        if used + nbytes > self._end:
            self._pool, used = self._random_bytes(max(self._pool_size, nbytes)), 0
            self._end = len(self._pool)
        self._used = used + nbytes
        return self._pool[used : used + nbytes].hex()


def counter_token(seed: int = 0) -> Callable[[int], str]:
    """A deterministic token source for tests: hex of an increasing counter."""
    state = [seed]

    def token(nbytes: int) -> str:
        state[0] += 1
        return format(state[0], f"0{nbytes * 2}x")[-nbytes * 2 :]

    return token
