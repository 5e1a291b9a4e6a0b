"""Client: the blocking façade over AsyncClient.

A Client starts one daemon thread that runs ``trio.run`` with an AsyncClient inside; every
method crosses into that thread with ``trio.from_thread.run`` (the blocking portal) and
waits for the result. There is one code path: the async one. Event and request handlers of
a Client run on the portal thread.

A Client that is never closed still lets the program exit promptly: the portal thread is a
daemon, and open clients are closed at interpreter exit.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import trio

from ._async_client import AsyncClient, LocalAddress, TraceHook
from ._auth import Auth
from ._core.dialog import Dialog, DialogId
from ._core.message import Request, Response
from ._core.sdp import SDPBody
from ._core.session_timer import DEFAULT_SESSION_EXPIRES, MIN_SE
from ._core.timers import TimerConfig
from ._core.uri import URI
from ._errors import ClientClosedError
from ._events import Events
from ._limits import Limits, LimitStats
from ._notifier import IncomingSubscription
from ._portal import Portal
from ._sync_call import BlockingCall, _CallFeed, _IncomingCalls
from ._sync_publication import BlockingPublication
from ._sync_subscription import BlockingIncomingSubscription, BlockingSubscription, BlockingWatch
from ._trio.tls import TLSCert, TLSVerify
from ._trio.transport import Network
from ._uas import RequestHandler

T = TypeVar("T")
log = logging.getLogger("sipx")
#: what a blocking client's ``on_subscribe`` handler takes (AsyncClient's takes an
#: IncomingSubscription)
SubscribeHandler = Callable[[BlockingIncomingSubscription], Any]

_open_clients: weakref.WeakSet[Client] = weakref.WeakSet()


@atexit.register
def _close_open_clients() -> None:
    for client in list(_open_clients):
        client.close()


class Client:
    """A blocking SIP user agent: the AsyncClient API without ``await``.

    Usable with ``with Client(...) as client`` or plainly (``close()`` when done; a client
    left open is closed at exit).
    """

    def __init__(
        self,
        local_host: str = "0.0.0.0",
        local_port: int = 5060,
        transport: str = "UDP",
        auth: Auth.Digest | None = None,
        events: Events | None = None,
        *,
        timeout: float | None = None,
        timers: TimerConfig | None = None,
        user_agent: str | None = None,
        outbound_proxy: str | None = None,
        trace: TraceHook | None = None,
        network: Network | None = None,
        id_token: Callable[[int], str] | None = None,
        verify: TLSVerify = True,
        cert: TLSCert | None = None,
        nameservers: Sequence[str] | None = None,
        rtp_ports: tuple[int, int] = (10000, 20000),
        info_packages: Sequence[str] = (),
        reliable_provisional: bool = True,
        transports: Sequence[str] | None = None,
        tls_port: int | None = None,
        session_expires: int | None = DEFAULT_SESSION_EXPIRES,
        min_se: int = MIN_SE,
        limits: Limits | None = None,
    ) -> None:
        if _in_trio_run():
            raise RuntimeError(
                "sipx.Client is the blocking client and cannot run inside trio.run(): "
                "use 'async with sipx.AsyncClient(...)' there"
            )
        self._async = AsyncClient(
            local_host,
            local_port,
            transport,
            auth,
            events,
            timeout=timeout,
            timers=timers,
            user_agent=user_agent,
            outbound_proxy=outbound_proxy,
            trace=trace,
            network=network,
            id_token=id_token,
            verify=verify,
            cert=cert,
            nameservers=nameservers,
            rtp_ports=rtp_ports,
            info_packages=info_packages,
            reliable_provisional=reliable_provisional,
            transports=transports,
            tls_port=tls_port,
            session_expires=session_expires,
            min_se=min_se,
            limits=limits,
        )
        self._portal = Portal()
        self._stop: trio.Event | None = None
        self._nursery: trio.Nursery | None = None  # the portal's own tasks (calls() feeds)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._portal.start(self._run_portal)
        self._ready.wait()
        if self._error is not None:
            error, self._error = self._error, None
            self._portal.join()
            raise error
        _open_clients.add(self)

    def _run_portal(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to the constructor, or logged
            if not self._ready.is_set():
                self._error = exc
            else:
                log.error("the client's portal thread failed", exc_info=exc)
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._portal.entered()
        self._stop = trio.Event()
        entered = False
        try:
            async with self._async:
                entered = True
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    self._ready.set()
                    await self._stop.wait()
                    nursery.cancel_scope.cancel()  # ends the calls() feeds (their calls get 480)
        except BaseException as exc:
            if entered:
                raise
            self._error = exc  # reported by the constructor (a port in use, a bad cert)
            self._ready.set()

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> Client:
        """``with Client(...) as client:`` (the client is open from the constructor on)."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Leaving the block closes the client (its calls end, see :meth:`close`)."""
        self.close()

    def close(self) -> None:
        """Cancel the client's tasks, close its transport and stop the portal thread."""
        _open_clients.discard(self)
        if self._stop is not None and self._portal.alive:
            try:
                self._portal.run_sync(self._stop.set)
            except ClientClosedError:
                pass
            self._portal.join(timeout=16 * self._async.timers.t1 + 2)

    @property
    def async_client(self) -> AsyncClient:
        """The AsyncClient behind this façade (lives on the portal thread)."""
        return self._async

    @property
    def local_address(self) -> LocalAddress:
        """Where ``transport=`` listens (see :attr:`AsyncClient.local_address`)."""
        return self._async.local_address

    @property
    def local_addresses(self) -> dict[str, LocalAddress]:
        """Where each transport listens (see :attr:`AsyncClient.local_addresses`)."""
        return self._async.local_addresses

    @property
    def transports(self) -> tuple[str, ...]:
        """The transports the client runs (``transport=`` first)."""
        return self._async.transports

    @property
    def dialogs(self) -> list[Dialog]:
        return self._async.dialogs

    @property
    def early_dialogs(self) -> list[Dialog]:
        return self._async.early_dialogs

    @property
    def auth(self) -> Auth.Digest | None:
        return self._async.auth

    @property
    def events(self) -> Events | None:
        return self._async.events

    @events.setter
    def events(self, value: Events | None) -> None:
        self._portal.run_sync(setattr, self._async, "events", value)

    @property
    def timeout(self) -> float | None:
        return self._async.timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self._portal.run_sync(setattr, self._async, "timeout", value)

    @property
    def closed(self) -> bool:
        """True once the client is closed (or its portal thread has ended)."""
        return self._async.closed or not self._portal.alive

    @property
    def limits(self) -> Limits:
        return self._async.limits

    @property
    def limit_stats(self) -> LimitStats:
        return self._async.limit_stats

    # -- requests (same signatures as AsyncClient, checked by a test) ----------------------
    def request(
        self,
        method: str,
        uri: str | URI,
        *,
        headers: Mapping[str, str] | None = None,
        body: str | bytes | SDPBody | None = None,
        content_type: str | None = None,
        from_uri: str | None = None,
        to_uri: str | None = None,
        host: str | None = None,
        port: int | None = None,
        timeout: float | None = None,
        auth: Auth.Digest | None = None,
    ) -> Response:
        return self._portal.run(
            self._async.request,
            method,
            uri,
            headers=headers,
            body=body,
            content_type=content_type,
            from_uri=from_uri,
            to_uri=to_uri,
            host=host,
            port=port,
            timeout=timeout,
            auth=auth,
        )

    def options(
        self,
        uri: str,
        host: str | None = None,
        port: int | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        auth: Auth.Digest | None = None,
    ) -> Response:
        return self._portal.run(
            self._async.options, uri, host, port, headers=headers, timeout=timeout, auth=auth
        )

    def register(
        self,
        aor: str,
        *,
        registrar: str | None = None,
        expires: int = 3600,
        contact: str | None = None,
        headers: Mapping[str, str] | None = None,
        host: str | None = None,
        port: int | None = None,
        timeout: float | None = None,
        auth: Auth.Digest | None = None,
    ) -> Response:
        return self._portal.run(
            self._async.register,
            aor,
            registrar=registrar,
            expires=expires,
            contact=contact,
            headers=headers,
            host=host,
            port=port,
            timeout=timeout,
            auth=auth,
        )

    def unregister(self, aor: str, **kwargs: Any) -> Response:
        return self._portal.run(self._async.unregister, aor, **kwargs)

    def invite(
        self,
        to_uri: str,
        from_uri: str | None = None,
        body: str | bytes | SDPBody | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        auth: Auth.Digest | None = None,
    ) -> Response:
        return self._portal.run(
            self._async.invite,
            to_uri,
            from_uri,
            body,
            headers,
            timeout,
            host=host,
            port=port,
            auth=auth,
        )

    def ack(self, response: Response, body: str | bytes | SDPBody | None = None) -> Request | None:
        return self._portal.run(self._async.ack, response, body)

    def call(
        self,
        to_uri: str,
        body: str | bytes | SDPBody | None = None,
        *,
        from_uri: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        host: str | None = None,
        port: int | None = None,
        auth: Auth.Digest | None = None,
        early_media: bool = False,
    ) -> BlockingCall:
        """Place a call (INVITE, then ACK of the 2xx); ``established`` tells if it was
        answered. The returned :class:`BlockingCall` holds, re-INVITEs and hangs up.
        ``early_media=True`` returns at a 183 with SDP (see :meth:`BlockingCall.wait_answered`)."""
        call = self._portal.run(
            self._async.call,
            to_uri,
            body,
            from_uri=from_uri,
            headers=headers,
            timeout=timeout,
            host=host,
            port=port,
            auth=auth,
            early_media=early_media,
        )
        return BlockingCall(call, self, self._portal)

    def calls(self, timeout: float | None = None) -> Iterator[BlockingCall]:
        """Incoming calls, as a blocking iterator: ``for call in client.calls(): ...``.

        The client listens from the moment this returns: calls that arrive while the loop
        body runs wait for the next ``next()``. Each ``next()`` waits up to ``timeout``
        seconds (``None``: forever); a timeout ends the iteration. Once the iterator is
        exhausted, closed (``close()``) or collected, incoming calls get 480 again (as do
        the calls it had received but not returned), unless an INVITE handler is set.
        """
        feed = self._portal.run(self._start_feed)
        return _IncomingCalls(self, self._portal, feed, timeout)

    async def _start_feed(self) -> _CallFeed:
        assert self._nursery is not None
        feed = _CallFeed(self._async)
        await self._nursery.start(feed.run)
        return feed

    def bye(
        self,
        response: Response | None = None,
        dialog_id: DialogId | str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        return self._portal.run(
            self._async.bye, response, dialog_id, headers=headers, timeout=timeout
        )

    def cancel(self, request: Request | None = None, *, call_id: str | None = None) -> Response:
        return self._portal.run(self._async.cancel, request, call_id=call_id)

    def message(
        self,
        to_uri: str,
        text: str,
        content_type: str = "text/plain",
        *,
        from_uri: str | None = None,
        headers: Mapping[str, str] | None = None,
        host: str | None = None,
        port: int | None = None,
        timeout: float | None = None,
        auth: Auth.Digest | None = None,
    ) -> Response:
        return self._portal.run(
            self._async.message,
            to_uri,
            text,
            content_type,
            from_uri=from_uri,
            headers=headers,
            host=host,
            port=port,
            timeout=timeout,
            auth=auth,
        )

    def subscribe(
        self,
        uri: str,
        event: str,
        expires: int = 3600,
        *,
        accept: str | None = None,
        headers: Mapping[str, str] | None = None,
        from_uri: str | None = None,
        host: str | None = None,
        port: int | None = None,
        timeout: float | None = None,
        auth: Auth.Digest | None = None,
    ) -> BlockingSubscription:
        """Subscribe to ``event`` at ``uri`` (RFC 6665); the :class:`BlockingSubscription`
        yields its NOTIFYs (``sub.notifications(timeout)``) and refreshes itself until
        ``sub.unsubscribe()`` or the client closes."""
        subscription = self._portal.run(
            self._async.subscribe,
            uri,
            event,
            expires,
            accept=accept,
            headers=headers,
            from_uri=from_uri,
            host=host,
            port=port,
            timeout=timeout,
            auth=auth,
        )
        return BlockingSubscription(subscription, self._portal)

    def watch(
        self,
        uri: str,
        event: str,
        expires: int = 3600,
        *,
        accept: str | None = None,
        headers: Mapping[str, str] | None = None,
        from_uri: str | None = None,
        host: str | None = None,
        port: int | None = None,
        timeout: float | None = None,
        auth: Auth.Digest | None = None,
    ) -> BlockingWatch:
        """Watch ``event`` at ``uri`` (``with client.watch(...) as watch``): the
        :class:`BlockingWatch` yields the NOTIFYs of a subscription renewed as RFC 6665
        suggests, until the block is left (which unsubscribes)."""
        watch = self._async.watch(
            uri,
            event,
            expires,
            accept=accept,
            headers=headers,
            from_uri=from_uri,
            host=host,
            port=port,
            timeout=timeout,
            auth=auth,
        )
        return BlockingWatch(watch, self._portal)

    def publish(
        self,
        uri: str,
        event: str,
        body: str | bytes,
        *,
        content_type: str | None = None,
        expires: int = 3600,
        headers: Mapping[str, str] | None = None,
        from_uri: str | None = None,
        host: str | None = None,
        port: int | None = None,
        timeout: float | None = None,
        auth: Auth.Digest | None = None,
    ) -> BlockingPublication:
        """Publish ``body`` as the ``event`` state of ``uri`` (RFC 3903); the
        :class:`BlockingPublication` refreshes itself until ``pub.remove()`` or the client
        closes."""
        publication = self._portal.run(
            self._async.publish,
            uri,
            event,
            body,
            content_type=content_type,
            expires=expires,
            headers=headers,
            from_uri=from_uri,
            host=host,
            port=port,
            timeout=timeout,
            auth=auth,
        )
        return BlockingPublication(publication, self._portal)

    @property
    def publications(self) -> list[BlockingPublication]:
        """The publications made by :meth:`publish` and not removed."""
        return [BlockingPublication(p, self._portal) for p in self._async.publications]

    def on_subscribe(self, event: str, handler: SubscribeHandler | None) -> None:
        """Serve the event package ``event`` as a notifier; ``handler`` runs on the portal
        thread with a :class:`BlockingIncomingSubscription` to accept or reject."""
        wrapped = None
        if handler is not None:
            portal = self._portal

            def wrapped(incoming: IncomingSubscription) -> Any:
                return handler(BlockingIncomingSubscription(incoming, portal))

        self._portal.run(_as_async(self._async.on_subscribe), event, wrapped)

    def notify(
        self,
        uri: str | None = None,
        event: str = "",
        body: str | bytes | None = None,
        *,
        subscription_state: str = "active",
        content_type: str | None = None,
        response: Response | None = None,
        dialog_id: DialogId | str | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Response:
        return self._portal.run(
            self._async.notify,
            uri,
            event,
            body,
            subscription_state=subscription_state,
            content_type=content_type,
            response=response,
            dialog_id=dialog_id,
            headers=headers,
            **kwargs,
        )

    def refer(
        self,
        uri: str | None = None,
        refer_to: str = "",
        *,
        response: Response | None = None,
        dialog_id: DialogId | str | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Response:
        return self._portal.run(
            self._async.refer,
            uri,
            refer_to,
            response=response,
            dialog_id=dialog_id,
            headers=headers,
            **kwargs,
        )

    def info(
        self,
        uri: str | None = None,
        body: str | bytes | None = None,
        *,
        content_type: str = "application/dtmf-relay",
        response: Response | None = None,
        dialog_id: DialogId | str | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Response:
        return self._portal.run(
            self._async.info,
            uri,
            body,
            content_type=content_type,
            response=response,
            dialog_id=dialog_id,
            headers=headers,
            **kwargs,
        )

    def update(
        self,
        response: Response | None = None,
        dialog_id: DialogId | str | None = None,
        body: str | bytes | SDPBody | None = None,
        *,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        return self._portal.run(
            self._async.update,
            response,
            dialog_id,
            body,
            content_type=content_type,
            headers=headers,
            timeout=timeout,
        )

    def retry_with_auth(self, response: Response, auth: Auth.Digest | None = None) -> Response:
        return self._portal.run(self._async.retry_with_auth, response, auth)

    def enable_auto_reregister(self, aor: str, interval: float | None = None) -> None:
        self._portal.run(self._async.enable_auto_reregister, aor, interval)

    def disable_auto_reregister(self, aor: str | None = None) -> None:
        self._portal.run(_as_async(self._async.disable_auto_reregister), aor)

    @property
    def auto_reregistering(self) -> list[str]:
        return self._async.auto_reregistering

    def on_request(self, method: str, handler: RequestHandler) -> None:
        """Handle incoming ``method`` requests; the handler runs on the portal thread."""
        self._portal.run(_as_async(self._async.on_request), method, handler)


def _in_trio_run() -> bool:
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return False
    return True


def _as_async(function: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    async def run(*args: Any, **kwargs: Any) -> T:
        return function(*args, **kwargs)

    return run


def _blocking_docstrings(blocking: type, original: type) -> None:
    """Give each blocking method without a docstring the one of its async original (so
    ``help(sipx.Client)`` reads like ``help(sipx.AsyncClient)``, and no source comment
    shows in its place)."""
    for name, member in vars(blocking).items():
        if name.startswith("_") or not callable(member) or member.__doc__:
            continue
        source = getattr(original, name, None)
        if source is not None and source.__doc__:
            member.__doc__ = f"{source.__doc__.rstrip()}\n\n(Blocking: waits on this thread.)"


_blocking_docstrings(Client, AsyncClient)
