"""Steps one ``client.options()`` no longer takes twice (issue 14, tenth pass).

* The transport toward the next hop is found once per request: ``send`` finds it with
  the literal next hop and hands it to :meth:`NextHop.stamp`, which returns the transport
  it wrote in the Via; :meth:`Engine.open_transaction` takes that one (no second look-up
  of the running transport, nor a read of the top Via).
* The usual request (no outbound proxy, not an INVITE, no timeout) makes no call to add a
  Route, to announce extensions or to build a deadline; the client transaction's key is
  made inline.

What goes on the wire and the event hooks' view stay as they were.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import sipx
from sipx import _engine, _next_hop, _uac
from sipx._core import transaction
from sipx.testing import MemoryNetwork, ScriptedUAS

UAS = ("127.0.0.1", 5080)


def count_calls(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[object]:
    """Wrap ``owner.name`` (a function or method) so that each call is counted."""
    calls: list[object] = []
    original = getattr(owner, name)

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counting)
    return calls


def forbid(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> None:
    """Make ``owner.name`` raise when called."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{name} called")

    monkeypatch.setattr(owner, name, refuse)


async def test_the_next_hops_transport_is_found_once_per_request(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, UAS) as uas,
        sipx.AsyncClient("127.0.0.1", 5060, network=network) as client,
    ):
        assert (await client.options(uas.uri)).status_code == 200  # templates, stamps made
        chosen = count_calls(monkeypatch, _next_hop.NextHop, "transport_for")
        looked_up = count_calls(monkeypatch, _engine.Engine, "require_transport")
        responses = [await client.options(uas.uri) for _ in range(3)]
        monkeypatch.undo()
    assert [r.status_code for r in responses] == [200] * 3
    assert len(chosen) == 3  # once per request (twice before: the hop, then the stamp)
    # send() (is it open?), stamp() and the response's received/rport: not transact() nor
    # open_transaction() (five per request before)
    assert len(looked_up) == 9
    sent = [e.data for e in network.log if e.data.startswith(b"OPTIONS ")]
    assert len(sent) == 4
    for data, response in zip(sent[1:], responses, strict=True):
        request = response.request
        assert request is not None and data == request.to_bytes()
        assert request.top_via.transport == "UDP" and request.top_via.rport is None
        assert b"\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK" in data
        assert b";rport\r\n" in data and b"\r\nContact: <sip:" in data


async def test_an_event_hook_still_sees_the_transport_of_the_request_it_gets(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[tuple[str, tuple[str, int] | None]] = []
    events = sipx.Events()

    def note(request: sipx.Request, context: sipx.RequestContext) -> sipx.Request:
        seen.append((context.transport, context.destination))
        return request

    events.on("request", note)

    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, UAS) as uas,
        sipx.AsyncClient("127.0.0.1", 5060, network=network, events=events) as client,
    ):
        responses = [await client.options(uas.uri) for _ in range(2)]
    assert [r.status_code for r in responses] == [200, 200]
    assert seen == [("UDP", UAS), ("UDP", UAS)]


async def test_the_usual_request_skips_the_route_extension_deadline_and_key_calls(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, UAS) as uas,
        sipx.AsyncClient("127.0.0.1", 5060, network=network) as client,
    ):
        assert (await client.options(uas.uri)).status_code == 200
        forbid(monkeypatch, _next_hop.NextHop, "add_outbound_route")
        forbid(monkeypatch, _uac.UserAgentClient, "_announce_extensions")
        forbid(monkeypatch, _uac, "fail_after")
        forbid(monkeypatch, transaction, "_client_key")
        responses = [await client.options(uas.uri) for _ in range(3)]
        # With a timeout, the deadline still bounds the request.
        timed = await client.options(uas.uri, timeout=5.0)
        monkeypatch.undo()
    assert [r.status_code for r in [*responses, timed]] == [200] * 4
    sent = [e.data for e in network.log if e.data.startswith(b"OPTIONS ")]
    assert len(sent) == 5 and not any(b"\r\nRoute:" in data for data in sent)
