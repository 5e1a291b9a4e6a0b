"""HTTP/SIP digest authentication, sans-I/O.

Covers RFC 2069 (no qop), RFC 2617 (qop ``auth``/``auth-int``, MD5-sess), RFC 7616
(SHA-256, SHA-512-256 and their ``-sess`` variants; ``userhash`` is not supported) and
RFC 8760 (several challenges in one response: answer the strongest supported one).

Nothing here touches the network, the clock or a random source: the caller supplies the
``cnonce`` and keeps a :class:`NonceCounter`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .._errors import AuthError, ParseError

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "Challenge",
    "Credentials",
    "NonceCounter",
    "build_credentials",
    "compute_response",
    "credentials_header_name",
    "parse_challenge",
    "parse_challenges",
    "parse_credentials",
    "select_challenge",
    "verify_credentials",
]

# --------------------------------------------------------------------------- hashing

_HASHLIB_NAMES = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}


def _available(name: str) -> bool:
    try:
        hashlib.new(name, b"", usedforsecurity=False)
    except ValueError:  # not offered by this OpenSSL build (e.g. FIPS mode)
        return False
    return True


def _hasher(name: str) -> Callable[[bytes], str]:
    def digest(data: bytes) -> str:
        return hashlib.new(name, data, usedforsecurity=False).hexdigest()

    return digest


# Base algorithm (upper-case) -> hex-digest function, for those this hashlib offers.
_HASHES: dict[str, Callable[[bytes], str]] = {
    base: _hasher(name) for base, name in _HASHLIB_NAMES.items() if _available(name)
}

# Strength rank of each base algorithm; a "-SESS" variant ranks with its base.
_RANK = {"SHA-512-256": 3, "SHA-256": 2, "MD5": 1}

SUPPORTED_ALGORITHMS: tuple[str, ...] = tuple(
    alg
    for base in sorted(_HASHES, key=lambda b: _RANK[b], reverse=True)
    for alg in (base, base + "-SESS")
)
"""Algorithms this build can answer, canonical upper-case, strongest first."""

_HEADER_NAMES = {
    "www-authenticate": ("WWW-Authenticate", "Authorization"),
    "proxy-authenticate": ("Proxy-Authenticate", "Proxy-Authorization"),
}

_QOPS = ("auth", "auth-int")

# --------------------------------------------------------------------------- parsing

_WS = " \t\r\n"
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")


def _is_token(text: str) -> bool:
    return bool(text) and all(c in _TOKEN_CHARS for c in text)


def _split_scheme(value: str) -> tuple[str, str]:
    """Split ``"Scheme params"`` into the scheme and the parameter text."""
    text = value.strip(_WS)
    if not text:
        raise ParseError("empty authentication header value")
    end = 0
    while end < len(text) and text[end] not in _WS:
        end += 1
    scheme = text[:end]
    if not _is_token(scheme):
        raise ParseError(f"invalid authentication scheme {scheme!r}")
    return scheme, text[end:]


# C0 controls but HTAB, DEL, and the surrogates that stand for undecodable bytes.
_UNANSWERABLE_RE = re.compile("[\x00-\x08\x0a-\x1f\x7f\udc80-\udcff]")


def _parse_params(text: str) -> dict[str, str]:
    """Parse ``name=value, name="quoted"`` into a dict with lower-case names."""
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while True:
        while i < n and (text[i] in _WS or text[i] == ","):  # tolerate empty list elements
            i += 1
        if i >= n:
            return params
        start = i
        while i < n and text[i] in _TOKEN_CHARS:
            i += 1
        name = text[start:i].lower()
        if not name:
            raise ParseError(f"expected a parameter name at {text[start:][:20]!r}")
        while i < n and text[i] in _WS:
            i += 1
        if i >= n or text[i] != "=":
            raise ParseError(f"parameter {name!r} has no '=' value")
        i += 1
        while i < n and text[i] in _WS:
            i += 1
        if i < n and text[i] == '"':
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise ParseError(f"unterminated quoted string in parameter {name!r}")
                c = text[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\":
                    i += 1
                    if i >= n:
                        raise ParseError(f"unterminated quoted string in parameter {name!r}")
                    c = text[i]
                chars.append(c)
                i += 1
            val = "".join(chars)
        else:
            start = i
            while i < n and text[i] not in _WS and text[i] not in ',"':
                i += 1
            val = text[start:i]
            if not val:
                raise ParseError(f"parameter {name!r} has an empty value")
        while i < n and text[i] in _WS:
            i += 1
        if i < n and text[i] != ",":
            raise ParseError(f"expected ',' after parameter {name!r}, got {text[i:][:20]!r}")
        if name in params:
            raise ParseError(f"duplicate parameter {name!r}")
        if _UNANSWERABLE_RE.search(val):
            # Not a quoted-string of RFC 7616 (qdtext has no controls; text is UTF-8), and
            # neither a hash nor a header value could carry it back.
            raise ParseError(f"parameter {name!r} holds a control character or non-UTF-8 bytes")
        params[name] = val


def _canonical_header_name(header_name: str) -> tuple[str, str]:
    try:
        return _HEADER_NAMES[header_name.lower()]
    except KeyError:
        raise ValueError(
            f"header_name must be WWW-Authenticate or Proxy-Authenticate, not {header_name!r}"
        ) from None


# --------------------------------------------------------------------------- challenges


@dataclass(frozen=True, slots=True)
class Challenge:
    """One parsed ``Digest`` challenge (a WWW-Authenticate or Proxy-Authenticate value)."""

    scheme: str
    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    domain: str | None = None
    params: dict[str, str] = field(default_factory=dict, hash=False)
    header_name: str = "WWW-Authenticate"


def parse_challenge(value: str, header_name: str = "WWW-Authenticate") -> Challenge:
    """Parse one challenge header value; :class:`ParseError` if it is not a usable Digest one."""
    header_name = _canonical_header_name(header_name)[0]
    scheme, rest = _split_scheme(value)
    if scheme.lower() != "digest":
        raise ParseError(f"unsupported authentication scheme {scheme!r} (expected Digest)")
    params = _parse_params(rest)
    for required in ("realm", "nonce"):
        if required not in params:
            raise ParseError(f"Digest challenge has no {required} parameter")
    algorithm = params.get("algorithm", "MD5").strip(_WS).upper()
    if not algorithm:
        raise ParseError("Digest challenge has an empty algorithm parameter")
    qop = tuple(q for q in (p.strip(_WS).lower() for p in params.get("qop", "").split(",")) if q)
    return Challenge(
        scheme="Digest",
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=algorithm,
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").strip(_WS).lower() == "true",
        domain=params.get("domain"),
        params=params,
        header_name=header_name,
    )


def parse_challenges(
    values: Iterable[str], header_name: str = "WWW-Authenticate"
) -> list[Challenge]:
    """Parse several header values, silently skipping non-Digest and malformed ones."""
    header_name = _canonical_header_name(header_name)[0]
    out: list[Challenge] = []
    for value in values:
        try:
            out.append(parse_challenge(value, header_name))
        except ParseError:
            continue
    return out


def _answerable(challenge: Challenge) -> bool:
    if challenge.algorithm.upper() not in SUPPORTED_ALGORITHMS:
        return False
    return not challenge.qop or any(q in _QOPS for q in challenge.qop)


def _strength(challenge: Challenge) -> int:
    return _RANK[challenge.algorithm.upper().removesuffix("-SESS")]


def select_challenge(challenges: Sequence[Challenge]) -> Challenge:
    """Pick the challenge with the strongest supported algorithm (topmost on a tie)."""
    usable = [c for c in challenges if _answerable(c)]
    if not usable:
        offered = ", ".join(c.algorithm for c in challenges) or "none"
        raise AuthError(f"no answerable Digest challenge (algorithms offered: {offered})")
    return max(usable, key=_strength)  # max() keeps the first of equal keys


def credentials_header_name(challenge: Challenge) -> str:
    """``Authorization`` answers WWW-Authenticate, ``Proxy-Authorization`` Proxy-Authenticate."""
    return _canonical_header_name(challenge.header_name)[1]


# --------------------------------------------------------------------------- responses


def compute_response(
    *,
    algorithm: str,
    username: str,
    password: str,
    realm: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None,
    nc: str | None,
    cnonce: str | None,
    body: bytes = b"",
) -> str:
    """Return the hex ``response`` value per RFC 2069/2617/7616 (strings hashed as UTF-8)."""
    alg = algorithm.upper()
    base = alg.removesuffix("-SESS")
    h = _HASHES.get(base)
    if h is None or alg not in SUPPORTED_ALGORITHMS:
        raise AuthError(f"unsupported digest algorithm {algorithm!r}")

    def hs(*parts: str) -> str:
        return h(":".join(parts).encode("utf-8"))

    ha1 = hs(username, realm, password)
    if alg.endswith("-SESS"):
        if cnonce is None:
            raise AuthError(f"{algorithm} needs a cnonce")
        ha1 = hs(ha1, nonce, cnonce)
    if qop is None:
        return hs(ha1, nonce, hs(method, uri))
    q = qop.lower()
    if q not in _QOPS:
        raise AuthError(f"unsupported qop {qop!r}")
    if nc is None or cnonce is None:
        raise AuthError(f"qop={qop} needs both nc and cnonce")
    ha2 = hs(method, uri, h(body)) if q == "auth-int" else hs(method, uri)
    return hs(ha1, nonce, nc, cnonce, q, ha2)


class NonceCounter:
    """nonce-count kept per nonce: ``next(nonce)`` returns 1, 2, 3... for the same nonce.

    Only the ``max_nonces`` most recently used nonces are remembered.
    """

    __slots__ = ("_counts", "_max")

    def __init__(self, max_nonces: int = 64) -> None:
        if max_nonces < 1:
            raise ValueError("max_nonces must be at least 1")
        self._max = max_nonces
        self._counts: OrderedDict[str, int] = OrderedDict()

    def next(self, nonce: str) -> int:
        """Return the next nonce-count for ``nonce`` (1 for a nonce not seen before)."""
        count = self._counts.pop(nonce, 0) + 1
        self._counts[nonce] = count
        while len(self._counts) > self._max:
            self._counts.popitem(last=False)
        return count


def _quote(value: str) -> str:
    if any(c in value for c in "\r\n\x00"):
        raise ValueError(f"CR, LF or NUL not allowed in a digest parameter: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check_token(name: str, value: str) -> str:
    if not _is_token(value):
        raise ValueError(f"digest parameter {name} must be a token, not {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Credentials:
    """The parameters of one Authorization / Proxy-Authorization Digest answer."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str
    cnonce: str | None
    nc: str | None
    qop: str | None
    opaque: str | None

    def to_header_value(self) -> str:
        """Render as a header value; algorithm, qop and nc are unquoted tokens."""
        parts = [
            f"username={_quote(self.username)}",
            f"realm={_quote(self.realm)}",
            f"nonce={_quote(self.nonce)}",
            f"uri={_quote(self.uri)}",
            f"response={_quote(self.response)}",
            f"algorithm={_check_token('algorithm', self.algorithm)}",
        ]
        if self.cnonce is not None:
            parts.append(f"cnonce={_quote(self.cnonce)}")
        if self.qop is not None:
            parts.append(f"qop={_check_token('qop', self.qop)}")
        if self.nc is not None:
            parts.append(f"nc={_check_token('nc', self.nc)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        return "Digest " + ", ".join(parts)


def _choose_qop(challenge: Challenge, preference: Sequence[str]) -> str | None:
    if not challenge.qop:
        return None
    for q in preference:
        q = q.lower()
        if q in _QOPS and q in challenge.qop:
            return q
    raise AuthError(f"no supported qop offered (offered: {', '.join(challenge.qop)})")


def build_credentials(
    challenge: Challenge,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    body: bytes = b"",
    cnonce: str,
    nonce_count: int = 1,
    qop_preference: Sequence[str] = ("auth", "auth-int"),
) -> Credentials:
    """Answer ``challenge``; without qop this is the RFC 2069 form (no cnonce, nc or qop).

    A ``-sess`` challenge without qop still sends ``cnonce``, since H(A1) depends on it.
    """
    alg = challenge.algorithm.upper()
    if alg not in SUPPORTED_ALGORITHMS:
        raise AuthError(f"unsupported digest algorithm {challenge.algorithm!r}")
    if not 1 <= nonce_count <= 0xFFFFFFFF:
        raise ValueError(f"nonce_count out of range: {nonce_count}")
    qop = _choose_qop(challenge, qop_preference)
    nc = f"{nonce_count:08x}" if qop is not None else None
    sess = alg.endswith("-SESS")
    sent_cnonce = cnonce if qop is not None or sess else None
    response = compute_response(
        algorithm=alg,
        username=username,
        password=password,
        realm=challenge.realm,
        nonce=challenge.nonce,
        method=method,
        uri=uri,
        qop=qop,
        nc=nc,
        cnonce=sent_cnonce,
        body=body,
    )
    # Echo the server's own spelling of the algorithm (e.g. "MD5-sess"), MD5 when absent.
    algorithm = challenge.params.get("algorithm", "").strip(_WS)
    if algorithm.upper() != alg:
        algorithm = alg
    return Credentials(
        username=username,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response=response,
        algorithm=algorithm,
        cnonce=sent_cnonce,
        nc=nc,
        qop=qop,
        opaque=challenge.opaque,
    )


# --------------------------------------------------------------------------- server side


def parse_credentials(value: str) -> dict[str, str]:
    """Parse an Authorization / Proxy-Authorization Digest value into lower-case params."""
    scheme, rest = _split_scheme(value)
    if scheme.lower() != "digest":
        raise ParseError(f"unsupported authentication scheme {scheme!r} (expected Digest)")
    return _parse_params(rest)


def verify_credentials(
    params: Mapping[str, str], *, password: str, method: str, body: bytes = b""
) -> bool:
    """Recompute the response from ``params`` and compare it in constant time.

    Only the hash is checked: nonce freshness, nc replay, realm and uri matching the
    request are the caller's job.
    """
    try:
        expected = compute_response(
            algorithm=params.get("algorithm", "MD5"),
            username=params["username"],
            password=password,
            realm=params["realm"],
            nonce=params["nonce"],
            method=method,
            uri=params["uri"],
            qop=params.get("qop"),
            nc=params.get("nc"),
            cnonce=params.get("cnonce"),
            body=body,
        )
        given = params["response"]
    except (KeyError, AuthError):
        return False
    return hmac.compare_digest(expected.encode("ascii"), given.lower().encode("utf-8"))
