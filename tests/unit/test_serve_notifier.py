"""``sipx serve``'s subscriptions: message-summary counts and presence of registered users.

Sans-I/O first (the proxy with its EventNotifier, explicit ``now``: what goes out, when),
then end to end: a DevServer on loopback and AsyncClients subscribing through it.
"""

from __future__ import annotations

import argparse

import pytest
import trio
from test_serve_proxy import (
    CALLEE_UDP,
    CALLER,
    HOST,
    PORT,
    SECRET,
    SERVER,
    authorized,
    build,
    register,
    send,
)

import sipx
from sipx._core.ids import IdSource, counter_token
from sipx._core.message import Request, Response
from sipx._core.mwi import MessageCounts, MessageSummary
from sipx._core.pidf import Presence
from sipx._core.transaction import make_response
from sipx._serve import DevServer
from sipx._serve.auth import DigestAuthenticator
from sipx._serve.cli import build_parser, parse_mwi
from sipx._serve.common import Outgoing, ServerIdentity
from sipx._serve.notifier import BRANCH_PREFIX, EventNotifier
from sipx._serve.proxy import Proxy
from sipx._serve.registrar import Registrar

SUBSCRIBER = f"sip:1111@{CALLER[0]}:{CALLER[1]}"


@pytest.fixture
def proxy() -> Proxy:
    identity = ServerIdentity(HOST, PORT)
    auth = DigestAuthenticator(None, secret=SECRET)
    registrar = Registrar()
    holder: list[Proxy] = []
    notifier = EventNotifier(
        identity,
        registrar=registrar,
        users=auth.users,
        ids=IdSource(counter_token()),
        route=lambda uri: holder[0].next_hop(uri),
        mwi={"1111": MessageCounts(2, 8)},
    )
    proxy = Proxy(
        identity, registrar=registrar, authenticator=auth, secret=SECRET, notifier=notifier
    )
    holder.append(proxy)
    return proxy


def notifier_of(proxy: Proxy) -> EventNotifier:
    assert proxy.notifier is not None
    return proxy.notifier


def subscribe(
    proxy: Proxy,
    user: str,
    event: str,
    *,
    expires: int | None = 3600,
    now: float = 0.0,
    call_id: str = "sub-1",
) -> tuple[Response, Request]:
    """An authorized SUBSCRIBE from 1111 to ``user``: (its 200, the first NOTIFY)."""
    extra = [f"Event: {event}", f"Contact: <{SUBSCRIBER}>"]
    if expires is not None:
        extra.append(f"Expires: {expires}")
    request = build(
        "SUBSCRIBE",
        f"sip:{user}@{SERVER}",
        call_id=call_id,
        branch=f"z9hG4bK{call_id}",
        extra=tuple(extra),
    )
    out = send(proxy, authorized(proxy, request), now=now)
    response, notify = (o.message for o in out)
    assert isinstance(response, Response) and isinstance(notify, Request)
    assert [o.address for o in out] == [CALLER, CALLER]
    return response, notify


def in_dialog(
    response: Response, method: str = "SUBSCRIBE", *, cseq: int, extra: tuple[str, ...] = ()
) -> Request:
    return build(
        method,
        str(response.contact[0].uri),
        to=str(response.to).split(";tag=")[0],
        to_tag=response.to.tag,
        call_id=response.call_id,
        cseq=cseq,
        branch=f"z9hG4bKin{cseq}",
        extra=extra,
    )


def answer(proxy: Proxy, notify: Request, code: int = 200, now: float = 0.0) -> list[Outgoing]:
    return send(proxy, make_response(notify, code), now=now, source=CALLER)


def notifies(out: list[Outgoing]) -> list[Request]:
    found = [o.message for o in out if isinstance(o.message, Request)]
    return [m for m in found if m.method == "NOTIFY"]


def test_message_summary_subscription(proxy: Proxy) -> None:
    response, notify = subscribe(proxy, "1111", "message-summary")
    assert response.status_code == 200 and response.to.tag
    assert response.headers["Expires"] == "3600"
    assert str(response.contact[0].uri) == f"sip:1111@{SERVER}"
    assert str(notify.uri) == SUBSCRIBER
    assert notify.top_via.branch is not None and notify.top_via.branch.startswith(BRANCH_PREFIX)
    assert notify.headers["Event"] == "message-summary"
    assert notify.headers["Subscription-State"] == "active;expires=3600"
    assert notify.headers["Content-Type"] == "application/simple-message-summary"
    assert (notify.from_.tag, notify.to.tag) == (response.to.tag, "caller-tag")
    summary = MessageSummary.parse(notify.content)
    assert (summary.waiting, summary.new, summary.old) == (True, 2, 8)
    assert summary.account == f"sip:1111@{SERVER}"
    assert answer(proxy, notify) == []  # the 200 is absorbed by the notifier


def test_new_counts_are_notified_one_notify_at_a_time(proxy: Proxy) -> None:
    notifier = notifier_of(proxy)
    _, first = subscribe(proxy, "1111", "message-summary")
    # the first NOTIFY is not answered yet: the change waits for its response
    assert notifier.set_message_summary("1111", MessageCounts(3, 8), 1.0) == []
    assert notifier.set_message_summary("1111", MessageCounts(0, 11), 2.0) == []
    [second] = notifies(answer(proxy, first, now=3.0))
    assert second.cseq.seq == first.cseq.seq + 1
    summary = MessageSummary.parse(second.content)  # the state of the moment it is sent
    assert (summary.waiting, summary.new, summary.old) == (False, 0, 11)
    assert answer(proxy, second) == []
    [third] = notifies(notifier.set_message_summary("1111", MessageCounts(1, 11), 4.0))
    assert MessageSummary.parse(third.content).new == 1
    # other users' counts do not concern this subscription
    assert notifier.set_message_summary("2222", MessageCounts(5, 0), 5.0) == []


def test_presence_follows_registration(proxy: Proxy) -> None:
    notifier = notifier_of(proxy)
    _, first = subscribe(proxy, "2222", "presence")
    assert first.headers["Content-Type"] == "application/pidf+xml"
    presence = Presence.parse(first.content)
    assert (presence.entity, presence.basic, presence.note) == (
        f"sip:2222@{SERVER}",
        "closed",
        "not registered",
    )
    answer(proxy, first)
    request = build(
        "REGISTER",
        f"sip:{SERVER}",
        from_user="2222",
        to=f"<sip:2222@{SERVER}>",
        extra=("Contact: <sip:2222@127.0.0.1:5090>", "Expires: 60"),
        call_id="reg-2222",
    )
    out = send(proxy, authorized(proxy, request, user="2222"), now=10.0, source=CALLEE_UDP)
    assert isinstance(out[0].message, Response) and out[0].message.status_code == 200
    [opened] = notifies(out)
    assert Presence.parse(opened.content).open
    answer(proxy, opened, now=10.0)
    # the binding runs out at 70 s: the watcher hears of it then
    assert notifies(proxy.handle_timers(69.9)) == []  # (the NOTIFY's Timer K fired)
    assert notifier.next_deadline() == 70.0
    [closed] = notifies(proxy.handle_timers(70.0))
    assert Presence.parse(closed.content).basic == "closed"


def test_refresh_expiry_and_unsubscribe(proxy: Proxy) -> None:
    notifier = notifier_of(proxy)
    response, first = subscribe(proxy, "1111", "message-summary", expires=60)
    answer(proxy, first)
    refresh = in_dialog(response, cseq=2, extra=("Event: message-summary", "Expires: 120"))
    out = send(proxy, refresh, now=30.0)
    ok, notify = (o.message for o in out)
    assert isinstance(ok, Response) and ok.status_code == 200 and ok.headers["Expires"] == "120"
    assert isinstance(notify, Request)
    assert notify.headers["Subscription-State"] == "active;expires=120"
    answer(proxy, notify, now=30.0)
    assert notifies(proxy.handle_timers(149.9)) == []
    assert notifier.next_deadline() == 150.0
    [ended] = notifies(proxy.handle_timers(150.0))
    assert ended.headers["Subscription-State"] == "terminated;reason=timeout"
    answer(proxy, ended, now=150.0)
    assert notifier.subscriptions == []
    late = in_dialog(response, cseq=3, extra=("Event: message-summary", "Expires: 120"))
    [gone] = send(proxy, late, now=151.0)
    assert isinstance(gone.message, Response) and gone.message.status_code == 404

    # a second subscription, ended by the subscriber
    response, first = subscribe(proxy, "1111", "message-summary", call_id="sub-2")
    answer(proxy, first)
    out = send(proxy, in_dialog(response, cseq=2, extra=("Event: message-summary", "Expires: 0")))
    ok, last = (o.message for o in out)
    assert isinstance(ok, Response) and ok.headers["Expires"] == "0"
    assert isinstance(last, Request)
    assert last.headers["Subscription-State"] == "terminated;reason=timeout"
    assert MessageSummary.parse(last.content).new == 2  # the state, one last time
    answer(proxy, last)
    assert notifier.subscriptions == []


def test_a_subscriber_that_is_gone(proxy: Proxy) -> None:
    """A NOTIFY answered 481, or never answered, ends the subscription."""
    notifier = notifier_of(proxy)
    _, first = subscribe(proxy, "1111", "message-summary")
    assert answer(proxy, first, 481) == []
    assert notifier.subscriptions == []
    assert notifier.set_message_summary("1111", MessageCounts(1, 0), 1.0) == []

    _, first = subscribe(proxy, "1111", "message-summary", call_id="sub-2", now=10.0)
    sent = [first]
    now = 10.0
    while notifier.subscriptions:
        deadline = notifier.next_deadline()
        assert deadline is not None and deadline < 100.0
        now = deadline
        sent += notifies(proxy.handle_timers(now))
    assert now == pytest.approx(10.0 + 64 * 0.5)  # Timer F
    assert len(sent) > 3 and {n.cseq.seq for n in sent} == {first.cseq.seq}


def test_what_the_notifier_does_not_take(proxy: Proxy) -> None:
    request = build(
        "SUBSCRIBE",
        f"sip:9999@{SERVER}",
        extra=("Event: presence", f"Contact: <{SUBSCRIBER}>"),
    )
    [out] = send(proxy, authorized(proxy, request))
    assert isinstance(out.message, Response) and out.message.status_code == 404
    # another package: an ordinary request for the user (not registered: 480)
    request = build(
        "SUBSCRIBE",
        f"sip:2222@{SERVER}",
        call_id="d",
        extra=("Event: dialog", f"Contact: <{SUBSCRIBER}>"),
    )
    [out] = send(proxy, authorized(proxy, request))
    assert isinstance(out.message, Response) and out.message.status_code == 480
    register(proxy, "2222", "sip:2222@127.0.0.1:5090")
    [out] = send(proxy, authorized(proxy, request))
    assert isinstance(out.message, Request) and out.address == CALLEE_UDP  # forwarded
    # a SUBSCRIBE without Contact
    request = build("SUBSCRIBE", f"sip:1111@{SERVER}", call_id="e", extra=("Event: presence",))
    [out] = send(proxy, authorized(proxy, request))
    assert isinstance(out.message, Response) and out.message.status_code == 400
    options = build("OPTIONS", f"sip:{SERVER}", call_id="o")
    [out] = send(proxy, options)
    assert isinstance(out.message, Response)
    assert out.message.headers["Allow-Events"] == "message-summary, presence"


def test_subscriptions_are_bounded(proxy: Proxy) -> None:
    notifier = notifier_of(proxy)
    notifier.max_subscriptions = 3
    for n in range(5):
        subscribe(proxy, "1111", "presence", call_id=f"many-{n}")
    assert [w.dialog.call_id for w in notifier.subscriptions] == ["many-2", "many-3", "many-4"]


def test_mwi_command_line() -> None:
    assert parse_mwi("1111=2/8") == ("1111", (2, 8))
    assert parse_mwi("2222=3") == ("2222", (3, 0))
    for bad in ("1111", "=2/8", "1111=two", "1111=-1/2", "1111=2/8/9"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_mwi(bad)
    args = build_parser().parse_args(["--mwi", "1111=2/8", "--mwi", "3333=0/4"])
    assert dict(args.mwi) == {"1111": (2, 8), "3333": (0, 4)}
    with pytest.raises(ValueError, match="new, old"):
        DevServer("127.0.0.1", 0, mwi={"1111": 5})  # type: ignore[dict-item]


# -- end to end --------------------------------------------------------------------------------
async def test_dev_server_serves_mwi_and_presence() -> None:
    """Alice (1111) watches her voicemail and Bob's (2222) presence through a DevServer on
    loopback UDP: counts from ``mwi=`` and ``set_message_summary``; Bob registers and
    unregisters."""
    async with DevServer("127.0.0.1", 0, mwi={"1111": (2, 8)}) as server:
        host, port = server.address
        async with (
            sipx.AsyncClient("127.0.0.1", 0, auth=sipx.Auth.Digest("1111", "1111xxx")) as alice,
            sipx.AsyncClient("127.0.0.1", 0, auth=sipx.Auth.Digest("2222", "2222xxx")) as bob,
        ):
            with trio.fail_after(10):
                mwi = await alice.subscribe(f"sip:1111@{host}:{port}", "message-summary")
                assert mwi.response is not None and mwi.response.status_code == 200
                assert [r.status_code for r in mwi.response.history] == [407]
                first = await anext(mwi)
                assert first.summary is not None
                assert (first.summary.new, first.summary.old) == (2, 8)
                server.set_message_summary("1111", 0, 10)
                second = await anext(mwi)
                assert second.summary is not None and not second.summary.waiting

                watch = await alice.subscribe(f"sip:2222@{host}:{port}", "presence")
                states = []
                states.append((await anext(watch)).presence)
                await bob.register(f"sip:2222@{host}:{port}", expires=60)
                states.append((await anext(watch)).presence)
                await bob.unregister(f"sip:2222@{host}:{port}")
                states.append((await anext(watch)).presence)
                assert [p.basic if p else None for p in states] == ["closed", "open", "closed"]
                await watch.unsubscribe()
                assert (watch.state, watch.reason) == ("terminated", "timeout")
            notifier = server.notifier
            assert notifier is not None and len(notifier.subscriptions) == 1
        assert notifier.subscriptions == []  # alice unsubscribed on close


def test_an_unsubscribe_while_a_notify_is_on_its_way(proxy: Proxy) -> None:
    """The subscriber's SUBSCRIBE Expires: 0 overtakes the 200 to a NOTIFY (two TCP
    connections, say): the final NOTIFY goes out once that 200 is in."""
    notifier = notifier_of(proxy)
    response, first = subscribe(proxy, "1111", "message-summary")
    answer(proxy, first)
    [update] = notifies(notifier.set_message_summary("1111", MessageCounts(0, 10), 1.0))
    out = send(proxy, in_dialog(response, cseq=2, extra=("Event: message-summary", "Expires: 0")))
    assert [o.message.status_code for o in out if isinstance(o.message, Response)] == [200]
    assert notifies(out) == []  # it waits for the update's response
    [last] = notifies(answer(proxy, update, now=2.0))
    assert last.headers["Subscription-State"] == "terminated;reason=timeout"
    assert notifier.subscriptions != []
    assert answer(proxy, last, now=2.0) == []
    assert notifier.subscriptions == []


# -- presence publications (RFC 3903) ---------------------------------------------------------
def publish(
    proxy: Proxy,
    user: str,
    *,
    body: str = "",
    etag: str | None = None,
    expires: int | None = None,
    now: float = 0.0,
    content_type: str = "application/pidf+xml",
    call_id: str = "pub-1",
) -> tuple[Response, list[Request]]:
    """An authorized PUBLISH of presence by ``user`` for itself: (its response, NOTIFYs)."""
    extra = ["Event: presence"]
    if etag is not None:
        extra.append(f"SIP-If-Match: {etag}")
    if expires is not None:
        extra.append(f"Expires: {expires}")
    request = build(
        "PUBLISH",
        f"sip:{user}@{SERVER}",
        from_user=user,
        call_id=call_id,
        branch=f"z9hG4bK{call_id}",
        extra=tuple(extra),
        body=body,
    )
    if body:  # build() says application/sdp
        request.headers["Content-Type"] = content_type
    out = send(proxy, authorized(proxy, request, user=user, now=now), now=now)
    [response] = [o.message for o in out if isinstance(o.message, Response)]
    return response, notifies(out)


def pidf(basic: str, note: str) -> str:
    return Presence.build(f"sip:2222@{SERVER}", basic, note=note).to_xml()


def test_published_presence_is_what_watchers_see(proxy: Proxy) -> None:
    """2222 publishes (open, then a modification), refreshes, and its publication runs out:
    the watcher sees each published document, then the registration-based one again."""
    notifier = notifier_of(proxy)
    _, first = subscribe(proxy, "2222", "presence")
    assert Presence.parse(first.content).note == "not registered"
    answer(proxy, first)
    response, [opened] = publish(proxy, "2222", body=pidf("open", "lunch"), expires=60)
    assert response.status_code == 200 and response.headers["Expires"] == "60"
    etag = response.headers["SIP-ETag"]
    assert Presence.parse(opened.content).note == "lunch"
    answer(proxy, opened)
    modified, [changed] = publish(
        proxy, "2222", body=pidf("closed", "away"), etag=etag, now=10.0, call_id="pub-2"
    )
    assert modified.status_code == 200 and modified.headers["SIP-ETag"] != etag
    assert (Presence.parse(changed.content).basic, Presence.parse(changed.content).note) == (
        "closed",
        "away",
    )
    answer(proxy, changed, now=10.0)
    # a refresh (no body) keeps the document: no NOTIFY; the old tag is gone (412)
    refreshed, quiet = publish(
        proxy, "2222", etag=modified.headers["SIP-ETag"], expires=30, now=20.0, call_id="pub-3"
    )
    assert refreshed.status_code == 200 and quiet == []
    stale, _ = publish(proxy, "2222", etag=etag, now=21.0, call_id="pub-4")
    assert stale.status_code == 412
    # the refreshed publication runs out at 50 s: back to "not registered"
    assert notifies(proxy.handle_timers(49.9)) == []  # (the NOTIFYs' Timer K fired)
    assert notifier.next_deadline() == 50.0
    [lapsed] = notifies(proxy.handle_timers(50.0))
    assert Presence.parse(lapsed.content).note == "not registered"


def test_publications_removed_and_refused(proxy: Proxy) -> None:
    response, _ = publish(proxy, "2222", body=pidf("open", "here"))
    etag = response.headers["SIP-ETag"]
    _, first = subscribe(proxy, "2222", "presence", now=1.0)
    assert Presence.parse(first.content).note == "here"
    answer(proxy, first, now=1.0)
    removed, [after] = publish(proxy, "2222", etag=etag, expires=0, now=2.0, call_id="pub-2")
    assert removed.status_code == 200 and removed.headers["Expires"] == "0"
    assert "SIP-ETag" not in removed.headers
    assert Presence.parse(after.content).note == "not registered"
    # refused: no body, another user's state, another type, a broken document, no tag
    assert publish(proxy, "2222", call_id="p3")[0].status_code == 400
    assert publish(proxy, "2222", etag=etag, call_id="p4")[0].status_code == 412
    typed, _ = publish(proxy, "2222", body="hello", content_type="text/plain", call_id="p5")
    assert typed.status_code == 415 and typed.headers["Accept"] == "application/pidf+xml"
    assert publish(proxy, "2222", body="<presence", call_id="p6")[0].status_code == 400
    request = build(
        "PUBLISH",
        f"sip:2222@{SERVER}",
        from_user="1111",
        call_id="p7",
        branch="z9hG4bKp7",
        extra=("Event: presence",),
        body=pidf("open", "not mine"),
    )
    request.headers["Content-Type"] = "application/pidf+xml"
    out = send(proxy, authorized(proxy, request, user="1111"))
    [refused] = [o.message for o in out if isinstance(o.message, Response)]
    assert refused.status_code == 403


async def test_dev_server_keeps_published_presence() -> None:
    """``client.publish()`` against a DevServer on loopback: Bob (2222) publishes his
    presence, Alice (1111) watches it change and come back when he removes it."""
    async with DevServer("127.0.0.1", 0) as server:
        host, port = server.address
        bob_uri = f"sip:2222@{host}:{port}"
        async with (
            sipx.AsyncClient("127.0.0.1", 0, auth=sipx.Auth.Digest("1111", "1111xxx")) as alice,
            sipx.AsyncClient("127.0.0.1", 0, auth=sipx.Auth.Digest("2222", "2222xxx")) as bob,
        ):
            with trio.fail_after(10):
                watch = await alice.subscribe(bob_uri, "presence")
                notes = [(await anext(watch)).presence]
                pub = await bob.publish(bob_uri, "presence", pidf("open", "at my desk"))
                assert pub.response is not None and pub.response.status_code == 200
                assert [r.status_code for r in pub.response.history] == [407]
                notes.append((await anext(watch)).presence)
                await pub.modify(pidf("closed", "gone home"))
                notes.append((await anext(watch)).presence)
                await pub.remove()
                notes.append((await anext(watch)).presence)
                assert [(p.basic, p.note) if p else None for p in notes] == [
                    ("closed", "not registered"),
                    ("open", "at my desk"),
                    ("closed", "gone home"),
                    ("closed", "not registered"),
                ]
                mine = await alice.publish(bob_uri, "presence", pidf("open", "not alice's"))
                assert mine.response is not None and mine.response.status_code == 403
                assert mine.etag is None


def test_the_compositor_keeps_a_bounded_number_per_user() -> None:
    from sipx._serve.compositor import MAX_PER_USER, PresenceCompositor

    compositor = PresenceCompositor()
    tags = []
    for n in range(MAX_PER_USER + 3):
        request = build(
            "PUBLISH",
            f"sip:2222@{SERVER}",
            from_user="2222",
            call_id=f"many-{n}",
            extra=("Event: presence",),
            body=pidf("open", f"n{n}"),
        )
        request.headers["Content-Type"] = "application/pidf+xml"
        answer = compositor.publish("2222", request, float(n))
        assert answer.status == 200
        tags.append(answer.headers["SIP-ETag"])
    document = compositor.document("2222", 100.0)
    assert document is not None and Presence.parse(document).note == f"n{MAX_PER_USER + 2}"
    refresh = build(
        "PUBLISH",
        f"sip:2222@{SERVER}",
        from_user="2222",
        call_id="old",
        extra=("Event: presence", f"SIP-If-Match: {tags[0]}"),
    )
    assert compositor.publish("2222", refresh, 101.0).status == 412  # the oldest was dropped
