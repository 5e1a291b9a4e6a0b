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
            for name, value in (("username", username), ("password", password)):
                if not isinstance(value, str):
                    # the value itself is not repeated: it may be a password
                    raise TypeError(f"Auth.Digest {name} is a string, not {type(value).__name__}")
            if realm is not None and not isinstance(realm, str):
                raise TypeError(f"Auth.Digest realm is a string or None, not {realm!r}")
            self.username = username
            self.password = password
            self.realm = realm

        def __repr__(self) -> str:
            return f"Auth.Digest(username={self.username!r}, password='***', realm={self.realm!r})"

        def matches(self, challenge: Challenge) -> bool:
            """True if these credentials may answer ``challenge`` (exact realm match)."""
            return self.realm is None or self.realm == challenge.realm
