"""The UAS call path of issue 14's fifth pass, pinned as behaviour (nothing here times).

* An ACKed call is made idle (INVITE, 200 and SDPs kept as bytes, no transaction) a
  little later, in batches, by one task (``sipx/_idle_calls.py``); a call that ends first
  (a BYE right after the ACK) is never written out again.
* ``SDPBody.create_answer`` reads a tuple of supported codecs (the default, the client's)
  once, not per answer.
* The 200 of a call is made without building and dropping a header index for each header
  it adds (Contact, Record-Route, Content-Type).

Each test counts the work removed and checks what went on the wire or what the call
keeps, so that it fails if the change is reverted and if the behaviour changes.
"""

from __future__ import annotations

import gc
from typing import Any

import pytest
import trio
import trio.testing
from test_uas_call_path import OFFER, PEER, Counter, _receive, _request

import sipx
import sipx._call
import sipx._core.sdp
from sipx import CallState, SDPBody
from sipx._core.headers import Headers
from sipx._core.media_params import MediaParams, negotiate
from sipx._idle_calls import BATCH, IDLE_AFTER, IdleCalls
from sipx.testing import MemoryNetwork

ROUTES = ("<sip:proxy1.example.com;lr>", "<sip:proxy2.example.com;lr>")


def _invite(target: str, i: int, *, routes: tuple[str, ...] = ()) -> bytes:
    """An INVITE with an offer and, if given, Record-Route fields."""
    data = _request("INVITE", target, i, body=OFFER)
    if not routes:
        return data
    head, _, rest = data.partition(b"\r\n")
    fields = b"".join(b"Record-Route: " + route.encode() + b"\r\n" for route in routes)
    return head + b"\r\n" + fields + rest


async def _answered(
    client: sipx.AsyncClient, peer: Any, address: tuple[str, int], i: int, **kw: Any
) -> tuple[sipx.Call, sipx.Response]:
    """The peer INVITEs, ``client.calls()``'s consumer answers (sipx's SDP: no media)."""
    target = f"{address[0]}:{address[1]}"
    calls: list[sipx.Call] = []
    async with trio.open_nursery() as nursery:

        async def answer_one() -> None:
            async for call in client.calls():
                calls.append(call)
                call.answer(SDPBody.parse(OFFER.replace("6000", "9")), **kw)
                return

        nursery.start_soon(answer_one)
        await trio.testing.wait_all_tasks_blocked()
        peer.send(_invite(target, i, routes=ROUTES), address)
        (ok,) = await _receive(peer, 1)
    return calls[0], ok


def _ack(peer: Any, address: tuple[str, int], i: int, ok: sipx.Response) -> None:
    target = f"{address[0]}:{address[1]}"
    peer.send(_request("ACK", target, i, to_tag=ok.to.tag or ""), address)


def _parsed_invites(call_id: str) -> int:
    gc.collect()
    return sum(
        1
        for obj in gc.get_objects()
        if isinstance(obj, sipx.Request) and obj.method == "INVITE" and obj.call_id == call_id
    )


async def test_a_call_hung_up_right_after_its_ack_is_never_written_out_again(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """INVITE, 200, ACK and at once BYE: the call ends before it would be made idle, so
    neither its INVITE nor its 200 is serialised again to be kept; the BYE is answered."""
    kept = Counter(monkeypatch, sipx._call, "_kept")
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        call, ok = await _answered(client, peer, address, 1)
        _ack(peer, address, 1, ok)
        target = f"{address[0]}:{address[1]}"
        peer.send(_request("BYE", target, 1, to_tag=ok.to.tag or "", cseq=2), address)
        (bye_ok,) = await _receive(peer, 1)
        await trio.sleep(IDLE_AFTER + BATCH + 1)
    assert (bye_ok.status_code, bye_ok.cseq.method) == (200, "BYE")
    assert call.ended_by == "remote" and call.acked
    assert kept.calls == 0


async def test_an_acked_call_is_made_idle_a_little_later_and_reads_as_before(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """Right after the ACK the call still holds its parsed INVITE and transaction; by
    IDLE_AFTER + BATCH it keeps them as bytes (the SDPs are the bodies that went on the
    wire, not written again), and the idle-calls task has ended with its queue."""
    written = Counter(monkeypatch, SDPBody, "to_bytes")
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        call, ok = await _answered(client, peer, address, 1)
        _ack(peer, address, 1, ok)
        await call.wait_acked()
        assert call.transaction is not None  # not yet: it may end at once
        assert call.dialog is not None and call.dialog.invite is not None
        await trio.sleep(IDLE_AFTER + BATCH + 0.01)  # the task wakes by then
        assert call.state is CallState.ESTABLISHED
        assert call.transaction is None
        assert call.dialog.invite is None
        assert _parsed_invites(call.call_id) == 0
        assert written.calls == 1  # the 200's body, when it was sent
        assert call.final_response is not None
        assert call.final_response.to_bytes() == ok.to_bytes()
        assert call.local_sdp == SDPBody.parse(ok.content) == call.answer_sdp
        assert call.remote_sdp == SDPBody.parse(OFFER) == call.offer
        assert call.invite.headers.get_list("Record-Route") == list(ROUTES)
        assert call.remote_uri == "sip:peer@127.0.0.1:5999"
        idle = client._uas.idle_calls
        assert len(idle) == 0
        tasks = [t.name for t in trio.lowlevel.current_root_task().child_nurseries[0].child_tasks]
        assert not any("IdleCalls" in name for name in tasks), tasks


async def test_idle_calls_are_made_idle_in_batches_by_one_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Calls added within BATCH of each other are compacted in one wake-up, IDLE_AFTER to
    IDLE_AFTER + BATCH after each was added; an ended call is skipped; the task ends with
    the queue and starts again with the next call."""

    class FakeCall:
        def __init__(self, name: str, *, ended: bool = False) -> None:
            self.call_id = name
            self.ended = ended

    done: list[tuple[str, float]] = []
    started = 0

    async with trio.open_nursery() as nursery:

        def start_soon(function: Any, *args: Any) -> None:
            nonlocal started
            started += 1
            nursery.start_soon(function, *args)

        idle = IdleCalls(start_soon, lambda call: done.append((call.call_id, trio.current_time())))
        t0 = trio.current_time()
        held = [FakeCall(f"c{i}", ended=i == 3) for i in range(5)]  # the queue's are weak
        for fake in held:
            idle.add(fake)  # type: ignore[arg-type]
            await trio.sleep(BATCH / 5)
        await trio.sleep(IDLE_AFTER + 2 * BATCH)
        assert len(idle) == 0
        held.append(FakeCall("late"))
        idle.add(held[-1])  # type: ignore[arg-type]
        await trio.sleep(IDLE_AFTER + BATCH + 0.01)
    assert [name for name, _ in done] == ["c0", "c1", "c2", "c4", "late"]
    first_batch = {at for name, at in done if name != "late"}
    assert len(first_batch) == 1  # one wake-up for the four
    (at,) = first_batch
    assert IDLE_AFTER + 4 * BATCH / 5 <= at - t0 <= IDLE_AFTER + BATCH
    assert started == 2  # one task per busy period


def test_a_tuple_of_supported_codecs_is_read_once_and_answers_are_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Answers made with the default codecs (or any tuple) read the specs once; a list is
    read every time (it may change). The answer still takes our fmtp for an offered codec
    without one (telephone-event)."""
    offer = SDPBody.parse(
        "v=0\r\no=peer 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
    first = SDPBody.create_answer(offer, "uas", "127.0.0.1", "127.0.0.1", session_id=7)
    read = Counter(monkeypatch, sipx._core.sdp, "_codec_from_spec")
    again = SDPBody.create_answer(offer, "uas", "127.0.0.1", "127.0.0.1", session_id=7)
    assert read.calls == 0
    assert again == first
    assert again.to_string() == (
        "v=0\r\no=uas 7 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 8000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
    )
    codecs = [{"name": "PCMA", "rate": 8000}]
    SDPBody.create_answer(offer, "uas", "127.0.0.1", "127.0.0.1", codecs)
    codecs[0] = {"name": "PCMU", "rate": 8000}
    answer = SDPBody.create_answer(offer, "uas", "127.0.0.1", "127.0.0.1", codecs)
    assert read.calls == 2
    assert answer.media[0].formats == ["0"]


def test_an_sdp_with_and_without_unmodeled_lines_is_written_in_rfc_order() -> None:
    """The usual SDP (no unmodeled line) and one with i=/u=/k= lines write the same
    modeled lines in the same order; the extra lines go in their slots."""
    plain = (
        "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nb=AS:64\r\n"
        "t=0 0\r\na=tool:x\r\nm=audio 6000 RTP/AVP 0\r\nc=IN IP4 127.0.0.2\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
    )
    assert SDPBody.parse(plain).to_string() == plain
    extra = (
        "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\ni=info\r\nu=http://x\r\n"
        "c=IN IP4 127.0.0.1\r\nt=0 0\r\nk=clear:x\r\na=tool:x\r\nm=audio 6000 RTP/AVP 0\r\n"
        "i=media\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    assert SDPBody.parse(extra).to_string() == extra


async def test_the_200_of_a_call_is_made_without_header_index_lookups(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """``answer()`` adds Contact, the INVITE's Record-Route and Content-Type without asking
    the header section whether they are there (each ask rebuilt its index); the 200 on the
    wire carries them once each, the routes in order, and the user's headers."""
    network = MemoryNetwork(seed=1)
    contains = Counter(monkeypatch, Headers, "__contains__")
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        call, ok = await _answered(client, peer, address, 1, headers={"X-Served-By": "w1"})
    assert contains.calls == 0
    assert ok.status_code == 200
    assert ok.headers.get_list("Record-Route") == list(ROUTES)
    assert ok.headers.get_list("Content-Type") == ["application/sdp"]
    assert ok.headers["X-Served-By"] == "w1"
    [contact] = ok.contact
    assert (contact.uri.host, contact.uri.port) == address
    assert SDPBody.parse(ok.content) == call.local_sdp


def test_the_same_sdp_bytes_parsed_again_give_independent_copies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bytes seen twice among the recent bodies are copied, not parsed a third time; each
    result is the body's own (changing one changes neither the next nor the kept one)."""
    data = (
        OFFER.replace("t=0 0\r\n", "t=0 0\r\na=tool:x\r\n")
        + "a=sendrecv\r\nm=video 0 RTP/AVP 96\r\ni=off\r\n"
    ).encode()
    parsed_media = Counter(monkeypatch, sipx._core.sdp, "_parse_media")
    first, second, third = (SDPBody.parse(data) for _ in range(3))
    assert parsed_media.calls == 2 * 2  # two m-lines, parsed for the first two only
    assert first == second == third
    third.media[0].attributes.append(("ptime", "20"))
    third.media[0].formats.append("8")
    third.attributes.clear()
    fourth = SDPBody.parse(data)
    assert fourth == first and fourth != third
    assert fourth.media[0] is not third.media[0]
    assert fourth.to_bytes() == data
    assert SDPBody.parse(data.decode()) == first  # text is parsed, as before


async def test_the_200_of_a_call_adds_only_checked_fields_without_user_headers(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """Without headers of the user's, the 200 gets the session timer's fields and Allow
    as sipx made them (no ``Headers.__setitem__``), written in the same order as on the
    parent commit; a user's Allow still replaces ours."""
    network = MemoryNetwork(seed=1)
    setitem = Counter(monkeypatch, Headers, "__setitem__")
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network, session_expires=1800) as client,
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        _, first = await _answered(client, peer, address, 1)  # makes the cached Allow
        setitem.calls = 0
        _, ok = await _answered(client, peer, address, 2)
        assert setitem.calls == 0
        _, mine = await _answered(client, peer, address, 3, headers={"Allow": "INVITE, BYE"})
    assert [n for n, _ in first.headers.multi_items()] == [n for n, _ in ok.headers.multi_items()]
    assert [name for name, _ in ok.headers.multi_items()] == [  # as the parent wrote it
        "Via",
        "Record-Route",
        "Record-Route",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Supported",
        "Session-Expires",
        "Allow",
        "Content-Type",
        "Content-Length",
    ]
    assert ok.headers["Session-Expires"] == "1800;refresher=uas"  # the peer has no timer
    assert ok.headers["Supported"] == "timer"
    assert "INVITE" in ok.headers["Allow"] and "BYE" in ok.headers["Allow"]
    assert mine.headers.get_list("Allow") == ["INVITE", "BYE"]
    assert mine.headers["Session-Expires"] == "1800;refresher=uas"


async def test_queued_calls_are_taken_without_waiting_on_the_channel_each(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """Calls queued before ``calls()`` is read are handed out one after the other; only an
    empty queue is waited on. Cancelling the reader still stops it at the next call."""
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        channel = client._uas._call_receive
        waits = 0
        receive = type(channel).receive

        async def counted(self: Any) -> Any:
            nonlocal waits
            if self is channel:
                waits += 1
            return await receive(self)

        monkeypatch.setattr(type(channel), "receive", counted)
        address = next(a for a in network.bound_addresses if a != PEER)
        target = f"{address[0]}:{address[1]}"
        got: list[str] = []

        release = trio.Event()

        async def take(count: int) -> None:
            async for call in client.calls():
                got.append(call.call_id)
                call.answer(SDPBody.parse(OFFER.replace("6000", "9")))
                if len(got) == 1:
                    await release.wait()  # busy: the next calls queue up meanwhile
                if len(got) == count:
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(take, 4)
            await trio.testing.wait_all_tasks_blocked()
            peer.send(_invite(target, 0), address)
            await trio.testing.wait_all_tasks_blocked()
            assert waits == 1  # nothing was queued: the reader waited
            for i in range(1, 4):
                peer.send(_invite(target, i), address)
            await trio.testing.wait_all_tasks_blocked()
            release.set()
        assert got == [f"{i}@peer" for i in range(4)]
        assert waits == 1  # the three queued were taken without waiting

        with trio.CancelScope() as scope:
            scope.cancel()
            async for _ in client.calls():
                pytest.fail("a cancelled reader got a call")
        assert scope.cancelled_caught


def test_negotiation_reads_each_sides_codecs_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """``negotiate`` reads the rtpmap lines of our stream and of the peer's once each (not
    once per question asked of them); what it finds is unchanged."""
    offer = SDPBody.parse(
        "v=0\r\no=peer 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        "m=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:30\r\n"
    )
    answer = SDPBody.create_answer(offer, "uas", "127.0.0.1", "127.0.0.1", port=7000)
    reads = 0
    codecs = sipx._core.sdp.MediaDescription.codecs

    def counted(self: Any) -> Any:
        nonlocal reads
        reads += 1
        return codecs.fget(self)  # type: ignore[attr-defined]

    monkeypatch.setattr(sipx._core.sdp.MediaDescription, "codecs", property(counted))
    params = negotiate(answer, offer, we_offered=False)
    assert reads == 2
    assert params == MediaParams(
        codec="PCMA",
        send_payload=8,
        receive_payload=8,
        event_send_payload=101,
        event_receive_payload=101,
        ptime=30,
        remote=("192.0.2.1", 6000),
        direction="sendrecv",
        rtcp_mux=False,
    )
