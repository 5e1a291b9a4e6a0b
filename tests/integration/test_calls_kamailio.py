"""Calls between sipx clients (and SIPp) through Kamailio, over UDP and TCP.

Kamailio (registrar, record-routing stateful proxy, digest auth) sits between the parties:

* a SIPp UAC (1111, digest) calls a sipx client registered as 2222: sipx answers with an
  SDP answer, SIPp hangs up, the sipx call ends "remote";
* two sipx clients (1111 and 2222): MESSAGE, a call answered through ``calls()``, ACK and
  BYE routed through Kamailio (Route = its Record-Route), hold/unhold re-INVITEs, a BYE
  from either side;
* CANCEL before the answer, either role calling, by ``client.cancel()`` or by giving up
  (cancel scope), and a SIPp UAC that CANCELs a ringing sipx callee.

Every test asserts what went over the wire (the clients' ``trace=`` hook, SIPp's message
trace): status codes, Route/Record-Route, Vias, SDP directions. Every client unregisters
in teardown and the binding is checked gone (stale bindings fork later calls).
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest
import trio
from peers import USERS, Kamailio, SIPp, query_bindings

from sipx import AsyncClient, Auth
from sipx._call import Call, CallState

if TYPE_CHECKING:
    from trio_typing import TaskStatus

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"

#: a plain offer: PCMU and PCMA
OFFER = (
    "v=0\r\n"
    "o=caller 1 1 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "c=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\n"
    "m=audio 40000 RTP/AVP 0 8\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
)


@pytest.fixture(params=["UDP", "TCP"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --------------------------------------------------------------------------------------- #
# wire capture (the client's trace hook)
# --------------------------------------------------------------------------------------- #
_COMPACT = {
    "i": "call-id",
    "v": "via",
    "f": "from",
    "t": "to",
    "m": "contact",
    "l": "content-length",
}


@dataclass
class WireMessage:
    direction: str  # "in" or "out"
    text: str
    address: tuple[str, int]
    transport: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str = ""

    def __post_init__(self) -> None:
        head, _, self.body = self.text.partition("\r\n\r\n")
        for line in head.split("\r\n")[1:]:
            name, sep, value = line.partition(":")
            if sep:
                key = name.strip().lower()
                self.headers.append((_COMPACT.get(key, key), value.strip()))

    @property
    def start_line(self) -> str:
        return self.text.split("\r\n", 1)[0]

    @property
    def is_response(self) -> bool:
        return self.start_line.startswith("SIP/2.0 ")

    @property
    def status(self) -> int:
        return int(self.start_line.split()[1]) if self.is_response else 0

    @property
    def method(self) -> str:
        """The request's method, or the CSeq method of a response."""
        if self.is_response:
            return self.cseq.split()[-1]
        return self.start_line.split()[0]

    @property
    def cseq(self) -> str:
        return self.header("cseq") or ""

    @property
    def call_id(self) -> str:
        return self.header("call-id") or ""

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        """Every value of ``name`` (comma-joined header lines split apart)."""
        out: list[str] = []
        for key, value in self.headers:
            if key == name.lower():
                out.extend(v.strip() for v in re.split(r",(?![^<]*>)", value) if v.strip())
        return out

    def __repr__(self) -> str:
        return f"<{self.direction} {self.start_line!r} {self.address}>"


class Wire:
    """Trace hook that keeps every message a client sends or receives."""

    def __init__(self) -> None:
        self.messages: list[WireMessage] = []

    def __call__(self, direction: str, data: bytes, address: tuple[str, int], tr: str) -> None:
        if data.strip():
            self.messages.append(
                WireMessage(
                    direction, data.decode("utf-8", "replace"), (address[0], address[1]), tr
                )
            )

    def find(
        self,
        direction: str,
        *,
        method: str | None = None,
        status: int | None = None,
        call_id: str | None = None,
        requests: bool | None = None,
    ) -> list[WireMessage]:
        """Messages in ``direction``; ``method`` matches requests and responses (CSeq)."""
        out = []
        for m in self.messages:
            if m.direction != direction:
                continue
            if requests is not None and m.is_response == requests:
                continue
            if method is not None and m.method != method:
                continue
            if status is not None and m.status != status:
                continue
            if call_id is not None and m.call_id != call_id:
                continue
            out.append(m)
        return out

    def requests(
        self, direction: str, method: str, call_id: str | None = None
    ) -> list[WireMessage]:
        return self.find(direction, method=method, call_id=call_id, requests=True)

    def responses(
        self, direction: str, method: str, status: int | None = None, call_id: str | None = None
    ) -> list[WireMessage]:
        return self.find(direction, method=method, status=status, call_id=call_id, requests=False)

    def dump(self) -> str:
        return "\n\n".join(f"--- {m.direction} {m.address}\n{m.text}" for m in self.messages)


async def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


def proxy_hop(kamailio: Kamailio, value: str) -> bool:
    """True when a Route/Record-Route value names the Kamailio (loose routing)."""
    return f"{HOST}:{kamailio.port}" in value and ";lr" in value


def top_via_is_kamailio(kamailio: Kamailio, message: WireMessage) -> bool:
    vias = message.header_all("via")
    return bool(vias) and f"{HOST}:{kamailio.port}" in vias[0]


# --------------------------------------------------------------------------------------- #
# clients registered at Kamailio
# --------------------------------------------------------------------------------------- #
@asynccontextmanager
async def registered(
    kamailio: Kamailio, user: str, transport: str, wire: Wire | None = None
) -> AsyncIterator[AsyncClient]:
    """An AsyncClient registered as ``user``; unregistered (and checked gone) on exit."""
    aor = kamailio.aor(user)
    async with AsyncClient(
        HOST, 0, transport, Auth.Digest(user, USERS[user]), trace=wire, timeout=5
    ) as client:
        port = client.local_address.port
        response = await client.register(aor, expires=120)
        assert response.status_code == 200, response
        assert [r.status_code for r in response.history] == [401]
        failed = True
        try:
            yield client
            failed = False
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                gone = await client.unregister(aor)
                left = await trio.to_thread.run_sync(
                    lambda: [c for c in query_bindings(kamailio, user) if f":{port}" in c]
                )
                if not failed:  # never hide the test's own error
                    assert gone.status_code == 200, gone
                    assert left == [], f"stale binding of {user}: {left}"


@asynccontextmanager
async def incoming_calls(client: AsyncClient) -> AsyncIterator[trio.MemoryReceiveChannel[Call]]:
    """A channel fed from ``client.calls()`` (listening before this returns)."""
    send, receive = trio.open_memory_channel[Call](math.inf)

    async def pump(task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for call in client.calls():
            send.send_nowait(call)

    async with trio.open_nursery() as nursery:
        await nursery.start(pump)
        yield receive
        nursery.cancel_scope.cancel()


async def next_call(inbox: trio.MemoryReceiveChannel[Call], timeout: float = 5.0) -> Call:
    with trio.fail_after(timeout):
        return await inbox.receive()


# --------------------------------------------------------------------------------------- #
# SIPp helpers
# --------------------------------------------------------------------------------------- #
_TRACE_SEPARATOR = re.compile(r"^-{20,} .*$", re.M)


def sipp_messages(log: str) -> list[tuple[str, str]]:
    """``(direction, message)`` from a SIPp ``-trace_msg`` log ("sent"/"received")."""
    out: list[tuple[str, str]] = []
    for block in _TRACE_SEPARATOR.split(log):
        lines = block.strip("\r\n").splitlines()
        if not lines or "message" not in lines[0]:
            continue
        direction = "sent" if " sent" in lines[0] else "received"
        text = "\r\n".join(line.rstrip("\r") for line in lines[1:]).strip("\r\n")
        out.append((direction, text))
    return out


def sipp_start_lines(log: str, direction: str) -> list[str]:
    return [t.split("\r\n", 1)[0] for d, t in sipp_messages(log) if d == direction]


def sipp_responses(log: str) -> list[tuple[int, str]]:
    """``(status, CSeq)`` of every response SIPp received, in order."""
    out = []
    for d, text in sipp_messages(log):
        if d == "received" and text.startswith("SIP/2.0 "):
            cseq = re.search(r"^CSeq\s*:\s*(.*?)\s*$", text, re.M | re.I)
            out.append((int(text.split()[1]), cseq.group(1) if cseq else ""))
    return out


async def run_sipp(sipp_factory: object, scenario: str, kamailio: Kamailio, **kw: object) -> SIPp:
    """Start a SIPp UAC towards Kamailio and wait for it in a thread (the trio loop with
    the sipx clients keeps running)."""
    uac: SIPp = await trio.to_thread.run_sync(
        lambda: sipp_factory(scenario, kamailio, **kw)  # type: ignore[operator]
    )
    await trio.to_thread.run_sync(uac.wait, 20.0)
    return uac


def payload_types(sdp: str) -> set[str]:
    m = re.search(r"^m=audio \d+ RTP/AVP ([\d ]+)$", sdp, re.M)
    assert m, sdp
    return set(m.group(1).split())


# --------------------------------------------------------------------------------------- #
# 1. SIPp UAC -> Kamailio -> sipx callee
# --------------------------------------------------------------------------------------- #
async def test_sipp_calls_sipx_through_kamailio(
    kamailio: Kamailio, sipp: object, transport: str
) -> None:
    wire = Wire()
    async with registered(kamailio, "2222", transport, wire) as bob, incoming_calls(bob) as inbox:
        ended: list[str | None] = []
        calls: list[Call] = []

        async def callee() -> None:
            call = await next_call(inbox, 10)
            calls.append(call)
            call.ring()
            call.answer()
            with trio.fail_after(10):
                ended.append(await call.wait_ended())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(callee)
            uac = await run_sipp(
                sipp,
                "uac_invite_auth.xml",
                kamailio,
                service="2222",
                keys={"caller": "1111"},
                auth=("1111", "1111xxx"),
                transport=transport.lower(),
            )
    assert uac.returncode == 0, uac.describe()
    assert ended == ["remote"], wire.dump()
    (call,) = calls
    assert call.state is CallState.ENDED and call.ended_by == "remote"

    # SIPp's side: 407, then 180 and a 200 with an SDP answer sharing its codec (PCMU/0)
    received = sipp_messages(uac.log)
    responses = sipp_responses(uac.log)
    assert [r for r in responses if r[0] != 100] == [
        (407, "1 INVITE"),
        (180, "2 INVITE"),
        (200, "2 INVITE"),
        (200, "3 BYE"),
    ], responses
    ok_invite = [
        t
        for d, t in received
        if d == "received" and t.startswith("SIP/2.0 200") and re.search(r"CSeq: *2 INVITE", t)
    ]
    assert ok_invite, uac.log
    answer = ok_invite[0]
    assert re.search(r"^Content-Type: *application/sdp", answer, re.M | re.I), answer
    sdp = answer.split("\r\n\r\n", 1)[1].replace("\r\n", "\n")
    assert "0" in payload_types(sdp), sdp  # PCMU, the only codec offered
    assert re.search(r"^a=rtpmap:0 PCMU/8000", sdp, re.M), sdp
    # the 200 went through Kamailio: its Record-Route is in it
    assert any(proxy_hop(kamailio, v) for v in re.findall(r"^Record-Route: *(.*)$", answer, re.M))

    # sipx's side: INVITE via Kamailio, ACK and BYE via Kamailio, the 200 to BYE
    (invite,) = wire.requests("in", "INVITE")
    assert top_via_is_kamailio(kamailio, invite) and len(invite.header_all("via")) == 2
    assert any(proxy_hop(kamailio, v) for v in invite.header_all("record-route"))
    ok = wire.responses("out", "INVITE", 200)
    assert ok and ok[0].header_all("record-route") == invite.header_all("record-route")
    assert "application/sdp" in (ok[0].header("content-type") or "")
    assert call.local_sdp is not None and "PCMU/8000" in call.local_sdp.get_codecs_summary()
    assert call.remote_sdp is not None
    (ack,) = wire.requests("in", "ACK")
    assert top_via_is_kamailio(kamailio, ack)
    (bye,) = wire.requests("in", "BYE")
    assert top_via_is_kamailio(kamailio, bye)
    assert [m.status for m in wire.responses("out", "BYE")] == [200]


# --------------------------------------------------------------------------------------- #
# 2. two sipx clients through Kamailio: MESSAGE, call, hold/unhold, BYE both ways
# --------------------------------------------------------------------------------------- #
async def test_two_sipx_clients_message_call_hold_bye(kamailio: Kamailio, transport: str) -> None:
    wa, wb = Wire(), Wire()
    kport = kamailio.port
    async with (
        registered(kamailio, "1111", transport, wa) as alice,
        registered(kamailio, "2222", transport, wb) as bob,
    ):
        # ---- MESSAGE 1111 -> 2222 ----------------------------------------------------------
        inbox_text: list[str] = []
        bob.on_request("MESSAGE", lambda incoming: inbox_text.append(incoming.text))
        response = await alice.message(kamailio.aor("2222"), "Hello 2222, from sipx")
        assert response.status_code == 200, response
        assert [r.status_code for r in response.history] == [407]
        assert inbox_text == ["Hello 2222, from sipx"]
        (msg,) = wb.requests("in", "MESSAGE")
        assert top_via_is_kamailio(kamailio, msg) and len(msg.header_all("via")) == 2
        assert msg.call_id == response.call_id
        assert [m.status for m in wb.responses("out", "MESSAGE")] == [200]

        async with incoming_calls(bob) as inbox:
            # ---- call 1111 -> 2222 answered via calls() -------------------------------------
            answered: list[Call] = []

            async def answer_one() -> None:
                call = await next_call(inbox)
                call.ring()
                # Kamailio's UDP workers may pass on a 180 and a 200 sent back to back in
                # either order (a 180 after the 200 is dropped): let the 180 go first.
                await trio.sleep(0.05)
                call.answer()
                answered.append(call)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer_one)
                call_a = await alice.call(kamailio.aor("2222"))
            assert call_a.established, call_a.final_response
            assert call_a.final_response is not None
            assert call_a.final_response.status_code == 200
            assert 407 in [r.status_code for r in call_a.final_response.history]
            assert 180 in [r.status_code for r in call_a.final_response.history]
            (call_b,) = answered
            with trio.fail_after(5):
                await call_b.wait_acked()
            assert call_b.established
            cid = call_a.call_id
            assert call_b.call_id == cid

            # the INVITE reached 2222 through Kamailio, which record-routed it
            (inv_b,) = wb.requests("in", "INVITE", cid)
            rr = inv_b.header_all("record-route")
            assert rr and all(proxy_hop(kamailio, v) for v in rr), rr
            ok_b = wb.responses("out", "INVITE", 200, cid)
            assert ok_b and ok_b[0].header_all("record-route") == rr  # copied into the 200
            ok_a = wa.responses("in", "INVITE", 200, cid)
            assert ok_a and ok_a[0].header_all("record-route") == rr
            # ACK: to Kamailio, with the Route set from the Record-Route (RFC 3261 12.1.2)
            (ack_a,) = wa.requests("out", "ACK", cid)[-1:]
            assert ack_a.address == (HOST, kport)
            assert ack_a.header_all("route") == list(reversed(rr))
            assert ack_a.start_line.startswith("ACK sip:2222@127.0.0.1:")  # remote target
            (ack_b,) = wb.requests("in", "ACK", cid)
            assert top_via_is_kamailio(kamailio, ack_b)
            assert ack_b.header_all("route") == []  # Kamailio consumed its Route

            # ---- hold / unhold (re-INVITEs by 1111) -----------------------------------------
            r = await call_a.hold()
            assert r.status_code == 200, r
            assert call_b.remote_sdp is not None and call_b.remote_sdp.direction == "sendonly"
            assert call_b.local_sdp is not None and call_b.local_sdp.direction == "recvonly"
            assert call_a.remote_sdp is not None and call_a.remote_sdp.direction == "recvonly"
            assert call_a.local_sdp is not None and call_a.local_sdp.direction == "sendonly"
            reinvites = wa.requests("out", "INVITE", cid)
            hold_req = reinvites[-1]
            assert hold_req.address == (HOST, kport)
            assert hold_req.header_all("route") == list(reversed(rr))
            assert "a=sendonly" in hold_req.body
            await wait_until(lambda: len(wb.requests("in", "ACK", cid)) == 2)
            assert call_b.established and call_a.established

            r = await call_a.unhold()
            assert r.status_code == 200, r
            assert call_b.remote_sdp is not None and call_b.remote_sdp.direction == "sendrecv"
            assert call_a.remote_sdp is not None and call_a.remote_sdp.direction == "sendrecv"
            assert "a=sendrecv" in wb.requests("in", "INVITE", cid)[-1].body
            assert len(wb.requests("in", "INVITE", cid)) == 3  # initial + hold + unhold
            await wait_until(lambda: len(wb.requests("in", "ACK", cid)) == 3)

            # ---- BYE from the caller ---------------------------------------------------------
            r = await call_a.bye()
            assert r.status_code == 200, r
            with trio.fail_after(5):
                assert await call_b.wait_ended() == "remote"
            assert call_a.ended_by == "local"
            (bye_a,) = wa.requests("out", "BYE", cid)
            assert bye_a.address == (HOST, kport)
            assert bye_a.header_all("route") == list(reversed(rr))
            (bye_b,) = wb.requests("in", "BYE", cid)
            assert top_via_is_kamailio(kamailio, bye_b)
            assert [m.status for m in wb.responses("out", "BYE", call_id=cid)] == [200]

            # ---- second call, BYE from the callee ---------------------------------------------
            answered.clear()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer_one)
                call2_a = await alice.call(kamailio.aor("2222"))
            assert call2_a.established
            (call2_b,) = answered
            with trio.fail_after(5):
                await call2_b.wait_acked()
            cid2 = call2_a.call_id
            assert cid2 != cid
            rr2 = wb.requests("in", "INVITE", cid2)[0].header_all("record-route")
            r = await call2_b.bye()
            assert r.status_code == 200, r
            with trio.fail_after(5):
                assert await call2_a.wait_ended() == "remote"
            assert call2_b.ended_by == "local"
            (bye2_b,) = wb.requests("out", "BYE", cid2)
            assert bye2_b.address == (HOST, kport)
            assert bye2_b.header_all("route") == rr2  # callee: Route = Record-Route, in order
            assert bye2_b.start_line.startswith("BYE sip:1111@127.0.0.1:")
            (bye2_a,) = wa.requests("in", "BYE", cid2)
            assert top_via_is_kamailio(kamailio, bye2_a)
            assert [m.status for m in wa.responses("out", "BYE", call_id=cid2)] == [200]
            assert alice.dialogs == [] and bob.dialogs == []


# --------------------------------------------------------------------------------------- #
# 3. CANCEL before the answer
# --------------------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    ("caller_user", "callee_user", "how"),
    [("1111", "2222", "cancel"), ("2222", "1111", "cancel"), ("1111", "2222", "give-up")],
)
async def test_cancel_ringing_call(
    kamailio: Kamailio, transport: str, caller_user: str, callee_user: str, how: str
) -> None:
    wc, we = Wire(), Wire()
    async with (
        registered(kamailio, caller_user, transport, wc) as caller,
        registered(kamailio, callee_user, transport, we) as callee,
        incoming_calls(callee) as inbox,
    ):
        results: list[object] = []
        ringing: list[Call] = []
        give_up = trio.CancelScope()

        async def ring_only() -> None:
            call = await next_call(inbox)
            call.ring()
            ringing.append(call)

        async def place() -> None:
            if how == "cancel":
                results.append(await caller.invite(kamailio.aor(callee_user), body=OFFER))
            else:
                with give_up:
                    results.append(await caller.invite(kamailio.aor(callee_user), body=OFFER))
                if give_up.cancelled_caught:
                    results.append("gave up")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ring_only)
            nursery.start_soon(place)
            await wait_until(lambda: wc.responses("in", "INVITE", 180))
            if how == "cancel":
                cancel_response = await caller.cancel()
                assert cancel_response.status_code == 200, cancel_response
            else:  # the caller gives up: the task that waits for the INVITE is cancelled
                give_up.cancel()
        (call,) = ringing
        with trio.fail_after(5):
            assert await call.wait_ended() == "cancel"
        assert call.state is CallState.ENDED
        cid = call.call_id

        (final,) = results
        if how == "cancel":
            assert getattr(final, "status_code", None) == 487, final
        else:
            assert final == "gave up", final
        # caller's wire: CANCEL sent to Kamailio with the INVITE's branch, 200 and 487 in,
        # ACK for the 487 out (hop by hop, same branch)
        invites = wc.requests("out", "INVITE", cid)
        seq = invites[-1].cseq.split()[0]  # the authorized INVITE (the first one got 407)

        def ack_487() -> list[WireMessage]:
            return [m for m in wc.requests("out", "ACK", cid) if m.cseq == f"{seq} ACK"]

        await wait_until(ack_487)
        (cancel,) = wc.requests("out", "CANCEL", cid)
        assert cancel.address == (HOST, kamailio.port)
        assert cancel.cseq == f"{seq} CANCEL"
        assert cancel.header_all("via") == invites[-1].header_all("via")  # same branch
        await wait_until(lambda: wc.responses("in", "CANCEL", call_id=cid))
        assert [m.status for m in wc.responses("in", "CANCEL", call_id=cid)] == [200]
        final_statuses = [
            m.status for m in wc.responses("in", "INVITE", call_id=cid) if m.cseq == f"{seq} INVITE"
        ]
        assert final_statuses[-1] == 487 and 200 not in final_statuses, final_statuses
        (ack,) = ack_487()
        assert ack.address == (HOST, kamailio.port)
        assert ack.header_all("via") == invites[-1].header_all("via")
        assert not wc.responses("in", "INVITE", 200, cid)
        # callee's wire: CANCEL relayed by Kamailio, answered 200, INVITE answered 487, ACKed
        (cancel_in,) = we.requests("in", "CANCEL", cid)
        assert top_via_is_kamailio(kamailio, cancel_in)
        assert [m.status for m in we.responses("out", "CANCEL", call_id=cid)] == [200]
        statuses = [m.status for m in we.responses("out", "INVITE", call_id=cid)]
        assert statuses[-1] == 487 and 200 not in statuses, statuses
        await wait_until(lambda: we.requests("in", "ACK", cid))
        assert caller.dialogs == [] and callee.dialogs == []


async def test_sipp_cancels_ringing_sipx_callee(
    kamailio: Kamailio, sipp: object, transport: str
) -> None:
    wire = Wire()
    async with registered(kamailio, "2222", transport, wire) as bob, incoming_calls(bob) as inbox:
        ended: list[str | None] = []

        async def ring_only() -> None:
            call = await next_call(inbox, 10)
            call.ring()
            with trio.fail_after(10):
                ended.append(await call.wait_ended())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ring_only)
            uac = await run_sipp(
                sipp,
                "uac_cancel_auth.xml",
                kamailio,
                service="2222",
                keys={"caller": "1111"},
                auth=("1111", "1111xxx"),
                transport=transport.lower(),
            )
    assert uac.returncode == 0, uac.describe()
    assert ended == ["cancel"], wire.dump()
    sent = sipp_start_lines(uac.log, "sent")
    assert [s.split()[0] for s in sent] == ["INVITE", "ACK", "INVITE", "CANCEL", "ACK"], sent
    finals = [(status, cseq) for status, cseq in sipp_responses(uac.log) if status >= 200]
    # Kamailio's own 200 to the CANCEL and the relayed 487 may arrive in either order.
    assert finals[0] == (407, "1 INVITE"), finals
    assert sorted(finals[1:]) == [(200, "2 CANCEL"), (487, "2 INVITE")], finals
    # sipx itself answered the relayed CANCEL with 200 and the INVITE with 487
    (cancel_in,) = wire.requests("in", "CANCEL")
    assert top_via_is_kamailio(kamailio, cancel_in)
    assert [m.status for m in wire.responses("out", "CANCEL")] == [200]
    # The 100 Trying: over TCP at once; over UDP only if the 180 took 200 ms (RFC 3261
    # 17.2.1), which depends on this machine's load.
    statuses = [m.status for m in wire.responses("out", "INVITE")]
    assert statuses in ([100, 180, 487], [180, 487]), statuses
    assert transport == "UDP" or statuses[0] == 100, statuses
    assert wire.requests("in", "ACK"), wire.dump()  # Kamailio ACKed our 487
