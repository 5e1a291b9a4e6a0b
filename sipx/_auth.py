"""User-facing authentication settings: ``Auth.Digest(username, password, realm=None)``."""

from __future__ import annotations

from ._core.digest import Challenge

__all__ = ["Auth"]


class Auth:
    """Namespace for authentication schemes."""

    class Digest:
        """Digest credentials; ``realm=None`` answers challenges from any realm."""

        __slots__ = ("password", "realm", "username")

        def __init__(self, username: str, password: str, realm: str | None = None) -> None:
            self.username = username
            self.password = password
            self.realm = realm

        def __repr__(self) -> str:
            return f"Auth.Digest(username={self.username!r}, password='***', realm={self.realm!r})"

        def matches(self, challenge: Challenge) -> bool:
            """True if these credentials may answer ``challenge`` (exact realm match)."""
            return self.realm is None or self.realm == challenge.realm
