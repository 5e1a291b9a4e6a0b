"""sipx against baresip, a real softphone, through Kamailio (registrar + record-routing proxy).

baresip registers as 3333 and answers automatically; sipx registers as 1111 (caller) or
2222 (callee). Every test runs with sipx on UDP and on TCP (baresip itself talks UDP to
Kamailio, so the TCP runs also cross transports inside Kamailio).

* sipx calls baresip: 407 + authenticated INVITE, baresip's 200 carries its SDP answer, our
  ACK reaches it (baresip says "Call established"), our BYE gets 200 (baresip says
  "terminated").
* baresip calls sipx: ``client.calls()`` yields the call with baresip's SDP offer, we ring
  and answer, baresip ACKs (with Proxy-Authorization, through the Record-Route); then either
  baresip hangs up (``wait_ended() == "remote"``) or we do (baresip says "terminated").
* baresip cancels a call that rings (CANCEL → 200, INVITE → 487, ``wait_ended() == "cancel"``).

Besides the outcome, each test checks the wire: sipx's ``trace`` hook (no 481/500, each 2xx
to INVITE sent or received once and ACKed) and baresip's own SIP trace (``baresip -s``).
"""

from __future__ import annotations

import re
import wave
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from peers import USERS, Baresip, Kamailio, free_port, query_bindings

import sipx
from sipx import AsyncClient, Auth
from sipx._call import Call, CallState
from sipx.media import dominant_frequency, tone

pytestmark = pytest.mark.integration

#: hard bound for each test's SIP part (seconds); a run takes well under 2 s
TEST_TIMEOUT = 15.0
#: how long to wait for one step (a log line, a response)
STEP_TIMEOUT = 5.0


@pytest.fixture(params=["UDP", "TCP"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --------------------------------------------------------------------------------------- #
# sipx's side of the wire
# --------------------------------------------------------------------------------------- #
@dataclass
class WireMessage:
    direction: str  # "in" or "out"
    start: str  # the start line
    call_id: str
    cseq: str  # e.g. "2 INVITE"
    text: str

    @property
    def status(self) -> int | None:
        if self.start.startswith("SIP/2.0 "):
            return int(self.start.split()[1])
        return None

    @property
    def method(self) -> str:
        """The request's method, or the CSeq method of a response."""
        return self.cseq.split()[-1] if self.status is not None else self.start.split()[0]


def _header(text: str, *names: str) -> str:
    head = text.partition("\r\n\r\n")[0]
    for name in names:
        m = re.search(rf"^{name}\s*:\s*(.*?)\s*$", head, re.I | re.M)
        if m:
            return m.group(1)
    return ""


class WireTrace:
    """The ``trace`` hook of an AsyncClient: keeps every SIP message sent and received."""

    def __init__(self) -> None:
        self.messages: list[WireMessage] = []

    def __call__(self, direction: str, data: bytes, address: Any, transport: str) -> None:
        text = data.decode("utf-8", "replace")
        if not text.strip():
            return  # keep-alive
        self.messages.append(
            WireMessage(
                direction,
                text.split("\r\n", 1)[0],
                _header(text, "Call-ID", "i"),
                _header(text, "CSeq"),
                text,
            )
        )

    def of_call(self, call_id: str) -> list[WireMessage]:
        return [m for m in self.messages if m.call_id == call_id]

    def ladder(self, call_id: str | None = None) -> str:
        msgs = self.messages if call_id is None else self.of_call(call_id)
        return "\n".join(f"{m.direction:>3} {m.start}  [{m.cseq}]" for m in msgs)

    async def wait_until(
        self, call_id: str, done: Callable[[list[WireMessage]], bool], what: str
    ) -> None:
        with trio.move_on_after(STEP_TIMEOUT):
            while not done(self.of_call(call_id)):
                await trio.sleep(0.01)
            return
        pytest.fail(f"{what} did not happen\n{self.ladder(call_id)}")

    def assert_clean(self, call_id: str, *, caller: bool) -> None:
        """No 481/500 either way; the 2xx to the INVITE went over the wire once and was ACKed;
        the BYE got 200. ``caller``: sipx sent the INVITE (else it received it)."""
        msgs = self.of_call(call_id)
        ladder = self.ladder(call_id)
        assert msgs, f"no message of call {call_id}\n{self.ladder()}"
        bad = [m.start for m in msgs if m.status in (481, 500)]
        assert not bad, f"error responses {bad}\n{ladder}"
        # sipx sends the INVITE's 2xx (callee) or receives it (caller)
        ok_dir, ack_dir = ("in", "out") if caller else ("out", "in")
        oks = [
            m for m in msgs if m.direction == ok_dir and m.status == 200 and m.method == "INVITE"
        ]
        assert len(oks) == 1, f"the 2xx to INVITE went {len(oks)} times (ACK late/lost?)\n{ladder}"
        seq = oks[0].cseq.split()[0]
        acks = [m for m in msgs if m.direction == ack_dir and m.cseq == f"{seq} ACK"]
        assert len(acks) == 1, f"{len(acks)} ACKs for the 2xx\n{ladder}"
        byes = [m for m in msgs if m.start.startswith("BYE ")]
        bye_oks = [m for m in msgs if m.status == 200 and m.method == "BYE"]
        assert len(byes) == 1 and len(bye_oks) == 1, f"BYE/200 not clean\n{ladder}"
        assert byes[0].direction != bye_oks[0].direction, ladder


# --------------------------------------------------------------------------------------- #
# baresip's side of the wire (its -s trace: "#", "UDP a -> b", the message)
# --------------------------------------------------------------------------------------- #
_START_LINE = re.compile(r"^(?:[A-Z]+ sips?:\S+ SIP/2\.0|SIP/2\.0 \d{3} [^\n]*)$", re.M)
_HEADER_LINE = re.compile(r"^[A-Za-z][\w.!%*+`'~-]*\s*:")


def baresip_messages(b: Baresip, call_id: str, start: int = 0) -> list[tuple[str, str]]:
    """``(direction, start line)`` of the messages of ``call_id`` in baresip's SIP trace;
    direction is "in" (baresip received it) or "out" (baresip sent it).

    The trace ("#", "UDP a -> b", the message) shares stdout with baresip's threads, whose
    lines can land in the middle of it; so messages are found by their start line, header
    lines are collected up to the blank line (other lines skipped), and the direction comes
    from the top Via: baresip's own port there means it sent the request or receives the
    response."""
    own = f"127.0.0.1:{b.sip_port}"
    text = b.log_text()
    out: list[tuple[str, str]] = []
    for m in _START_LINE.finditer(text, start):
        headers: list[str] = []
        for line in text[m.end() + 1 :].split("\n"):
            if not line.strip():
                break
            if _HEADER_LINE.match(line):
                headers.append(line)
        head = "\r\n".join([m.group(0), *headers])
        if _header(head, "Call-ID", "i") != call_id:
            continue
        top_via = _header(head, "Via", "v")
        ours = re.search(rf"\s{re.escape(own)}(?:[;,\s]|$)", top_via) is not None
        is_request = not m.group(0).startswith("SIP/2.0")
        out.append(("out" if ours == is_request else "in", m.group(0)))
    return out


async def wait_log(b: Baresip, pattern: str, start: int = 0, timeout: float = STEP_TIMEOUT) -> str:
    """Wait until ``pattern`` shows up in baresip's log (after offset ``start``)."""
    rx = re.compile(pattern)
    with trio.move_on_after(timeout):
        while True:
            m = rx.search(b.log_text(), start)
            if m:
                return m.group(0)
            if b.proc.poll() is not None:
                pytest.fail(f"baresip exited (rc={b.proc.returncode})\n{b.log_text()[-4000:]}")
            await trio.sleep(0.02)
    pytest.fail(
        f"{pattern!r} not in baresip's log within {timeout} s\n{b.log_text()[start:][-6000:]}"
    )


async def wait_baresip_saw(
    b: Baresip,
    call_id: str,
    done: Callable[[list[tuple[str, str]]], bool],
    start: int = 0,
    timeout: float = STEP_TIMEOUT,
) -> list[tuple[str, str]]:
    """Wait until baresip's trace of ``call_id`` satisfies ``done``; fail with it otherwise."""
    with trio.move_on_after(timeout):
        while True:
            msgs = baresip_messages(b, call_id, start)
            if done(msgs):
                return msgs
            await trio.sleep(0.02)
    msgs = baresip_messages(b, call_id, start)
    pytest.fail(f"baresip's trace of {call_id} is incomplete: {msgs}")


def closed_pattern(user: str) -> str:
    """baresip's log line for a call the peer ended with BYE ("Call with ... terminated"
    follows only for calls that lasted a second or more)."""
    return rf"sip:{user}@\S+: session closed|Call with sip:{user}@\S+ terminated"


def _received(msgs: list[tuple[str, str]], prefix: str) -> int:
    return sum(1 for d, s in msgs if d == "in" and s.startswith(prefix))


# --------------------------------------------------------------------------------------- #
# fixtures and helpers
# --------------------------------------------------------------------------------------- #
@pytest.fixture
def softphone(baresip: Any) -> Iterator[Baresip]:
    """baresip registered as 3333 (auto-answer) at the module's Kamailio; stopped (and so
    unregistered) at teardown by the ``baresip`` factory."""
    yield baresip("3333")


class Registered:
    """``async with Registered(client, aor)``: REGISTER (digest), unREGISTER on the way out."""

    def __init__(self, client: AsyncClient, aor: str) -> None:
        self.client, self.aor = client, aor

    async def __aenter__(self) -> sipx.Response:
        with trio.fail_after(STEP_TIMEOUT):
            response = await self.client.register(self.aor, expires=120)
        assert response.status_code == 200, response
        return response

    async def __aexit__(self, *exc: object) -> None:
        with trio.move_on_after(STEP_TIMEOUT), _suppress_sip_errors():
            await self.client.unregister(self.aor)


class _suppress_sip_errors:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool:
        return isinstance(exc, sipx.SIPError)


def client_for(user: str, transport: str, trace: WireTrace) -> AsyncClient:
    return AsyncClient(
        "127.0.0.1",
        free_port(),
        transport=transport,
        auth=Auth.Digest(username=user, password=USERS[user]),
        timeout=STEP_TIMEOUT,
        trace=trace,
    )


@asynccontextmanager
async def registered(
    kamailio: Kamailio, user: str, transport: str, trace: WireTrace
) -> AsyncIterator[AsyncClient]:
    """A client for ``user`` on ``transport``, registered with Kamailio while in use."""
    async with (
        client_for(user, transport, trace) as client,
        Registered(client, kamailio.aor(user)),
    ):
        yield client


async def call_softphone(
    kamailio: Kamailio, softphone: Baresip, client: AsyncClient, trace: WireTrace, mark: int
) -> Call:
    """sipx (1111) calls baresip (3333) through Kamailio; return once baresip says it is up."""
    call = await client.call(f"sip:3333@127.0.0.1:{kamailio.port}")
    assert call.established, trace.ladder()
    await wait_log(softphone, r"Call established: sip:1111@", mark)
    return call


async def incoming_call(client: AsyncClient, dial: Callable[[], None]) -> Call:
    """Listen on ``client.calls()``, then ``dial()``; return the first incoming call."""
    send, receive = trio.open_memory_channel[Call](1)

    async def listen() -> None:
        async for call in client.calls():
            await send.send(call)
            return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(listen)
        await trio.testing.wait_all_tasks_blocked()  # listen() iterates calls() now
        dial()
        with trio.fail_after(STEP_TIMEOUT):
            return await receive.receive()
    raise AssertionError("unreachable")


def codecs(sdp: sipx.SDPBody | None) -> list[str]:
    assert sdp is not None, "no SDP"
    return [c.split("/")[0].upper() for c in sdp.get_codecs_summary()]


def assert_unregistered(kamailio: Kamailio, user: str) -> None:
    """Kamailio holds no binding of ``user`` any more (a stale one would fork later calls)."""
    assert query_bindings(kamailio, user) == [], f"{user} is still registered"


# --------------------------------------------------------------------------------------- #
# sipx calls baresip
# --------------------------------------------------------------------------------------- #
async def test_sipx_calls_baresip(kamailio: Kamailio, softphone: Baresip, transport: str) -> None:
    trace = WireTrace()
    mark = softphone.log_offset()
    with trio.fail_after(TEST_TIMEOUT):
        async with registered(kamailio, "1111", transport, trace) as client:
            call = await client.call(f"sip:3333@127.0.0.1:{kamailio.port}")

            response = call.final_response
            assert response is not None
            assert response.status_code == 200, trace.ladder()
            assert [r.status_code for r in response.history if r.status_code >= 200] == [407]
            assert call.established and call.state is CallState.ESTABLISHED
            assert "baresip" in (response.headers.get_first("Server") or "")
            assert re.match(r"<sip:3333-0x[0-9a-f]+@127\.0\.0\.1:\d+>", str(response.contact[0]))
            # baresip answered our PCMU/PCMA offer with a codec we offered
            assert "PCMU" in codecs(call.remote_sdp), call.remote_sdp
            assert set(codecs(call.remote_sdp)) <= {"PCMU", "PCMA", "TELEPHONE-EVENT"}
            assert "a=tool:baresip" in response.text

            # our ACK reached baresip (through Kamailio) and it considers the call up
            await wait_log(softphone, r"Call established: sip:1111@", mark)
            await wait_baresip_saw(
                softphone, call.call_id, lambda m: _received(m, "ACK ") == 1, mark
            )

            bye = await call.bye()
            assert bye.status_code == 200, trace.ladder(call.call_id)
            assert call.ended and call.ended_by == "local"
            await wait_log(softphone, closed_pattern("1111"), mark)

    trace.assert_clean(call.call_id, caller=True)
    assert_unregistered(kamailio, "1111")
    msgs = baresip_messages(softphone, call.call_id, mark)
    assert [s.split()[0] for d, s in msgs if d == "in"] == ["INVITE", "ACK", "BYE"], msgs


# --------------------------------------------------------------------------------------- #
# baresip calls sipx
# --------------------------------------------------------------------------------------- #
async def _answer_call_from_baresip(
    kamailio: Kamailio, softphone: Baresip, client: AsyncClient, trace: WireTrace, mark: int
) -> Call:
    """baresip dials 2222; sipx rings and answers; both sides see the call established."""
    call = await incoming_call(
        client, lambda: softphone.dial(f"sip:2222@127.0.0.1:{kamailio.port}")
    )
    assert call.direction == "incoming" and call.state is CallState.INCOMING
    assert call.remote_uri.startswith("sip:3333@127.0.0.1")
    # baresip's offer
    offer = call.remote_sdp
    assert "PCMU" in codecs(offer), offer
    assert "a=tool:baresip" in call.invite.text
    assert "Proxy-Authorization" not in call.invite.text  # Kamailio consumed it

    call.ring()
    response = call.answer()
    assert response.status_code == 200
    assert call.established
    assert "PCMU" in codecs(call.answer_sdp)
    assert set(codecs(call.answer_sdp)) <= set(codecs(offer))

    with trio.fail_after(STEP_TIMEOUT):
        await call.wait_acked()
    assert call.established
    await wait_log(softphone, r"Call established: sip:2222@", mark)
    await wait_baresip_saw(
        softphone,
        call.call_id,
        lambda m: any(d == "in" and s.startswith("SIP/2.0 200") for d, s in m),
        mark,
    )
    return call


async def test_baresip_calls_sipx_and_hangs_up(
    kamailio: Kamailio, softphone: Baresip, transport: str
) -> None:
    trace = WireTrace()
    mark = softphone.log_offset()
    with trio.fail_after(TEST_TIMEOUT):
        async with registered(kamailio, "2222", transport, trace) as client:
            call = await _answer_call_from_baresip(kamailio, softphone, client, trace, mark)

            softphone.hangup()
            with trio.fail_after(STEP_TIMEOUT):
                assert await call.wait_ended() == "remote"
            assert call.ended
            # baresip got our 200 to its BYE
            await wait_baresip_saw(
                softphone, call.call_id, lambda m: _received(m, "SIP/2.0 200") == 2, mark
            )

    trace.assert_clean(call.call_id, caller=False)
    assert_unregistered(kamailio, "2222")
    msgs = baresip_messages(softphone, call.call_id, mark)
    sent = [s.split()[0] for d, s in msgs if d == "out"]
    assert sent == ["INVITE", "ACK", "INVITE", "ACK", "BYE"], msgs  # 407 round, call, BYE


async def test_baresip_calls_sipx_and_sipx_hangs_up(
    kamailio: Kamailio, softphone: Baresip, transport: str
) -> None:
    trace = WireTrace()
    mark = softphone.log_offset()
    with trio.fail_after(TEST_TIMEOUT):
        async with registered(kamailio, "2222", transport, trace) as client:
            call = await _answer_call_from_baresip(kamailio, softphone, client, trace, mark)

            bye = await call.bye()
            assert bye.status_code == 200, trace.ladder(call.call_id)
            assert call.ended and call.ended_by == "local"
            await wait_log(softphone, closed_pattern("2222"), mark)

    trace.assert_clean(call.call_id, caller=False)
    assert_unregistered(kamailio, "2222")
    msgs = baresip_messages(softphone, call.call_id, mark)
    assert _received(msgs, "BYE ") == 1, msgs
    assert [s for d, s in msgs if d == "out" and s.startswith("SIP/2.0")] == ["SIP/2.0 200 OK"]


async def test_baresip_cancels_a_ringing_call(
    kamailio: Kamailio, softphone: Baresip, transport: str
) -> None:
    trace = WireTrace()
    mark = softphone.log_offset()
    with trio.fail_after(TEST_TIMEOUT):
        async with registered(kamailio, "2222", transport, trace) as client:
            call = await incoming_call(
                client, lambda: softphone.dial(f"sip:2222@127.0.0.1:{kamailio.port}")
            )
            call.ring()
            await wait_baresip_saw(
                softphone, call.call_id, lambda m: _received(m, "SIP/2.0 180") == 1, mark
            )
            softphone.hangup()
            with trio.fail_after(STEP_TIMEOUT):
                assert await call.wait_ended() == "cancel"
            assert call.final_response is not None
            assert call.final_response.status_code == 487
            await wait_baresip_saw(
                softphone, call.call_id, lambda m: _received(m, "SIP/2.0 487") == 1, mark
            )

    msgs = trace.of_call(call.call_id)
    ladder = trace.ladder(call.call_id)
    assert [m.start.split()[0] for m in msgs if m.direction == "in"] == ["INVITE", "CANCEL", "ACK"]
    # The 100 Trying: over TCP at once; over UDP only if the 180 took 200 ms (RFC 3261
    # 17.2.1), which depends on this machine's load.
    statuses = [m.status for m in msgs if m.direction == "out"]
    assert statuses in ([100, 180, 200, 487], [180, 200, 487]), ladder
    assert transport == "UDP" or statuses[0] == 100, ladder
    assert not [m for m in msgs if m.status in (481, 500)], ladder
    assert_unregistered(kamailio, "2222")


# --------------------------------------------------------------------------------------- #
# hold and resume (re-INVITE both ways)
# --------------------------------------------------------------------------------------- #
async def wait_remote_direction(call: Call, direction: str) -> None:
    """Wait until the peer's latest SDP (its re-INVITE offer) says ``direction``."""
    with trio.move_on_after(STEP_TIMEOUT):
        while call.remote_sdp is None or call.remote_sdp.direction != direction:
            await trio.sleep(0.02)
        return
    pytest.fail(f"the peer's SDP never became {direction}: {call.remote_sdp}")


async def test_hold_and_resume_both_ways(
    kamailio: Kamailio, softphone: Baresip, transport: str
) -> None:
    trace = WireTrace()
    mark = softphone.log_offset()
    with trio.fail_after(TEST_TIMEOUT):
        async with registered(kamailio, "2222", transport, trace) as client:
            call = await _answer_call_from_baresip(kamailio, softphone, client, trace, mark)

            # baresip holds: its re-INVITE offers sendonly, our answer says recvonly
            softphone.command("/hold")
            await wait_remote_direction(call, "sendonly")
            assert call.local_sdp is not None and call.local_sdp.direction == "recvonly"
            softphone.command("/resume")
            await wait_remote_direction(call, "sendrecv")
            assert call.local_sdp.direction == "sendrecv"
            # no INVITE of ours while baresip's is still in progress (RFC 3261 14.1)
            await trace.wait_until(
                call.call_id,
                lambda msgs: sum(m.start.startswith("ACK ") for m in msgs) == 3,
                "baresip's ACK of its resume re-INVITE",
            )

            # we hold: baresip answers recvonly; we resume: sendrecv again
            held = await call.hold()
            assert held.status_code == 200, trace.ladder(call.call_id)
            assert call.remote_sdp is not None and call.remote_sdp.direction == "recvonly"
            resumed = await call.unhold()
            assert resumed.status_code == 200, trace.ladder(call.call_id)
            assert call.remote_sdp.direction == "sendrecv"
            assert call.established

            bye = await call.bye()
            assert bye.status_code == 200
            await wait_log(softphone, closed_pattern("2222"), mark)

    msgs = trace.of_call(call.call_id)
    ladder = trace.ladder(call.call_id)
    assert not [m for m in msgs if m.status in (481, 488, 491, 500)], ladder
    invites = [m for m in msgs if m.start.startswith("INVITE ")]
    assert [m.direction for m in invites] == ["in", "in", "in", "out", "out"], ladder
    # every INVITE's 2xx went once and got exactly one ACK
    for invite in invites:
        seq = invite.cseq.split()[0]
        oks = [m for m in msgs if m.status == 200 and m.cseq == f"{seq} INVITE"]
        acks = [m for m in msgs if m.cseq == f"{seq} ACK"]
        assert len(oks) == 1 and len(acks) == 1, ladder
    assert_unregistered(kamailio, "2222")


# --------------------------------------------------------------------------------------- #
# media with baresip (its aubridge device plays back what it receives)
# --------------------------------------------------------------------------------------- #
@pytest.mark.parametrize("transport", ["UDP"])
async def test_baresip_returns_the_tone_sipx_plays(
    kamailio: Kamailio, softphone: Baresip, transport: str
) -> None:
    """baresip decodes our PCMU, its aubridge loops the audio into its own source and it
    encodes it back: the tone we play comes back at its frequency."""
    trace = WireTrace()
    mark = softphone.log_offset()
    with trio.fail_after(TEST_TIMEOUT):
        async with registered(kamailio, "1111", transport, trace) as client:
            call = await call_softphone(kamailio, softphone, client, trace, mark)
            received: list[bytes] = []

            async def listen() -> None:
                with trio.move_on_after(2.5):
                    async for frame in call.audio_frames():
                        received.append(frame)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(listen)
                await call.play(tone(1000, 2.0))
            await call.bye()
    heard = b"".join(received)
    assert call.media_stats is not None and call.media_stats.packets_received > 50
    assert abs(dominant_frequency(heard) - 1000) <= 20, call.media_stats


@pytest.mark.parametrize("transport", ["UDP"])
async def test_a_digit_pressed_on_baresip_reaches_sipx(
    kamailio: Kamailio, softphone: Baresip, transport: str
) -> None:
    """baresip sends a key press as RFC 4733 events (a key held until released): sipx
    reports the digit once, as soon as the event starts."""
    trace = WireTrace()
    mark = softphone.log_offset()
    with trio.fail_after(TEST_TIMEOUT):
        async with registered(kamailio, "1111", transport, trace) as client:
            call = await call_softphone(kamailio, softphone, client, trace, mark)
            softphone.command("7")
            await wait_log(softphone, r"send DTMF digit: '7'", mark)
            assert await call.collect_dtmf(1, timeout=5) == "7"
            assert await call.collect_dtmf(1, timeout=1) == ""  # once
            stats = call.media_stats
            assert stats is not None and stats.digits_received == 1
            await call.bye()


@pytest.mark.parametrize("transport", ["UDP"])
async def test_baresip_plays_a_file_to_sipx_and_records_what_sipx_plays(
    kamailio: Kamailio, baresip: Any, tmp_path: Path, transport: str
) -> None:
    """baresip with aufile (its source: a WAV of a 700 Hz tone) and sndfile (it records the
    call): sipx hears 700 Hz; baresip's recording of what it received holds sipx's 1200 Hz."""
    prompt = tmp_path / "prompt.wav"
    with wave.open(str(prompt), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(tone(700, 5.0))
    softphone = baresip("3333", play=prompt)
    mark = softphone.log_offset()
    trace = WireTrace()
    with trio.fail_after(TEST_TIMEOUT):
        async with registered(kamailio, "1111", transport, trace) as client:
            call = await call_softphone(kamailio, softphone, client, trace, mark)
            heard: list[bytes] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(call.play, tone(1200, 1.5))
                with trio.move_on_after(1.5):
                    async for frame in call.audio_frames():
                        heard.append(frame)
            await call.bye()
            await wait_log(softphone, closed_pattern("1111"), mark)
    assert abs(dominant_frequency(b"".join(heard)) - 700) <= 20
    [recording] = softphone.run_dir.glob("dump-*-dec.wav")
    with wave.open(str(recording)) as wav:
        rate, pcm = wav.getframerate(), wav.readframes(wav.getnframes())
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
    assert abs(dominant_frequency(pcm, rate=rate) - 1200) <= 20


# --------------------------------------------------------------------------------------- #
# transfer: baresip REFERs sipx (RFC 3515)
# --------------------------------------------------------------------------------------- #
@pytest.mark.parametrize("transport", ["UDP"])
async def test_baresip_transfers_sipx(
    kamailio: Kamailio, softphone: Baresip, transport: str
) -> None:
    """sipx calls baresip; baresip's ``/transfer`` REFERs sipx to extension 100 (the SIPp
    echo UAS behind Kamailio): sipx answers 202, NOTIFYs 100 then 200 and calls 100;
    baresip then hangs up the call with sipx, which ends "transferred" (one BYE, baresip's:
    sipx's own would only come 8·T1 later). baresip sends no Referred-By."""
    trace = WireTrace()
    mark = softphone.log_offset()
    target = f"sip:100@127.0.0.1:{kamailio.port}"
    with trio.fail_after(TEST_TIMEOUT):
        async with registered(kamailio, "1111", transport, trace) as client:
            call = await call_softphone(kamailio, softphone, client, trace, mark)

            softphone.command(f"/transfer {target}")
            with trio.fail_after(STEP_TIMEOUT):
                assert await call.wait_ended() == "transferred", trace.ladder()
            new = call.replaced_by
            assert new is not None and new.established, trace.ladder()
            assert str(new.invite.uri) == target
            msgs = await wait_baresip_saw(
                softphone, call.call_id, lambda m: _received(m, "NOTIFY ") == 2, mark
            )
            assert ("out", "BYE") in [(d, s.split()[0]) for d, s in msgs], msgs
            assert (await new.bye()).status_code == 200

    msgs = trace.of_call(call.call_id)
    ladder = trace.ladder(call.call_id)
    refer = [m for m in msgs if m.direction == "in" and m.start.startswith("REFER ")]
    assert len(refer) == 1, ladder
    assert _header(refer[0].text, "Refer-To", "r").strip("<>") == target
    notifies = [m for m in msgs if m.direction == "out" and m.start.startswith("NOTIFY ")]
    assert [m.text.partition("\r\n\r\n")[2] for m in notifies] == [
        "SIP/2.0 100 Trying\r\n",
        "SIP/2.0 200 OK\r\n",
    ], ladder
    assert [_header(m.text, "Subscription-State") for m in notifies] == [
        "active;expires=60",
        "terminated;reason=noresource",
    ], ladder
    byes = [m.direction for m in msgs if m.start.startswith("BYE ")]
    assert byes == ["in"], ladder
    assert not [m for m in msgs if m.status in (481, 500)], ladder
    assert_unregistered(kamailio, "1111")
