"""Transfer (RFC 3515 REFER + NOTIFY sipfrag, RFC 3891 Replaces) and INFO (RFC 6086) between
AsyncClients on one MemoryNetwork, on trio's autojump clock.

Alice (A) calls Bob (B); Bob transfers Alice to Carol (C): blind (a URI) or attended (Bob's
own call with Carol, REFER with Replaces).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

import sipx
from sipx import SDPBody
from sipx._core.event import SubscriptionState
from sipx._core.refer import Replaces, parse_refer_to
from sipx.testing import MemoryNetwork, ScriptedUAS

Address = tuple[str, int]

OFFER = SDPBody.create_offer(
    "call",
    "alice",
    "127.0.0.1",
    "127.0.0.1",
    [
        {
            "media": "audio",
            "port": 9000,
            "codecs": [
                {"payload": "0", "name": "PCMU", "rate": "8000"},
                {"payload": "101", "name": "telephone-event", "rate": "8000", "fmtp": "0-16"},
            ],
        }
    ],
)


@asynccontextmanager
async def client_on(network: MemoryNetwork, **kwargs: Any) -> AsyncIterator[sipx.AsyncClient]:
    async with sipx.AsyncClient("127.0.0.1", 0, network=network, **kwargs) as client:
        yield client


def address_of(client: sipx.AsyncClient) -> Address:
    return (client.local_address.host, client.local_address.port)


def uri_of(client: sipx.AsyncClient, user: str) -> str:
    host, port = address_of(client)
    return f"sip:{user}@{host}:{port}"


class Answering:
    """An INVITE handler: answers (or rejects with ``status``) and keeps the calls."""

    def __init__(self, client: sipx.AsyncClient, status: int = 200) -> None:
        self.calls: list[sipx.Call] = []
        self.status = status
        client.on_request("INVITE", self)

    def __call__(self, call: sipx.Call) -> None:
        self.calls.append(call)
        if self.status == 200:
            call.answer()
        else:
            call.reject(self.status)


async def call_between(
    caller: sipx.AsyncClient, callee: sipx.AsyncClient, answering: Answering, user: str
) -> tuple[sipx.Call, sipx.Call]:
    """An established, ACKed call: (the caller's Call, the callee's Call)."""
    placed = await caller.call(uri_of(callee, user), body=OFFER)
    received = answering.calls[-1]
    with trio.fail_after(5):
        await received.wait_acked()
    assert placed.established and received.established
    return placed, received


def wire_order(network: MemoryNetwork) -> list[str]:
    """Start lines (requests: method; responses: "status method") of what was delivered."""
    out = []
    for item in network.messages(fate="delivered"):
        message = item.message
        if isinstance(message, sipx.Request):
            out.append(message.method)
        else:
            out.append(f"{message.status_code} {message.cseq.method}")
    return out


# -- blind transfer -------------------------------------------------------------------------------
async def test_blind_transfer(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with (
        client_on(network) as alice,
        client_on(network) as bob,
        client_on(network) as carol,
    ):
        at_bob, at_carol = Answering(bob), Answering(carol)
        a_call, b_call = await call_between(alice, bob, at_bob, "bob")

        result = await b_call.transfer(uri_of(carol, "carol"))

        assert isinstance(result, sipx.TransferResult)
        assert result.accepted and result.refer_response.status_code == 202
        assert result.succeeded and (result.status_code, result.reason) == (200, "OK")
        assert result.notifications == [sipx.SipFrag(100, "Trying"), sipx.SipFrag(200, "OK")]
        # It worked: Bob hung up on Alice (RFC 5589); she is now in a call with Carol.
        assert b_call.ended and b_call.ended_by == "local"
        with trio.fail_after(5):
            assert await a_call.wait_ended() == "transferred"
        new = a_call.replaced_by
        assert new is not None and new.established and new.direction == "outgoing"
        [c_call] = at_carol.calls
        assert c_call.established and c_call.call_id == new.call_id
        assert str(new.invite.from_.uri) == str(a_call.invite.from_.uri)  # Alice's identity

        [refer] = [c.message for c in network.requests("REFER")]
        assert refer.call_id == a_call.call_id
        assert refer.headers["Refer-To"] == f"<{uri_of(carol, 'carol')}>"
        assert refer.headers["Referred-By"] == f"<{b_call.dialog.local_uri.uri}>"  # type: ignore[union-attr]
        notifies = [c.message for c in network.requests("NOTIFY")]
        assert [n.headers["Event"] for n in notifies] == [f"refer;id={refer.cseq.seq}"] * 2
        states = [SubscriptionState.parse(n.headers["Subscription-State"]) for n in notifies]
        assert [(s.state, s.expires, s.reason) for s in states] == [
            ("active", 60, None),
            ("terminated", None, "noresource"),
        ]
        assert {n.headers["Content-Type"] for n in notifies} == {"message/sipfrag;version=2.0"}
        assert [n.content for n in notifies] == [b"SIP/2.0 100 Trying\r\n", b"SIP/2.0 200 OK\r\n"]
        assert all(n.call_id == a_call.call_id for n in notifies)
        [new_invite] = [
            c.message for c in network.requests("INVITE") if c.message.call_id == new.call_id
        ]
        assert new_invite.headers["Referred-By"] == refer.headers["Referred-By"]
        assert "Replaces" not in new_invite.headers
        # Ladder: the final NOTIFY is answered before Bob's BYE; one BYE only.
        order = wire_order(network)
        last_notify_ok = len(order) - 1 - order[::-1].index("200 NOTIFY")
        assert order.index("BYE") > last_notify_ok
        [bye] = [c.message for c in network.requests("BYE")]
        assert bye.call_id == b_call.call_id and bye.from_.tag == b_call.dialog.local_tag  # type: ignore[union-attr]
        await trio.sleep(10)  # past the transferee's grace: still one BYE
        assert len(network.requests("BYE")) == 1
        assert not network.responses(481)


async def test_transferee_hangs_up_when_the_transferor_does_not(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A transferor that only REFERs (no BYE after the final NOTIFY): the transferee ends the
    old call itself 8·T1 after its final NOTIFY."""
    network = MemoryNetwork()
    async with (
        client_on(network) as alice,
        client_on(network) as bob,
        client_on(network) as carol,
    ):
        at_bob, at_carol = Answering(bob), Answering(carol)
        a_call, b_call = await call_between(alice, bob, at_bob, "bob")
        refer = await b_call.refer(uri_of(carol, "carol"))  # the bare REFER: Bob stays
        assert refer.status_code == 202
        with trio.fail_after(10):
            assert await a_call.wait_ended() == "transferred"
            assert await b_call.wait_ended() == "remote"
        [final_notify] = [
            c for c in network.requests("NOTIFY") if c.message.content == b"SIP/2.0 200 OK\r\n"
        ]
        [bye] = network.requests("BYE")
        assert bye.source == address_of(alice)
        assert bye.time - final_notify.time == pytest.approx(8 * 0.5)
        assert a_call.replaced_by is not None and a_call.replaced_by.established
        assert at_carol.calls[0].established


async def test_transfer_to_a_target_that_rejects(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with (
        client_on(network) as alice,
        client_on(network) as bob,
        client_on(network) as carol,
    ):
        at_bob = Answering(bob)
        Answering(carol, status=486)
        a_call, b_call = await call_between(alice, bob, at_bob, "bob")

        result = await b_call.transfer(uri_of(carol, "carol"))

        assert result.accepted and not result.succeeded
        assert (result.status_code, result.reason) == (486, "Busy Here")
        assert [n.status_code for n in result.notifications] == [100, 486]
        await trio.sleep(5)
        # The transfer failed: the call between Alice and Bob goes on (Bob may take it back).
        assert a_call.established and b_call.established
        assert a_call.replaced_by is None
        assert network.requests("BYE") == []
        assert network.requests("NOTIFY")[-1].message.content == b"SIP/2.0 486 Busy Here\r\n"


async def test_refer_refused_by_the_application(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with client_on(network) as alice, client_on(network) as bob:
        at_bob = Answering(bob)
        a_call, b_call = await call_between(alice, bob, at_bob, "bob")
        refused: list[str] = []

        def refuse(incoming: sipx.IncomingRequest) -> sipx.Response:
            refused.append(incoming.headers["Refer-To"])
            return sipx.Response(603)

        alice.on_request("REFER", refuse)
        result = await b_call.transfer("sip:carol@127.0.0.1:5999")

        assert not result.accepted and not result.succeeded
        assert (result.status_code, result.reason) == (603, "Decline")
        assert result.notifications == []
        assert refused == ["<sip:carol@127.0.0.1:5999>"]
        assert network.requests("NOTIFY") == [] and network.requests("INVITE")[1:] == []
        assert a_call.established and b_call.established


async def test_refer_handler_that_does_not_answer_lets_the_transfer_happen(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with (
        client_on(network) as alice,
        client_on(network) as bob,
        client_on(network) as carol,
    ):
        at_bob, at_carol = Answering(bob), Answering(carol)
        _a_call, b_call = await call_between(alice, bob, at_bob, "bob")
        seen: list[str] = []
        alice.on_request("REFER", lambda incoming: seen.append(incoming.method))
        result = await b_call.transfer(uri_of(carol, "carol"))
        assert result.succeeded and seen == ["REFER"]
        assert len(at_carol.calls) == 1


async def test_bad_refer_to_gets_400_and_other_schemes_416(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with client_on(network) as alice, client_on(network) as bob:
        at_bob = Answering(bob)
        _a_call, b_call = await call_between(alice, bob, at_bob, "bob")
        assert (await b_call.refer("<sip:carol@host?Replaces=only-a-call-id>")).status_code == 400
        assert (await b_call.refer("<mailto:carol@example.com>")).status_code == 416
        assert network.requests("NOTIFY") == []


async def test_transfer_argument_errors(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with client_on(network) as alice, client_on(network) as bob:
        at_bob = Answering(bob)
        _a_call, b_call = await call_between(alice, bob, at_bob, "bob")
        with pytest.raises(ValueError):
            await b_call.transfer("not a uri")
        with pytest.raises(ValueError):
            await b_call.transfer(b_call)
        with pytest.raises(TypeError):
            await b_call.transfer(42)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await b_call.transfer("sip:carol@127.0.0.1", timeout=-1)
        assert network.requests("REFER") == []


async def test_transfer_times_out_without_a_final_notify(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A peer that accepts the REFER and never reports: TimeoutError after ``timeout``."""
    network = MemoryNetwork()
    async with client_on(network) as alice, client_on(network) as bob:
        at_bob = Answering(bob)
        _a_call, b_call = await call_between(alice, bob, at_bob, "bob")
        alice.on_request("REFER", lambda incoming: incoming.respond(202) and None)
        # Alice's handler answered 202 itself: sipx still carries it out, to an address
        # where nobody listens, so the final NOTIFY comes only after the INVITE gives up.
        start = trio.current_time()
        with pytest.raises(sipx.TimeoutError):
            await b_call.transfer("sip:carol@127.0.0.1:5999", timeout=10)
        assert trio.current_time() - start == pytest.approx(10)


# -- attended transfer (Replaces) -----------------------------------------------------------------
async def test_attended_transfer_with_replaces(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with (
        client_on(network) as alice,
        client_on(network) as bob,
        client_on(network) as carol,
    ):
        at_bob, at_carol = Answering(bob), Answering(carol)
        a_call, b_with_a = await call_between(alice, bob, at_bob, "bob")
        b_with_c, c_with_b = await call_between(bob, carol, at_carol, "carol")
        assert b_with_c.dialog is not None and c_with_b.dialog is not None

        result = await b_with_a.transfer(b_with_c)

        assert result.succeeded, result
        assert b_with_a.ended_by == "local"  # the transfer worked: Bob hung up on Alice
        with trio.fail_after(5):
            assert await b_with_c.wait_ended() == "remote"  # Carol's BYE
        # Carol took Alice's INVITE in place of her call with Bob, answered at once.
        assert c_with_b.ended and c_with_b.ended_by == "replaced"
        replacement = c_with_b.replaced_by
        assert replacement is not None and replacement.established
        assert replacement.direction == "incoming"
        assert at_carol.calls == [c_with_b]  # the replacement was not offered to the app
        new = a_call.replaced_by
        assert new is not None and new.established and new.call_id == replacement.call_id
        assert a_call.ended and a_call.ended_by == "transferred"

        [refer] = [c.message for c in network.requests("REFER")]
        target = parse_refer_to(refer.headers["Refer-To"])
        # Refer-To: Carol's Contact with the dialog as Carol sees it (RFC 3891 3).
        assert target.uri == b_with_c.dialog.remote_target
        assert target.replaces == Replaces(
            b_with_c.call_id, to_tag=c_with_b.dialog.local_tag, from_tag=c_with_b.dialog.remote_tag
        )
        assert (
            "Replaces=" in refer.headers["Refer-To"] and "%3Bto-tag%3D" in refer.headers["Refer-To"]
        )
        [invite] = [
            c.message for c in network.requests("INVITE") if c.message.call_id == new.call_id
        ]
        assert Replaces.parse(invite.headers["Replaces"]) == target.replaces
        byes = {c.message.call_id: c.source for c in network.requests("BYE")}
        assert byes == {a_call.call_id: address_of(bob), b_with_c.call_id: address_of(carol)}
        assert not network.responses(481)


async def test_invite_with_replaces_matching_nothing_gets_481(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with client_on(network) as alice, client_on(network) as carol:
        at_carol = Answering(carol)
        _a_call, c_call = await call_between(alice, carol, at_carol, "carol")
        assert c_call.dialog is not None
        wrong_tag = Replaces(c_call.call_id, to_tag="nope", from_tag=c_call.dialog.remote_tag)
        other = await alice.call(
            uri_of(carol, "carol"), body=OFFER, headers={"Replaces": str(wrong_tag)}
        )
        assert other.final_response is not None and other.final_response.status_code == 481
        # Tags the wrong way round (the dialog as *we* see it) match nothing either.
        swapped = Replaces(
            c_call.call_id, to_tag=c_call.dialog.remote_tag, from_tag=c_call.dialog.local_tag
        )
        again = await alice.call(
            uri_of(carol, "carol"), body=OFFER, headers={"Replaces": str(swapped)}
        )
        assert again.final_response is not None and again.final_response.status_code == 481
        bad = await alice.call(
            uri_of(carol, "carol"), body=OFFER, headers={"Replaces": "call-id-only"}
        )
        assert bad.final_response is not None and bad.final_response.status_code == 400
        early_only = Replaces(
            c_call.call_id, c_call.dialog.local_tag, c_call.dialog.remote_tag, early_only=True
        )
        busy = await alice.call(
            uri_of(carol, "carol"), body=OFFER, headers={"Replaces": str(early_only)}
        )
        assert busy.final_response is not None and busy.final_response.status_code == 486
        assert c_call.established and at_carol.calls == [c_call]


# -- INFO (RFC 6086) ------------------------------------------------------------------------------
async def test_info_reaches_the_call_handler_and_iterator(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with client_on(network) as alice, client_on(network) as bob:
        at_bob = Answering(bob)
        a_call, b_call = await call_between(alice, bob, at_bob, "bob")
        handled: list[str] = []

        def on_info(incoming: sipx.IncomingRequest) -> sipx.Response | None:
            handled.append(incoming.text)
            if incoming.text == "refuse":
                return sipx.Response(415)
            return None

        b_call.on_info(on_info)
        received: list[sipx.IncomingRequest] = []

        async def collect() -> None:
            async for incoming in b_call.info_requests():
                received.append(incoming)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect)
            await trio.testing.wait_all_tasks_blocked()
            ok = await a_call.info("hello", "text/plain")
            refused = await a_call.info("refuse", "text/plain")
            await a_call.bye()
        assert (ok.status_code, refused.status_code) == (200, 415)
        assert handled == ["hello", "refuse"]
        assert [r.text for r in received] == ["hello", "refuse"]  # the iterator ended with the call
        assert [r.response.status_code for r in received if r.response] == [200, 415]
        assert received[0].headers["Content-Type"] == "text/plain"


async def test_unknown_info_package_gets_469_with_recv_info(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with (
        client_on(network) as alice,
        client_on(network, info_packages=("Foo-Bar", "dtmf")) as bob,
    ):
        at_bob = Answering(bob)
        a_call, b_call = await call_between(alice, bob, at_bob, "bob")
        # Bob declares what he takes, in his 2xx (RFC 6086 5.2.2).
        assert b_call.final_response is not None
        assert b_call.final_response.headers["Recv-Info"] == "foo-bar, dtmf"
        got: list[str | None] = []
        b_call.on_info(lambda incoming: got.append(incoming.headers.get_first("Info-Package")))

        rejected = await a_call.info("x", "application/x-unknown", info_package="nope")
        assert rejected.status_code == 469 and rejected.reason_phrase == "Bad Info Package"
        assert rejected.headers["Recv-Info"] == "foo-bar, dtmf"
        taken = await a_call.info("y", "application/foo-bar", info_package="Foo-Bar")
        assert taken.status_code == 200
        assert got == ["Foo-Bar"]  # the 469 reached no handler
        [_, sent] = [c.message for c in network.requests("INFO")]
        assert sent.headers["Info-Package"] == "Foo-Bar"


async def test_469_without_declared_packages_has_an_empty_recv_info(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with client_on(network) as alice, client_on(network) as bob:
        at_bob = Answering(bob)
        a_call, b_call = await call_between(alice, bob, at_bob, "bob")
        assert b_call.final_response is not None
        assert "Recv-Info" not in b_call.final_response.headers  # legacy INFO only
        rejected = await a_call.info("x", "application/x-unknown", info_package="foo")
        assert rejected.status_code == 469
        assert "Recv-Info" in rejected.headers and rejected.headers["Recv-Info"] == ""


async def test_legacy_dtmf_info_still_works(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with client_on(network) as alice, client_on(network, info_packages=("dtmf",)) as bob:
        at_bob = Answering(bob)
        a_call, b_call = await call_between(alice, bob, at_bob, "bob")
        infos: list[sipx.IncomingRequest] = []

        async def collect() -> None:
            async for incoming in b_call.info_requests():
                infos.append(incoming)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect)
            await trio.testing.wait_all_tasks_blocked()
            await a_call.send_dtmf("42#", method="info")
            assert await b_call.collect_dtmf(3, timeout=5) == "42#"
            nursery.cancel_scope.cancel()
        assert len(infos) == 3
        assert all("Info-Package" not in info.headers for info in infos)
        assert [c.message.status_code for c in network.responses(method="INFO")] == [200] * 3


async def test_info_in_a_call_to_a_scripted_peer(autojump_clock: trio.testing.MockClock) -> None:
    """The client-wide INFO handler still answers when the call has none."""
    network = MemoryNetwork()
    async with ScriptedUAS(network, ("127.0.0.1", 5080)) as uas, client_on(network) as client:
        call = await client.call(str(uas.uri), body=OFFER)
        assert call.established
        response = await call.info("Signal=1\r\nDuration=100\r\n", info_package="dtmf")
        assert response.status_code == 200
        [info] = uas.requests_for("INFO")
        assert info.headers["Info-Package"] == "dtmf"


async def test_bad_notifies_get_400_and_the_transfer_goes_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A scripted transferee (REFER → 202) sends NOTIFYs by hand: a body that is not a
    sipfrag and a broken Subscription-State get 400 and change nothing; a NOTIFY of another
    event matches no subscription (481, RFC 6665 4.1.3); the final one (503, terminated) is
    the result."""
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, ("127.0.0.1", 5080)) as uas,
        client_on(network) as bob,
    ):
        call = await bob.call(str(uas.uri), body=OFFER)
        assert call.established and call.dialog is not None
        dialog = call.dialog
        seq = iter(range(1, 100))

        async def notify(state: str, body: str, content_type: str, event: str = "refer") -> int:
            response = await uas.request(
                "NOTIFY",
                str(call.invite.headers["Contact"]).strip("<>"),
                to=address_of(bob),
                headers={
                    "From": str(dialog.remote_uri),
                    "To": str(dialog.local_uri),
                    "Call-ID": dialog.call_id,
                    "CSeq": f"{next(seq)} NOTIFY",
                    "Event": event,
                    "Subscription-State": state,
                    "Content-Type": content_type,
                },
                body=body,
            )
            return response.status_code

        results: list[sipx.TransferResult] = []

        async def transfer() -> None:
            results.append(await call.transfer("sip:carol@127.0.0.1:5999"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(transfer)
            await uas.wait_for("REFER")
            assert await notify("active", "hello", "text/plain") == 400
            assert await notify("active;expires=x", "SIP/2.0 100 Trying", "message/sipfrag") == 400
            assert await notify("active", "SIP/2.0 100 Trying", "message/sipfrag", "dialog") == 481
            assert not results
            assert await notify("active", "SIP/2.0 100 Trying", "message/sipfrag") == 200
            assert (
                await notify(
                    "terminated;reason=noresource",
                    "SIP/2.0 503 Service Unavailable",
                    "message/sipfrag;version=2.0",
                )
                == 200
            )
        [result] = results
        assert (result.status_code, result.reason) == (503, "Service Unavailable")
        assert [n.status_code for n in result.notifications] == [100, 503]
        assert call.established  # a failed transfer keeps the call
