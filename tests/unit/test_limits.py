"""The bound on server transactions (sipx.Limits.max_server_transactions), its 503, and the
limits as the client, the dev server and ``sipx serve`` take them.

A flood of transaction-creating requests used to keep every server transaction (about
3.6 KB each, 32 s over UDP) with no cap. Now a new request beyond the bound is answered
``503`` with ``Retry-After`` and no transaction; retransmissions, ACKs and CANCELs of the
transactions alive are matched as before, and the refusals are counted.
"""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

import sipx
from sipx._core.message import Request
from sipx._core.parser import parse_message
from sipx._core.transaction import (
    RequestReceived,
    RequestRefused,
    Resend,
    TransactionLayer,
    make_response,
)
from sipx._serve.cli import build_parser, limits_from
from sipx.testing import DevServer, MemoryNetwork

LOOPBACK = "127.0.0.1"


def request_bytes(
    method: str = "OPTIONS",
    branch: str = "z9hG4bK-1",
    *,
    uri: str = "sip:bob@127.0.0.1",
    sent_by: str = "127.0.0.1:5999",
    call_id: str | None = None,
    to_tag: str | None = None,
) -> bytes:
    to = "<sip:bob@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    cseq_method = "INVITE" if method == "ACK" else method
    return (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {sent_by};branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:flood@192.0.2.9>;tag=f1\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id or branch}@192.0.2.9\r\n"
        f"CSeq: 1 {cseq_method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def parsed(data: bytes) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


# -- the transaction layer (sans-I/O) ------------------------------------------------------------
def test_a_new_request_over_the_bound_gets_a_stateless_503() -> None:
    layer = TransactionLayer(max_server_transactions=2, retry_after=7)
    for n in (1, 2):
        layer.receive_request(parsed(request_bytes(branch=f"z9hG4bK-{n}")), 0.0, reliable=False)
    assert len(layer) == 2
    assert all(isinstance(e, RequestReceived) for e in layer.pop_events())
    third = parsed(request_bytes(branch="z9hG4bK-3"))
    assert layer.receive_request(third, 0.0, reliable=False, destination="there") is None
    [refused] = layer.pop_events()
    assert isinstance(refused, RequestRefused)
    assert refused.request is third and refused.destination == "there"
    response = refused.response
    assert (response.status_code, response.headers["Retry-After"]) == (503, "7")
    assert response.top_via.branch == "z9hG4bK-3" and response.cseq.method == "OPTIONS"
    assert response.to.tag  # RFC 3261 8.2.6.2
    assert len(layer) == 2 and layer.requests_refused == 1
    # its retransmission gets the same answer (the To tag is derived, not drawn)
    layer.receive_request(parsed(request_bytes(branch="z9hG4bK-3")), 0.1, reliable=False)
    [again] = layer.pop_events()
    assert isinstance(again, RequestRefused)
    assert again.response.to.tag == response.to.tag
    assert layer.requests_refused == 2


def test_retransmissions_and_cancels_of_live_transactions_still_match_at_the_bound() -> None:
    layer = TransactionLayer(max_server_transactions=2)
    options = layer.receive_request(parsed(request_bytes()), 0.0, reliable=False)
    invite_request = parsed(request_bytes("INVITE", "z9hG4bK-inv"))
    invite = layer.receive_request(invite_request, 0.0, reliable=False)
    assert options is not None and invite is not None
    options.respond(make_response(options.request, 200, to_tag="t"), 0.0)
    layer.pop_events()
    # the OPTIONS retransmitted: its 200 again, no refusal
    assert layer.receive_request(parsed(request_bytes()), 0.5, reliable=False) is None
    [resent] = layer.pop_events()  # answered by the record of the completed OPTIONS
    assert isinstance(resent, Resend) and resent.data.startswith(b"SIP/2.0 200 ")
    assert layer.requests_refused == 0
    # a CANCEL of the live INVITE is served even at the bound; one of nothing is refused
    cancel = layer.receive_request(
        parsed(request_bytes("CANCEL", "z9hG4bK-inv")), 1, reliable=False
    )
    assert cancel is not None and layer.find_transaction_to_cancel(cancel.request) is invite
    stray = parsed(request_bytes("CANCEL", "z9hG4bK-none"))
    assert layer.receive_request(stray, 1.0, reliable=False) is None
    assert layer.requests_refused == 1
    # the INVITE refused, its ACK still completes it
    invite.respond(make_response(invite_request, 486, to_tag="busy"), 1.0)
    layer.receive_request(
        parsed(request_bytes("ACK", "z9hG4bK-inv", to_tag="busy")), 1.1, reliable=False
    )
    assert invite.state.value == "Confirmed"


def test_room_comes_back_when_transactions_end() -> None:
    layer = TransactionLayer(max_server_transactions=1)
    first = layer.receive_request(parsed(request_bytes()), 0.0, reliable=False)
    assert first is not None
    first.respond(make_response(first.request, 200, to_tag="t"), 0.0)
    assert (
        layer.receive_request(parsed(request_bytes(branch="z9hG4bK-2")), 1, reliable=False) is None
    )
    layer.handle_timers(32.1)  # Timer J (64·T1) ends the first one
    assert len(layer) == 0
    assert layer.receive_request(parsed(request_bytes(branch="z9hG4bK-3")), 33, reliable=False)


def test_without_a_bound_the_layer_takes_everything() -> None:
    layer = TransactionLayer()  # the sans-I/O default: no bound (the client sets one)
    for n in range(50):
        layer.receive_request(parsed(request_bytes(branch=f"z9hG4bK-{n}")), 0.0, reliable=False)
    assert len(layer) == 50 and layer.requests_refused == 0


# -- a client under a flood (memory network, autojump clock) --------------------------------------
async def test_a_client_answers_a_flood_beyond_its_bound_with_503(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    limits = sipx.Limits(max_server_transactions=5, retry_after=30)
    async with (
        sipx.AsyncClient(LOOPBACK, 5060, network=network, limits=limits) as client,
        network.socket((LOOPBACK, 5999)) as flood,
    ):
        for n in range(20):
            flood.send(request_bytes(branch=f"z9hG4bK-flood{n}"), (LOOPBACK, 5060))
        await trio.sleep(1)
        answers = [parse_message(flood.receive_nowait()[0]) for _ in range(20)]
        codes = [answer.status_code for answer in answers]  # type: ignore[union-attr]
        assert codes.count(200) == 5 and codes.count(503) == 15
        assert all(
            a.headers.get_first("Retry-After") == "30" for a in answers if a.status_code == 503
        )  # type: ignore[union-attr]
        assert client.limit_stats.requests_refused == 15
        # the 200s' transactions end with Timer J (32 s): then requests are served again
        await trio.sleep(32)
        flood.send(request_bytes(branch="z9hG4bK-later"), (LOOPBACK, 5060))
        data, _ = await flood.receive()
        assert parse_message(data).status_code == 200  # type: ignore[union-attr]
        assert client.limit_stats.requests_refused == 15


async def test_a_flood_keeps_the_default_client_within_its_bound(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """10 000 transactions at most, whatever arrives: the memory stays bounded."""
    network = MemoryNetwork()
    async with (
        sipx.AsyncClient(LOOPBACK, 5060, network=network) as client,
        network.socket((LOOPBACK, 5999)) as flood,
    ):
        assert client.limits == sipx.Limits()
        bound = client.limits.max_server_transactions
        for n in range(bound + 500):
            flood.send(request_bytes(branch=f"z9hG4bK-f{n}"), (LOOPBACK, 5060))
            if n % 1000 == 999:
                await trio.testing.wait_all_tasks_blocked()
        await trio.testing.wait_all_tasks_blocked()
        assert client.limit_stats.requests_refused == 500


def test_the_blocking_client_takes_and_shows_the_same_limits() -> None:
    limits = sipx.Limits(max_server_transactions=3)
    with sipx.Client(LOOPBACK, 0, limits=limits) as client:
        assert client.limits is limits
        assert client.limit_stats == sipx.LimitStats()


def test_limits_must_be_a_limits() -> None:
    with pytest.raises(TypeError, match="limits"):
        sipx.AsyncClient(LOOPBACK, 0, limits={"max_connections": 3})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="limits"):
        DevServer(LOOPBACK, 0, limits=5)  # type: ignore[arg-type]


def test_limits_carry_the_parser_bounds() -> None:
    limits = sipx.Limits(max_message_size=2000, max_headers=20, max_line_length=300)
    assert limits.parser == sipx.ParserLimits(2000, 20, 300)
    assert sipx.Limits().parser == sipx.ParserLimits()


async def test_the_client_parses_with_its_message_size_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with (
        sipx.AsyncClient(
            LOOPBACK, 5060, network=network, limits=sipx.Limits(max_message_size=400)
        ) as client,
        network.socket((LOOPBACK, 5999)) as peer,
    ):
        small = request_bytes(branch="z9hG4bK-small")
        big = request_bytes(branch="z9hG4bK-big").replace(
            b"Max-Forwards", b"X: " + b"y" * 400 + b"\r\nMax-Forwards"
        )
        peer.send(small, (LOOPBACK, 5060))
        peer.send(big, (LOOPBACK, 5060))
        await trio.sleep(1)
        answers = [parse_message(peer.receive_nowait()[0]) for _ in range(2)]
        by_branch = {answer.top_via.branch: answer for answer in answers}
        assert by_branch["z9hG4bK-small"].status_code == 200  # type: ignore[union-attr]
        refused = by_branch["z9hG4bK-big"]
        assert refused.status_code == 400  # type: ignore[union-attr]
        assert "exceeds the limit of 400" in refused.reason_phrase  # type: ignore[union-attr]
        assert client.limit_stats.malformed_messages == 1


# -- sipx serve ------------------------------------------------------------------------------------
async def test_the_dev_server_refuses_transactions_of_its_extension_beyond_the_bound() -> None:
    limits = sipx.Limits(max_server_transactions=2)
    async with DevServer(LOOPBACK, 0, transports=("UDP",), limits=limits) as server:
        host, port = server.address
        uri = f"sip:100@{host}:{port}"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind((LOOPBACK, 0))
            peer.settimeout(5)
            sent_by = f"{LOOPBACK}:{peer.getsockname()[1]}"
            codes = []
            for n in range(4):
                peer.sendto(
                    request_bytes(branch=f"z9hG4bK-ext{n}", uri=uri, sent_by=sent_by), (host, port)
                )
                await trio.testing.wait_all_tasks_blocked()
                data, _ = peer.recvfrom(65_535)
                codes.append(parse_message(data).status_code)  # type: ignore[union-attr]
        assert codes == [200, 200, 503, 503]
        assert server.limit_stats.requests_refused == 2


def test_sipx_serve_options_make_the_limits() -> None:
    args = build_parser().parse_args(
        [
            "--max-transactions",
            "500",
            "--max-connections",
            "40",
            "--max-connections-per-address",
            "4",
            "--first-message-timeout",
            "2.5",
            "--message-timeout",
            "4",
            "--max-message-size",
            "9000",
        ]
    )
    assert limits_from(args) == sipx.Limits(
        max_server_transactions=500,
        max_connections=40,
        max_connections_per_address=4,
        first_message_timeout=2.5,
        message_timeout=4,
        max_message_size=9000,
    )
    assert limits_from(build_parser().parse_args([])) == sipx.Limits()


@pytest.mark.parametrize(
    "argv",
    [
        ["--max-transactions", "0"],
        ["--max-connections", "many"],
        ["--first-message-timeout", "-1"],
        ["--first-message-timeout", "nan"],
        ["--first-message-timeout", "inf"],
        ["--message-timeout", "0"],
        ["--max-message-size", "0"],
    ],
)
def test_sipx_serve_refuses_limits_that_cannot_work(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    assert argv[0] in capsys.readouterr().err
