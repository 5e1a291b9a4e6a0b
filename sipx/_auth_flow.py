"""The digest retry (RFC 3261 22.2, RFC 7616), as one flow.

As in httpx, the flow is a generator: it yields a request, receives that request's final
response, and yields the retry a 401/407 calls for (a new transaction: new branch, CSeq + 1)
until nothing more is to be answered. :mod:`sipx._uac` drives it for every request, in and
out of dialog; :meth:`DigestAuth.authorize` also serves ``retry_with_auth()``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator

from ._auth import Auth
from ._core import digest
from ._core.builder import build_auth_retry
from ._core.ids import IdSource
from ._core.message import Request, Response
from ._errors import AuthError

AuthFlow = Generator[Request, Response, None]


class DigestAuth:
    """Answers digest challenges for one user agent (its cnonces and nonce counts)."""

    def __init__(self, ids: IdSource, generated_contacts: dict[str, str]) -> None:
        self.ids = ids
        self.nonces = digest.NonceCounter()
        self._generated_contacts = generated_contacts

    def flow(self, request: Request, credentials: Auth.Digest | None) -> AuthFlow:
        """Send ``request``; answer a challenge once, and once more only if it was stale."""
        response = yield request
        for attempt in range(2):
            if credentials is None or response.status_code not in (401, 407):
                return
            retry = self.authorize(
                response.request or request,
                response,
                credentials,
                strict_realm=False,
                stale_only=attempt > 0,
            )
            if retry is None:
                return  # a challenge we cannot answer goes back to the caller
            response = yield retry

    def authorize(
        self,
        request: Request,
        response: Response,
        credentials: Auth.Digest,
        *,
        strict_realm: bool,
        stale_only: bool = False,
    ) -> Request | None:
        """The retry of ``request`` with credentials for ``response``'s challenge, or None
        when no challenge suits ``credentials`` (an AuthError if ``strict_realm``)."""
        header = "WWW-Authenticate" if response.status_code == 401 else "Proxy-Authenticate"
        challenges = digest.parse_challenges(response.headers.get_list(header), header)
        usable = [c for c in challenges if credentials.matches(c)]
        if not usable:
            if strict_realm:
                realms = ", ".join(c.realm for c in challenges) or "none"
                raise AuthError(
                    f"credentials for realm {credentials.realm!r} do not match"
                    f" the challenge (realm {realms})"
                )
            return None
        try:
            challenge = digest.select_challenge(usable)
        except AuthError:
            if strict_realm:
                raise
            return None
        if stale_only and not challenge.stale:
            return None  # a second challenge after an answered one goes back to the caller
        value = digest.build_credentials(
            challenge,
            username=credentials.username,
            password=credentials.password,
            method=request.method,
            uri=str(request.uri),
            body=request.content,
            cnonce=self.ids.cnonce(),
            nonce_count=self.nonces.next(challenge.nonce),
        ).to_header_value()
        retry = build_auth_retry(request, digest.credentials_header_name(challenge), value)
        generated = self._generated_contacts.get(request.call_id)
        if generated is not None and retry.headers.get_first("Contact") == generated:
            # Written anew on sending: the challenge may have taught us our NAT address.
            del retry.headers["Contact"]
        return retry


async def run_flow(
    flow: AuthFlow,
    send_first: Callable[[Request], Awaitable[Response]],
    send_retry: Callable[[Request], Awaitable[Response]],
) -> Response:
    """Drive ``flow``: the last response, with the earlier ones in its ``history``."""
    response = await send_first(next(flow))
    while True:
        try:
            retry = flow.send(response)
        except StopIteration:
            return response
        previous = response
        response = await send_retry(retry)
        response.history[:0] = [*previous.history, previous]


__all__ = ["AuthFlow", "DigestAuth", "run_flow"]
