"""The client request path's cheaper structures, pinned by behaviour (issue 14, third pass).

* :class:`~sipx._core.request_template.RequestTemplate`: a request made from a template has
  exactly the fields and bytes :func:`~sipx._core.builder.build_request` gives for the same
  inputs, and an AsyncClient puts the same bytes on the wire whether its Request-URI came as
  text (template path) or as a URI (general path); the template is made once per target.
* :class:`~sipx._trio.waiter.ResponseWaiter`: the one-reader queue that replaced a memory
  channel per client transaction (order, wake-up, cancellation).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

import sipx
from sipx._core import request_template
from sipx._core.builder import build_request
from sipx._core.header_types import NameAddr
from sipx._core.message import Response
from sipx._core.request_template import RequestTemplate, RequestTemplates
from sipx._core.uri import URI
from sipx._trio.waiter import ResponseWaiter
from sipx.testing import MemoryNetwork, ScriptedUAS

UAS = ("127.0.0.1", 5080)

CASES = [
    ("OPTIONS", "sip:uas@127.0.0.1:5999", "<sip:sipx@127.0.0.1:5999>", "<sip:uas@127.0.0.1:5999>"),
    ("options", "sips:bob@example.com;transport=tcp", '"Al" <sip:al@ex.com>;x=1', "<sips:bob@x>"),
    ("MESSAGE", "sip:[::1]:5070;lr", "<sip:me@[::1]>;tag=old;y", "Bob <sip:bob@[::1]>"),
    ("REGISTER", "sip:registrar.example.com", "<sip:alice@example.com>", "<sip:a@example.com>"),
]


@pytest.mark.parametrize(("method", "uri", "from_text", "to_text"), CASES)
@pytest.mark.parametrize("user_agent", ["sipx/0.1.0", None])
def test_a_template_request_is_what_the_builder_gives(
    method: str, uri: str, from_text: str, to_text: str, user_agent: str | None
) -> None:
    template = RequestTemplate(
        method, URI.parse(uri), from_addr=NameAddr.parse(from_text), to_addr=to_text,
        user_agent=user_agent,
    )  # fmt: skip
    for call_id, tag in [("c1", "t1"), ("a84b4c76e66710", "1928301774")]:
        made = template.request(call_id, tag)
        from_addr = NameAddr.parse(from_text)
        from_addr.params["tag"] = tag
        built = build_request(
            method,
            URI.parse(uri),
            from_addr=from_addr,
            to_addr=to_text,
            call_id=call_id,
            cseq=1,
            headers={},
            content=b"",
            user_agent=user_agent,
        )
        assert made.to_bytes() == built.to_bytes()
        assert made.headers.entries == built.headers.entries
        assert made.headers.lookup() == built.headers.lookup()  # the index it came with
        assert (made.method, str(made.uri)) == (built.method, str(built.uri))
        assert made.from_.tag == tag and made.call_id == call_id and made.cseq.seq == 1


def test_template_requests_share_no_field_list() -> None:
    template = RequestTemplate(
        "OPTIONS", URI.parse("sip:b@h"), from_addr=NameAddr.parse("<sip:a@h>"),
        to_addr="<sip:b@h>", user_agent=None,
    )  # fmt: skip
    first, second = template.request("1", "a"), template.request("2", "b")
    first.headers.prepend("Via", "SIP/2.0/UDP h;branch=z9hG4bK1")
    first.headers["Contact"] = "<sip:a@h>"
    assert "Via" not in second.headers and "Contact" not in second.headers
    assert (second.call_id, second.from_.tag) == ("2", "b")


def test_the_template_store_keeps_the_latest_few() -> None:
    templates = RequestTemplates(limit=2)
    for key in "abc":
        templates.put(key, None)
    assert len(templates) == 2 and "a" not in templates and "c" in templates


def counting_tokens() -> Callable[[int], str]:
    """A deterministic ``id_token``: each call the next number, as hex of the size asked."""
    numbers = itertools.count(1)
    return lambda nbytes: f"{next(numbers):0{2 * nbytes}x}"


async def wire_of(send: Callable[[sipx.AsyncClient, str], Any], method: str) -> list[bytes]:
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, UAS) as uas,
        sipx.AsyncClient("127.0.0.1", 5060, network=network, id_token=counting_tokens()) as client,
    ):
        await send(client, uas.uri)
        await send(client, uas.uri)
    start = f"{method} ".encode()
    return [entry.data for entry in network.log if entry.data.startswith(start)]


@pytest.mark.parametrize(
    ("method", "send"),
    [
        ("OPTIONS", lambda c, uri: c.options(uri)),
        ("MESSAGE", lambda c, uri: c.message(uri, "hi", content_type="text/x-note")),
        ("OPTIONS", lambda c, uri: c.options(uri, headers={"From": "<sip:x@y>", "X-A": "1"})),
        ("MESSAGE", lambda c, uri: c.request("MESSAGE", uri, body="v=0\r\n", from_uri="sip:f@g")),
    ],
)
async def test_the_wire_is_the_same_from_a_template_and_from_the_builder(
    autojump_clock: trio.testing.MockClock, method: str, send: Callable[..., Any]
) -> None:
    """A Request-URI given as text takes the template; as a URI object, the builder."""
    templated = await wire_of(send, method)
    built = await wire_of(lambda client, uri: send(client, URI.parse(uri)), method)
    assert len(templated) == 2 and templated == built
    assert templated[0] != templated[1]  # new Call-ID, tag and branch each time


async def test_a_template_is_made_once_per_target(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []

    def counting_build(method: str, uri: object, **kwargs: Any) -> Any:
        made.append(str(uri))
        return build_request(method, uri, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(request_template, "build_request", counting_build)
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, UAS) as uas,
        sipx.AsyncClient("127.0.0.1", 5060, network=network) as client,
    ):
        for _ in range(5):
            assert (await client.options(uas.uri)).status_code == 200
        other = uas.uri.replace("uas@", "other@") if "uas@" in uas.uri else uas.uri + ";x"
        assert (await client.options(other)).status_code == 200
        call_ids = {r.message.call_id for r in network.requests("OPTIONS")}
    assert made == [uas.uri, other]
    assert len(call_ids) == 6


# -- ResponseWaiter ------------------------------------------------------------------------------
def response(code: int) -> Response:
    return Response(code, "x")


async def test_the_waiter_hands_over_in_order() -> None:
    waiter = ResponseWaiter()
    first, second = response(100), response(200)
    waiter.send_nowait(first)
    waiter.send_nowait(second)
    assert len(waiter) == 2
    assert [await waiter.__anext__(), await waiter.__anext__()] == [first, second]
    assert len(waiter) == 0


async def test_the_waiter_wakes_its_reader() -> None:
    waiter = ResponseWaiter()
    got: list[object] = []

    async def read() -> None:
        async for item in waiter:
            got.append(item)
            if isinstance(item, Exception):
                return

    final = response(200)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        waiter.send_nowait(final)
        await trio.testing.wait_all_tasks_blocked()
        assert got == [final]
        error = sipx.TimeoutError("OPTIONS", "sip:x", 32.0)
        waiter.send_nowait(error)
    assert got == [final, error]


async def test_a_cancelled_reader_leaves_the_queue_for_the_next_read() -> None:
    waiter = ResponseWaiter()
    with trio.move_on_after(1) as scope:
        scope.cancel()
        await waiter.__anext__()
    assert scope.cancelled_caught
    later = response(200)
    waiter.send_nowait(later)  # nobody waits: queued, no task woken
    with trio.CancelScope() as scope:
        scope.cancel()
        await waiter.__anext__()  # a checkpoint even with an item queued
    assert scope.cancelled_caught and len(waiter) == 1
    assert await waiter.__anext__() is later
