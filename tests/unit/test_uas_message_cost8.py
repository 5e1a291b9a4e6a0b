"""Issue 14, eighth pass: calls removed from every request the UAS answers, pinned as
behaviour (what is called per message, and what goes on the wire).

Nothing here measures a time.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from test_uas_message_cost import CAPABILITIES, PEER
from test_uas_message_cost import OPTIONS as BASE_OPTIONS

import sipx
import sipx._core.transaction
import sipx._engine
import sipx._uas
from sipx._core.header_types import Via, parse_via, render_params
from sipx._core.message import Request, Response
from sipx._core.parser import parse_message
from sipx._core.received import stamp_received
from sipx._core.transaction import (
    NonInviteServerTransaction,
    TransactionLayer,
    TransactionState,
    make_response,
)
from sipx.testing import MemoryNetwork

# The same OPTIONS without its Contact (what SIPp's uac_options.xml sends).
OPTIONS = BASE_OPTIONS.replace(b"Contact: <sip:sipp@127.0.0.1:5999>\r\n", b"")


def _request(data: bytes = OPTIONS) -> Request:
    request = parse_message(data)
    assert isinstance(request, Request)
    return request


def _numbered(number: int) -> bytes:
    return OPTIONS.replace(b"-1;", f"-{number};".encode()).replace(b"=f1", f"=f{number}".encode())


class _Counted:
    """A stand-in for a function or method that counts its calls (a method when set on a
    class: it binds as a function does)."""

    def __init__(self, original: Any) -> None:
        self.calls = 0

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return original(*args, **kwargs)

        self.function = counted


class _Trio:
    """The ``trio`` module as the engine sees it, with its ``current_time`` counted."""

    def __init__(self, current_time: _Counted) -> None:
        self.current_time = current_time.function

    def __getattr__(self, name: str) -> Any:
        return getattr(trio, name)


async def test_an_options_answered_at_once_pumps_once_and_reads_the_clock_directly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The response is carried out by the request's own pump (no ``_pump`` call: the
    receive path has it inline since the eleventh pass), the datagram's time is read from
    the run's clock without ``trio.current_time``, and no Require check runs for a request
    without Require. The answer and its retransmission from the record are as before."""
    pumps = _Counted(sipx._engine.Engine._pump)
    clock_reads = _Counted(trio.current_time)
    extension_checks = _Counted(sipx._uas.UserAgentServer._bad_extension)
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network),
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        peer.send(_numbered(0), address)  # arms Timer J: the timer loop sleeps till then
        await peer.receive()
        await trio.testing.wait_all_tasks_blocked()
        monkeypatch.setattr(sipx._engine, "trio", _Trio(clock_reads))
        monkeypatch.setattr(sipx._engine.Engine, "_pump", pumps.function)
        monkeypatch.setattr(sipx._uas.UserAgentServer, "_bad_extension", extension_checks.function)
        peer.send(OPTIONS, address)
        data, _ = await peer.receive()
        assert (pumps.calls, clock_reads.calls, extension_checks.calls) == (0, 0, 0)
        monkeypatch.undo()
        peer.send(OPTIONS, address)  # retransmitted: the record answers the same bytes
        again, _ = await peer.receive()
        peer.send(_numbered(2).replace(b"Timestamp: 54", b"Require: foo"), address)
        refused, _ = await peer.receive()
    response = parse_message(data)
    assert isinstance(response, Response) and response.status_code == 200
    assert response.headers["Via"].endswith(";rport=5999")
    assert again == data
    assert refused.startswith(b"SIP/2.0 420 Bad Extension\r\n") and b"Unsupported: foo" in refused


def test_a_server_transaction_takes_positional_arguments() -> None:
    """receive_request builds its transaction with positional arguments (a call with
    keywords cost a third of the construction); ``route`` is one of them."""
    request = _request()
    layer = TransactionLayer()
    key = ("3261", "z9hG4bK-1", "127.0.0.1", 5999)
    made = NonInviteServerTransaction(
        layer, request, "z9hG4bK-1", key, False, PEER, TransactionState.TRYING, "UDP"
    )
    assert (made.route, made.destination, made.reliable, made.state) == (
        "UDP",
        PEER,
        False,
        TransactionState.TRYING,
    )
    received = layer.receive_request(request, 0.0, reliable=False, destination=PEER, route="TCP")
    assert received is not None and received.route == "TCP"
    assert (received.branch, received.method) == ("z9hG4bK-1", "OPTIONS")


def test_the_server_key_lowercases_the_sent_by_host() -> None:
    """The key built inline in receive_request is the 17.2.3 one: a retransmission whose
    Via host differs in case only (and names the default port) matches the transaction."""
    layer = TransactionLayer()
    first = _request(OPTIONS.replace(b"127.0.0.1:5999;branch", b"Host.Example.com;branch"))
    again = _request(OPTIONS.replace(b"127.0.0.1:5999;branch", b"host.example.COM:5060;branch"))
    transaction = layer.receive_request(first, 0.0, reliable=True, destination=PEER)
    layer.pop_events()
    assert layer.receive_request(again, 0.0, reliable=True, destination=PEER) is transaction
    assert layer.pop_events() == []


def test_a_merged_request_is_found_with_views_parsed_or_not() -> None:
    """The merge key (8.2.2.2) reads the typed views the receive path parsed, or parses
    them: a second request with the same From tag, Call-ID and CSeq but another branch
    gets 482 either way."""
    for read_first in (True, False):
        layer = TransactionLayer()
        original, merged = _request(), _request(OPTIONS.replace(b"-1;", b"-2;"))
        if read_first:
            for request in (original, merged):
                request.to, request.from_, request.cseq  # noqa: B018
        layer.receive_request(original, 0.0, reliable=False, destination=PEER)
        layer.pop_events()
        layer.receive_request(merged, 0.0, reliable=False, destination=PEER)
        (send, *_) = layer.pop_events()
        assert isinstance(send, sipx._core.transaction.Send)
        assert isinstance(send.message, Response) and send.message.status_code == 482


def test_the_order_of_a_tuple_of_extras_is_checked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cached capabilities of every 200 to OPTIONS (one tuple) are checked for their
    order once; another tuple, another last copied field, or a list is checked again,
    and each response is written in the same order as before."""
    checks = _Counted(sipx._core.transaction.in_conventional_order)
    monkeypatch.setattr(sipx._core.transaction, "in_conventional_order", checks.function)
    request = _request()
    capabilities = tuple(CAPABILITIES)
    responses = [make_response(request, 200, to_tag="t", extra=capabilities) for _ in range(3)]
    assert checks.calls == 1
    assert all(r.headers.in_order for r in responses)
    assert responses[0].to_bytes() == responses[2].to_bytes()
    trying = make_response(request, 100, extra=capabilities)  # follows Timestamp now
    assert checks.calls == 2 and trying.headers.in_order
    routed = (("record-route", "Record-Route", "<sip:p.example.com;lr>"),)
    out_of_order = make_response(request, 200, to_tag="t", extra=routed)
    assert checks.calls == 3 and not out_of_order.headers.in_order
    assert out_of_order.to_bytes().split(b"\r\n")[2] == b"Record-Route: <sip:p.example.com;lr>"
    for _ in range(2):
        make_response(request, 200, to_tag="t", extra=list(CAPABILITIES))
    assert checks.calls == 5  # a list may change: never remembered


@pytest.mark.parametrize(
    ("via", "source", "force", "expected"),
    [
        (
            "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport",
            ("127.0.0.1", 5999),
            False,
            "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999",
        ),
        (
            "SIP/2.0/UDP host.example.com;branch=z9hG4bK-1;rport",
            ("192.0.2.1", 4000),
            False,
            "SIP/2.0/UDP host.example.com;branch=z9hG4bK-1;rport=4000;received=192.0.2.1",
        ),
        (
            "SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bK-1;ttl=3;x",
            ("2001:db8::9", 5070),
            True,
            "SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bK-1;ttl=3;x;received=2001:db8::9"
            ";rport=5070",
        ),
        (
            "SIP / 2.0 / udp 10.0.0.1:05060 ;branch=z9hG4bK-1",
            ("10.0.0.2", 5060),
            False,
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-1;received=10.0.0.2",
        ),
    ],
)
def test_a_stamped_via_is_written_as_its_rendering(
    via: str, source: tuple[str, int], force: bool, expected: str
) -> None:
    """stamp_received writes the Via inline: the text is what ``str(Via)`` gives (the
    typed view kept agrees with it), whatever the shape of the entry."""
    request = _request(
        OPTIONS.replace(b"SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport", via.encode())
    )
    stamp_received(request, source, force_rport=force)
    assert request.headers["Via"] == expected
    assert str(request.top_via) == expected and parse_via(expected) == request.top_via


@pytest.mark.parametrize(
    "params",
    [{}, {"lr": None}, {"branch": "z9hG4bK-1", "rport": None, "received": "192.0.2.1"}],
)
def test_render_params_writes_each_parameter_in_order(params: dict[str, str | None]) -> None:
    """render_params (a loop now, not a joined list) writes ``;name`` or ``;name=value``
    for each parameter in order."""
    expected = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())
    assert render_params(params) == expected
    via = Via("UDP", "h", None, dict(params))
    assert str(via) == f"SIP/2.0/UDP h{expected}"


def test_check_essentials_parses_to_from_and_checks_call_id_last() -> None:
    """check_essentials parses To and From and checks the Call-ID (the receive path read
    them by three property calls after it): after its own checks, in the same order."""
    request = _request()
    request.check_essentials()
    assert {"to", "from", "cseq"} <= request.headers.typed.keys()
    assert (request.to.tag, request.from_.tag, request.cseq.seq) == (None, "f1", 1)
    bad_to = OPTIONS.replace(b"To: sut <sip:uas@127.0.0.1:5060>", b"To: <sip:uas@h")
    with pytest.raises(sipx.ParseError):
        _request(bad_to).check_essentials()
    with pytest.raises(sipx.ParseError, match=r"^CSeq method"):  # its own checks first
        _request(bad_to.replace(b"1 OPTIONS", b"1 INFO")).check_essentials()
    with pytest.raises(sipx.ParseError, match=r"^bad Call-ID"):
        _request(OPTIONS.replace(b"Call-ID: 1-bench", b"Call-ID: 1 bench")).check_essentials()
    without_from = b"".join(line for line in OPTIONS.splitlines(True) if b"From:" not in line)
    with pytest.raises(sipx.ParseError, match="no From header"):
        _request(without_from).check_essentials()
