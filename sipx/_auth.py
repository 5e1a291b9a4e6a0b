"""User-facing authentication settings: ``Auth.Digest(username, password, realm=None,
hosts=())``."""

from __future__ import annotations

from collections.abc import Iterable

from ._core.digest import Challenge

__all__ = ["Auth", "split_host"]


def split_host(entry: str) -> tuple[str, int | None]:
    """``"proxy.example.com"``, ``"192.0.2.1:5060"``, ``"[2001:db8::1]:5060"``, ``"::1"``
    -> (host, port or None); ValueError for anything else."""
    host, port = entry, None
    if entry.startswith("["):
        host, bracket, rest = entry[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"not a host or host:port: {entry!r}")
        number = rest[1:] if rest else None
    elif entry.count(":") == 1:
        host, _, number = entry.partition(":")
    else:
        number = None
    if number is not None:
        if not number.isdigit() or not 0 < int(number) <= 65535:
            raise ValueError(f"not a host or host:port: {entry!r}")
        port = int(number)
    if not host or any(c in host for c in " \t/@;<>"):
        raise ValueError(f"not a host or host:port: {entry!r}")
    return host, port


class Auth:
    """Namespace for authentication schemes."""

    class Digest:
        """Digest credentials (RFC 3261 22, RFC 7616).

        They answer a 401/407 only when it comes from where the request was sent (the
        target's server or the outbound proxy) or from one of ``hosts`` (names or
        addresses, with an optional port: ``["proxy2.example.com", "192.0.2.7:5060"]``);
        with ``realm`` set, only for that realm. Other challenges are returned to the
        caller, the reason in ``response.challenge_unanswered``. The password never
        appears in a repr, a log line or an error.
        """

        __slots__ = ("hosts", "password", "realm", "username")

        def __init__(
            self,
            username: str,
            password: str,
            realm: str | None = None,
            *,
            hosts: Iterable[str] = (),
        ) -> None:
            for name, value in (("username", username), ("password", password)):
                if not isinstance(value, str):
                    # the value itself is not repeated: it may be a password
                    raise TypeError(f"Auth.Digest {name} is a string, not {type(value).__name__}")
            if realm is not None and not isinstance(realm, str):
                raise TypeError(f"Auth.Digest realm is a string or None, not {realm!r}")
            if isinstance(hosts, str | bytes) or not isinstance(hosts, Iterable):
                raise TypeError(f"Auth.Digest hosts is a list of host names, not {hosts!r}")
            listed = tuple(hosts)
            for entry in listed:
                if not isinstance(entry, str):
                    raise TypeError(f"Auth.Digest hosts holds strings, not {entry!r}")
                split_host(entry)  # ValueError for what is not a host[:port]
            self.username = username
            self.password = password
            self.realm = realm
            self.hosts = listed

        def __repr__(self) -> str:
            hosts = f", hosts={list(self.hosts)!r}" if self.hosts else ""
            return (
                f"Auth.Digest(username={self.username!r}, password='***',"
                f" realm={self.realm!r}{hosts})"
            )

        def matches(self, challenge: Challenge) -> bool:
            """True if these credentials may answer ``challenge`` (exact realm match)."""
            return self.realm is None or self.realm == challenge.realm
