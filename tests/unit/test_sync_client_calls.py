"""Calls with the blocking Client: ``Client.call()``, ``Client.calls()`` and BlockingCall.

Two Clients on real loopback UDP; the callee iterates ``calls()`` in a worker thread. Every
wait is bounded, so a regression fails in seconds instead of hanging, and no test sleeps for a
guessed time: what a test needs to have happened is waited for (``wait_until``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

import sipx
from sipx import BlockingCall, Call, CallState, Client

WAIT = 10.0  # seconds: the bound of every join in these tests


@pytest.fixture
def pair() -> Iterator[tuple[Client, Client]]:
    """(alice, bob): two blocking clients on loopback with free ports."""
    with Client("127.0.0.1", 0) as alice, Client("127.0.0.1", 0) as bob:
        yield alice, bob


@pytest.fixture
def worker() -> Iterator[ThreadPoolExecutor]:
    """Threads for the callee; the test ends only when they do (their waits are bounded)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


def uri_of(client: Client, user: str = "bob") -> str:
    return f"sip:{user}@127.0.0.1:{client.local_address.port}"


def status_of(call: BlockingCall) -> int:
    assert call.final_response is not None
    return call.final_response.status_code


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Until ``condition()`` holds; the WAIT bound only matters when a test fails."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"not {what} after {WAIT} s"
        time.sleep(0.001)


def wait_for_feed(
    incoming: Iterator[BlockingCall], what: str, condition: Callable[..., bool]
) -> None:
    """Until ``condition(statistics)`` holds for the channel behind ``incoming`` (white box:
    our feed), its statistics read on the client's portal thread."""
    client, feed = incoming._client, incoming._feed  # type: ignore[attr-defined]
    wait_until(lambda: condition(client._portal.run_sync(feed._receive.statistics)), what)


def wait_buffered(incoming: Iterator[BlockingCall]) -> None:
    """Until ``incoming`` holds a call not yet returned by next()."""
    wait_for_feed(incoming, "an INVITE buffered", lambda stats: stats.current_buffer_used > 0)


def first_call(incoming: Iterator[BlockingCall]) -> BlockingCall:
    call = next(incoming, None)
    assert call is not None, "no incoming call within the iterator's timeout"
    return call


def test_call_answered_held_and_hung_up(
    pair: tuple[Client, Client], worker: ThreadPoolExecutor
) -> None:
    alice, bob = pair
    incoming = bob.calls(timeout=5)
    answered: list[BlockingCall] = []

    def callee() -> object:
        call = first_call(incoming)
        answered.append(call)  # before answer(): alice may be done before it returns here
        assert call.state is CallState.INCOMING and call.direction == "incoming"
        assert call.offer is not None and "PCMU/8000" in call.offer.get_codecs_summary()
        assert call.ring().status_code == 180
        assert call.answer().status_code == 200
        assert call.wait_acked(5)
        return call.wait_ended(5)

    ended_by = worker.submit(callee)
    call = alice.call(uri_of(bob), timeout=5)
    assert isinstance(call, BlockingCall) and isinstance(call.call, sipx.Call)
    assert call.established and call.direction == "outgoing" and call.client is alice
    assert call.final_response is not None and call.final_response.status_code == 200
    assert 180 in [r.status_code for r in call.final_response.history]
    assert call.remote_sdp is not None
    assert call.remote_sdp.get_codecs_summary() == [
        "PCMU/8000",
        "PCMA/8000",
        "telephone-event/8000",
    ]
    assert "established" in repr(call) and repr(call).startswith("<BlockingCall outgoing")
    (callee_call,) = answered
    assert callee_call.call_id == call.call_id

    assert call.wait_ended(0.1) is None  # still up: the wait times out
    assert call.hold().status_code == 200
    assert callee_call.remote_sdp is not None and callee_call.remote_sdp.direction == "sendonly"
    assert call.local_sdp is not None and call.local_sdp.direction == "sendonly"
    assert call.unhold().status_code == 200
    assert callee_call.remote_sdp.direction == "sendrecv"
    held = call.update(call.local_sdp.with_direction("sendonly"))  # hold by UPDATE (RFC 3311)
    assert held.status_code == 200 and callee_call.remote_sdp.direction == "sendonly"
    assert call.update(call.local_sdp.with_direction("sendrecv")).status_code == 200
    assert call.session_expires == 1800 and call.session_refresher == "local"
    assert call.info("Signal=5\r\nDuration=160\r\n").status_code == 200

    assert call.bye().status_code == 200
    assert ended_by.result(WAIT) == "remote"
    assert call.ended and call.ended_by == "local" and call.wait_ended(0) == "local"
    assert callee_call.ended and callee_call.state is CallState.ENDED
    assert alice.dialogs == [] and bob.dialogs == []


def test_callee_hangs_up(pair: tuple[Client, Client], worker: ThreadPoolExecutor) -> None:
    alice, bob = pair
    incoming = bob.calls(timeout=5)

    def callee() -> object:
        call = first_call(incoming)
        call.answer()
        assert call.wait_acked(5)
        return call.hangup().status_code

    hung_up = worker.submit(callee)
    call = alice.call(uri_of(bob), timeout=5)
    assert status_of(call) == 200  # established, unless bob's BYE came in already
    assert hung_up.result(WAIT) == 200
    assert call.wait_ended(5) == "remote"


def test_reject(pair: tuple[Client, Client], worker: ThreadPoolExecutor) -> None:
    alice, bob = pair
    incoming = bob.calls(timeout=5)

    def callee() -> object:
        call = first_call(incoming)
        response = call.reject(486)
        return (response.status_code, call.ended_by)

    rejected = worker.submit(callee)
    call = alice.call(uri_of(bob), timeout=5)
    assert rejected.result(WAIT) == (486, "local")
    assert not call.established and call.ended
    assert call.final_response is not None and call.final_response.status_code == 486
    assert call.ended_by == "rejected" and call.wait_ended(0.1) == "rejected"
    with pytest.raises(sipx.ProtocolError):  # no dialog to hang up
        call.bye()


def test_answering_twice_raises_across_the_portal(
    pair: tuple[Client, Client], worker: ThreadPoolExecutor
) -> None:
    alice, bob = pair
    incoming = bob.calls(timeout=5)

    def callee() -> object:
        call = first_call(incoming)
        call.answer()
        with pytest.raises(sipx.ProtocolError, match="already answered"):
            call.reject(486)
        return call.wait_acked(5)

    acked = worker.submit(callee)
    call = alice.call(uri_of(bob), timeout=5)
    assert call.established and acked.result(WAIT) is True
    call.bye()


def test_nobody_iterating_gets_480(pair: tuple[Client, Client]) -> None:
    alice, bob = pair
    call = alice.call(uri_of(bob), timeout=5)
    assert not call.established and call.ended_by == "rejected"
    assert call.final_response is not None and call.final_response.status_code == 480


def test_listening_starts_when_calls_returns(
    pair: tuple[Client, Client], worker: ThreadPoolExecutor
) -> None:
    """A call that arrives before the first next() (or between two) waits for it."""
    alice, bob = pair
    incoming = bob.calls(timeout=5)

    def late_callee() -> object:
        wait_buffered(incoming)  # alice's INVITE is in, before the first next()
        call = first_call(incoming)
        call.answer()
        return call.remote_uri

    remote = worker.submit(late_callee)
    call = alice.call(uri_of(bob), timeout=5)
    assert call.established
    assert remote.result(WAIT) == str(call.invite.from_.uri)
    call.bye()


def test_timeout_ends_the_iteration_and_listening(pair: tuple[Client, Client]) -> None:
    alice, bob = pair
    incoming = bob.calls(timeout=0.1)
    started = time.monotonic()
    assert list(incoming) == []
    assert time.monotonic() - started < 2
    assert next(incoming, None) is None  # exhausted stays exhausted
    assert status_of(alice.call(uri_of(bob), timeout=5)) == 480


def test_close_and_collection_stop_listening(
    pair: tuple[Client, Client], worker: ThreadPoolExecutor
) -> None:
    alice, bob = pair
    incoming = bob.calls()
    incoming.close()  # type: ignore[attr-defined]
    assert next(incoming, None) is None
    assert status_of(alice.call(uri_of(bob), timeout=5)) == 480

    incoming = bob.calls()
    del incoming  # CPython collects it now
    assert status_of(alice.call(uri_of(bob), timeout=5)) == 480

    incoming = bob.calls(timeout=5)
    declined = worker.submit(lambda: alice.call(uri_of(bob), timeout=5))
    for call in incoming:
        call.reject(603)
        break
    del incoming
    assert status_of(declined.result(WAIT)) == 603
    assert status_of(alice.call(uri_of(bob), timeout=5)) == 480


def test_calls_received_but_not_taken_get_480_on_close(
    pair: tuple[Client, Client], worker: ThreadPoolExecutor
) -> None:
    alice, bob = pair
    incoming = bob.calls()
    placed = worker.submit(lambda: alice.call(uri_of(bob), timeout=5))
    wait_buffered(incoming)
    incoming.close()  # type: ignore[attr-defined]
    call = placed.result(WAIT)
    assert isinstance(call, BlockingCall) and not call.established
    assert call.final_response is not None and call.final_response.status_code == 480


def test_closing_the_client_ends_a_waiting_iteration(
    worker: ThreadPoolExecutor,
) -> None:
    with Client("127.0.0.1", 0) as bob:
        incoming = bob.calls()  # no timeout: only the client's end stops it
        waiting = worker.submit(lambda: next(incoming, None))
        wait_for_feed(  # next() waits on the portal
            incoming, "waiting in next()", lambda stats: stats.tasks_waiting_receive == 1
        )
    assert waiting.result(WAIT) is None
    assert next(incoming, None) is None
    with pytest.raises(sipx.SIPError, match="closed"):
        bob.calls()


def test_closing_the_client_rejects_the_calls_not_taken(
    pair: tuple[Client, Client], worker: ThreadPoolExecutor
) -> None:
    alice, _ = pair
    with Client("127.0.0.1", 0) as bob:
        incoming = bob.calls()
        placed = worker.submit(lambda: alice.call(uri_of(bob), timeout=5))
        wait_buffered(incoming)
    call = placed.result(WAIT)
    assert isinstance(call, BlockingCall) and status_of(call) == 480


def test_blocking_call_forwards_every_public_attribute_of_call(
    pair: tuple[Client, Client], worker: ThreadPoolExecutor
) -> None:
    alice, bob = pair
    incoming = bob.calls(timeout=5)
    answering = worker.submit(lambda: first_call(incoming).answer())
    call = alice.call(uri_of(bob), timeout=5)
    answering.result(WAIT)
    # Call keeps its state in __slots__; some attributes are properties (invite, the SDPs,
    # final_response: kept as bytes once the call is idle).
    properties = {name for name, value in vars(Call).items() if isinstance(value, property)}
    attributes = {name for name in [*Call.__slots__, *properties] if not name.startswith("_")}
    assert {"state", "dialog", "invite", "offer", "final_response"} <= attributes
    for name in attributes:
        assert isinstance(getattr(BlockingCall, name, None), property), name
        if name != "client":  # the blocking Client, not the AsyncClient
            assert getattr(call, name) is getattr(call.call, name), name
    assert call.client is alice and call.call.client is alice.async_client
    with pytest.raises(AttributeError):
        call.state = CallState.ENDED  # type: ignore[misc]
    call.bye()


def test_blocking_transfer_and_info(pair: tuple[Client, Client]) -> None:
    """BlockingCall.transfer (blind), on_info and info_requests across the portal."""
    alice, bob = pair
    with Client("127.0.0.1", 0) as carol:
        at_bob: list[sipx.Call] = []
        bob.on_request("INVITE", lambda call: (at_bob.append(call), call.answer()))
        carol.on_request("INVITE", lambda call: call.answer())
        call = alice.call(uri_of(bob), timeout=5)
        assert call.established
        wait_until(lambda: bool(at_bob), "Bob has the call")
        bob_call = BlockingCall(at_bob[0], bob, bob._portal)  # type: ignore[attr-defined]

        infos = bob_call.info_requests(timeout=5)
        seen: list[str] = []
        bob_call.on_info(lambda incoming: seen.append(incoming.text))
        assert call.info("ping", "text/plain").status_code == 200
        first = next(infos)
        assert first.text == "ping" and seen == ["ping"]
        assert call.info("x", "text/plain", info_package="nope").status_code == 469

        result = bob_call.transfer(uri_of(carol, "carol"), timeout=10)
        assert isinstance(result, sipx.TransferResult) and result.succeeded, result
        assert bob_call.ended_by == "local"
        assert call.wait_ended(5) == "transferred"
        new = call.replaced_by
        assert isinstance(new, BlockingCall) and new.established
        assert new.client is alice
        new.bye()
        assert list(infos) == []  # the call ended: the iterator is over
