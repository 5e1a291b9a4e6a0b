"""Session timers (RFC 4028) between clients on sipx.testing.MemoryNetwork, under trio's
MockClock: who refreshes, with which method and when, the BYE when refreshes stop, 422 on
both sides, failed refreshes, and the client option."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

import sipx
from sipx import SDPBody
from sipx._core.session_timer import SessionExpires
from sipx.testing import MemoryNetwork, Reply, ScriptedUAS

UAS = ("127.0.0.1", 5080)
# Fixed SDP on both sides: no sipx media (its RTP clock would tick through hours of calls).
OFFER = SDPBody.create_offer(
    "st",
    "alice",
    "127.0.0.1",
    "127.0.0.1",
    [
        {
            "media": "audio",
            "port": 9000,
            "codecs": [{"payload": "0", "name": "PCMU", "rate": "8000"}],
        }
    ],
)
ANSWER = SDPBody.create_answer(OFFER, "bob", "127.0.0.1", "127.0.0.1", port=9002)


@asynccontextmanager
async def client_on(network: MemoryNetwork, **kwargs: Any) -> AsyncIterator[sipx.AsyncClient]:
    async with sipx.AsyncClient("127.0.0.1", 0, network=network, **kwargs) as client:
        yield client


def uri_of(client: sipx.AsyncClient) -> str:
    return f"sip:bob@127.0.0.1:{client.local_address.port}"


@asynccontextmanager
async def a_call(
    network: MemoryNetwork, caller_options: dict[str, Any], callee_options: dict[str, Any]
) -> AsyncIterator[tuple[sipx.Call, sipx.Call, float]]:
    """The caller's call, the callee's, and the time the callee answered."""
    answered: list[tuple[sipx.Call, float]] = []

    def answer(call: sipx.Call) -> None:
        call.answer(ANSWER)
        answered.append((call, trio.current_time()))

    async with (
        client_on(network, **caller_options) as caller,
        client_on(network, **callee_options) as callee,
    ):
        callee.on_request("INVITE", answer)
        call = await caller.call(uri_of(callee), OFFER)
        [(incoming, at)] = answered
        yield call, incoming, at


def since(start: float, captured: list[Any]) -> list[float]:
    return [round(c.time - start, 3) for c in captured]


def session_expires(message: sipx.Request | sipx.Response) -> SessionExpires:
    return SessionExpires.parse(message.headers["Session-Expires"])


async def test_the_caller_refreshes_with_update_at_half_the_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    options = {"session_expires": 120}
    async with a_call(network, options, options) as (call, incoming, start):
        # The callee let the caller refresh (RFC 4028 9: the UAS picks, uac preferred).
        assert (call.session_expires, call.session_refresher) == (120, "local")
        assert (incoming.session_expires, incoming.session_refresher) == (120, "remote")
        await trio.sleep(200)
        assert call.established and incoming.established  # refreshed: the callee kept it
    [invite] = [c.message for c in network.requests("INVITE")]
    assert "timer" in invite.supported and invite.headers["Session-Expires"] == "120"
    assert invite.headers["Min-SE"] == "90"
    ok = next(c.message for c in network.responses(200, method="INVITE"))
    assert session_expires(ok) == SessionExpires(120, "uac")
    assert ok.headers["Require"] == "timer"
    updates = network.requests("UPDATE")
    assert since(start, updates) == [60.0, 120.0, 180.0]
    for captured in updates:
        update = captured.message
        assert update.content == b"" and "timer" in update.supported  # no offer: a refresh
        assert session_expires(update) == SessionExpires(120, "uac")
    refreshed = [c.message for c in network.responses(200, method="UPDATE")]
    assert [str(session_expires(r)) for r in refreshed] == ["120;refresher=uac"] * 3
    assert network.requests("INVITE")[1:] == []  # no re-INVITE: the callee allows UPDATE
    assert len(network.requests("BYE")) == 1  # the callee's client closing first


async def test_without_update_in_allow_the_refresh_is_a_reinvite_with_the_same_sdp(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    se = {"Session-Expires": "120;refresher=uac", "Require": "timer"}

    def invite(request: sipx.Request) -> list[Reply]:  # ScriptedUAS: no UPDATE in Allow
        return [Reply(200, se)] if request.to.tag else [Reply(180), Reply(200, se)]

    async with (
        ScriptedUAS(network, UAS, {"INVITE": invite}) as uas,
        client_on(network, session_expires=120) as client,
    ):
        call = await client.call(uas.uri, OFFER)
        start = trio.current_time()
        assert call.session_refresher == "local"
        await trio.sleep(130)
        assert call.established
        [first, *refreshes] = uas.requests_for("INVITE")
    assert since(start, network.requests("INVITE")[1:]) == [60.0, 120.0]
    assert network.requests("UPDATE") == []
    for refresh in refreshes:
        # RFC 3264 8: the SDP is unchanged, and so is its version.
        assert refresh.content == first.content
        assert session_expires(refresh) == SessionExpires(120, "uac")
    assert [str(a.cseq) for a in uas.requests_for("ACK")] == ["1 ACK", "2 ACK", "3 ACK"]


async def test_the_callee_ends_the_call_when_refreshes_stop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    network.filter = lambda source, destination, data: not data.startswith(b"UPDATE")
    options = {"session_expires": 120}
    async with a_call(network, options, options) as (call, incoming, start):
        with trio.fail_after(200):
            assert await incoming.wait_ended() == "session-expired"
        # RFC 4028 10: the BYE at interval - min(32, interval / 3) without a refresh.
        assert trio.current_time() - start == pytest.approx(88.0)
        with trio.fail_after(1):
            assert await call.wait_ended() == "remote"
        assert incoming.session_expires is None
    [bye] = network.requests("BYE")
    assert bye.source[1] != bye.destination[1] and bye.message.from_.tag == incoming.local_tag
    assert network.responses(200, method="BYE") != []


async def test_a_refresh_of_a_session_already_gone_ends_the_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """RFC 4028 10: a refresh answered 481 (or 408, or timed out) ends the call with BYE."""
    network = MemoryNetwork()
    se = {"Session-Expires": "120;refresher=uac"}
    script = {
        "INVITE": [Reply(200, {**se, "Allow": "INVITE, ACK, BYE, UPDATE"})],
        "UPDATE": [Reply(481)],
    }
    async with (
        ScriptedUAS(network, UAS, script) as uas,
        client_on(network, session_expires=120) as client,
    ):
        call = await client.call(uas.uri, OFFER)
        with trio.fail_after(100):
            assert await call.wait_ended() == "session-expired"
        await uas.wait_for("BYE")
    assert [r.method for r in uas.requests] == ["INVITE", "ACK", "UPDATE", "BYE"]


async def test_a_user_reinvite_carries_the_session_and_restarts_its_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    options = {"session_expires": 120}
    async with a_call(network, options, options) as (call, incoming, start):
        await trio.sleep(50)
        held = await incoming.hold()  # the callee's re-INVITE; the caller stays the refresher
        assert held.status_code == 200
        await trio.sleep(70)
    [_, hold] = [c.message for c in network.requests("INVITE")]
    assert session_expires(hold) == SessionExpires(120, "uas")  # the callee: "not me"
    held_ok = [c.message for c in network.responses(200, method="INVITE")][-1]
    assert session_expires(held_ok) == SessionExpires(120, "uas")
    assert call.session_refresher is None  # ended by the close
    # The refresh moved from 60 to 50 + 60 = 110.
    assert since(start, network.requests("UPDATE")) == [110.0]


async def test_422_is_answered_by_the_callee_and_retried_by_the_caller(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    caller_options = {"session_expires": 90}
    callee_options = {"session_expires": 1800, "min_se": 300}
    async with a_call(network, caller_options, callee_options) as (call, incoming, _):
        assert call.established and call.session_expires == 300
        assert incoming.session_expires == 300
        assert call.final_response is not None
        # Both INVITEs answered at once: no 100 Trying (RFC 3261 17.2.1).
        assert [r.status_code for r in call.final_response.history] == [422]
    first, retry = [c.message for c in network.requests("INVITE")][:2]
    [too_small] = [c.message for c in network.responses(422)]
    assert too_small.headers["Min-SE"] == "300"
    assert first.headers["Session-Expires"] == "90"
    assert retry.headers["Session-Expires"] == "300" and retry.headers["Min-SE"] == "300"
    assert (retry.call_id, retry.from_.tag) == (first.call_id, first.from_.tag)
    assert retry.cseq.seq == first.cseq.seq + 1
    assert retry.top_via.branch != first.top_via.branch  # a new transaction
    # The 422 was ACKed by its transaction, the 200 by the caller.
    assert [str(c.message.cseq) for c in network.requests("ACK")] == ["1 ACK", "2 ACK"]


async def test_a_refresh_answered_422_is_sent_again_with_the_larger_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    script = {
        "INVITE": [Reply(200, {"Session-Expires": "120", "Allow": "INVITE, BYE, UPDATE"})],
        "UPDATE": lambda request: (
            [Reply(422, {"Min-SE": "200"})]
            if request.headers["Session-Expires"].startswith("120")
            else [Reply(200, {"Session-Expires": "200;refresher=uac"})]
        ),
    }
    async with (
        ScriptedUAS(network, UAS, script) as uas,
        client_on(network, session_expires=120) as client,
    ):
        call = await client.call(uas.uri, OFFER)
        await trio.sleep(61)
        assert call.established and call.session_expires == 200
        first, retry = uas.requests_for("UPDATE")
    assert str(first.cseq) == "2 UPDATE" and str(retry.cseq) == "3 UPDATE"
    assert retry.headers["Session-Expires"] == "200;refresher=uac"
    assert retry.headers["Min-SE"] == "200"


async def test_a_caller_without_timers_gets_a_callee_that_refreshes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """RFC 4028 9: the UAC does not support timers, so the UAS refreshes (no Require)."""
    network = MemoryNetwork()
    async with a_call(network, {"session_expires": None}, {"session_expires": 120}) as (
        call,
        incoming,
        start,
    ):
        assert call.session_expires is None
        assert (incoming.session_expires, incoming.session_refresher) == (120, "local")
        await trio.sleep(130)
        assert call.established and incoming.established
    [invite] = [c.message for c in network.requests("INVITE")]
    assert "Session-Expires" not in invite.headers and "timer" not in invite.supported
    ok = next(c.message for c in network.responses(200, method="INVITE"))
    assert session_expires(ok) == SessionExpires(120, "uas") and "Require" not in ok.headers
    # The caller answers without Session-Expires; the refresher goes on all the same.
    assert since(start, network.requests("UPDATE")) == [60.0, 120.0]


async def test_session_timers_off(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    options = {"session_expires": 0}
    async with a_call(network, options, options) as (call, incoming, _):
        assert call.session_expires is None and incoming.session_expires is None
        await trio.sleep(4000)
        assert call.established and incoming.established
    for message in [c.message for c in network.messages()]:
        assert "Session-Expires" not in message.headers
    assert network.requests("UPDATE") == [] and len(network.requests("INVITE")) == 1


async def test_a_malformed_session_expires_gets_400(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    offered: list[sipx.Call] = []
    async with client_on(network) as caller, client_on(network) as callee:
        callee.on_request("INVITE", offered.append)
        response = await caller.invite(uri_of(callee), headers={"Session-Expires": "soon"})
    assert response.status_code == 400 and offered == []


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"session_expires": "1800"}, TypeError),
        ({"session_expires": 1800.0}, TypeError),
        ({"session_expires": True}, TypeError),
        ({"session_expires": -1}, ValueError),
        ({"session_expires": 60}, ValueError),  # below the default min_se of 90
        ({"min_se": 0}, ValueError),
        ({"min_se": None}, TypeError),
    ],
)
def test_bad_session_timer_options(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error, match=r"session_expires|min_se"):
        sipx.AsyncClient("127.0.0.1", 0, **options)


def test_good_session_timer_options() -> None:
    sipx.AsyncClient("127.0.0.1", 0, session_expires=60, min_se=60)
    sipx.AsyncClient("127.0.0.1", 0, session_expires=None)
