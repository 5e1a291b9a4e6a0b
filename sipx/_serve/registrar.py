"""The registrar and location service of ``sipx serve`` (RFC 3261 section 10.3), sans-I/O.

Bindings are kept per address-of-record *user* (one domain: this server), in memory, each
with its Contact, its absolute expiry time, the Call-ID and CSeq of the REGISTER that made
it, and the transport and source address that REGISTER came from. Every call takes ``now``
(seconds on the caller's monotonic clock).

Expiry follows Kamailio's defaults: 3600 s when the request does not say, at most 3600 s,
``min_expires`` 0 (so 423 Interval Too Brief only appears when a minimum is configured).
``Expires: 0`` or ``;expires=0`` removes a binding; ``Contact: *`` with ``Expires: 0``
removes them all. A user keeps at most ``max_contacts`` bindings (16; the oldest give way).
The 200 lists every current Contact with the ``;expires=`` it has left.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from .._core.header_types import NameAddr
from .._core.message import Request, Response
from .._core.transaction import make_response
from .._core.uri import URI
from .._errors import ParseError
from .common import Address


@dataclass(slots=True)
class Binding:
    """One Contact registered for an address-of-record user."""

    user: str
    contact: NameAddr
    expires_at: float
    call_id: str
    cseq: int
    transport: str
    source: Address
    registered_at: float

    @property
    def uri(self) -> URI:
        return self.contact.uri

    def remaining(self, now: float) -> int:
        """Whole seconds left (rounded up, so a fresh 3600 s binding says 3600)."""
        return max(0, math.ceil(self.expires_at - now - 1e-9))

    def contact_value(self, now: float) -> str:
        """The Contact as a registrar's 200 lists it: the URI with ``;expires=`` left."""
        params = {k: v for k, v in self.contact.params.items() if k != "expires"}
        params["expires"] = str(self.remaining(now))
        return str(NameAddr(self.contact.uri, self.contact.display_name, params))


class RegistrarError(Exception):
    """A REGISTER the registrar refuses; ``status`` and ``reason`` make the response."""

    def __init__(self, status: int, reason: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.headers = dict(headers or {})


class Registrar:
    """Location service: ``register()`` answers a REGISTER, ``lookup()`` finds bindings."""

    def __init__(
        self,
        *,
        default_expires: int = 3600,
        max_expires: int = 3600,
        min_expires: int = 0,
        max_contacts: int = 16,
    ) -> None:
        if not 0 <= min_expires <= max_expires:
            raise ValueError("need 0 <= min_expires <= max_expires")
        if max_contacts < 1:
            raise ValueError("max_contacts must be at least 1")
        self.max_contacts = max_contacts
        self.default_expires = default_expires
        self.max_expires = max_expires
        self.min_expires = min_expires
        self._bindings: dict[str, list[Binding]] = {}

    # -- REGISTER --------------------------------------------------------------------------
    def register(
        self,
        request: Request,
        now: float,
        *,
        transport: str = "UDP",
        source: Address = ("0.0.0.0", 0),
        to_tag: str | None = None,
    ) -> Response:
        """Apply a (authenticated) REGISTER and build its response (200, or 400/423/500)."""
        try:
            user = self._apply(request, now, transport=transport, source=source)
        except RegistrarError as exc:
            response = make_response(request, exc.status, exc.reason, to_tag=to_tag)
            for name, value in exc.headers.items():
                response.headers[name] = value
            return response
        except ParseError as exc:
            return make_response(request, 400, f"Bad Request ({exc})"[:120], to_tag=to_tag)
        response = make_response(request, 200, to_tag=to_tag)
        for binding in self.lookup(user, now):
            response.headers.add("Contact", binding.contact_value(now))
        return response

    def _apply(self, request: Request, now: float, *, transport: str, source: Address) -> str:
        user = request.to.uri.user
        if not user:
            raise RegistrarError(404, "Not Found (To has no user)")
        call_id = request.call_id
        cseq = request.cseq.seq
        header_expires = request.expires
        contacts = request.contact
        self._expire_user(user, now)
        if any(c.is_wildcard for c in contacts):
            if len(contacts) != 1 or header_expires != 0:
                raise RegistrarError(400, "Bad Request (Contact: * needs Expires: 0 alone)")
            for binding in self._bindings.get(user, []):
                if binding.call_id == call_id and cseq <= binding.cseq:
                    raise RegistrarError(500, "Server Internal Error (out-of-order REGISTER)")
            self._bindings.pop(user, None)
            return user
        changes: list[tuple[NameAddr, int]] = []
        for contact in contacts:
            contact.uri  # noqa: B018 - parse now: a bad Contact fails the whole request
            if "expires" in contact.params:
                expires = contact.expires
                if expires is None:
                    raise RegistrarError(400, "Bad Request (bad expires parameter)")
            elif header_expires is not None:
                expires = header_expires
            else:
                expires = self.default_expires
            expires = min(expires, self.max_expires)
            if 0 < expires < self.min_expires:
                raise RegistrarError(
                    423, "Interval Too Brief", {"Min-Expires": str(self.min_expires)}
                )
            changes.append((contact, expires))
        bindings = self._bindings.setdefault(user, [])
        for contact, _ in changes:  # check every binding first: a refused request changes nothing
            existing = self._find(bindings, contact.uri)
            if existing is not None and existing.call_id == call_id and cseq <= existing.cseq:
                raise RegistrarError(500, "Server Internal Error (out-of-order REGISTER)")
        for contact, expires in changes:
            existing = self._find(bindings, contact.uri)
            if existing is not None:
                bindings.remove(existing)
            if expires == 0:
                continue
            bindings.append(
                Binding(
                    user=user,
                    contact=NameAddr(contact.uri, contact.display_name, dict(contact.params)),
                    expires_at=now + expires,
                    call_id=call_id,
                    cseq=cseq,
                    transport=transport.upper(),
                    source=source,
                    registered_at=now,
                )
            )
        if len(bindings) > self.max_contacts:  # the oldest registrations give way
            bindings.sort(key=lambda b: b.registered_at)
            del bindings[: len(bindings) - self.max_contacts]
        if not bindings:
            del self._bindings[user]
        return user

    @staticmethod
    def _find(bindings: list[Binding], uri: URI) -> Binding | None:
        for binding in bindings:
            if binding.uri == uri:
                return binding
        return None

    # -- location --------------------------------------------------------------------------
    def lookup(self, user: str, now: float) -> list[Binding]:
        """The current bindings of ``user``, most recently registered first."""
        self._expire_user(user, now)
        bindings = self._bindings.get(user, [])
        return sorted(bindings, key=lambda b: b.registered_at, reverse=True)

    def binding_at(self, uri: URI) -> Binding | None:
        """The binding whose Contact has ``uri``'s host, port and transport, if any (an
        in-dialog request to a registered UA can then use the connection it registered
        over)."""
        key = _where(uri)
        for bindings in self._bindings.values():
            for binding in bindings:
                if _where(binding.uri) == key:
                    return binding
        return None

    def last_expiry(self, user: str) -> float | None:
        """When the last binding of ``user`` runs out (None: no binding)."""
        bindings = self._bindings.get(user)
        return max(b.expires_at for b in bindings) if bindings else None

    def snapshot(self, now: float) -> dict[str, list[Binding]]:
        """Every user with current bindings (most recent first); expired ones are dropped."""
        self.expire(now)
        return {user: self.lookup(user, now) for user in sorted(self._bindings)}

    def expire(self, now: float) -> None:
        for user in list(self._bindings):
            self._expire_user(user, now)

    def remove(self, user: str) -> None:
        self._bindings.pop(user, None)

    def _expire_user(self, user: str, now: float) -> None:
        bindings = self._bindings.get(user)
        if bindings is None:
            return
        bindings[:] = [b for b in bindings if b.expires_at > now]
        if not bindings:
            del self._bindings[user]

    def __len__(self) -> int:
        return sum(len(b) for b in self._bindings.values())


def _where(uri: URI) -> tuple[str, int | None, str]:
    return uri.host.lower(), uri.port, (uri.transport or "UDP").upper()
