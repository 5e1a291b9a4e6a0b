"""Server records (Timer J of a completed non-INVITE transaction, Timer L of an Accepted
INVITE) come due at the rate requests were answered: 32 s later, under load, one every few
microseconds. The engine is told the first one ``RECORD_SLACK`` late, so that one wake of
its timer loop ends every record due within that span (as for the client's Timer K
records); ``handle_timers(now)`` still ends exactly those due at ``now``."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from test_client_options_path import count_timer_wakes

import sipx
from sipx._core.message import Request
from sipx._core.parser import parse_message
from sipx._core.transaction import (
    RECORD_SLACK,
    RequestReceived,
    TransactionLayer,
    make_response,
)
from sipx.testing import MemoryNetwork

OPTIONS = (
    "OPTIONS sip:uas@127.0.0.1:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{n}\r\n"
    "From: <sip:peer@127.0.0.1:5061>;tag=f{n}\r\n"
    "To: <sip:uas@127.0.0.1:5060>\r\n"
    "Call-ID: {n}-opt@127.0.0.1\r\n"
    "CSeq: 1 OPTIONS\r\n"
    "Max-Forwards: 70\r\n"
    "Content-Length: 0\r\n\r\n"
)


def options(n: int) -> Request:
    message = parse_message(OPTIONS.format(n=n).encode())
    assert isinstance(message, Request)
    return message


def test_the_first_server_record_is_told_late_by_the_slack_and_ends_exactly_when_due() -> None:
    layer = TransactionLayer()
    for n in range(3):  # answered 1 ms apart: records until 32.000, 32.001, 32.002
        request = options(n)
        tx = layer.receive_request(request, n * 0.001, reliable=False, route="UDP")
        assert tx is not None and RequestReceived(tx, request) in layer.pop_events()
        assert tx.respond(make_response(request, 200, to_tag=f"t{n}"), n * 0.001)
    layer.pop_events()
    assert layer.next_deadline() == pytest.approx(32.0)
    assert layer.next_deadline(RECORD_SLACK) == pytest.approx(32.0 + RECORD_SLACK)
    layer.handle_timers(32.001)  # the first two are due, not the third
    assert len(layer) == 1
    # The third still absorbs its retransmission (its 200 is sent again); the first is gone.
    assert layer.receive_request(options(2), 32.001, reliable=False, route="UDP") is None
    [resend] = layer.pop_events()
    assert type(resend).__name__ == "Resend"
    again = layer.receive_request(options(0), 32.001, reliable=False, route="UDP")
    assert again is not None  # a new transaction: its record had ended


async def test_server_records_due_close_together_end_in_one_wake_of_the_timer_loop(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 OPTIONS answered 0.5 ms apart: their Timer J records end in one to three wakes
    of the timer loop 32 s later, not twenty."""
    network = MemoryNetwork()
    async with (
        sipx.AsyncClient("127.0.0.1", 5060, network=network) as uas,
        network.socket(("127.0.0.1", 5061)) as peer,
    ):
        layer = uas._engine.layer
        for n in range(20):
            peer.send(OPTIONS.format(n=n).encode(), ("127.0.0.1", 5060))
            data, _ = await peer.receive()
            assert data.startswith(b"SIP/2.0 200 ")
            await trio.sleep(0.0005)
        first_done = trio.current_time()
        assert len(layer) == 20
        wakes = count_timer_wakes(monkeypatch)
        await trio.sleep(31.0)
        assert len(layer) == 20  # no Timer J before its time
        wakes.clear()
        await trio.sleep(1.5 + RECORD_SLACK)
        assert len(layer) == 0  # all ended, none later than the slack
        assert 1 <= len(wakes) <= 3, wakes
        assert first_done + 32.0 - 0.03 <= wakes[0]
