"""``client.watch()``: a subscription renewed as RFC 6665 4.2.2 suggests, between two
AsyncClients on one MemoryNetwork under trio's autojump clock (Bob is the notifier)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

import sipx
from sipx import IncomingSubscription, Notification, ServerSubscription
from sipx.testing import MemoryNetwork

MWI = sipx.MessageSummary.voice(1, 0).to_text()


class Notifier:
    """Bob's message-summary handler: accepts (or answers ``refuse`` while it is set)."""

    def __init__(self, client: sipx.AsyncClient) -> None:
        self.served: list[ServerSubscription] = []
        self.times: list[float] = []
        self.refuse: int | None = None
        client.on_subscribe("message-summary", self)

    def __call__(self, incoming: IncomingSubscription) -> None:
        self.times.append(round(trio.current_time(), 1))
        if self.refuse is not None:
            incoming.reject(self.refuse)
            return
        self.served.append(incoming.accept(body=MWI))


@asynccontextmanager
async def pair() -> AsyncIterator[tuple[sipx.AsyncClient, Notifier, str]]:
    network = MemoryNetwork()
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as bob,
        sipx.AsyncClient("127.0.0.1", 0, network=network) as alice,
    ):
        address = bob.local_address
        yield alice, Notifier(bob), f"sip:alice@{address.host}:{address.port}"


async def states(watch: sipx.Watch, count: int) -> list[str]:
    got: list[Notification] = []
    with trio.fail_after(600):
        async for notification in watch:
            got.append(notification)
            if len(got) == count:
                break
    return [n.state for n in got]


async def test_deactivated_is_renewed_at_once_and_leaving_unsubscribes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with pair() as (alice, bob, uri):
        async with alice.watch(uri, "message-summary", expires=600) as watch:
            assert watch.active and watch.renewals == 0
            assert await states(watch, 1) == ["active"]
            await trio.sleep(10)
            await bob.served[0].terminate("deactivated")
            # the terminating NOTIFY, then the first of the new subscription
            assert await states(watch, 2) == ["terminated", "active"]
            assert watch.renewals == 1 and watch.active
            first, second = bob.served
            assert first.terminated and not second.terminated
        assert watch.closed and not watch.active
        assert second.terminated and second.reason == "timeout"  # unsubscribed
    assert bob.times == [0.0, 10.0]


async def test_probation_waits_for_retry_after(autojump_clock: trio.testing.MockClock) -> None:
    async with pair() as (alice, bob, uri), alice.watch(uri, "message-summary") as watch:
        await states(watch, 1)
        await trio.sleep(10)
        await bob.served[0].terminate("probation", retry_after=120)
        assert await states(watch, 2) == ["terminated", "active"]
    assert bob.times == [0.0, 130.0]


async def test_rejected_ends_the_watch(autojump_clock: trio.testing.MockClock) -> None:
    async with pair() as (alice, bob, uri), alice.watch(uri, "message-summary") as watch:
        await states(watch, 1)
        await bob.served[0].terminate("rejected")
        assert await states(watch, 5) == ["terminated"]  # and the iteration ends
        assert watch.closed and watch.renewals == 0
    assert len(bob.times) == 1


async def test_quick_ends_and_refusals_back_off(autojump_clock: trio.testing.MockClock) -> None:
    """A notifier that ends each subscription at once, then answers 503 twice and 403:
    renewals back off (4, 8, 16, 32 s) and the 403 ends the watch."""
    async with pair() as (alice, bob, uri), alice.watch(uri, "message-summary") as watch:
        for _ in range(3):
            await states(watch, 1)
            await bob.served[-1].terminate("deactivated")
            assert await states(watch, 1) == ["terminated"]
        bob.refuse = 503

        async def refuse_for_good() -> None:
            await trio.sleep_until(70.0)
            bob.refuse = 403

        async with trio.open_nursery() as nursery:
            nursery.start_soon(refuse_for_good)
            assert await states(watch, 5) == []  # no more NOTIFYs: the watch ended
        assert watch.closed
        assert watch.subscription is not None and watch.subscription.response is not None
        assert watch.subscription.response.status_code == 403
    # made at 0, renewed after 4 and 8 s (quick ends), then 16: 503 at 28 s, 503 at 60 s
    # (back-off 32), 403 at 120 s (back-off 64, at most 60)
    assert bob.times == [0.0, 4.0, 12.0, 28.0, 60.0, 120.0]


async def test_a_refused_first_subscription_gives_an_empty_watch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with pair() as (alice, bob, uri):
        bob.refuse = 403
        async with alice.watch(uri, "message-summary") as watch:
            assert watch.closed and [n async for n in watch] == []
            assert watch.subscription is not None and watch.subscription.response is not None
            assert watch.subscription.response.status_code == 403


async def test_bad_arguments_are_refused_at_once() -> None:
    async with sipx.AsyncClient("127.0.0.1", 0, network=MemoryNetwork()) as alice:
        with pytest.raises(ValueError, match="event"):
            alice.watch("sip:a@127.0.0.1:5999", "bad event;")
        with pytest.raises(ValueError, match="expires"):
            alice.watch("sip:a@127.0.0.1:5999", "presence", expires=-1)
        watch = alice.watch("sip:a@127.0.0.1:5999", "presence")
        with pytest.raises(RuntimeError, match="enter the watch"):
            await anext(watch)
