"""Subscriptions through Kamailio: its presence server, and a forked SUBSCRIBE.

Kamailio's presence modules (Debian package kamailio-presence-modules; ``-A
WITH_PRESENCE``, state in db_text files, no database server) act as the notifier of
``message-summary`` (presence_mwi), ``presence`` (presence_xml) and ``dialog``
(presence_dialoginfo) for the domain's users; sipx PUBLISHes the state
(``client.publish()``, RFC 3903) and subscribes to it:

* message-summary: the published counts arrive in the first NOTIFY; a new publication
  (SIP-If-Match) NOTIFYs the change; the unsubscribe ends with terminated;reason=timeout;
* presence: a 10 s subscription is refreshed by sipx at 5 s (an in-dialog SUBSCRIBE that
  Kamailio's presence server answers, followed by its NOTIFY); open, then closed;
* dialog: Kamailio's aggregated dialog-info document is read (a confirmed dialog: busy);
* a 10 s publication is refreshed by sipx at 5 s (SIP-If-Match, no body: Kamailio answers
  with a new SIP-ETag and keeps the state), then removed (Expires: 0): a watcher sees the
  presentity go from open to no longer open.

Then the registrar/proxy Kamailio of the other tests forks a SUBSCRIBE to the two contacts
of 2222 (two sipx clients serving ``dialog``): both accept and NOTIFY through Kamailio's
Record-Route, so the subscriber holds one subscription per dialog (``sub`` and
``sub.forks``), and unsubscribing ends both.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import trio
from peers import USERS, Kamailio, free_port, in_ci

import sipx
from sipx import AsyncClient, Auth, DialogEntry, DialogInfo, IncomingSubscription, Presence

pytestmark = pytest.mark.integration

STEP = 10.0
MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
DB_SCHEMA = Path("/usr/share/kamailio/dbtext/kamailio")
DB_TABLES = ("version", "presentity", "active_watchers", "watchers", "xcap", "pua")


@pytest.fixture(scope="module")
def presence_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kamailio]:
    """Kamailio with its presence server (WITH_PRESENCE), db_text tables in a temp dir."""
    if not (MODULES / "presence_mwi.so").is_file() or not DB_SCHEMA.is_dir():
        message = "kamailio-presence-modules is not installed"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    db = tmp_path_factory.mktemp("presence-db")
    for table in DB_TABLES:
        shutil.copy(DB_SCHEMA / table, db / table)
    k = Kamailio.start(
        free_port(),
        run_dir=tmp_path_factory.mktemp("kamailio-presence"),
        extra_defines=["WITH_PRESENCE", f'PRESENCE_DB="text://{db}"'],
    )
    try:
        yield k
    finally:
        k.stop()


def user_client(user: str) -> AsyncClient:
    return AsyncClient("127.0.0.1", 0, auth=Auth.Digest(user, USERS[user]), timeout=5)


async def test_message_summary_from_kamailio(presence_server: Kamailio) -> None:
    aor = presence_server.aor("1111")
    async with user_client("1111") as client:
        with trio.fail_after(STEP):
            body = sipx.MessageSummary.voice(4, 1, urgent_new=1).to_text()
            pub = await client.publish(aor, "message-summary", body, expires=120)
            assert pub.etag and pub.response is not None and pub.response.status_code == 200
            sub = await client.subscribe(aor, "message-summary", expires=300)
            assert sub.response is not None and sub.response.status_code == 200
            first = await anext(sub)
            assert first.summary is not None and first.error is None, first.text
            counts = first.summary.voice_counts
            assert (first.summary.waiting, counts.new, counts.old, counts.urgent_new) == (
                True,
                4,
                1,
                1,
            )
            body = sipx.MessageSummary.voice(0, 5).to_text()
            assert (await pub.modify(body)).status_code == 200  # SIP-If-Match
            second = await anext(sub)
            assert second.summary is not None
            assert (second.summary.waiting, second.summary.new, second.summary.old) == (
                False,
                0,
                5,
            )
            await sub.unsubscribe()
            assert (sub.state, sub.reason) == ("terminated", "timeout")


async def test_presence_from_kamailio_with_a_refresh(presence_server: Kamailio) -> None:
    aor = presence_server.aor("2222")
    async with user_client("2222") as client:
        with trio.fail_after(STEP + 10):
            document = Presence.build("sip:2222@127.0.0.1", "open", note="at my desk").to_xml()
            pub = await client.publish(aor, "presence", document, expires=120)
            sub = await client.subscribe(aor, "presence", expires=10)
            assert sub.response is not None and sub.response.headers["Expires"] == "10"
            first = await anext(sub)
            assert first.presence is not None and first.presence.open
            assert first.presence.note == "at my desk"
            assert first.expires is not None and first.expires <= 10
            # the refresh, at half of the 10 s: Kamailio answers it and NOTIFYs again
            refreshed = await anext(sub)
            assert refreshed.presence is not None and refreshed.presence.open
            assert sub.state == "active" and sub.expires is not None and sub.expires > 5
            closed = Presence.build("sip:2222@127.0.0.1", "closed").to_xml()
            assert (await pub.modify(closed)).status_code == 200
            last = await anext(sub)
            assert last.presence is not None and last.presence.basic == "closed"
            await sub.unsubscribe()
            assert sub.reason == "timeout"
    assert sub.request.cseq.seq == 1 and sub.dialog is not None and sub.dialog.local_seq >= 3


async def test_dialog_info_from_kamailio(presence_server: Kamailio) -> None:
    aor = presence_server.aor("3333")
    async with user_client("3333") as client:
        with trio.fail_after(STEP):
            info = DialogInfo.build(
                "sip:3333@127.0.0.1",
                0,
                [
                    DialogEntry(
                        "call-1",
                        "confirmed",
                        "recipient",
                        call_id="c1",
                        local_tag="l1",
                        remote_tag="r1",
                        remote_identity="sip:1111@127.0.0.1",
                    )
                ],
            )
            await client.publish(aor, "dialog", info.to_xml(), expires=120)
            sub = await client.subscribe(aor, "dialog", expires=120)
            first = await anext(sub)
            assert first.error is None, first.text
            dialogs = first.dialogs
            assert dialogs is not None and dialogs.entity.startswith("sip:3333@")
            assert dialogs.busy and not dialogs.idle
            [entry] = dialogs.dialogs
            assert (entry.id, entry.state, entry.direction) == ("call-1", "confirmed", "recipient")
            assert entry.remote_identity == "sip:1111@127.0.0.1"
            await sub.unsubscribe()


async def test_a_publication_refreshed_then_removed(presence_server: Kamailio) -> None:
    aor = presence_server.aor("1111")
    async with user_client("1111") as client, user_client("1111") as watcher:
        with trio.fail_after(STEP + 10):
            document = Presence.build("sip:1111@127.0.0.1", "open", note="refreshed").to_xml()
            pub = await client.publish(aor, "presence", document, expires=10)
            first_tag = pub.etag
            assert first_tag and pub.expires is not None and 0 < pub.expires <= 10
            await trio.sleep(7)  # the refresh went at 5 s
            assert pub.active and pub.etag not in (None, first_tag)
            assert pub.response is not None and pub.response.request is not None
            refresh = pub.response.request
            assert refresh.headers.get_first("SIP-If-Match") == first_tag
            assert not refresh.content
            sub = await watcher.subscribe(aor, "presence", expires=60)
            seen = await anext(sub)
            assert seen.presence is not None and seen.presence.open
            assert seen.presence.note == "refreshed"  # the state outlived its first 10 s
            removed = await pub.remove()
            assert removed is not None and removed.status_code == 200
            assert not pub.active and client.publications == []
            gone = await anext(sub)
            assert gone.presence is None or not gone.presence.open, gone.text
            await sub.unsubscribe()


@asynccontextmanager
async def registered(client: AsyncClient, aor: str) -> AsyncIterator[None]:
    assert (await client.register(aor, expires=120)).status_code == 200
    try:
        yield
    finally:
        with trio.move_on_after(5):
            await client.unregister(aor)


async def test_a_forked_subscribe_through_kamailio(kamailio: Kamailio) -> None:
    aor = kamailio.aor("2222")
    served: dict[str, list[sipx.ServerSubscription]] = {"a": [], "b": []}

    def handler(name: str) -> Callable[[IncomingSubscription], None]:
        def accept(incoming: IncomingSubscription) -> None:
            body = DialogInfo.build(f"sip:{name}@phone", 0).to_xml()
            served[name].append(incoming.accept(body=body))

        return accept

    async with AsyncExitStack() as stack:
        phones = []
        for name in ("a", "b"):
            phone = await stack.enter_async_context(user_client("2222"))
            phone.on_subscribe("dialog", handler(name))
            await stack.enter_async_context(registered(phone, aor))
            phones.append(phone)
        watcher = await stack.enter_async_context(user_client("1111"))
        with trio.fail_after(STEP):
            sub = await watcher.subscribe(aor, "dialog", expires=120)
            assert sub.response is not None and sub.response.status_code == 200
            while not (sub.last is not None and sub.forks and sub.forks[0].last is not None):
                await trio.sleep(0.02)
            [fork] = sub.forks
            entities = {
                n.dialogs.entity for n in (sub.last, fork.last) if n is not None and n.dialogs
            }
            assert entities == {"sip:a@phone", "sip:b@phone"}
            assert sub.dialog is not None and fork.dialog is not None
            assert sub.dialog.remote_tag != fork.dialog.remote_tag
            assert sub.dialog.call_id == fork.dialog.call_id
            assert sub.dialog.route_set and fork.dialog.route_set  # through Kamailio
            await sub.unsubscribe()
            assert sub.terminated and fork.terminated and sub.reason == fork.reason == "timeout"
            for name in ("a", "b"):
                [server_side] = served[name]
                assert await server_side.wait_terminated() == "timeout"
