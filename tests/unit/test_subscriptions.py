"""Subscriptions (RFC 6665) between AsyncClients, and against a scripted peer, on one
MemoryNetwork under trio's autojump clock: what goes on the wire, when, and what each side
sees.

Alice subscribes; Bob (an AsyncClient with ``on_subscribe``) or a ScriptedUAS notifies.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

import sipx
from sipx import (
    IncomingSubscription,
    MessageSummary,
    Notification,
    Presence,
    Request,
    ServerSubscription,
    Subscription,
)
from sipx.testing import MemoryNetwork, ScriptedUAS

Address = tuple[str, int]
UAS = ("127.0.0.1", 5080)
T1 = sipx.TimerConfig().t1


@asynccontextmanager
async def client_on(network: MemoryNetwork, **kwargs: Any) -> AsyncIterator[sipx.AsyncClient]:
    async with sipx.AsyncClient("127.0.0.1", 0, network=network, **kwargs) as client:
        yield client


def address_of(client: sipx.AsyncClient) -> Address:
    return (client.local_address.host, client.local_address.port)


def uri_of(client: sipx.AsyncClient, user: str) -> str:
    host, port = address_of(client)
    return f"sip:{user}@{host}:{port}"


class Notifier:
    """An ``on_subscribe`` handler that accepts with ``body`` and keeps what it served."""

    def __init__(
        self,
        client: sipx.AsyncClient,
        event: str,
        body: str | None = None,
        *,
        expires: int | None = None,
        state: str = "active",
    ) -> None:
        self.body, self.expires, self.state = body, expires, state
        self.incoming: list[IncomingSubscription] = []
        self.served: list[ServerSubscription] = []
        client.on_subscribe(event, self)

    def __call__(self, incoming: IncomingSubscription) -> None:
        self.incoming.append(incoming)
        self.served.append(incoming.accept(self.expires, body=self.body, state=self.state))


def requests(network: MemoryNetwork, method: str, **kwargs: Any) -> list[Request]:
    return [c.message for c in network.requests(method, **kwargs) if c.fate != "lost"]


def times(network: MemoryNetwork, method: str) -> list[float]:
    return [round(c.time, 3) for c in network.requests(method)]


async def next_of(sub: Subscription) -> Notification:
    with trio.fail_after(120):
        return await anext(sub)


MWI_2_8 = MessageSummary.voice(2, 8).to_text()


# -- the basic exchange --------------------------------------------------------------------------
async def test_subscribe_notify_and_update(autojump_clock: trio.testing.MockClock) -> None:
    """SUBSCRIBE (Event, Expires, the package's Accept) → 200 (Expires, Contact) → NOTIFY
    with the state (Event, Subscription-State, Content-Type) → 200; an update NOTIFYs again;
    the body is parsed for the application."""
    network = MemoryNetwork()
    async with client_on(network) as alice, client_on(network) as bob:
        notifier = Notifier(bob, "message-summary", MWI_2_8)
        sub = await alice.subscribe(uri_of(bob, "alice"), "message-summary", expires=600)
        assert sub.response is not None and sub.response.status_code == 200
        first = await next_of(sub)
        assert (first.state, first.expires, first.event) == ("active", 600, "message-summary")
        assert first.summary is not None and (first.summary.new, first.summary.old) == (2, 8)
        assert first.error is None and sub.state == "active" and sub.last is first
        [served] = notifier.served
        [incoming] = notifier.incoming
        assert (incoming.event, incoming.expires) == ("message-summary", 600)
        assert incoming.subscriber == f"sip:sipx@{address_of(bob)[0]}:{address_of(bob)[1]}"
        assert incoming.accept_types == ["application/simple-message-summary"]
        response = await served.notify(MessageSummary.voice(3, 8).to_text())
        assert response is not None and response.status_code == 200
        second = await next_of(sub)
        assert second.summary is not None and second.summary.new == 3
        assert served.state == "active" and served.subscriber.startswith("sip:sipx@")
    subscribe = requests(network, "SUBSCRIBE")[0]
    assert subscribe.headers["Event"] == "message-summary"
    assert subscribe.headers["Expires"] == "600"
    assert subscribe.headers["Accept"] == "application/simple-message-summary"
    ok = network.responses(200, method="SUBSCRIBE")[0].message
    assert ok.headers["Expires"] == "600" and ok.contact and ok.to.tag
    notify = requests(network, "NOTIFY")[0]
    assert notify.headers["Event"] == "message-summary"
    assert notify.headers["Subscription-State"] == "active;expires=600"
    assert notify.headers["Content-Type"] == "application/simple-message-summary"
    assert notify.contact and notify.from_.tag == ok.to.tag
    assert notify.to.tag == subscribe.from_.tag and notify.call_id == subscribe.call_id


async def test_pending_then_active_presence(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with client_on(network) as alice, client_on(network) as bob:
        notifier = Notifier(bob, "presence", state="pending")
        sub = await alice.subscribe(uri_of(bob, "bob"), "presence")
        first = await next_of(sub)
        assert (first.state, first.body, sub.state) == ("pending", None, "pending")
        document = Presence.build(uri_of(bob, "bob"), "open", note="at my desk").to_xml()
        await notifier.served[0].notify(document, state="active")
        second = await next_of(sub)
        assert second.presence is not None and second.presence.open
        assert second.presence.note == "at my desk" and sub.active
        assert second.content_type == "application/pidf+xml"
    assert requests(network, "SUBSCRIBE")[0].headers["Accept"] == "application/pidf+xml"


# -- refresh and expiry --------------------------------------------------------------------------
async def test_refresh_before_expiry_from_the_granted_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Asked 3600 s, granted 120 s: refreshes (in the dialog, CSeq up, same Event and
    Accept) 32 s before each expiry, every 88 s; each refresh is followed by a NOTIFY."""
    network = MemoryNetwork()
    async with client_on(network) as alice, client_on(network) as bob:
        notifier = Notifier(bob, "message-summary", MWI_2_8, expires=120)
        sub = await alice.subscribe(uri_of(bob, "alice"), "message-summary")
        await next_of(sub)
        await trio.sleep(200)
        assert sub.state == "active" and sub.expires is not None and 0 < sub.expires <= 120
        assert notifier.served[0].expires > 0
    refreshes = [r for r in requests(network, "SUBSCRIBE") if r.headers["Expires"] == "3600"]
    assert times(network, "SUBSCRIBE")[:3] == [0.0, 88.0, 176.0]
    assert [r.cseq.seq for r in refreshes] == [1, 2, 3]
    assert all(r.to.tag and r.headers["Accept"] for r in refreshes[1:])
    # the first NOTIFY, one after each refresh, the last one after the unsubscribe on close
    assert times(network, "NOTIFY") == [0.0, 88.0, 176.0, 200.0]


async def test_the_notifier_shortens_the_expiry_in_its_notify(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The 2xx says 3600 but the first NOTIFY says ``expires=60``: the refresh comes at
    30 s (half of it), not at 2880 s."""
    network = MemoryNetwork()

    async def subscribe(request: Request) -> list[Any]:
        return [(200, {"Expires": "3600", "Contact": f"<sip:uas@{UAS[0]}:{UAS[1]}>"})]

    async with (
        ScriptedUAS(network, UAS, {"SUBSCRIBE": subscribe}) as uas,
        client_on(network) as alice,
    ):
        sub = await alice.subscribe(uas.uri, "presence")
        assert sub.response is not None
        await in_dialog_notify(uas, alice, sub, "active;expires=60", seq=1)
        await next_of(sub)
        await uas.wait_for("SUBSCRIBE", 2)
        assert trio.current_time() == pytest.approx(30.0, abs=0.01)


async def test_notifier_expires_a_subscription_not_refreshed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A subscriber that never refreshes (a scripted one): after the granted 60 s the
    notifier sends ``terminated;reason=timeout`` and forgets it (a late refresh gets 481)."""
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as bob:
        notifier = Notifier(bob, "presence", expires=60)
        response = await uas.request(
            "SUBSCRIBE",
            uri_of(bob, "bob"),
            to=address_of(bob),
            headers={"Event": "presence", "Expires": "600"},
        )
        assert response.status_code == 200 and response.headers["Expires"] == "60"
        [served] = notifier.served
        assert await served.wait_terminated() == "timeout"
        assert trio.current_time() == pytest.approx(60.0, abs=0.01)
        states = [n.headers["Subscription-State"] for n in uas.requests_for("NOTIFY")]
        assert states == ["active;expires=60", "terminated;reason=timeout"]
        late = await uas.request(
            "SUBSCRIBE",
            uri_of(bob, "bob"),
            to=address_of(bob),
            headers={
                "Event": "presence",
                "Call-ID": response.call_id,
                "From": str(response.from_),
                "To": str(response.to),
                "CSeq": "2 SUBSCRIBE",
            },
        )
        assert late.status_code == 481


async def test_refresh_failures_back_off_and_481_ends_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Refreshes answered 500 are retried after 4, 8, 16 s (while the subscription lasts);
    a 481 ends it: terminated, iteration over."""
    network = MemoryNetwork()
    answers = iter([200, 500, 500, 500, 481])

    def subscribe(request: Request) -> list[Any]:
        return [(next(answers), {"Expires": "100"})]

    async with (
        ScriptedUAS(network, UAS, {"SUBSCRIBE": subscribe}) as uas,
        client_on(network) as alice,
    ):
        sub = await alice.subscribe(uas.uri, "presence", expires=100)
        await in_dialog_notify(uas, alice, sub, "active;expires=100", seq=1)
        await next_of(sub)
        assert await sub.wait_terminated() is None
        assert [n async for n in sub] == []
    assert times(network, "SUBSCRIBE") == [0.0, 68.0, 72.0, 80.0, 96.0]


async def test_423_is_answered_with_min_expires(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    answers = itertools.chain(
        [(423, {"Min-Expires": "1800"}), (200, {"Expires": "1800"})],
        itertools.repeat((200, {"Expires": "0"})),
    )
    async with (
        ScriptedUAS(network, UAS, {"SUBSCRIBE": lambda request: [next(answers)]}) as uas,
        client_on(network) as alice,
    ):
        sub = await alice.subscribe(uas.uri, "message-summary", expires=60)
        assert sub.response is not None and sub.response.status_code == 200
        assert sub.state == "init" and not sub.terminated
    first, retry = requests(network, "SUBSCRIBE")[:2]
    assert (first.headers["Expires"], retry.headers["Expires"]) == ("60", "1800")
    assert (retry.cseq.seq, retry.call_id, retry.from_.tag) == (2, first.call_id, first.from_.tag)


async def test_timer_n_without_a_notify(autojump_clock: trio.testing.MockClock) -> None:
    """A 2xx but never a NOTIFY: after 64·T1 from the SUBSCRIBE the subscription is over."""
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as alice:
        sub = await alice.subscribe(uas.uri, "dialog")
        assert sub.state == "init"
        assert await sub.wait_terminated() == "timeout"
        assert trio.current_time() == pytest.approx(64 * T1, abs=0.01)


async def test_a_refused_subscribe(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, UAS, {"SUBSCRIBE": [(403,)]}) as uas,
        client_on(network) as alice,
    ):
        sub = await alice.subscribe(uas.uri, "presence")
        assert sub.response is not None and sub.response.status_code == 403
        assert sub.terminated and sub.reason is None
        assert [n async for n in sub] == []
    assert len(requests(network, "SUBSCRIBE")) == 1  # nothing to unsubscribe on close


# -- ending it -----------------------------------------------------------------------------------
async def test_unsubscribe(autojump_clock: trio.testing.MockClock) -> None:
    """SUBSCRIBE Expires: 0 → 200 → NOTIFY terminated;reason=timeout: both sides end; the
    iteration yields the last NOTIFY and stops."""
    network = MemoryNetwork()
    async with client_on(network) as alice, client_on(network) as bob:
        notifier = Notifier(bob, "message-summary", MWI_2_8)
        sub = await alice.subscribe(uri_of(bob, "alice"), "message-summary")
        seen: list[Notification] = []

        async def read() -> None:
            async for notification in sub:
                seen.append(notification)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await trio.sleep(1)
            await sub.unsubscribe()
        assert (sub.state, sub.reason) == ("terminated", "timeout")
        assert [n.state for n in seen] == ["active", "terminated"]
        assert seen[-1].summary is not None  # the final NOTIFY carries the state too
        assert notifier.served[0].terminated and notifier.served[0].reason == "timeout"
        await sub.unsubscribe()  # again: nothing happens
    assert [r.headers["Expires"] for r in requests(network, "SUBSCRIBE")] == ["3600", "0"]


async def test_notifier_terminates_with_a_reason(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with client_on(network) as alice, client_on(network) as bob:
        notifier = Notifier(bob, "presence")
        sub = await alice.subscribe(uri_of(bob, "bob"), "presence")
        await next_of(sub)
        await notifier.served[0].terminate("probation", retry_after=120)
        last = await next_of(sub)
        assert (last.state, last.reason, last.retry_after) == ("terminated", "probation", 120)
        assert (sub.state, sub.reason, sub.retry_after) == ("terminated", "probation", 120)
        with pytest.raises(sipx.ProtocolError):
            await notifier.served[0].notify("too late")
        with pytest.raises(ValueError, match="reason"):
            await notifier.served[0].terminate("bored")
    # nothing left to unsubscribe when the client closed
    assert len(requests(network, "SUBSCRIBE")) == 1


async def test_closing_the_subscriber_unsubscribes(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with client_on(network) as bob:
        notifier = Notifier(bob, "message-summary", MWI_2_8)
        async with client_on(network) as alice:
            sub = await alice.subscribe(uri_of(bob, "alice"), "message-summary")
            await next_of(sub)
        assert sub.terminated
        [served] = notifier.served
        assert await served.wait_terminated() == "timeout"
    assert [r.headers["Expires"] for r in requests(network, "SUBSCRIBE")] == ["3600", "0"]


async def test_closing_the_notifier_terminates_its_subscriptions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with client_on(network) as alice:
        async with client_on(network) as bob:
            Notifier(bob, "presence")
            sub = await alice.subscribe(uri_of(bob, "bob"), "presence")
            await next_of(sub)
        assert await sub.wait_terminated() == "noresource"
    assert len(requests(network, "SUBSCRIBE")) == 1


# -- NOTIFY before the 2xx, forks ---------------------------------------------------------------
async def in_dialog_notify(
    uas: ScriptedUAS,
    client: sipx.AsyncClient,
    sub: Subscription | Request,
    state: str,
    *,
    seq: int,
    tag: str | None = None,
    event: str | None = None,
    body: str = "",
    content_type: str = "application/pidf+xml",
    headers: Mapping[str, str] | None = None,
) -> sipx.Response:
    """A NOTIFY from the scripted notifier in the dialog of ``sub`` (its From tag ``tag``,
    by default the To tag of the 2xx that made the dialog)."""
    request = sub.request if isinstance(sub, Subscription) else sub
    if tag is None:
        dialog = sub.dialog if isinstance(sub, Subscription) else None
        tag = dialog.remote_tag if dialog is not None else "uas1"
    host, port = uas.address
    fields = {
        "From": f"<{uas.uri}>;tag={tag}",
        "To": str(request.from_),
        "Call-ID": request.call_id,
        "CSeq": f"{seq} NOTIFY",
        "Contact": f"<sip:{tag}@{host}:{port}>",
        "Event": event or request.headers["Event"],
        "Subscription-State": state,
        "Content-Type": content_type,
        **(headers or {}),
    }
    target = request.headers["Contact"].strip("<>")
    return await uas.request("NOTIFY", target, to=address_of(client), headers=fields, body=body)


async def test_notify_before_the_2xx_makes_the_dialog(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """RFC 6665 4.1.2.4: the NOTIFY overtakes the 200. It is accepted (200), creates the
    dialog (remote target: its Contact), and the 200 that follows joins it; refreshes go
    to the NOTIFY's Contact with the next CSeq."""
    network = MemoryNetwork()
    holder: list[sipx.AsyncClient] = []
    pidf = Presence.build("sip:uas@127.0.0.1", "open").to_xml()

    async def subscribe(request: Request) -> list[Any]:
        if request.to.tag:
            return [(200, {"Expires": "100"})]
        response = await in_dialog_notify(
            uas, holder[0], request, "active;expires=100", seq=1, body=pidf
        )
        assert response.status_code == 200
        return [(200, {"Expires": "100", "To": f"{request.headers['To']};tag=uas1"})]

    async with (
        ScriptedUAS(network, UAS, {"SUBSCRIBE": subscribe}) as uas,
        client_on(network) as alice,
    ):
        holder.append(alice)
        sub = await alice.subscribe(uas.uri, "presence", expires=100)
        assert sub.state == "active" and sub.dialog is not None
        assert sub.dialog.remote_tag == "uas1"
        assert str(sub.dialog.remote_target) == f"sip:uas1@{UAS[0]}:{UAS[1]}"
        first = await next_of(sub)
        assert first.presence is not None and first.presence.open
        assert sub.forks == []
        await uas.wait_for("SUBSCRIBE", 2)  # the refresh, at 68 s
        refresh = uas.requests_for("SUBSCRIBE")[1]
        assert str(refresh.uri) == f"sip:uas1@{UAS[0]}:{UAS[1]}"
        assert (refresh.to.tag, refresh.cseq.seq) == ("uas1", 2)


async def test_forked_subscribe_makes_one_subscription_per_dialog(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two notifiers answer one (forked) SUBSCRIBE: the 200 and NOTIFYs from dialog "a",
    NOTIFYs from dialog "b" too. ``sub`` is dialog "a"; ``sub.forks`` holds "b", with its
    own NOTIFYs, refreshes and state; unsubscribing ``sub`` ends both (two SUBSCRIBEs
    with Expires: 0, one per dialog)."""
    network = MemoryNetwork()
    holder: list[sipx.AsyncClient] = []
    seq = itertools.count(1)

    async def subscribe(request: Request) -> list[Any]:
        if request.to.tag:  # refreshes and unsubscribes of either dialog
            if request.headers["Expires"] == "0":
                await in_dialog_notify(
                    uas,
                    holder[0],
                    request,
                    "terminated;reason=timeout",
                    seq=next(seq),
                    tag=request.to.tag,
                    headers={"From": f"<{uas.uri}>;tag={request.to.tag}", "To": str(request.from_)},
                )
            return [(200, {"Expires": request.headers["Expires"]})]
        return [(200, {"Expires": "600", "To": f"{request.headers['To']};tag=a"})]

    async with (
        ScriptedUAS(network, UAS, {"SUBSCRIBE": subscribe}) as uas,
        client_on(network) as alice,
    ):
        holder.append(alice)
        sub = await alice.subscribe(uas.uri, "dialog", expires=600)
        assert sub.dialog is not None and sub.dialog.remote_tag == "a"
        for tag in ("a", "b"):
            response = await in_dialog_notify(
                uas,
                alice,
                sub,
                "active;expires=600",
                seq=next(seq),
                tag=tag,
                content_type="application/dialog-info+xml",
                body=sipx.DialogInfo.build(f"sip:{tag}@x", 0).to_xml(),
            )
            assert response.status_code == 200
        [fork] = sub.forks
        assert fork.dialog is not None and fork.dialog.remote_tag == "b"
        assert fork.forked_from is sub and fork.state == "active"
        ours, theirs = await next_of(sub), await next_of(fork)
        assert ours.dialogs is not None and ours.dialogs.entity == "sip:a@x"
        assert theirs.dialogs is not None and theirs.dialogs.entity == "sip:b@x"
        await sub.unsubscribe()
        assert sub.terminated and fork.terminated
    unsubscribes = [r for r in requests(network, "SUBSCRIBE") if r.headers["Expires"] == "0"]
    assert sorted(r.to.tag or "" for r in unsubscribes) == ["a", "b"]


# -- bad input -----------------------------------------------------------------------------------
async def test_489_for_a_package_nobody_serves(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as bob:
        target, to = uri_of(bob, "bob"), address_of(bob)
        # no on_subscribe handler at all: SUBSCRIBE is not supported (405, not in Allow)
        refused = await uas.request("SUBSCRIBE", target, to=to, headers={"Event": "presence"})
        assert refused.status_code == 405 and "SUBSCRIBE" not in refused.allow
        Notifier(bob, "presence")
        Notifier(bob, "message-summary")
        bad = await uas.request("SUBSCRIBE", target, to=to, headers={"Event": "dialog"})
        assert bad.status_code == 489
        assert bad.headers["Allow-Events"] == "message-summary, presence"
        no_event = await uas.request("SUBSCRIBE", target, to=to)
        assert no_event.status_code == 400
        options = await uas.request("OPTIONS", target, to=to)
        assert "SUBSCRIBE" in options.allow
        assert options.headers["Allow-Events"] == "message-summary, presence"
        bob.on_subscribe("presence", None)
        bob.on_subscribe("message-summary", None)
        again = await uas.request("SUBSCRIBE", target, to=to, headers={"Event": "presence"})
        assert again.status_code == 405


async def test_handler_can_reject_and_must_answer(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with client_on(network) as alice, client_on(network) as bob:

        async def handler(incoming: IncomingSubscription) -> None:
            if incoming.uri.startswith("sip:private@"):
                incoming.reject(403, "Not Shared")
            # else: forgets to answer

        bob.on_subscribe("presence", handler)
        refused = await alice.subscribe(uri_of(bob, "private"), "presence")
        forgotten = await alice.subscribe(uri_of(bob, "public"), "presence")
    assert refused.response is not None and refused.response.status_code == 403
    assert refused.response.reason_phrase == "Not Shared"
    assert forgotten.response is not None and forgotten.response.status_code == 500


async def test_notify_for_no_subscription_gets_481(autojump_clock: trio.testing.MockClock) -> None:
    """A NOTIFY whose To tag, Call-ID or Event matches no subscription: 481; a subscription's
    NOTIFY without a valid Subscription-State: 400, and the subscription is unchanged."""
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, UAS, {"SUBSCRIBE": [(200, {"Expires": "600"})]}) as uas,
        client_on(network) as alice,
    ):
        sub = await alice.subscribe(uas.uri, "presence")
        other = await in_dialog_notify(uas, alice, sub, "active", seq=1, event="dialog")
        assert other.status_code == 481
        stranger = await uas.request(
            "NOTIFY",
            uri_of(alice, "sipx"),
            to=address_of(alice),
            headers={
                "To": f"<{uri_of(alice, 'sipx')}>;tag=nobody",
                "Event": "presence",
                "Subscription-State": "active",
            },
        )
        assert stranger.status_code == 481
        bad_state = await in_dialog_notify(uas, alice, sub, "active;expires=soon", seq=2)
        assert bad_state.status_code == 400
        no_state = await in_dialog_notify(
            uas, alice, sub, "", seq=3, headers={"Subscription-State": ""}
        )
        assert no_state.status_code == 400
        assert sub.state == "init" and sub.last is None
        good = await in_dialog_notify(uas, alice, sub, "active;expires=600", seq=4)
        assert good.status_code == 200 and sub.state == "active"
        old = await in_dialog_notify(uas, alice, sub, "active;expires=600", seq=4)
        assert old.status_code == 500  # CSeq not above the last one


async def test_a_malformed_body_is_reported_not_raised(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE p [<!ENTITY a "aaaaaaaa">]>'
        '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:x@y">&a;</presence>'
    )
    async with client_on(network) as alice, client_on(network) as bob:
        notifier = Notifier(bob, "presence", "<presence entity='broken'")
        sub = await alice.subscribe(uri_of(bob, "bob"), "presence")
        broken = await next_of(sub)
        assert broken.presence is None and broken.error is not None
        assert "well-formed" in broken.error and broken.text == "<presence entity='broken'"
        await notifier.served[0].notify(bomb)
        refused = await next_of(sub)
        assert refused.presence is None and refused.error is not None
        assert "DOCTYPE" in refused.error
        await notifier.served[0].notify(Presence.build("sip:x@y", "closed").to_xml())
        fine = await next_of(sub)
        assert fine.presence is not None and not fine.presence.open and fine.error is None
        summary = await notifier.served[0].notify(
            "Messages-Waiting: perhaps", content_type="application/simple-message-summary"
        )
        assert summary is not None and summary.status_code == 200  # answered 200 all the same
        odd = await next_of(sub)
        assert odd.summary is None and odd.error is not None and "yes or no" in odd.error
    responses = [c.message.status_code for c in network.responses(method="NOTIFY")]
    assert set(responses) == {200}


async def test_bad_arguments(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with client_on(network) as alice:
        with pytest.raises(ValueError, match="event package"):
            await alice.subscribe("sip:x@127.0.0.1", "not a token")
        with pytest.raises(ValueError, match="expires"):
            await alice.subscribe("sip:x@127.0.0.1", "presence", expires=-1)
        with pytest.raises(ValueError, match="Expires"):
            await alice.subscribe("sip:x@127.0.0.1", "presence", headers={"Expires": "soon"})
        with pytest.raises(ValueError, match="Event"):
            await alice.subscribe("sip:x@127.0.0.1", "presence", headers={"Event": "a b"})
        with pytest.raises(ValueError, match="event package"):
            alice.on_subscribe("bad package", lambda incoming: None)
        with pytest.raises(TypeError):
            alice.on_subscribe("presence", "not callable")  # type: ignore[arg-type]
    assert requests(network, "SUBSCRIBE") == []


async def test_accept_and_reject_check_arguments(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    errors: list[str] = []
    async with client_on(network) as alice, client_on(network) as bob:

        def handler(incoming: IncomingSubscription) -> None:
            for call in (
                lambda: incoming.accept(-5),
                lambda: incoming.accept(state="terminated"),
                lambda: incoming.reject(200),
            ):
                try:
                    call()
                except ValueError as exc:
                    errors.append(str(exc).split(",")[0])
            incoming.accept(30)
            try:
                incoming.accept()
            except sipx.ProtocolError as exc:
                errors.append(str(exc))

        bob.on_subscribe("presence", handler)
        sub = await alice.subscribe(uri_of(bob, "bob"), "presence")
        assert sub.response is not None and sub.response.headers["Expires"] == "30"
    assert len(errors) == 4 and "already answered" in errors[-1]


async def test_transfer_notifies_still_reach_the_transfer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A client that also subscribes and serves subscriptions: REFER's implicit
    subscription (NOTIFYs in the call's dialog) still reports to ``call.transfer()``."""
    network = MemoryNetwork()
    async with (
        client_on(network) as alice,
        client_on(network) as bob,
        client_on(network) as carol,
    ):
        Notifier(alice, "presence")
        Notifier(bob, "presence")
        sub = await alice.subscribe(uri_of(bob, "bob"), "presence")
        bob.on_request("INVITE", lambda call: call.answer())
        carol.on_request("INVITE", lambda call: call.answer())
        call = await alice.call(uri_of(bob, "bob"))
        assert call.established
        result = await call.transfer(uri_of(carol, "carol"))
        assert result.succeeded and [n.status_code for n in result.notifications] == [100, 200]
        assert sub.state == "active"


async def test_notifies_keep_their_order_and_state(autojump_clock: trio.testing.MockClock) -> None:
    """An update right after accept() waits for the first NOTIFY (which still carries the
    first state); NOTIFYs never overlap."""
    network = MemoryNetwork()
    async with client_on(network) as alice, client_on(network) as bob:
        updates: list[sipx.Response | None] = []

        async def handler(incoming: IncomingSubscription) -> None:
            served = incoming.accept(body=MessageSummary.voice(1, 0).to_text())
            for new in (2, 3):
                updates.append(await served.notify(MessageSummary.voice(new, 0).to_text()))

        bob.on_subscribe("message-summary", handler)
        sub = await alice.subscribe(uri_of(bob, "alice"), "message-summary")
        seen = [await next_of(sub) for _ in range(3)]
        assert [n.summary.new for n in seen if n.summary] == [1, 2, 3]
        await trio.sleep(1)  # the last 200 reaches Bob
        assert [u.status_code for u in updates if u] == [200, 200]
    notifies = network.requests("NOTIFY")
    assert [c.message.cseq.seq for c in notifies][:3] == [1, 2, 3]
    # each NOTIFY left only after the previous one's 200 came back
    oks = [c.time for c in network.responses(200, method="NOTIFY")]
    assert all(notifies[i + 1].time >= oks[i] for i in range(2))


async def test_forks_are_bounded(autojump_clock: trio.testing.MockClock) -> None:
    """A notifier that answers from ever new dialogs: 16 forks at most, then 481."""
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, UAS, {"SUBSCRIBE": [(200, {"Expires": "600"})]}) as uas,
        client_on(network) as alice,
    ):
        sub = await alice.subscribe(uas.uri, "presence")
        codes = [
            (await in_dialog_notify(uas, alice, sub, "active", seq=1, tag=f"t{n}")).status_code
            for n in range(20)
        ]
        assert codes == [200] * 16 + [481] * 4  # (the subscription's own dialog is the 200's)
        assert len(sub.forks) == sipx._subscription.MAX_FORKS == 16
