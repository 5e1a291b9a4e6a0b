"""The client side of AsyncClient (sipx._uac): requests carried to their final response.

OPTIONS, digest challenges, retransmissions and timeouts, CANCEL, ACK and BYE in a dialog,
event handlers and the client's lifecycle, against a ScriptedUAS on
sipx.testing.MemoryNetwork, on the autojump clock. The server side: test_uas.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

import sipx
from sipx import Auth, event_handler
from sipx.testing import MemoryNetwork, Reply, ScriptedUAS

UAS = ("127.0.0.1", 5080)
PROXY = ("127.0.0.1", 5070)
AOR = "sip:alice@127.0.0.1:5080"
OFFER = sipx.SDPBody.create_offer(
    "call",
    "alice",
    "127.0.0.1",
    "127.0.0.1",
    [
        {
            "media": "audio",
            "port": 8000,
            "codecs": [{"payload": "0", "name": "PCMU", "rate": "8000"}],
        }
    ],
)


@asynccontextmanager
async def client_on(network: MemoryNetwork, **kwargs: object) -> AsyncIterator[sipx.AsyncClient]:
    async with sipx.AsyncClient("127.0.0.1", 0, network=network, **kwargs) as client:  # type: ignore[arg-type]
        yield client


def since(start: float, times: list[float]) -> list[float]:
    return [round(t - start, 6) for t in times]


def all_tasks() -> list[trio.lowlevel.Task]:
    found = []
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        found.append(task)
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return found


# -- OPTIONS ---------------------------------------------------------------------------------------
async def test_options_gets_200_with_allow(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        response = await client.options(uas.uri)
        assert response.status_code == 200
        assert "INVITE" in response.headers["Allow"]
        assert response.request is not None and response.request.method == "OPTIONS"
        [sent] = network.requests("OPTIONS")
        request = sent.message
        assert sent.source == (client.local_address.host, client.local_address.port)
        assert sent.destination == UAS
        via = request.top_via
        assert via.branch is not None and via.branch.startswith("z9hG4bK") and via.has_rport
        assert request.max_forwards == 70
        assert request.from_.tag and request.to.tag is None
        assert str(request.cseq) == "1 OPTIONS"
        assert request.call_id
        # The UAS saw exactly that request once, no retransmission.
        assert [a.retransmission for a in uas.arrivals] == [False]


async def test_client_answers_options_with_allow(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        address = (client.local_address.host, client.local_address.port)
        response = await uas.request("OPTIONS", f"sip:alice@{address[0]}:{address[1]}", to=address)
        assert response.status_code == 200
        allow = {method.strip() for method in response.headers["Allow"].split(",")}
        assert {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"} <= allow
        assert response.to.tag


# -- digest authentication -------------------------------------------------------------------------
async def test_register_challenge_is_answered_automatically(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, UAS, users={"alice": "secret"}) as uas,
        client_on(network, auth=Auth.Digest("alice", "secret")) as client,
    ):
        response = await client.register(AOR)
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    first, second = (c.message for c in network.requests("REGISTER"))
    assert "Authorization" not in first.headers
    assert second.headers["Authorization"].startswith("Digest ")
    assert 'realm="sipx"' in second.headers["Authorization"]
    assert (first.cseq.seq, second.cseq.seq) == (1, 2)
    assert first.top_via.branch != second.top_via.branch
    assert first.call_id == second.call_id
    assert first.from_.tag == second.from_.tag
    assert uas.authorized == 1
    assert response.request is not None and response.request.cseq.seq == 2


async def test_retry_with_auth_answers_a_returned_401(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, UAS, users={"alice": "secret"}) as uas,
        client_on(network) as client,
    ):
        challenge = await client.register(AOR)
        assert challenge.status_code == 401
        assert len(network.requests("REGISTER")) == 1
        response = await client.retry_with_auth(challenge, auth=Auth.Digest("alice", "secret"))
        assert response.status_code == 200
        assert challenge in response.history
        assert uas.authorized == 1
        retry = network.requests("REGISTER")[1].message
        assert retry.cseq.seq == 2 and "Authorization" in retry.headers


async def test_a_second_401_goes_back_to_the_caller(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, UAS, users={"alice": "secret"}),
        client_on(network, auth=Auth.Digest("alice", "wrong")) as client,
    ):
        response = await client.register(AOR)
        assert response.status_code == 401
        assert [r.status_code for r in response.history] == [401]
        await trio.sleep(60)
    assert len(network.requests("REGISTER")) == 2  # one answer to the challenge, no loop


async def test_realm_restricted_credentials_stay_home(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    other = Auth.Digest("alice", "secret", realm="other")
    async with (
        ScriptedUAS(network, UAS, users={"alice": "secret"}),
        client_on(network, auth=other) as client,
    ):
        response = await client.register(AOR)
        assert response.status_code == 401
        with pytest.raises(sipx.AuthError, match="other"):
            await client.retry_with_auth(response)
    [request] = network.requests("REGISTER")
    assert "Authorization" not in request.message.headers


async def test_challenged_options_is_retried(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, UAS, users={"alice": "secret"}, auth_methods=["OPTIONS"]) as uas,
        client_on(network, auth=Auth.Digest("alice", "secret")) as client,
    ):
        response = await client.options(uas.uri)
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    assert uas.authorized == 1


# -- retransmissions and timeouts ------------------------------------------------------------------
async def test_non_invite_retransmissions_and_timer_f(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS, ignore=["OPTIONS"]) as uas, client_on(network) as client:
        start = trio.current_time()
        with pytest.raises(sipx.TimeoutError) as caught:
            await client.options(uas.uri)
        assert trio.current_time() - start == pytest.approx(32.0)
    times = since(start, [c.time for c in network.requests("OPTIONS")])
    assert times == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert "OPTIONS" in str(caught.value) and uas.uri in str(caught.value)
    assert caught.value.method == "OPTIONS"
    branches = {c.message.top_via.branch for c in network.requests("OPTIONS")}
    assert len(branches) == 1  # retransmissions, not new transactions


async def test_invite_retransmissions_and_timer_b(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS, ignore=["INVITE"]) as uas, client_on(network) as client:
        start = trio.current_time()
        with pytest.raises(sipx.TimeoutError, match="INVITE") as caught:
            await client.invite(uas.uri, body=OFFER)
        assert trio.current_time() - start == pytest.approx(32.0)
        assert uas.uri in str(caught.value)
    times = since(start, [c.time for c in network.requests("INVITE")])
    assert times == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]


async def test_reliable_transport_does_not_retransmit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, UAS, ignore=["OPTIONS"], transport="TCP") as uas,
        client_on(network, transport="TCP") as client,
    ):
        start = trio.current_time()
        with pytest.raises(sipx.TimeoutError):
            await client.options(uas.uri)
        assert trio.current_time() - start == pytest.approx(32.0)
        uas.ignore.clear()
        response = await client.options(uas.uri)
        assert response.status_code == 200
    first = network.requests("OPTIONS")[0].message
    assert first.top_via.transport == "TCP"
    assert len(network.requests("OPTIONS")) == 2


async def test_per_request_timeout(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS, ignore=["OPTIONS"]) as uas, client_on(network) as client:
        start = trio.current_time()
        with pytest.raises(sipx.TimeoutError, match="OPTIONS") as caught:
            await client.options(uas.uri, timeout=2)
        assert trio.current_time() - start == pytest.approx(2.0)
        assert caught.value.seconds == 2
    assert since(start, [c.time for c in network.requests("OPTIONS")]) == [0, 0.5, 1.5]


async def test_invite_timeout_sends_cancel(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    # The callee rings and never answers.
    async with (
        ScriptedUAS(network, UAS, {"INVITE": [(100,), (180,)]}) as uas,
        client_on(network) as client,
    ):
        start = trio.current_time()
        with pytest.raises(sipx.TimeoutError, match="INVITE"):
            await client.invite(uas.uri, body=OFFER, timeout=2)
        assert trio.current_time() - start == pytest.approx(2.0)
        await trio.sleep(40)
        [cancel] = uas.requests_for("CANCEL")
    [invite] = network.requests("INVITE")
    [sent_cancel] = network.requests("CANCEL")
    assert sent_cancel.time - start == pytest.approx(2.0)
    assert cancel.top_via.branch == invite.message.top_via.branch
    assert str(cancel.cseq) == f"{invite.message.cseq.seq} CANCEL"
    assert [r.message.status_code for r in network.responses(method="CANCEL")] == [200]
    # The 487 is ACKed by the INVITE transaction itself (same branch), once.
    [terminated] = network.responses(487)
    [ack] = network.requests("ACK")
    assert ack.message.top_via.branch == invite.message.top_via.branch
    assert ack.message.to.tag == terminated.message.to.tag
    assert uas.unacknowledged == []


async def test_no_cancel_before_a_provisional_response(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """RFC 3261 9.1: no CANCEL before a provisional response; one once it arrives."""
    network = MemoryNetwork()
    # The callee is slow: its 180 comes 5 s after the INVITE, the 200 never.
    async with (
        ScriptedUAS(network, UAS, {"INVITE": [Reply(180, delay=5)]}) as uas,
        client_on(network) as client,
    ):
        start = trio.current_time()
        with pytest.raises(sipx.TimeoutError):
            await client.invite(uas.uri, body=OFFER, timeout=2)
        await trio.sleep(40)
        assert uas.requests_for("CANCEL")
    [ringing] = network.responses(180)
    cancels = network.requests("CANCEL")
    assert cancels and cancels[0].time >= ringing.time
    assert ringing.time - start == pytest.approx(5.0)
    assert [c.message.status_code for c in network.responses(method="INVITE")] == [180, 487]
    assert len(network.requests("ACK")) == 1  # for the 487


async def test_invite_timeout_is_honoured_without_a_provisional(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The caller's deadline holds even though no CANCEL may be sent yet (RFC 3261 9.1):
    the INVITE transaction carries on in the background, without a CANCEL."""
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS, ignore=["INVITE"]) as uas, client_on(network) as client:
        start = trio.current_time()
        with pytest.raises(sipx.TimeoutError, match="INVITE") as caught:
            await client.invite(uas.uri, body=OFFER, timeout=2)
        assert trio.current_time() - start == pytest.approx(2.0)
        assert caught.value.seconds == 2
        await trio.sleep(40)
        # Nothing is left waiting for the abandoned INVITE once its transaction is over.
        assert client._engine.waiting() == 0
        assert client._uac.aborts == 0
    assert network.requests("CANCEL") == []
    # The INVITE transaction was not torn down: it retransmitted until Timer B.
    times = since(start, [c.time for c in network.requests("INVITE")])
    assert times == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]


async def test_cancelled_invite_sends_cancel(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS, ring=30) as uas, client_on(network) as client:
        start = trio.current_time()
        seen: list[int] = []

        class Watch(sipx.Events):
            @event_handler("response")
            def response(self, response: sipx.Response, context: sipx.RequestContext) -> None:
                seen.append(response.status_code)

        client.events = Watch()
        with trio.move_on_after(3) as scope:
            await client.invite(uas.uri, body=OFFER)
        assert scope.cancelled_caught
        assert trio.current_time() - start == pytest.approx(3.0)
        assert seen[:2] == [100, 180]
        await trio.sleep(40)
        [cancel] = uas.requests_for("CANCEL")
        acks = uas.requests_for("ACK")
    [invite] = network.requests("INVITE")
    assert network.requests("CANCEL")[0].time - start == pytest.approx(3.0)
    assert cancel.top_via.branch == invite.message.top_via.branch
    assert [c.message.status_code for c in network.responses(method="INVITE")] == [100, 180, 487]
    [ack] = acks
    assert ack.top_via.branch == invite.message.top_via.branch
    assert str(ack.cseq) == f"{invite.message.cseq.seq} ACK"
    assert uas.unacknowledged == []
    assert network.responses(200, method="INVITE") == []


async def test_cancel_method_cancels_a_pending_invite(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS, ring=30) as uas, client_on(network) as client:
        results: list[sipx.Response] = []

        async def call() -> None:
            results.append(await client.invite(uas.uri, body=OFFER))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            await uas.wait_for("INVITE")
            await trio.sleep(1)
            cancel_response = await client.cancel()
        assert cancel_response.status_code == 200
        [final] = results
        assert final.status_code == 487


# -- a lossy, noisy network ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "conditions",
    [
        {"loss": 0.3},
        {"loss": 0.1, "duplicate": 0.2, "reorder": 0.2, "delay": 0.05, "jitter": 0.1},
    ],
    ids=["loss30", "messy"],
)
async def test_requests_complete_on_a_bad_network(
    autojump_clock: trio.testing.MockClock, conditions: dict[str, Any]
) -> None:
    network = MemoryNetwork(seed=2024, **conditions)
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        for _ in range(20):
            response = await client.options(uas.uri)
            assert response.status_code == 200
        ok = await client.invite(uas.uri, body=OFFER)
        assert ok.status_code == 200
        await client.ack(ok)
        bye = await client.bye(ok)
        assert bye.status_code == 200
        await trio.sleep(40)
        assert len(uas.requests_for("OPTIONS")) == 20
        assert uas.requests_for("ACK")
        assert uas.unacknowledged == []
    fate_names = {entry.fate for entry in network.log}
    assert "lost" in fate_names


# -- dialogs and routes ----------------------------------------------------------------------------
async def test_ack_and_bye_follow_the_route_set(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    route = f"<sip:{PROXY[0]}:{PROXY[1]};lr>"
    async with (
        ScriptedUAS(network, PROXY, user="proxy") as proxy,
        ScriptedUAS(network, UAS, record_route=[route]) as uas,
        client_on(network) as client,
    ):
        client_address = (client.local_address.host, client.local_address.port)
        ok = await client.invite(uas.uri, body=OFFER)
        assert ok.status_code == 200
        assert ok.headers.get_list("Record-Route") == [route]
        await client.ack(ok)
        bye = await client.bye(ok)
        assert bye.status_code == 200
        await trio.sleep(40)  # the UAS never sees the ACK and retransmits its 2xx
    [ack] = proxy.requests_for("ACK")
    [bye_request] = proxy.requests_for("BYE")
    for request in (ack, bye_request):
        assert str(request.uri) == uas.uri  # the remote target (Contact)
        assert request.headers.get_list("Route") == [route]
    assert uas.requests_for("ACK") == [] and uas.requests_for("BYE") == []
    to_client = network.responses(200, method="INVITE", destination=client_address)
    assert len(to_client) > 1
    # Each 2xx retransmission is ACKed again, through the proxy.
    acks_to_proxy = network.requests("ACK", destination=PROXY)
    assert len(acks_to_proxy) == len(to_client)
    assert network.requests("ACK", destination=UAS) == []


async def test_peer_can_end_the_call(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        ok = await client.invite(uas.uri, body=OFFER)
        await client.ack(ok)
        assert len(client.dialogs) == 1
        invite = uas.requests_for("INVITE")[0]
        address = (client.local_address.host, client.local_address.port)
        bye = await uas.request(
            "BYE",
            str(invite.contact[0].uri),
            to=address,
            headers={
                "From": str(ok.headers["To"]),
                "To": str(invite.headers["From"]),
                "Call-ID": invite.call_id,
                "CSeq": "1 BYE",
            },
        )
        assert bye.status_code == 200
        assert client.dialogs == []


# -- events ----------------------------------------------------------------------------------------
class Recorder(sipx.Events):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[str] = []
        self.responses: list[int] = []
        self.challenges: list[int] = []

    @event_handler("request")
    def stamp(self, request: sipx.Request, context: sipx.RequestContext) -> sipx.Request:
        self.requests.append(request.method)
        request.headers["X-Attempt"] = str(len(self.requests))
        return request

    @event_handler("response")
    async def on_response(self, response: sipx.Response, context: sipx.RequestContext) -> None:
        await trio.sleep(0)
        self.responses.append(response.status_code)

    @event_handler("auth_challenge")
    async def on_challenge(self, response: sipx.Response, context: sipx.RequestContext) -> None:
        await trio.sleep(0.1)
        self.challenges.append(response.status_code)


async def test_event_handlers_see_and_change_messages(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    events = Recorder()
    async with (
        ScriptedUAS(network, UAS, users={"alice": "secret"}) as uas,
        client_on(network, auth=Auth.Digest("alice", "secret"), events=events) as client,
    ):
        response = await client.register(AOR)
        assert response.status_code == 200
        ok = await client.invite(uas.uri, body=OFFER)
        assert ok.status_code == 200
    # ... and the 200 to the BYE that leaving the client sent for the unended dialog
    assert events.responses == [401, 200, 100, 180, 200, 200]
    assert events.challenges == [401]
    assert events.requests[:3] == ["REGISTER", "REGISTER", "INVITE"]
    registers = uas.requests_for("REGISTER")
    assert [r.headers.get("X-Attempt") for r in registers] == ["1", "2"]
    assert uas.requests_for("INVITE")[0].headers.get("X-Attempt") == "3"


# -- robustness and lifecycle ----------------------------------------------------------------------
async def test_malformed_datagrams_do_not_stop_the_client(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, UAS) as uas,
        client_on(network) as client,
        network.socket(("127.0.0.1", 6666)) as attacker,
    ):
        address = (client.local_address.host, client.local_address.port)
        for junk in (
            b"\x00\xff garbage",
            b"SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\n\r\n",  # no Via
            b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\n"
            b"CSeq: 1 OPTIONS\r\n\r\n",  # no From, To, Call-ID
            b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKy\r\n"
            b"From: <sip:a@b>;tag=1\r\nTo: <sip:x>\r\nCall-ID: c\r\nCSeq: banana\r\n\r\n",
            b"INVITE sip:x SIP/2.0\r\n" + b"X: y\r\n" * 1000 + b"\r\n",
            b"\r\n\r\n",
        ):
            attacker.send(junk, address)
        await trio.sleep(1)
        response = await client.options(uas.uri)
        assert response.status_code == 200
    # Only the request whose Via and CSeq can be read is answered (400, as RFC 4475 3.3.13
    # asks even without From, To and Call-ID); no response could be matched for the rest.
    answers = network.messages(source=address, destination=("127.0.0.1", 6666))
    assert [(c.message.status_code, c.message.top_via.branch) for c in answers] == [
        (400, "z9hG4bKx")
    ]


async def test_leaving_the_client_stops_everything(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS, ring=300) as uas:
        before = len(all_tasks())
        async with client_on(network) as client:
            address = (client.local_address.host, client.local_address.port)
            await client.register(AOR)
            await client.enable_auto_reregister(AOR, interval=10)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.invite, uas.uri)
                await uas.wait_for("INVITE")
                nursery.cancel_scope.cancel()
            assert network.is_bound(address)
            leaving = trio.current_time()
        assert trio.current_time() - leaving < 1  # not the 16*T1 bound of the CANCEL
        # Leaving waited for the CANCEL of the abandoned INVITE (RFC 3261 9.1): the callee
        # stopped ringing with 487, which the INVITE transaction ACKed.
        assert [r.status_code for r in uas.responses if r.cseq.method == "INVITE"] == [
            100,
            180,
            487,
        ]
        assert len(uas.requests_for("CANCEL")) == 1 and uas.requests_for("ACK")
        assert len(all_tasks()) == before
        assert not network.is_bound(address)
        sent = len(network.log)
        await trio.sleep(100)  # re-registration every 10 s would show here
        assert [entry for entry in network.log[sent:] if entry.source == address] == []
        with pytest.raises(sipx.SIPError, match="the client is closed; create a new one"):
            await client.options(uas.uri)
        with pytest.raises(sipx.SIPError, match="the client is closed"):
            async with client:
                pass  # pragma: no cover
        # The address is free again for a new client.
        async with sipx.AsyncClient(*address, network=network) as again:
            assert (await again.options(uas.uri)).status_code == 200


async def test_port_in_use_is_a_clear_error(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS):
        with pytest.raises(sipx.TransportError, match="5080"):
            async with sipx.AsyncClient(*UAS, network=network):
                pass  # pragma: no cover


async def test_invite_challenge_is_answered_and_acked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, UAS, users={"alice": "secret"}, auth_methods=["INVITE"]) as uas,
        client_on(network, auth=Auth.Digest("alice", "secret")) as client,
    ):
        ok = await client.invite(uas.uri, body=OFFER)
        assert ok.status_code == 200
        assert [r.status_code for r in ok.history] == [401, 100, 180]
        ack = await client.ack(ok)
        assert ack is not None
        await trio.sleep(40)
        assert uas.unacknowledged == []
    first, second = (c.message for c in network.requests("INVITE"))
    assert (first.cseq.seq, second.cseq.seq) == (1, 2)
    assert "Authorization" in second.headers and "Authorization" not in first.headers
    assert first.content == second.content  # the offer goes again
    ack_for_401, ack_for_200 = (c.message for c in network.requests("ACK"))
    assert ack_for_401.top_via.branch == first.top_via.branch  # the transaction's own ACK
    assert str(ack_for_401.cseq) == "1 ACK"
    assert str(ack_for_200.cseq) == "2 ACK"
    assert ack_for_200.top_via.branch != second.top_via.branch  # a new transaction
    assert "Authorization" in ack_for_200.headers


async def test_2xx_racing_a_cancel_is_acked_and_ended(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """RFC 3261 15 / 9.1: a 2xx that wins the race against our CANCEL is ACKed, then BYE."""
    network = MemoryNetwork(delay=0.1)
    # 180 at once, 200 at t=2.05 (UAS time): the CANCEL sent at t=2.0 arrives at 2.1, too late.
    async with (
        ScriptedUAS(network, UAS, {"INVITE": [(180,), Reply(200, delay=1.95)]}) as uas,
        client_on(network) as client,
    ):
        with pytest.raises(sipx.TimeoutError):
            await client.invite(uas.uri, body=OFFER, timeout=2)
        await trio.sleep(40)
        assert [r.status_code for r in uas.responses if r.cseq.method == "CANCEL"] == [200]
        assert uas.unacknowledged == []  # the 2xx was ACKed
        assert uas.requests_for("BYE")  # and the call it set up was ended
