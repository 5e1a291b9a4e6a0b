"""Subscriptions with the blocking Client: ``Client.subscribe()`` and ``Client.on_subscribe``
through the portal, two Clients on real loopback UDP. Every wait is bounded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import sipx
from sipx import BlockingIncomingSubscription, BlockingServerSubscription, Client

WAIT = 10.0


@pytest.fixture
def pair() -> Iterator[tuple[Client, Client]]:
    with Client("127.0.0.1", 0) as alice, Client("127.0.0.1", 0) as bob:
        yield alice, bob


def uri_of(client: Client, user: str) -> str:
    return f"sip:{user}@127.0.0.1:{client.local_address.port}"


def test_blocking_subscribe_notify_unsubscribe(pair: tuple[Client, Client]) -> None:
    alice, bob = pair
    served: list[BlockingServerSubscription] = []

    def handler(incoming: BlockingIncomingSubscription) -> None:
        assert incoming.event == "presence" and incoming.expires == 300
        document = sipx.Presence.build(incoming.uri, "open", note="here").to_xml()
        served.append(incoming.accept(body=document))

    bob.on_subscribe("presence", handler)
    sub = alice.subscribe(uri_of(bob, "bob"), "presence", expires=300)
    assert sub.response is not None and sub.response.status_code == 200
    notifications = sub.notifications(timeout=WAIT)
    first = next(notifications)
    assert first.presence is not None and first.presence.note == "here"
    [server_side] = served
    response = server_side.notify(sipx.Presence.build("sip:bob@x", "closed").to_xml())
    assert response is not None and response.status_code == 200
    second = next(notifications)
    assert second.presence is not None and second.presence.basic == "closed"
    assert sub.state == "active" and sub.last is second and sub.forks == []
    # read from this thread: the portal's clock
    assert sub.expires is not None and 0 < sub.expires <= 300 and server_side.expires > 0
    assert sub.event_header.package == "presence" and sub.forked_from is None
    sub.unsubscribe()
    assert (sub.state, sub.reason) == ("terminated", "timeout")
    assert [n.state for n in notifications] == ["terminated"]  # then the iteration ends
    assert server_side.wait_terminated(timeout=WAIT) == "timeout"


def test_blocking_notifier_terminates(pair: tuple[Client, Client]) -> None:
    alice, bob = pair
    served: list[BlockingServerSubscription] = []
    bob.on_subscribe("message-summary", lambda incoming: served.append(incoming.accept()))
    sub = alice.subscribe(uri_of(bob, "alice"), "message-summary")
    assert [n.state for n in sub.notifications(timeout=0.5)] == ["active"]  # then a timeout
    served[0].terminate("noresource", body="Messages-Waiting: no\r\n")
    assert sub.wait_terminated(timeout=WAIT) == "noresource"
    [last] = list(sub)
    assert last.summary is not None and not last.summary.waiting


def test_blocking_refused(pair: tuple[Client, Client]) -> None:
    alice, bob = pair
    bob.on_subscribe("presence", lambda incoming: incoming.reject(603))
    sub = alice.subscribe(uri_of(bob, "bob"), "presence")
    assert sub.response is not None and sub.response.status_code == 603
    assert sub.terminated and list(sub.notifications(timeout=WAIT)) == []


def test_blocking_publish_modify_remove(pair: tuple[Client, Client]) -> None:
    """``Client.publish()``: the PUBLISHes a compositor (bob's PUBLISH handler) sees."""
    alice, bob = pair
    seen: list[tuple[str | None, str | None, bytes]] = []  # If-Match, Expires, body

    def compositor(incoming: sipx.IncomingRequest) -> None:
        h = incoming.request.headers
        seen.append((h.get_first("SIP-If-Match"), h.get_first("Expires"), incoming.request.content))
        incoming.respond(200, headers={"SIP-ETag": f"e{len(seen)}", "Expires": "300"})

    bob.on_request("PUBLISH", compositor)
    document = sipx.Presence.build("sip:alice@x", "open").to_xml()
    pub = alice.publish(uri_of(bob, "alice"), "presence", document, expires=600)
    assert pub.etag == "e1" and pub.active and pub.expires is not None and pub.expires <= 300
    assert [p.etag for p in alice.publications] == ["e1"]
    assert pub.modify("closed", "text/plain").status_code == 200 and pub.etag == "e2"
    assert pub.refresh().status_code == 200 and pub.etag == "e3"
    removed = pub.remove()
    assert removed is not None and removed.status_code == 200
    assert not pub.active and pub.removed and alice.publications == []
    assert seen == [
        (None, "600", document.encode()),
        ("e1", "600", b"closed"),
        ("e2", "600", b""),
        ("e3", "0", b""),
    ]


def test_blocking_watch_renews_after_deactivated(pair: tuple[Client, Client]) -> None:
    alice, bob = pair
    served: list[BlockingServerSubscription] = []
    bob.on_subscribe("presence", lambda incoming: served.append(incoming.accept()))
    with alice.watch(uri_of(bob, "bob"), "presence", expires=300) as watch:
        notifications = watch.notifications(timeout=WAIT)
        assert next(notifications).state == "active"
        served[0].terminate("deactivated")
        assert [next(notifications).state, next(notifications).state] == ["terminated", "active"]
        assert watch.renewals == 1 and watch.active and len(served) == 2
        assert watch.subscription is not None and watch.subscription.state == "active"
    assert watch.closed and served[1].wait_terminated(timeout=WAIT) == "timeout"
