"""The UAS call path of issue 14's eighth pass, pinned as behaviour (nothing here times).

* A request silent about session timers (no Session-Expires, Min-SE, Supported, Require)
  gets one shared session-interval choice per interval, made once.
* The 200 of a call adds the session timer's fields and Allow as checked fields made once
  per shared choice; its dialog takes the call's To tag and early dialog without reading
  the 200's To or building a dialog id to look one up.
* The first session-timer deadline of an answered call goes into the client's heap when
  the call is made idle: a call hung up right after its ACK never touches the heap; a
  held call still refreshes on time.
* ``MediaDescription.codecs`` of a section read before is not parsed again; an answer's
  o= line derived from the same offer's is worked out once, its c= line shared.

Each test counts the work removed or checks what the call keeps, and what went on the
wire, so that it fails if the change is reverted and if the behaviour changes.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from test_call_answer_cost import _ack, _answered
from test_uas_call_path import OFFER, PEER, Counter, _receive, _request

import sipx
import sipx._call
import sipx._core.sdp
import sipx._core.session_timer
import sipx._uas
from sipx import SDPBody
from sipx._core.message import Request
from sipx._core.parser import parse_message
from sipx._core.sdp import Codec
from sipx._core.session_timer import SessionExpires, choose_as_uas
from sipx._core.timers import TimerConfig
from sipx._idle_calls import BATCH, IDLE_AFTER
from sipx._session_timer import SessionTimers
from sipx.testing import MemoryNetwork


def _invite(i: int, *extra: str) -> Request:
    data = _request("INVITE", "127.0.0.1:5060", i, body=OFFER)
    head, _, rest = data.partition(b"\r\n")
    fields = b"".join(line.encode() + b"\r\n" for line in extra)
    message = parse_message(head + b"\r\n" + fields + rest)
    assert isinstance(message, Request)
    return message


def test_a_request_silent_about_timers_gets_one_shared_choice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RFC 4028 9 for a UAC that names no timer header: we refresh, at our interval; the
    choice is made once per interval without reading the (absent) headers one by one."""

    def unread(message: object) -> object:
        raise AssertionError("a timer header was read one by one")

    first = choose_as_uas(_invite(1), interval=1800, min_se=90)
    for name in ("session_expires_of", "min_se_of", "supports_timer"):
        monkeypatch.setattr(sipx._core.session_timer, name, unread)
    second = choose_as_uas(_invite(2), interval=1800, min_se=90, keep="uac")
    assert second is first
    assert first.status == 200
    assert first.session == SessionExpires(1800, "uas")
    assert first.headers == {"Supported": "timer", "Session-Expires": "1800;refresher=uas"}
    other = choose_as_uas(_invite(3), interval=600, min_se=90)
    assert other.session == SessionExpires(600, "uas")
    monkeypatch.undo()
    # A compact Supported (k) naming timer is not silent: the UAC refreshes (Require).
    named = choose_as_uas(_invite(4, "k: timer"), interval=1800, min_se=90)
    assert named.session == SessionExpires(1800, "uac")
    assert named.headers["Require"] == "timer"
    asked = choose_as_uas(_invite(5, "x: 1200"), interval=1800, min_se=90)
    assert asked.session == SessionExpires(1200, "uas")


async def test_the_200_of_a_call_takes_its_timer_fields_and_dialog_at_little_cost(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """The second call's 200 adds Supported, Session-Expires and Allow without working out
    their header keys again, in the order the first had; the dialog is made without
    reading the 200's To (the call's tag) or building a dialog id to look for an early
    dialog; the ACK and a BYE find it."""

    def no_id(*args: object) -> object:
        raise AssertionError("a dialog id was built to look for an early dialog")

    monkeypatch.setattr(sipx._uas, "DialogId", no_id, raising=False)
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        target = f"{address[0]}:{address[1]}"
        first, first_ok = await _answered(client, peer, address, 1)
        keys = Counter(monkeypatch, sipx._call, "header_key")
        second, ok = await _answered(client, peer, address, 2)
        assert keys.calls == 0
        sent = second.final_response
        assert sent is not None and "to" not in sent.headers.typed  # the 200's To unread
        assert second.dialog is not None and second.dialog.local_tag == second.local_tag
        assert ok.to.tag == second.local_tag
        _ack(peer, address, 2, ok)
        await second.wait_acked()
        peer.send(_request("BYE", target, 2, to_tag=ok.to.tag or "", cseq=2), address)
        (bye_ok,) = await _receive(peer, 1)
        assert (bye_ok.status_code, bye_ok.cseq.method) == (200, "BYE")
        assert second.ended_by == "remote"
        del first
    for response in (first_ok, ok):
        names = [name for _, name, _ in response.headers.entries]
        assert names.count("Record-Route") == 2
        assert names[names.index("Contact") + 1 :] == [
            "Supported",
            "Session-Expires",
            "Allow",
            "Content-Type",
            "Content-Length",
        ]
        assert response.headers["Session-Expires"] == "1800;refresher=uas"
        assert "INVITE" in response.headers["Allow"]


async def test_a_ringing_call_answers_in_its_early_dialog(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A 180 with a To tag makes the early dialog; the 200 confirms that same dialog (found
    through the call, not by id)."""
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        target = f"{address[0]}:{address[1]}"
        calls: list[sipx.Call] = []
        client.on_request("INVITE", calls.append)
        peer.send(_request("INVITE", target, 1, body=OFFER), address)
        await trio.testing.wait_all_tasks_blocked()
        (call,) = calls
        call.ring()
        early = client._engine.dialogs[next(iter(client._engine.dialogs))]
        call.answer(SDPBody.parse(OFFER.replace("6000", "9")))
        ringing, ok = await _receive(peer, 2)
        assert (ringing.status_code, ok.status_code) == (180, 200)
        assert ringing.to.tag == ok.to.tag == call.local_tag
        assert call.dialog is early
        assert list(client._engine.dialogs.values()) == [early]


async def test_a_call_hung_up_after_its_ack_never_puts_a_session_deadline_in_the_heap(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """Answered, ACKed and hung up at once: the call had its session interval (read while
    established) and the client's session-timer heap was never touched."""
    scheduled = Counter(monkeypatch, SessionTimers, "schedule")
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        target = f"{address[0]}:{address[1]}"
        call, ok = await _answered(client, peer, address, 1)
        assert (call.session_expires, call.session_refresher) == (1800, "local")
        _ack(peer, address, 1, ok)
        await call.wait_acked()
        peer.send(_request("BYE", target, 1, to_tag=ok.to.tag or "", cseq=2), address)
        (bye_ok,) = await _receive(peer, 1)
        await trio.sleep(IDLE_AFTER + BATCH + 1)
        assert len(client._uas.session_timers) == 0
    assert bye_ok.status_code == 200 and call.ended_by == "remote"
    assert scheduled.calls == 0


async def _answered_plain(
    client: sipx.AsyncClient, peer: Any, address: tuple[str, int], i: int, *extra: str
) -> tuple[sipx.Call, sipx.Response]:
    """As ``_answered``, for an INVITE without Record-Route (in-dialog requests go
    straight to the peer), with the ``extra`` header lines."""
    target = f"{address[0]}:{address[1]}"
    calls: list[sipx.Call] = []
    async with trio.open_nursery() as nursery:

        async def answer_one() -> None:
            async for call in client.calls():
                calls.append(call)
                call.answer(SDPBody.parse(OFFER.replace("6000", "9")))
                return

        nursery.start_soon(answer_one)
        await trio.testing.wait_all_tasks_blocked()
        data = _request("INVITE", target, i, body=OFFER)
        head, _, rest = data.partition(b"\r\n")
        fields = b"".join(line.encode() + b"\r\n" for line in extra)
        peer.send(head + b"\r\n" + fields + rest, address)
        (ok,) = await _receive(peer, 1)
    return calls[0], ok


async def _refresh_seen(peer: Any) -> tuple[float, Request]:
    """The first request the peer receives (responses skipped), and when."""
    while True:
        data, _ = await peer.receive()
        message = parse_message(data)
        if isinstance(message, Request):
            return trio.current_time(), message


async def test_a_held_call_gets_its_session_deadline_when_made_idle_and_refreshes_on_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The deadline enters the heap by IDLE_AFTER + BATCH after the ACK, and the refresh
    (we refresh: the caller is silent about timers) goes at half the interval after the
    200, as before."""
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network, session_expires=600) as client,
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        call, ok = await _answered_plain(client, peer, address, 1)
        answered_at = trio.current_time()
        timers = client._uas.session_timers
        assert len(timers) == 0  # not yet: the call may end first
        _ack(peer, address, 1, ok)
        await call.wait_acked()
        await trio.sleep(IDLE_AFTER + BATCH + 0.001)
        assert len(timers) == 1
        at, refresh = await _refresh_seen(peer)
        assert refresh.method == "INVITE" and refresh.call_id == call.call_id
        assert refresh.headers["Session-Expires"] == "600;refresher=uac"  # we send it
        assert at - answered_at == pytest.approx(300)


async def test_a_deadline_sooner_than_the_ack_can_be_waited_for_goes_in_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With T1 = 1 s an unACKed 200 is resent for 64 s, longer than the 45 s to the first
    refresh of a 90 s session: that deadline enters the heap with the 200."""
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient(
            "127.0.0.1", 0, network=network, session_expires=90, timers=TimerConfig(t1=1.0)
        ) as client,
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        call, _ = await _answered(client, peer, address, 1)
        assert len(client._uas.session_timers) == 1
        assert call.session_expires == 90


def test_the_codecs_of_a_section_read_before_are_not_parsed_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same offer's codecs, read again from another parse: the same frozen codecs in
    a new list, without reading its rtpmap lines; another section is read anew."""
    media = SDPBody.parse(OFFER).media[0]
    first = media.codecs
    assert first == [Codec("0", "PCMU", 8000, None, None)]
    rtpmap = Counter(monkeypatch, type(media), "rtpmap")
    again = SDPBody.parse(OFFER).media[0].codecs
    assert again == first and again is not first
    assert rtpmap.calls == 0
    again.append(Codec("8", "PCMA", 8000, None, None))  # the caller's list, its own
    assert SDPBody.parse(OFFER).media[0].codecs == first
    other = SDPBody.parse(OFFER.replace("RTP/AVP 0", "RTP/AVP 0 8")).media[0]
    assert [codec.name for codec in other.codecs] == ["PCMU", "PCMA"]
    assert rtpmap.calls == 2


def test_answers_to_the_same_offer_share_their_derived_origin_and_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The o= line derived from the same offer's (no session id given: the worker's
    answers) is worked out once and shared, frozen; the c= line is one object per
    address; a given session id is used as it is."""
    first = SDPBody.create_answer(OFFER, "worker", "127.0.0.1", "127.0.0.1", port=9)
    derived = Counter(monkeypatch, sipx._core.sdp, "_derive_session_id")
    second = SDPBody.create_answer(OFFER, "worker", "127.0.0.1", "127.0.0.1", port=9)
    assert derived.calls == 0
    assert second.origin is first.origin and second.connection is first.connection
    assert second.to_bytes() == first.to_bytes()
    assert first.origin.sess_id == first.origin.sess_version and first.origin.sess_id.isdigit()
    other = SDPBody.create_answer(
        OFFER.replace("o=peer 1 1", "o=peer 2 2"), "worker", "127.0.0.1", "127.0.0.1", port=9
    )
    assert derived.calls == 1 and other.origin.sess_id != first.origin.sess_id
    given = SDPBody.create_answer(OFFER, "worker", "127.0.0.1", "127.0.0.1", port=9, session_id=42)
    assert (given.origin.sess_id, given.origin.sess_version) == ("42", "42")
    assert given.connection is first.connection


async def test_an_invite_without_record_route_or_allow_reads_only_its_contact_list(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """Answering an INVITE with no Record-Route and no Allow reads one header list, its
    Contact (the dialog's remote target); one with both still copies its Record-Route
    into the 200 and the dialog, and notes that the peer takes UPDATE."""
    read: list[str] = []
    original = sipx.Headers.get_list

    def get_list(self: sipx.Headers, name: str) -> list[str]:
        read.append(name.lower())
        return original(self, name)

    monkeypatch.setattr(sipx.Headers, "get_list", get_list)
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        plain, ok = await _answered_plain(client, peer, address, 1)
        assert read == ["contact"]
        assert "Record-Route" not in ok.headers
        assert plain.dialog is not None and plain.dialog.route_set == []
        assert not plain._peer_allows_update
        allows, _ = await _answered_plain(client, peer, address, 3, "Allow: INVITE, UPDATE")
        assert allows._peer_allows_update  # its session refreshes go as UPDATE
        routed, routed_ok = await _answered(client, peer, address, 2)
    assert routed_ok.headers.get_list("Record-Route") == [
        "<sip:proxy1.example.com;lr>",
        "<sip:proxy2.example.com;lr>",
    ]
    assert routed.dialog is not None
    assert [str(route.uri) for route in routed.dialog.route_set] == [
        "sip:proxy1.example.com;lr",
        "sip:proxy2.example.com;lr",
    ]
