"""BlockingCall: a :class:`~sipx.Call` for users of the blocking :class:`~sipx.Client`.

A Call lives on the client's portal thread (it holds trio events and answers through trio
transactions), so every method of a BlockingCall crosses into that thread: the plain ones
(``ring``, ``answer``, ``reject``, ``respond``) with ``trio.from_thread.run_sync``, the
awaited ones (``reinvite``, ``hold``, ``bye``, ...) with ``trio.from_thread.run``. The
waits take a ``timeout`` instead of a cancel scope.

``Client.calls()`` is fed by a :class:`_CallFeed`: a task on the portal that iterates
``AsyncClient.calls()`` into a buffer, so that the client listens from the moment
``calls()`` returns until the iterator is exhausted, closed or collected; the calls still
buffered then are rejected with 480, as when nobody listens.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, TypeVar, cast

import trio

from ._call import Call, CallState, InfoHandler
from ._call_media import AudioSource
from ._core.dialog import Dialog
from ._core.message import Request, Response
from ._core.sdp import SDPBody
from ._core.transaction import ServerTransaction
from ._errors import SIPError
from ._media_stream import MediaStats

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from ._async_client import AsyncClient
    from ._portal import Portal
    from ._sync_client import Client
    from ._transfer import TransferResult
    from ._uas import IncomingRequest


class BlockingCall:
    """One call, with the :class:`~sipx.Call` API without ``await``.

    Made by ``Client.call()`` and ``Client.calls()``; ``call`` is the Call underneath (to be
    used from the portal thread only). Attributes are read-only views of the Call's.
    """

    __slots__ = ("_call", "_client", "_portal")

    def __init__(self, call: Call, client: Client, portal: Portal) -> None:
        self._call = call
        self._client = client
        self._portal = portal

    def __repr__(self) -> str:
        call = self._call
        return f"<BlockingCall {call.direction} {call.invite.uri} {call.state.value}>"

    @property
    def call(self) -> Call:
        """The :class:`~sipx.Call` this wraps (it lives on the portal thread)."""
        return self._call

    @property
    def client(self) -> Client:
        """The blocking Client the call belongs to."""
        return self._client

    # -- read-only views of the Call ----------------------------------------------------------
    @property
    def state(self) -> CallState:
        return self._call.state

    @property
    def acked(self) -> bool:
        return self._call.acked

    @property
    def established(self) -> bool:
        return self._call.established

    @property
    def ended(self) -> bool:
        return self._call.ended

    @property
    def ended_by(self) -> str | None:
        return self._call.ended_by

    @property
    def direction(self) -> str:
        return self._call.direction

    @property
    def invite(self) -> Request:
        return self._call.invite

    @property
    def call_id(self) -> str:
        return self._call.call_id

    @property
    def remote_uri(self) -> str:
        return self._call.remote_uri

    @property
    def dialog(self) -> Dialog | None:
        return self._call.dialog

    @property
    def offer(self) -> SDPBody | None:
        return self._call.offer

    @property
    def answer_sdp(self) -> SDPBody | None:
        return self._call.answer_sdp

    @property
    def local_sdp(self) -> SDPBody | None:
        return self._call.local_sdp

    @property
    def remote_sdp(self) -> SDPBody | None:
        return self._call.remote_sdp

    @property
    def final_response(self) -> Response | None:
        return self._call.final_response

    @property
    def session_expires(self) -> int | None:
        return self._call.session_expires

    @property
    def session_refresher(self) -> str | None:
        return self._call.session_refresher

    @property
    def local_tag(self) -> str | None:
        return self._call.local_tag

    @property
    def transaction(self) -> ServerTransaction | None:
        return self._call.transaction

    @property
    def replaced_by(self) -> BlockingCall | None:
        """The call that took this one's place (a transfer, or an INVITE with Replaces)."""
        other = self._call.replaced_by
        return None if other is None else BlockingCall(other, self._client, self._portal)

    # -- incoming: ring, answer, reject (plain methods of Call: run_sync) --------------------------
    def ring(
        self,
        status_code: int = 180,
        body: SDPBody | str | None = None,
        *,
        reliable: bool | None = None,
    ) -> Response:
        """Send a provisional response (180 Ringing, or 183 with early media SDP);
        ``reliable``: RFC 3262, as :meth:`sipx.Call.ring`."""
        return self._portal.run_sync(self._call.ring, status_code, body, reliable=reliable)

    def answer(
        self, body: SDPBody | str | None = None, *, headers: Mapping[str, str] | None = None
    ) -> Response:
        """Answer with 200 OK (an SDP answer to the offer unless ``body`` is given)."""
        return self._portal.run_sync(self._call.answer, body, headers=headers)

    def reject(
        self,
        status_code: int = 486,
        reason: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Refuse the call (486 Busy Here by default)."""
        return self._portal.run_sync(self._call.reject, status_code, reason, headers=headers)

    def respond(
        self,
        status_code: int,
        reason: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        body: SDPBody | str | bytes | None = None,
    ) -> Response:
        """Send any response to the INVITE (prefer ring/answer/reject)."""
        return self._portal.run_sync(
            self._call.respond, status_code, reason, headers=headers, body=body
        )

    # -- in the dialog (awaited methods of Call: run) ---------------------------------------------
    def reinvite(
        self,
        body: SDPBody | str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send a re-INVITE with a new offer (our last SDP by default) and ACK its 2xx."""
        return self._portal.run(self._call.reinvite, body, headers=headers, timeout=timeout)

    def update(
        self,
        body: SDPBody | str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send UPDATE (RFC 3311) with a new offer, our last SDP by default; no ACK."""
        return self._portal.run(self._call.update, body, headers=headers, timeout=timeout)

    def hold(self) -> Response:
        """Put the call on hold: re-INVITE with our SDP set to sendonly."""
        return self._portal.run(self._call.hold)

    def unhold(self) -> Response:
        """Take the call off hold: re-INVITE with our SDP set to sendrecv."""
        return self._portal.run(self._call.unhold)

    def refer(self, refer_to: str) -> Response:
        """Ask the peer to call ``refer_to`` (RFC 3515)."""
        return self._portal.run(self._call.refer, refer_to)

    def transfer(
        self, target: str | Call | BlockingCall, *, timeout: float | None = None
    ) -> TransferResult:
        """Transfer the peer to a URI (blind) or to the peer of another call (attended, with
        Replaces); block until the outcome is reported (see ``Call.transfer``)."""
        if isinstance(target, BlockingCall):
            target = target.call
        return self._portal.run(functools.partial(self._call.transfer, target, timeout=timeout))

    def info(
        self,
        body: str | bytes,
        content_type: str = "application/dtmf-relay",
        *,
        info_package: str | None = None,
    ) -> Response:
        """Send INFO within the call (RFC 6086; DTMF relay by default), with an
        Info-Package header when ``info_package`` is given."""
        return self._portal.run(
            functools.partial(self._call.info, body, content_type, info_package=info_package)
        )

    def on_info(self, handler: InfoHandler | None) -> None:
        """Handle this call's INFO requests (the handler runs on the client's thread and
        may answer; 200 otherwise); ``None`` removes it."""
        self._portal.run_sync(self._call.on_info, handler)

    def info_requests(self, timeout: float | None = None) -> Iterator[IncomingRequest]:
        """The INFO requests the peer sends in this call, each already answered (ends with
        the call, or after ``timeout`` quiet seconds)."""
        return _BlockingIterator(
            self._portal, self._portal.run_sync(self._call.info_requests), timeout
        )

    def bye(self) -> Response:
        """Hang up: BYE within the dialog (a placed call not answered yet: CANCEL, and the
        INVITE's final response is returned)."""
        return self._portal.run(self._call.bye)

    hangup = bye

    def cancel(self) -> Response:
        """CANCEL our INVITE of a call placed with ``early_media=True`` and not answered
        yet; returns the CANCEL's response."""
        return self._portal.run(self._call.cancel)

    def wait_answered(self, timeout: float | None = None) -> Response | None:
        """Block until the INVITE's final response (a call placed with ``early_media=True``)
        and return it; ``None`` when none came within ``timeout`` seconds."""
        call = self._call

        async def wait() -> Response | None:
            with trio.move_on_after(_seconds(timeout)):
                return await call.wait_answered()
            return None

        return self._portal.run(wait)

    def wait_ended(self, timeout: float | None = None) -> str | None:
        """Block until the call ends (either side) and return who ended it (``"local"``,
        ``"remote"``, ...); ``None`` when it is still going after ``timeout`` seconds."""
        call = self._call

        async def wait() -> str | None:
            if not call.ended:
                with trio.move_on_after(_seconds(timeout)):
                    await call.wait_ended()
            return call.ended_by if call.ended else None

        return self._portal.run(wait)

    def wait_acked(self, timeout: float | None = None) -> bool:
        """Block until the ACK of our 2xx arrives (incoming calls) or the call ends; ``False``
        when neither happened within ``timeout`` seconds."""
        call = self._call

        async def wait() -> bool:
            if call.ended:
                return True
            with trio.move_on_after(_seconds(timeout)) as scope:
                await call.wait_acked()
            return not scope.cancelled_caught

        return self._portal.run(wait)

    # -- media (the same as Call's, blocking) -------------------------------------------------
    def play(self, source: AudioSource) -> None:
        """Send audio (a WAV path, 16-bit 8 kHz PCM bytes or 20 ms frames); return once its
        last packet is sent."""
        self._portal.run(self._call.play, source)

    def send_audio(self, frames: Iterable[bytes]) -> None:
        """Send 20 ms frames (320 bytes of 16-bit 8 kHz PCM each)."""
        self._portal.run(self._call.send_audio, list(frames))

    def audio_frames(self, timeout: float | None = None) -> Iterator[bytes]:
        """Decoded 20 ms frames of what the peer sends, until the call ends (or no frame
        came for ``timeout`` seconds)."""
        return _BlockingIterator(self._portal, self._call.audio_frames(), timeout)

    @contextlib.contextmanager
    def recording(self, path: str | os.PathLike[str]) -> Iterator[None]:
        """``with call.recording("in.wav"):`` writes what the peer sends to a WAV file."""
        manager = self._call.recording(path)
        self._portal.run(manager.__aenter__)
        try:
            yield
        except BaseException as exc:
            if not self._portal.run(manager.__aexit__, type(exc), exc, exc.__traceback__):
                raise
        else:
            self._portal.run(manager.__aexit__, None, None, None)

    def send_dtmf(
        self, digits: str, *, method: str = "auto", duration: float = 0.1, gap: float = 0.05
    ) -> None:
        """Send DTMF digits (RFC 4733 when negotiated, else SIP INFO; see ``Call``)."""
        self._portal.run(
            functools.partial(
                self._call.send_dtmf, digits, method=method, duration=duration, gap=gap
            )
        )

    def collect_dtmf(self, count: int, timeout: float | None = None) -> str:
        """Block until ``count`` digits arrived (fewer if ``timeout`` passes first)."""
        return self._portal.run(self._call.collect_dtmf, count, timeout)

    def dtmf(self, timeout: float | None = None) -> Iterator[str]:
        """The digits the peer sends, as they arrive (ends after ``timeout`` quiet seconds)."""
        return _BlockingIterator(self._portal, self._call.dtmf(), timeout)

    @property
    def media_stats(self) -> MediaStats | None:
        return self._call.media_stats


T = TypeVar("T")


class _BlockingIterator(Iterator[T]):
    """An async iterator of the portal, pulled from another thread (``None`` timeout: wait
    as long as it takes)."""

    def __init__(self, portal: Portal, source: AsyncIterator[T], timeout: float | None) -> None:
        self._portal = portal
        self._source = source
        self._timeout = timeout

    def __iter__(self) -> _BlockingIterator[T]:
        return self

    def __next__(self) -> T:
        async def pull() -> tuple[bool, T | None]:
            with trio.move_on_after(_seconds(self._timeout)):
                try:
                    return True, await anext(self._source)
                except StopAsyncIteration:
                    pass
            return False, None

        try:
            more, item = self._portal.run(pull)
        except SIPError:
            raise StopIteration from None
        if not more:
            raise StopIteration
        return cast(T, item)


def _seconds(timeout: float | None) -> float:
    return math.inf if timeout is None else timeout


class _CallFeed:
    """The portal side of ``Client.calls()``: touched on the portal thread only.

    :meth:`run` iterates ``AsyncClient.calls()`` into an unbounded buffer until
    :meth:`close` (or the client's end) cancels it; :meth:`next` takes a call from the buffer.
    :meth:`stop` closes and waits until the client no longer counts us as listening.
    """

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._send, self._receive = trio.open_memory_channel[Call](math.inf)
        self._scope = trio.CancelScope()
        self._stopped = trio.Event()
        self.closed = False

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Forward incoming calls. ``started()`` comes first and the async iterator counts us
        as listening before its first checkpoint, so whoever ``start()``-ed us listens."""
        with self._scope:
            incoming = self._client.calls()
            task_status.started()
            try:
                async for call in incoming:
                    if self.closed:  # closed while the call was on its way to us
                        _reject(call)
                    else:
                        self._send.send_nowait(call)  # no checkpoint between receives
            finally:
                aclose = getattr(incoming, "aclose", None)
                if aclose is not None:  # a no-op unless we left it suspended
                    with trio.CancelScope(shield=True):
                        await aclose()
                self.close()
                self._stopped.set()

    async def next(self, timeout: float | None) -> Call | None:
        """The next incoming call within ``timeout`` seconds, else ``None`` (and the feed is
        closed: the iteration is over, later calls get 480)."""
        call: Call | None = None
        if not self.closed:
            try:
                call = self._take_nowait()
                if call is None:
                    with trio.move_on_after(_seconds(timeout)):
                        while call is None:
                            call = _unanswered(await self._receive.receive())
            except trio.EndOfChannel:
                call = None
        if call is None:
            await self.stop()
        return call

    def _take_nowait(self) -> Call | None:
        while True:
            try:
                call = _unanswered(self._receive.receive_nowait())
            except trio.WouldBlock:
                return None
            if call is not None:
                return call

    async def stop(self) -> None:
        """:meth:`close`, then wait for :meth:`run` to leave the async iterator: from then
        on the client rejects calls with 480 itself."""
        self.close()
        with trio.CancelScope(shield=True):
            await self._stopped.wait()

    def close(self) -> None:
        """Stop listening; reject the buffered calls with 480 as if nobody had listened."""
        self.closed = True
        self._scope.cancel()
        self._send.close()  # wakes a next() waiting on another thread's behalf
        while True:
            try:
                call = _unanswered(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                return
            if call is not None:
                _reject(call)


def _reject(call: Call) -> None:
    """480, as the client answers when nobody listens."""
    try:
        call.reject(480, "Temporarily Unavailable")
    except SIPError:  # the transaction is gone or the transport closed
        pass


def _unanswered(call: Call) -> Call | None:
    """``call`` if it still waits for an answer (a CANCEL may have ended it meanwhile)."""
    if call.state is CallState.INCOMING and call.final_response is None:
        return call
    return None


class _IncomingCalls(Iterator[BlockingCall]):
    """What ``Client.calls()`` returns: a blocking iterator over a :class:`_CallFeed`."""

    def __init__(
        self, client: Client, portal: Portal, feed: _CallFeed, timeout: float | None
    ) -> None:
        self._client = client
        self._portal = portal
        self._feed: _CallFeed | None = feed
        self._timeout = timeout

    def __iter__(self) -> _IncomingCalls:
        return self

    def __next__(self) -> BlockingCall:
        feed = self._feed
        if feed is None or feed.closed:  # exhausted, closed, or the client's end closed it
            self._feed = None
            raise StopIteration
        try:
            call = self._portal.run(feed.next, self._timeout)
        except (trio.Cancelled, trio.RunFinishedError):  # the client closed meanwhile
            call = None
        except BaseException:  # a closed client, KeyboardInterrupt: stop listening
            self.close()
            raise
        if call is None:
            self._feed = None
            raise StopIteration
        return BlockingCall(call, self._client, self._portal)

    def close(self) -> None:
        """Stop listening: from now on incoming calls get 480 (unless another iterator or an
        INVITE handler takes them); calls received but not yet returned get 480 too."""
        feed, self._feed = self._feed, None
        if feed is None:
            return
        portal = self._portal
        if portal.on_portal_thread():  # collected on the portal
            feed.close()
            return
        try:
            portal.run(feed.stop)
        except RuntimeError:  # collected on another trio thread: must not block there
            portal.run_sync_soon(feed.close)
        except SIPError:
            pass  # the client is closed: its end closed the feed

    def __del__(self) -> None:
        try:
            self.close()
        except BaseException:  # never raise from a finalizer
            pass

    def __repr__(self) -> str:
        state = "closed" if self._feed is None else f"timeout={self._timeout}"
        return f"<Client.calls {state}>"
