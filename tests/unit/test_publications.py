"""Publications (RFC 3903) against an event state compositor on one MemoryNetwork, under
trio's autojump clock: what each PUBLISH carries, when refreshes go, and what a 412, a 423,
a refusal, a removal and a closing client do.

The compositor is an AsyncClient whose ``on_request("PUBLISH")`` handler keeps entity-tags
the way RFC 3903 6 describes (a new tag for every 2xx; 412 for an unknown SIP-If-Match).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

import sipx
from sipx import IncomingRequest, Presence, Request
from sipx.testing import MemoryNetwork

OPEN = Presence.build("sip:alice@example.com", "open").to_xml()
CLOSED = Presence.build("sip:alice@example.com", "closed").to_xml()


class Compositor:
    """An ESC: ``state`` maps entity-tag to (body, expiry) of what it holds."""

    def __init__(self, client: sipx.AsyncClient, *, max_expires: int = 3600) -> None:
        self.max_expires = max_expires
        self.min_expires: int | None = None
        self.refuse: int | None = None  # answer every PUBLISH with this status
        self.state: dict[str, bytes] = {}
        self.seen: list[Request] = []
        self.times: list[float] = []  # when each PUBLISH arrived
        self._tags = itertools.count(1)
        client.on_request("PUBLISH", self)

    def forget(self) -> None:
        """Lose every entity (a restart): the next conditional PUBLISH gets 412."""
        self.state.clear()

    def __call__(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        self.seen.append(request)
        self.times.append(round(trio.current_time(), 1))
        if self.refuse is not None:
            incoming.respond(self.refuse)
            return
        expires = int(request.headers.get_first("Expires") or "3600")
        if self.min_expires is not None and 0 < expires < self.min_expires:
            incoming.respond(423, headers={"Min-Expires": str(self.min_expires)})
            return
        match = request.headers.get_first("SIP-If-Match")
        if match is not None and match not in self.state:
            incoming.respond(412)
            return
        body = self.state.pop(match, b"") if match is not None else b""
        if request.content:
            body = request.content
        elif match is None:
            incoming.respond(400)  # an initial PUBLISH needs the state
            return
        if expires == 0:
            incoming.respond(200, headers={"Expires": "0"})
            return
        tag = f"etag{next(self._tags)}"
        self.state[tag] = body
        granted = min(expires, self.max_expires)
        incoming.respond(200, headers={"SIP-ETag": tag, "Expires": str(granted)})


@asynccontextmanager
async def pair(**kwargs: Any) -> AsyncIterator[tuple[sipx.AsyncClient, Compositor, str]]:
    network = MemoryNetwork()
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as esc_client,
        sipx.AsyncClient("127.0.0.1", 0, network=network) as alice,
    ):
        esc = Compositor(esc_client, **kwargs)
        address = esc_client.local_address
        yield alice, esc, f"sip:alice@{address.host}:{address.port}"


def headers_of(request: Request) -> tuple[str | None, str | None, str | None, bool]:
    h = request.headers
    return (
        h.get_first("Event"),
        h.get_first("Expires"),
        h.get_first("SIP-If-Match"),
        bool(request.content),
    )


async def test_publish_refresh_modify_remove(autojump_clock: trio.testing.MockClock) -> None:
    """Granted 120 s: refreshed every 88 s with SIP-If-Match and no body; a modification
    carries the new body; remove() sends Expires: 0 and leaves nothing at the ESC."""
    async with pair(max_expires=120) as (alice, esc, uri):
        pub = await alice.publish(uri, "presence", OPEN)
        assert pub.response is not None and pub.response.status_code == 200
        assert pub.etag == "etag1" and pub.active and pub.expires == 120
        assert pub.content_type == "application/pidf+xml"
        assert esc.seen[0].headers["Content-Type"] == "application/pidf+xml"
        await trio.sleep(200)
        assert pub.etag == "etag3" and list(esc.state) == ["etag3"]
        with pytest.raises(TypeError, match="body"):  # refused, nothing sent or changed
            await pub.modify(3)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="expires"):
            await pub.modify(CLOSED, expires=0)
        assert pub.content == OPEN.encode() and len(esc.seen) == 3
        response = await pub.modify(CLOSED)
        assert response.status_code == 200 and pub.etag == "etag4"
        assert esc.state == {"etag4": CLOSED.encode()}
        assert alice.publications == [pub]
        removed = await pub.remove()
        assert removed is not None and removed.status_code == 200
        assert not pub.active and pub.etag is None and esc.state == {}
        assert alice.publications == []
        assert await pub.remove() is None  # a second call does nothing
        with pytest.raises(sipx.ProtocolError):
            await pub.modify(OPEN)
        await trio.sleep(400)  # no refresh after removal
    assert [headers_of(r) for r in esc.seen] == [
        ("presence", "3600", None, True),
        ("presence", "3600", "etag1", False),  # at 88 s
        ("presence", "3600", "etag2", False),  # at 176 s
        ("presence", "3600", "etag3", True),  # modify
        ("presence", "0", "etag4", False),  # remove
    ]


async def test_a_lost_entity_is_published_again(autojump_clock: trio.testing.MockClock) -> None:
    """412 to a refresh: the whole state goes again without SIP-If-Match (RFC 3903 4.1)."""
    async with pair(max_expires=60) as (alice, esc, uri):
        pub = await alice.publish(uri, "presence", OPEN)
        esc.forget()
        await trio.sleep(31)
        assert pub.active and pub.etag == "etag2" and esc.state == {"etag2": OPEN.encode()}
        assert [headers_of(r) for r in esc.seen] == [
            ("presence", "3600", None, True),
            ("presence", "3600", "etag1", False),  # 412
            ("presence", "3600", None, True),
        ]
        esc.forget()
        response = await pub.modify(CLOSED)
        assert response.status_code == 200 and esc.state == {"etag3": CLOSED.encode()}


async def test_423_asks_for_a_longer_expiry(autojump_clock: trio.testing.MockClock) -> None:
    async with pair() as (alice, esc, uri):
        esc.min_expires = 600
        pub = await alice.publish(uri, "presence", OPEN, expires=60)
        assert pub.active and pub.requested == 600
        assert [r.headers["Expires"] for r in esc.seen] == ["60", "600"]


async def test_a_refused_publication_is_not_refreshed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with pair() as (alice, esc, uri):
        esc.refuse = 489
        pub = await alice.publish(uri, "presence", OPEN)
        assert pub.response is not None and pub.response.status_code == 489
        assert pub.etag is None and not pub.active and alice.publications == []
        await trio.sleep(4000)
        assert len(esc.seen) == 1


async def test_failed_refreshes_back_off_then_lapse(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """500 to every refresh: retried after 4, 8, 16 s while it lasts (at 30 s, half of
    the 60 granted, then 34, 42, 58); at 60 s it has lapsed and nothing more is sent."""
    async with pair(max_expires=60) as (alice, esc, uri):
        start = trio.current_time()
        pub = await alice.publish(uri, "presence", OPEN)
        esc.refuse = 500
        await trio.sleep(59)
        assert pub.active and pub.etag == "etag1"
        await trio.sleep(2)
        assert not pub.active and pub.etag is None and alice.publications == []
        await trio.sleep(600)
    assert [t - start for t in esc.times] == [0.0, 30.0, 34.0, 42.0, 58.0]
    assert [r.headers.get_first("SIP-If-Match") for r in esc.seen[1:]] == ["etag1"] * 4


async def test_closing_the_client_removes_its_publications(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with sipx.AsyncClient("127.0.0.1", 0, network=network) as esc_client:
        esc = Compositor(esc_client)
        address = esc_client.local_address
        uri = f"sip:alice@{address.host}:{address.port}"
        async with sipx.AsyncClient("127.0.0.1", 0, network=network) as alice:
            await alice.publish(uri, "presence", OPEN)
            await alice.publish(uri, "dialog", "<dialog-info/>", content_type="text/plain")
            assert len(esc.state) == 2
        assert esc.state == {}
        assert sorted(r.headers["Expires"] for r in esc.seen) == ["0", "0", "3600", "3600"]


async def test_bad_arguments_are_refused_before_sending() -> None:
    network = MemoryNetwork()
    async with sipx.AsyncClient("127.0.0.1", 0, network=network) as alice:
        with pytest.raises(ValueError, match="content_type"):
            await alice.publish("sip:a@127.0.0.1:5999", "my-package", "x")
        with pytest.raises(ValueError, match="expires"):
            await alice.publish("sip:a@127.0.0.1:5999", "presence", OPEN, expires=0)
        with pytest.raises(TypeError, match="body"):
            await alice.publish("sip:a@127.0.0.1:5999", "presence", 3)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="event"):
            await alice.publish("sip:a@127.0.0.1:5999", "bad event;", OPEN)
