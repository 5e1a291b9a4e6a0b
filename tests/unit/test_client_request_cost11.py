"""Steps one ``client.options()`` no longer takes (issue 14, eleventh pass).

* A request made from a template is built without ``Request.__init__`` and comes with its
  From URI's user, so that the stamp of its Contact parses nothing; the stamp and the
  transaction read the field index and the cached top Via view (no ``Headers.__contains__``
  nor ``get_first``, no ``top_via``/``branch`` property calls); the Via and Contact the
  stamp writes, made from checked parts, are not checked again for each request.
* The client transaction's match key (``"METHOD branch"``) is made once: the layer's
  look-ups, its Timer K record and its end use that one string.
* The usual send enters no context manager (no deadline), calls no hook after a
  non-REGISTER answer, and ``learn_public_address`` reads no ``received``/``rport`` view
  of a response whose top Via has neither filled in.
* :class:`TimerConfig`'s fixed timers are attributes; a :class:`TokenPool` keeps its
  pool's length; the Contacts kept for digest retries are trimmed in batches.

What goes on the wire stays as it was (each test checks the bytes or the behaviour kept).
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

import pytest
import trio
import trio.testing

import sipx
from sipx import _next_hop, _uac
from sipx._core import headers as headers_module
from sipx._core.header_types import Via
from sipx._core.headers import Headers
from sipx._core.ids import TokenPool
from sipx._core.message import Message, Request
from sipx._core.parser import parse_message
from sipx._core.timers import TimerConfig
from sipx._core.transaction import TransactionLayer
from sipx.testing import MemoryNetwork, ScriptedUAS

UAS = ("127.0.0.1", 5080)
PEER = ("127.0.0.1", 5999)
SIPX = sipx.__file__.rpartition("/")[0] + "/"
TESTING = SIPX + "testing/"


def forbid(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> None:
    """Make ``owner.name`` (a function, a method or a property) raise when used."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{name} used")

    is_property = isinstance(owner.__dict__.get(name), property)
    monkeypatch.setattr(owner, name, property(refuse) if is_property else refuse)


def answer(request: bytes) -> bytes:
    """A 200 copying the request's Via, From, To (tagged), Call-ID and CSeq, as SIPp's
    UAS (and ``bench_client_cpu.py``) does: its Via with nothing filled in."""
    lines = [b"SIP/2.0 200 OK"]
    for line in request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        lower = line[:9].lower()
        if lower.startswith((b"via:", b"from:", b"call-id:", b"cseq:")):
            lines.append(line)
        elif lower.startswith(b"to:"):
            lines.append(line + b";tag=peer")
    lines.append(b"Content-Length: 0\r\n\r\n")
    return b"\r\n".join(lines)


async def answer_all(peer: Any) -> None:
    while True:
        data, source = await peer.receive()
        peer.send(answer(data), source)


def sent_options(network: MemoryNetwork) -> list[bytes]:
    return [d.data for d in network.log if d.data.startswith(b"OPTIONS ")]


# -- the whole request: calls into and from sipx ------------------------------------------------
class SipxCalls:
    """Counts, while installed as the profiler, the entries into functions of sipx (not
    ``sipx.testing``; a coroutine's every resumption too, as cProfile counts) and the
    built-in functions those call."""

    def __init__(self) -> None:
        self.python = 0
        self.builtin = 0

    def __call__(self, frame: FrameType, event: str, arg: object) -> None:
        if event == "call" or event == "c_call":
            name = frame.f_code.co_filename
            if name.startswith(SIPX) and not name.startswith(TESTING):
                if event == "call":
                    self.python += 1
                else:
                    self.builtin += 1


async def calls_per_options(count: int) -> tuple[float, float]:
    """Python and built-in calls of sipx per ``options()`` answered by a peer that copies
    the request's lines (as ``bench_client_cpu.py`` and SIPp's UAS do)."""
    network = MemoryNetwork()
    async with (
        sipx.AsyncClient("127.0.0.1", 5060, network=network) as client,
        network.socket(PEER) as peer,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(answer_all, peer)
        uri = f"sip:uas@{PEER[0]}:{PEER[1]}"
        for _ in range(3):  # the template, the stamp, the caches made
            await client.options(uri)
        counter = SipxCalls()
        sys.setprofile(counter)
        try:
            for _ in range(count):
                response = await client.options(uri)
                assert response.status_code == 200
        finally:
            sys.setprofile(None)
        nursery.cancel_scope.cancel()
    return counter.python / count, counter.builtin / count


async def test_one_options_makes_fewer_sipx_calls(autojump_clock: trio.testing.MockClock) -> None:
    # Per options() answered: 85 Python and 111 built-in calls with this pass, 108 and
    # 131 on its parent (the response's parse, another pass's area, is in both).
    python, builtin = await calls_per_options(20)
    assert python <= 95, python
    assert python + builtin <= 215, (python, builtin)


# -- the request from the template --------------------------------------------------------------
async def test_a_template_request_takes_no_init_from_parse_nor_header_checks(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    network = MemoryNetwork()
    uri = f"sip:uas@{PEER[0]}:{PEER[1]}"
    async with (
        sipx.AsyncClient("127.0.0.1", 5060, network=network) as client,
        network.socket(PEER) as peer,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(answer_all, peer)
        first = await client.request("OPTIONS", uri, from_uri="sip:alice@example.com")
        assert first.status_code == 200
        forbid(monkeypatch, Request, "__init__")
        forbid(monkeypatch, Message, "__init__")
        forbid(monkeypatch, _next_hop.NextHop, "_from_user")
        forbid(monkeypatch, Headers, "__contains__")
        forbid(monkeypatch, Headers, "get_first")
        forbid(monkeypatch, headers_module, "_clean_value")
        responses = [
            await client.request("OPTIONS", uri, from_uri="sip:alice@example.com") for _ in range(3)
        ]
        monkeypatch.undo()
        nursery.cancel_scope.cancel()
    assert [r.status_code for r in responses] == [200] * 3
    sent = sent_options(network)
    assert len(sent) == 4
    for data, response in zip(sent[1:], responses, strict=True):
        request = response.request
        assert request is not None and data == request.to_bytes()
        assert data.startswith(f"OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/UDP ".encode())
        assert b"\r\nFrom: <sip:alice@example.com>;tag=" in data
        # The Contact names the From's user, at its rank (after CSeq, before User-Agent).
        assert b"\r\nCSeq: 1 OPTIONS\r\nContact: <sip:alice@127.0.0.1:5060>\r\nUser-Agent:" in data


async def test_a_from_given_in_headers_still_names_the_contact_user(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The template's From user is a typed view: a From the caller replaces drops it.
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, UAS) as uas,
        sipx.AsyncClient("127.0.0.1", 5060, network=network) as client,
    ):
        for _ in range(2):
            response = await client.options(uas.uri, headers={"From": "<sip:bob@example.com>"})
            assert response.status_code == 200
    for data in sent_options(network):
        assert b"\r\nFrom: <sip:bob@example.com>;tag=" in data
        assert b"\r\nContact: <sip:bob@127.0.0.1:5060>\r\n" in data


async def test_a_contact_user_with_cr_or_lf_goes_out_escaped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The user part is written %-escaped (RFC 3261 25.1), so a CR or LF in it can neither
    # break the header nor make the request fail (it was refused before the Contact was
    # escaped).
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, UAS) as uas,
        sipx.AsyncClient("127.0.0.1", 5060, network=network) as client,
    ):
        for _ in range(2):
            response = await client.request("OPTIONS", uas.uri, from_uri="sip:x%0d%0ay@example.com")
            assert response.status_code == 200
    sent = sent_options(network)
    assert len(sent) == 2
    for data in sent:
        assert b"\r\nContact: <sip:x%0D%0Ay@" in data
        head = data.split(b"\r\n\r\n")[0]
        assert all(line and b"\n" not in line for line in head.split(b"\r\n"))


# -- the usual send and answer ------------------------------------------------------------------
class _Refused:
    def __enter__(self) -> None:
        raise AssertionError("a context manager entered")

    def __exit__(self, *exc: object) -> None:
        raise AssertionError("a context manager left")


async def test_the_usual_send_enters_no_context_and_calls_no_after_hook(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, UAS) as uas,
        sipx.AsyncClient("127.0.0.1", 5060, network=network) as client,
    ):
        assert (await client.options(uas.uri)).status_code == 200
        uac = client._uac
        registered: list[str] = []

        def refuse(*args: object) -> None:
            raise AssertionError("after-the-answer hook called")

        monkeypatch.setattr(_uac, "_NO_DEADLINE", _Refused())
        # The hook is the REGISTER's only (it was called after every request before).
        uac.on_success = refuse  # type: ignore[attr-defined]
        monkeypatch.setattr(
            uac, "on_register", lambda q, r, a: registered.append(q.method), raising=False
        )
        responses = [await client.options(uas.uri) for _ in range(3)]
        assert not registered
        # With a timeout the deadline still bounds the request; a REGISTER calls the hook.
        timed = await client.options(uas.uri, timeout=5.0)
        monkeypatch.setattr(_uac, "_NO_DEADLINE", _uac.nullcontext())
        await client.register(f"sip:alice@{UAS[0]}", host=UAS[0], port=UAS[1])
        monkeypatch.undo()
    assert [r.status_code for r in [*responses, timed]] == [200] * 4
    assert registered == ["REGISTER"]


async def test_a_response_with_nothing_filled_in_teaches_nothing_without_reading_it(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    network = MemoryNetwork()
    async with (
        sipx.AsyncClient("127.0.0.1", 5060, network=network) as client,
        network.socket(PEER) as peer,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(answer_all, peer)
        uri = f"sip:uas@{PEER[0]}:{PEER[1]}"
        assert (await client.options(uri)).status_code == 200
        forbid(monkeypatch, Via, "received")
        forbid(monkeypatch, Via, "rport")
        responses = [await client.options(uri) for _ in range(3)]
        monkeypatch.undo()
        assert client._next_hop.public_addresses == {}
        nursery.cancel_scope.cancel()
    assert [r.status_code for r in responses] == [200] * 3


# -- the client transaction ---------------------------------------------------------------------
def _request(branch: str) -> Request:
    message = parse_message(
        (
            "OPTIONS sip:uas@127.0.0.1:5999 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch={branch};rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\n"
            "Call-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(message, Request)
    return message


def _ok(branch: str) -> Any:
    return parse_message(
        (
            f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={branch};rport\r\n"
            "From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>;tag=2\r\n"
            "Call-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    )


def test_the_match_key_is_made_once_and_the_top_via_views_read_inline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layer = TransactionLayer()
    branch = "z9hG4bKmatch1"
    request, response = _request(branch), _ok(branch)
    request.top_via  # noqa: B018 - cached, as the stamp leaves it
    response.top_via  # noqa: B018 - cached, as the engine reads it on receipt
    forbid(monkeypatch, Message, "top_via")
    forbid(monkeypatch, Via, "branch")
    sent = layer.send_request(request, 0.0, reliable=False, destination=("127.0.0.1", 5999))
    key = next(iter(layer._clients))
    assert key == f"OPTIONS {branch}"
    assert layer.receive_response(response, 0.01) is sent
    monkeypatch.undo()
    # Completed: its record, due at Timer K, is kept under the same string.
    assert not layer._clients
    assert [(k, d) for k, d in layer._client_records.items()] == [(key, 0.01 + 5.0)]
    assert next(iter(layer._client_records)) is key
    # A retransmitted 200 is absorbed by the record (the TU is not told again).
    layer.pop_events()
    assert layer.receive_response(_ok(branch), 1.0) is None
    assert layer.pop_events() == []


def test_timer_config_timers_are_attributes_computed_from_t1() -> None:
    config = TimerConfig(t1=0.25, t2=2.0, t4=4.0)
    for name in ("timer_a", "timer_e", "timer_g"):
        assert getattr(config, name) == 0.25
    for name in ("timer_b", "timer_f", "timer_h", "timer_l", "timer_m"):
        assert getattr(config, name) == 16.0
        # read without a call: no property (a slot the dataclass set once)
        assert not isinstance(getattr(TimerConfig, name), property)
    assert (config.timer_d(False), config.timer_j(False), config.timer_k(False)) == (
        32.0,
        16.0,
        4.0,
    )
    assert config.timer_k(True) == 0.0
    # Not arguments; left out of repr and comparisons; frozen.
    assert repr(config) == "TimerConfig(t1=0.25, t2=2.0, t4=4.0)"
    assert config == TimerConfig(t1=0.25, t2=2.0, t4=4.0) != TimerConfig()
    with pytest.raises(TypeError):
        TimerConfig(timer_f=1.0)  # type: ignore[call-arg]
    with pytest.raises(AttributeError):
        config.timer_f = 1.0  # type: ignore[misc]


class _CountedBytes(bytes):
    lengths = 0

    def __len__(self) -> int:
        _CountedBytes.lengths += 1
        return super().__len__()


def test_a_token_pool_reads_its_length_once_per_refill() -> None:
    drawn: list[int] = []

    def random_bytes(n: int) -> bytes:
        drawn.append(n)
        return _CountedBytes(bytes(range(n)))

    _CountedBytes.lengths = 0
    pool = TokenPool(random_bytes, pool_size=64)
    tokens = [pool(10) for _ in range(12)]  # 120 bytes: two refills
    assert drawn == [64, 64]
    assert _CountedBytes.lengths <= 2  # one per refill (one per token before)
    assert tokens[0] == bytes(range(10)).hex() and tokens[1] == bytes(range(10, 20)).hex()
    assert tokens[6] == bytes(range(10)).hex()  # the second pool (six tokens fit in 64)
    assert len(set(tokens[:6])) == 6


async def test_the_contacts_kept_for_retries_are_trimmed_in_batches(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    trims = 0  # requests after which some Contact kept before was dropped
    most = 0
    async with (
        sipx.AsyncClient("127.0.0.1", 5060, network=network) as client,
        network.socket(PEER) as peer,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(answer_all, peer)
        uri = f"sip:uas@{PEER[0]}:{PEER[1]}"
        call_ids = []
        kept = client._next_hop.generated_contacts
        for _ in range(1100):
            before = set(kept)
            response = await client.options(uri)
            call_ids.append(response.call_id)
            trims += not before <= kept.keys()
            most = max(most, len(kept))
            # the last 256 requests' Contacts are always there (what a retry looks up)
            assert all(call_id in kept for call_id in call_ids[-256:])
        network.clear_log()
        nursery.cancel_scope.cancel()
    assert trims <= 3  # in batches (one Contact dropped after every request on the parent)
    assert most <= 512
