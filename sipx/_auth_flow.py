"""The digest retry (RFC 3261 22.2, RFC 7616), as one flow.

As in httpx, the flow is a generator: it yields a request, receives that request's final
response, and yields the retry a 401/407 calls for (a new transaction: new branch, CSeq + 1)
until nothing more is to be answered. :mod:`sipx._uac` drives it for every request, in and
out of dialog; :meth:`DigestAuth.authorize` also serves ``retry_with_auth()``.

A challenge is answered only as :mod:`sipx._challenge_policy` allows (from the request's
next hop or a listed host; of the credentials' realm); one left unanswered goes back to the
caller with the reason in ``response.challenge_unanswered``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator

from ._auth import Auth
from ._challenge_policy import ChallengeSources
from ._core import digest
from ._core.builder import build_auth_retry
from ._core.ids import IdSource
from ._core.message import Request, Response
from ._errors import AuthError
from ._trio.transport import Address

AuthFlow = Generator[Request, Response, None]


class DigestAuth:
    """Answers digest challenges for one user agent (its cnonces and nonce counts)."""

    def __init__(self, ids: IdSource, generated_contacts: dict[str, str]) -> None:
        self.ids = ids
        self.nonces = digest.NonceCounter()
        self.sources = ChallengeSources()  # whose challenges we answer (hosts=)
        self._generated_contacts = generated_contacts

    def flow(
        self,
        request: Request,
        credentials: Auth.Digest | None,
        sent_to: Callable[[], Address | None] = lambda: None,
    ) -> AuthFlow:
        """Send ``request``; answer a challenge once, and once more only if it was stale.

        ``sent_to()`` says where the last request went (challenges from elsewhere are
        refused). A challenge left unanswered comes back with ``challenge_unanswered``.
        """
        response = yield request
        for attempt in range(2):
            if response.status_code not in (401, 407):
                return
            if credentials is None:
                response.challenge_unanswered = "no credentials to answer it with (auth=)"
                return
            try:
                retry = self._authorize(
                    response.request or request, response, credentials, attempt > 0, sent_to()
                )
            except AuthError as exc:  # a challenge we may not answer goes back to the caller
                response.challenge_unanswered = str(exc)
                return
            response = yield retry

    def authorize(
        self,
        request: Request,
        response: Response,
        credentials: Auth.Digest,
        *,
        strict_realm: bool,
        stale_only: bool = False,
        sent_to: Address | None = None,
    ) -> Request | None:
        """The retry of ``request`` with credentials for ``response``'s challenge; when it
        may not or cannot be answered, an AuthError saying why (None if not
        ``strict_realm``). A challenge from anywhere but ``sent_to`` and the credentials'
        ``hosts`` is refused (see :mod:`sipx._challenge_policy`)."""
        try:
            return self._authorize(request, response, credentials, stale_only, sent_to)
        except AuthError:
            if strict_realm:
                raise
            return None

    def _authorize(
        self,
        request: Request,
        response: Response,
        credentials: Auth.Digest,
        stale_only: bool,
        sent_to: Address | None,
    ) -> Request:
        refusal = self.sources.refusal(response, sent_to, credentials)
        if refusal is not None:
            raise AuthError(refusal)
        header = "WWW-Authenticate" if response.status_code == 401 else "Proxy-Authenticate"
        challenges = digest.parse_challenges(response.headers.get_list(header), header)
        if not challenges:
            raise AuthError(f"the {response.status_code} carries no Digest challenge ({header})")
        usable = [c for c in challenges if credentials.matches(c)]
        if not usable:
            realms = ", ".join(repr(c.realm) for c in challenges) or "none"
            raise AuthError(
                f"credentials for realm {credentials.realm!r} do not match"
                f" the challenge (realm {realms})"
            )
        challenge = digest.select_challenge(usable)
        if stale_only and not challenge.stale:
            # a second challenge after an answered one goes back to the caller
            raise AuthError(
                f"challenged again ({response.status_code}) after the credentials of"
                f" {credentials.username!r} were sent: they were not accepted"
            )
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


FLOW_STATUSES = frozenset({401, 407, 422})
"""The only final statuses a request flow (digest, :func:`interval_retry_flow`) acts on:
after any other response it ends without a retry."""


async def run_flow(
    flow: AuthFlow,
    send_first: Callable[[Request], Awaitable[Response]],
    send_retry: Callable[[Request], Awaitable[Response]],
) -> Response:
    """Drive ``flow``: the last response, with the earlier ones in its ``history``."""
    return await resume_flow(flow, await send_first(next(flow)), send_retry)


async def resume_flow(
    flow: AuthFlow, response: Response, send_retry: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Drive ``flow`` on from the ``response`` to its first request."""
    while True:
        try:
            retry = flow.send(response)
        except StopIteration:
            return response
        previous = response
        response = await send_retry(retry)
        response.history[:0] = [*previous.history, previous]


__all__ = ["FLOW_STATUSES", "AuthFlow", "DigestAuth", "resume_flow", "run_flow"]
