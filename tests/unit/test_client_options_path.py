"""What one ``client.options()`` costs the client, pinned by behaviour (issue 14, eighth pass).

* A reader waiting on a :class:`ResponseWaiter` is handed the item as its wake-up value:
  nothing is queued meanwhile and no coroutine of the waiter's waits with it.
* Requests made from a template share its parsed Request-URI (no parse per request) and
  come with their fields in the order ``to_bytes()`` writes, which
  :meth:`Headers.prepend_via` keeps (the Contact at its rank): nothing is sorted.
* A client transaction over UDP puts one entry on the layer's timer heap (Timer A for an
  INVITE; a non-INVITE's first Timer E goes in the layer's queue of first E timers since
  the thirteenth pass: none); Timer F (B) joins it when E (A) first fires, and fires when
  it always did.
* Timer K records due close together end in one wake of the engine's timer loop.
"""

from __future__ import annotations

import gc
import inspect
from typing import Any

import pytest
import trio
import trio.testing

import sipx
from sipx._core import message as message_module
from sipx._core.headers import Headers
from sipx._core.message import Request, Response, in_conventional_order
from sipx._core.timers import TimerConfig
from sipx._core.transaction import (
    RECORD_SLACK,
    NonInviteClientTransaction,
    Send,
    TransactionLayer,
    TransactionTimeout,
    make_response,
)
from sipx._core.uri import URI
from sipx._trio import waiter as waiter_module
from sipx._trio.waiter import ResponseWaiter
from sipx.testing import MemoryNetwork, ScriptedUAS

UAS = ("127.0.0.1", 5080)


# -- the waiter ---------------------------------------------------------------------------------
def waiter_coroutines() -> list[object]:
    """Coroutines alive whose code is the waiter module's."""
    return [
        o
        for o in gc.get_objects()
        if inspect.iscoroutine(o) and o.cr_code.co_filename == waiter_module.__file__
    ]


async def test_a_waiting_reader_is_handed_the_item_without_a_coroutine_of_the_waiters() -> None:
    waiter = ResponseWaiter()
    got: list[object] = []

    async def read() -> None:
        async for item in waiter:
            got.append(item)
            if isinstance(item, Exception):
                return

    final = Response(200, "OK")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        assert waiter_coroutines() == []  # the reader waits in trio's own wait
        waiter.send_nowait(final)
        assert len(waiter) == 0  # handed over, not queued
        await trio.testing.wait_all_tasks_blocked()
        assert got == [final]
        error = sipx.TimeoutError("OPTIONS", "sip:x", 32.0)
        waiter.send_nowait(error)
    assert got == [final, error]


async def test_an_item_sent_after_the_reader_was_cancelled_waits_for_the_next_read() -> None:
    waiter = ResponseWaiter()
    with trio.CancelScope() as scope:
        scope.deadline = trio.current_time()  # cancelled while it waits
        await waiter.__anext__()
    assert scope.cancelled_caught
    first, second = Response(180, "Ringing"), Response(200, "OK")
    waiter.send_nowait(first)  # no reader: queued, nobody woken
    waiter.send_nowait(second)
    assert len(waiter) == 2
    assert [await waiter.__anext__(), await waiter.__anext__()] == [first, second]


# -- the request from a template ----------------------------------------------------------------
async def test_template_requests_share_the_parsed_request_uri(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[str] = []
    parse = URI.parse

    def counting_parse(text: str) -> URI:
        parsed.append(text)
        return parse(text)

    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, UAS) as uas,
        sipx.AsyncClient("127.0.0.1", 5060, network=network) as client,
    ):
        assert (await client.options(uas.uri)).status_code == 200  # the template is made
        monkeypatch.setattr(URI, "parse", staticmethod(counting_parse))
        responses = [await client.options(uas.uri) for _ in range(3)]
        monkeypatch.undo()
    assert all(r.status_code == 200 for r in responses)
    assert uas.uri not in parsed  # the Request-URI is not parsed again per request
    requests = [r.request for r in responses]
    assert all(q is not None for q in requests)
    uris = {id(q.uri) for q in requests if q is not None}
    assert len(uris) == 1
    assert [str(q.uri) for q in requests if q is not None] == [uas.uri] * 3


async def test_a_stamped_template_request_is_written_without_a_sort(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, UAS) as uas,
        sipx.AsyncClient("127.0.0.1", 5060, network=network) as client,
    ):
        response = await client.options(uas.uri)
    request = response.request
    assert request is not None
    sent = [e.data for e in network.log if e.data.startswith(b"OPTIONS ")]
    assert sent == [request.to_bytes()]
    entries = request.headers.entries
    keys = [key for key, _, _ in entries]
    assert keys[:7] == ["via", "max-forwards", "from", "to", "call-id", "cseq", "contact"]
    assert request.headers.in_order and in_conventional_order(entries)

    checks: list[object] = []

    def counting_check(fields: Any, after: int = 0) -> bool:
        checks.append(fields)
        return in_conventional_order(fields, after)

    monkeypatch.setattr(message_module, "in_conventional_order", counting_check)
    assert request.to_bytes() == sent[0]
    assert checks == []  # known to be in order: neither checked nor sorted


FIELD_SETS = [
    [("Max-Forwards", "70"), ("From", "<sip:a@b>;tag=1"), ("User-Agent", "x")],
    [("Route", "<sip:p;lr>"), ("CSeq", "1 MESSAGE"), ("Content-Type", "text/plain")],
    [("Record-Route", "<sip:r;lr>"), ("Call-ID", "c"), ("X-Extra", "1"), ("Expires", "60")],
    [("From", "<sip:a@b>;tag=1"), ("To", "<sip:c@d>")],
    [("X-First", "1"), ("Content-Type", "text/plain")],
    [],
]


@pytest.mark.parametrize("fields", FIELD_SETS)
def test_prepend_via_keeps_fields_in_order_with_the_contact_at_its_rank(
    fields: list[tuple[str, str]],
) -> None:
    via, contact = "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnew;rport", "<sip:a@10.0.0.1>"
    general = Request("MESSAGE", "sip:c@d", Headers(fields))
    general.headers.prepend("Via", via)
    general.headers["Contact"] = contact
    plain = Headers(fields)
    ordered = Headers.from_parsed(list(plain.entries), in_order=True)
    ordered.prepend_via(via, contact)
    fast = Request("MESSAGE", "sip:c@d", ordered)
    assert ordered.in_order and in_conventional_order(ordered.entries)
    assert fast.to_bytes() == general.to_bytes()
    assert ordered.get_first("Contact") == contact and ordered.get_first("Via") == via
    assert ordered.lookup() == general.headers.lookup()


# -- Timer E and F ------------------------------------------------------------------------------
def options(branch: str) -> Request:
    return Request(
        "OPTIONS",
        "sip:bob@127.0.0.1",
        [
            ("Via", f"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{branch}"),
            ("From", "<sip:a@127.0.0.1>;tag=1"),
            ("To", "<sip:bob@127.0.0.1>"),
            ("Call-ID", branch),
            ("CSeq", "1 OPTIONS"),
        ],
    )


def heap_entries(transaction: NonInviteClientTransaction) -> int:
    """Tuples referring to ``transaction``: its entries on the layer's timer heap."""
    return sum(isinstance(r, tuple) for r in gc.get_referrers(transaction))


def test_a_udp_transaction_answered_within_t1_has_no_timer_entry() -> None:
    layer = TransactionLayer()
    request = options("one")
    transaction = layer.send_request(request, 0.0, reliable=False)
    assert isinstance(transaction, NonInviteClientTransaction)
    assert heap_entries(transaction) == 0  # Timer E queued by key (one entry until 13)
    assert layer.next_deadline() == 0.5
    layer.receive_response(make_response(request, 200), 0.1)
    assert transaction.terminated
    layer.handle_timers(0.5)
    assert heap_entries(transaction) == 0
    # Over a reliable transport there is no Timer E: Timer F is the one entry.
    layer = TransactionLayer()
    reliable = layer.send_request(options("two"), 0.0, reliable=True)
    assert isinstance(reliable, NonInviteClientTransaction)
    assert heap_entries(reliable) == 1
    assert layer.next_deadline() == 32.0


def run_until(layer: TransactionLayer, end: float) -> list[tuple[float, str]]:
    """Fire the layer's timers up to ``end``: (time, event kind) of what they made."""
    seen: list[tuple[float, str]] = [(0.0, type(e).__name__) for e in layer.pop_events()]
    while (deadline := layer.next_deadline()) is not None and deadline <= end:
        layer.handle_timers(deadline)
        seen += [(deadline, type(e).__name__) for e in layer.pop_events()]
    return seen


@pytest.mark.parametrize("t1", [0.5, 0.3])
def test_timer_e_retransmits_and_timer_f_times_out_as_before(t1: float) -> None:
    config = TimerConfig(t1=t1, t2=8 * t1)
    layer = TransactionLayer(config)
    transaction = layer.send_request(options("lost"), 0.0, reliable=False)
    seen = run_until(layer, 1000.0)
    sends = [at for at, kind in seen if kind == Send.__name__]
    expected, at, interval = [0.0], 0.0, t1
    while at + interval < 64 * t1:
        at += interval
        expected.append(at)
        interval = min(2 * interval, config.t2)
    assert sends == pytest.approx(expected)
    timeouts = [at for at, kind in seen if kind == TransactionTimeout.__name__]
    assert timeouts == [pytest.approx(64 * t1)]
    assert seen[-1][1] == "TransactionTerminated" and transaction.terminated
    assert layer.next_deadline() is None


def test_a_proceeding_transaction_retransmits_every_t2_until_timer_f() -> None:
    layer = TransactionLayer()
    request = options("slow")
    layer.send_request(request, 0.0, reliable=False)
    layer.receive_response(make_response(request, 100), 0.2)
    seen = run_until(layer, 1000.0)
    sends = [at for at, kind in seen if kind == Send.__name__]
    assert sends == [0.0, 0.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5]
    assert [at for at, kind in seen if kind == TransactionTimeout.__name__] == [32.0]


async def test_an_unanswered_options_still_times_out_after_timer_f(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with (
        network.socket(UAS) as deaf,
        sipx.AsyncClient("127.0.0.1", 5060, network=network) as client,
    ):
        started = trio.current_time()
        with pytest.raises(sipx.TimeoutError):
            await client.options(f"sip:x@{UAS[0]}:{UAS[1]}")
        assert trio.current_time() - started == pytest.approx(32.0)
        assert deaf is not None
    sent = [e for e in network.log if e.data.startswith(b"OPTIONS ")]
    assert len(sent) == 11  # the first and ten retransmissions (0.5 ... 31.5 s)


def invite(branch: str) -> Request:
    request = options(branch)
    request.method = "INVITE"
    request.headers["CSeq"] = "1 INVITE"
    return request


def test_an_invite_answered_within_t1_has_one_timer_entry_and_timer_b_fires_as_before() -> None:
    layer = TransactionLayer()
    answered = invite("answered")
    transaction = layer.send_request(answered, 0.0, reliable=False)
    assert heap_entries(transaction) == 1  # Timer A only
    layer.receive_response(make_response(answered, 100), 0.1)
    layer.handle_timers(0.5)
    assert heap_entries(transaction) == 0  # a provisional response stops A (and B)
    layer = TransactionLayer()
    layer.send_request(invite("lost"), 0.0, reliable=False)
    seen = run_until(layer, 1000.0)
    sends = [at for at, kind in seen if kind == Send.__name__]
    assert sends == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # Timer A doubles, no cap
    assert [at for at, kind in seen if kind == TransactionTimeout.__name__] == [32.0]
    layer = TransactionLayer()
    reliable = layer.send_request(invite("tcp"), 0.0, reliable=True)
    assert heap_entries(reliable) == 1 and layer.next_deadline() == 32.0  # Timer B


# -- Timer K records ----------------------------------------------------------------------------
def test_the_first_timer_k_record_is_told_late_by_the_slack_and_ends_exactly_when_due() -> None:
    layer = TransactionLayer()
    requests = [options(f"k{n}") for n in range(3)]
    for n, request in enumerate(requests):
        layer.send_request(request, n * 0.001, reliable=False)
        layer.receive_response(make_response(request, 200), n * 0.001)
    layer.handle_timers(0.6)  # the Timer E entries, stale
    assert layer.next_deadline() == pytest.approx(5.0)
    assert layer.next_deadline(RECORD_SLACK) == pytest.approx(5.0 + RECORD_SLACK)
    layer.handle_timers(5.001)  # the first two are due, not the third
    assert len(layer) == 1
    assert layer.receive_response(make_response(requests[2], 200), 5.001) is None
    assert [type(e).__name__ for e in layer.pop_events()][-1] != "StrayResponse"
    layer.receive_response(make_response(requests[0], 200), 5.001)
    assert [type(e).__name__ for e in layer.pop_events()] == ["StrayResponse"]


def count_timer_wakes(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """From now on, the time of each wake of the engines' timer loops (each runs the
    layer's handle_timers once per wake)."""
    wakes: list[float] = []
    handle_timers = TransactionLayer.handle_timers

    def counting(layer: TransactionLayer, now: float) -> None:
        wakes.append(now)
        handle_timers(layer, now)

    monkeypatch.setattr(TransactionLayer, "handle_timers", counting)
    return wakes


async def test_timer_k_records_due_close_together_end_in_one_wake_of_the_timer_loop(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records due within RECORD_SLACK of the first end with it: under load the timer
    loop woke about once per request to end one record."""
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, UAS) as uas,
        sipx.AsyncClient("127.0.0.1", 5060, network=network) as client,
    ):
        layer = client._engine.layer
        for _ in range(20):
            assert (await client.options(uas.uri)).status_code == 200
            await trio.sleep(0.0005)  # the records are due 0.5 ms apart (and more)
        first_done = trio.current_time()
        assert len(layer) == 20
        wakes = count_timer_wakes(monkeypatch)
        await trio.sleep(4.0)
        assert len(layer) == 20  # no Timer K before its time
        wakes.clear()  # (the stale Timer E entries woke it)
        await trio.sleep(1.5 + RECORD_SLACK)
        assert len(layer) == 0  # all ended, none later than the slack
        assert 1 <= len(wakes) <= 3
        assert first_done + 5.0 - 0.03 <= wakes[0]
