"""Digest authentication for ``sipx serve`` (RFC 2617 / RFC 7616 server side), sans-I/O.

Challenges look like Kamailio's: ``Digest realm="sipx", nonce="...", qop="auth"`` with
``algorithm=SHA-256`` added when the server runs SHA-256 (MD5 is the default and, as in
Kamailio, is not named). There is no ``opaque``.

The nonce is stateless: 8 bytes of timestamp (milliseconds of the caller's clock) followed
by the first 16 bytes of an HMAC-SHA256 of that timestamp under a per-server secret, base64
encoded (32 characters). Any nonce this server issued can be checked without remembering
it; a nonce older than ``nonce_lifetime`` is *stale*: a request whose response digest is
right but whose nonce is stale is challenged again with ``stale=true``. As in Kamailio
(nonce_count off), a nonce may be reused until it goes stale.

The digest is recomputed with :func:`sipx._core.digest.verify_credentials`. The ``uri``
parameter is not compared with the Request-URI (SIPp always sends
``uri="sip:<server>:<port>"``, and Kamailio accepts it); the ``algorithm`` must be the one
the server challenges with; ``qop`` may be ``auth``, ``auth-int`` or absent (RFC 2069).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from .._core.digest import parse_credentials, verify_credentials
from .._core.headers import Headers
from .._errors import ParseError

DEFAULT_USERS: Mapping[str, str] = {"1111": "1111xxx", "2222": "2222xxx", "3333": "3333xxx"}
"""The users of the quick-start guide and of the Kamailio test kit."""

ALGORITHMS = ("MD5", "SHA-256")

_MAC_BYTES = 16


class AuthStatus(enum.Enum):
    OK = "ok"
    CHALLENGE = "challenge"  # no usable credentials, wrong password, unknown user: (re)challenge
    STALE = "stale"  # right password, expired nonce: challenge with stale=true
    FORBIDDEN = "forbidden"  # right password, but the auth user is not the caller: 403


@dataclass(frozen=True, slots=True)
class AuthResult:
    status: AuthStatus
    username: str | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status is AuthStatus.OK


class DigestAuthenticator:
    """Issues challenges and checks Authorization / Proxy-Authorization headers."""

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        *,
        realm: str = "sipx",
        algorithm: str = "MD5",
        secret: bytes,
        nonce_lifetime: float = 300.0,
    ) -> None:
        algorithm = algorithm.upper()
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, not {algorithm!r}")
        if not secret:
            raise ValueError("the nonce secret must not be empty")
        if '"' in realm or "\\" in realm:
            raise ValueError(f"realm must not contain quotes or backslashes: {realm!r}")
        self.users = dict(DEFAULT_USERS if users is None else users)
        self.realm = realm
        self.algorithm = algorithm
        self.nonce_lifetime = nonce_lifetime
        self._secret = secret

    # -- nonces ----------------------------------------------------------------------------
    def make_nonce(self, now: float) -> str:
        stamp = struct.pack(">q", int(now * 1000))
        mac = hmac.new(self._secret, stamp, hashlib.sha256).digest()[:_MAC_BYTES]
        return base64.urlsafe_b64encode(stamp + mac).decode("ascii")

    def nonce_age(self, nonce: str, now: float) -> float | None:
        """Seconds since this server issued ``nonce``, or None when it is not one of ours."""
        try:
            raw = base64.urlsafe_b64decode(nonce.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return None
        if len(raw) != 8 + _MAC_BYTES:
            return None
        stamp, mac = raw[:8], raw[8:]
        expected = hmac.new(self._secret, stamp, hashlib.sha256).digest()[:_MAC_BYTES]
        if not hmac.compare_digest(mac, expected):
            return None
        age = now - struct.unpack(">q", stamp)[0] / 1000
        return None if age < -1.0 else max(age, 0.0)

    # -- challenges ------------------------------------------------------------------------
    def challenge(self, now: float, *, stale: bool = False) -> str:
        """A ``WWW-Authenticate`` / ``Proxy-Authenticate`` value with a fresh nonce."""
        value = f'Digest realm="{self.realm}", nonce="{self.make_nonce(now)}", qop="auth"'
        if self.algorithm != "MD5":
            value += f", algorithm={self.algorithm}"
        if stale:
            value += ", stale=true"
        return value

    # -- verification ----------------------------------------------------------------------
    def verify(
        self,
        headers: Headers,
        method: str,
        now: float,
        *,
        proxy: bool,
        identity: str | None,
        body: bytes = b"",
    ) -> AuthResult:
        """Check the credentials in ``headers`` for a ``method`` request.

        ``proxy`` selects Proxy-Authorization (else Authorization); ``identity`` is the user
        the credentials must belong to (the To user of a REGISTER, the From user otherwise).
        """
        name = "Proxy-Authorization" if proxy else "Authorization"
        params = self.find_credentials(headers, name)
        if params is None:
            return AuthResult(AuthStatus.CHALLENGE, reason="no credentials for our realm")
        username = params.get("username", "")
        password = self.users.get(username)
        if password is None:
            return AuthResult(AuthStatus.CHALLENGE, username, f"unknown auth user {username!r}")
        if params.get("algorithm", "MD5").upper() != self.algorithm:
            return AuthResult(AuthStatus.CHALLENGE, username, "wrong algorithm")
        age = self.nonce_age(params.get("nonce", ""), now)
        if age is None:
            return AuthResult(AuthStatus.CHALLENGE, username, "nonce not issued by us")
        if params.get("qop") is not None and params["qop"].lower() not in ("auth", "auth-int"):
            return AuthResult(AuthStatus.CHALLENGE, username, "unsupported qop")
        if not verify_credentials(params, password=password, method=method, body=body):
            return AuthResult(AuthStatus.CHALLENGE, username, "wrong password")
        if age > self.nonce_lifetime:
            return AuthResult(AuthStatus.STALE, username, "nonce expired")
        if identity is None or username != identity:
            return AuthResult(AuthStatus.FORBIDDEN, username, "auth user is not the caller")
        return AuthResult(AuthStatus.OK, username)

    def find_credentials(self, headers: Headers, name: str) -> dict[str, str] | None:
        """The parsed Digest credentials of ``name`` for our realm (the first such), or None."""
        for value in headers.get_list(name):
            try:
                params = parse_credentials(value)
            except ParseError:
                continue
            if params.get("realm") == self.realm:
                return params
        return None

    def consume(self, headers: Headers, name: str = "Proxy-Authorization") -> None:
        """Remove the credentials for our realm (they are not forwarded downstream)."""
        kept: list[str] = []
        for value in headers.get_list(name):
            try:
                ours = parse_credentials(value).get("realm") == self.realm
            except ParseError:
                ours = False
            if not ours:
                kept.append(value)
        if name in headers:
            del headers[name]
        for value in kept:
            headers.add(name, value)
