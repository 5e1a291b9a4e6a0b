"""Subscriptions against baresip, a real softphone (its ``mwi`` and ``presence`` modules).

* baresip registered at ``sipx serve`` (a DevServer) as 3333 subscribes to its own
  message-summary (module mwi): the server's counts (``mwi={"3333": (2, 8)}``) reach it
  ("MWI for ..." then "Voice-Message: 2/8" in its log), a change of the counts too; when
  baresip stops it unsubscribes and the server ends the subscription.
* baresip watches 2222's presence (module presence, a contact marked ``presence=p2p``) at
  ``sipx serve``: 2222 (an AsyncClient) registers and unregisters, baresip reports the
  contact Online, then Offline.
* sipx watches baresip's presence through Kamailio (record-routed SUBSCRIBE to the
  registered softphone, whose presence module is the notifier): its first PIDF says "?"
  (unknown), then closed and open as baresip's user changes status; sipx unsubscribes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from peers import USERS, Baresip, Kamailio, free_port

import sipx
from sipx import AsyncClient, Auth
from sipx._serve import DevServer

pytestmark = pytest.mark.integration

STEP = 10.0


@asynccontextmanager
async def softphone(registrar: str, run_dir: Path, **kwargs: object) -> AsyncIterator[Baresip]:
    """baresip as 3333 registered at ``registrar`` (started and stopped off the trio thread:
    the server it registers with may run in this one)."""
    phone: Baresip = await trio.to_thread.run_sync(
        lambda: Baresip.start("3333", registrar=registrar, run_dir=run_dir, **kwargs)
    )
    try:
        yield phone
    finally:
        await trio.to_thread.run_sync(phone.stop)


async def wait_log(phone: Baresip, pattern: str, start: int = 0) -> re.Match[str]:
    with trio.move_on_after(STEP):
        while True:
            found = re.compile(pattern).search(phone.log_text(), start)
            if found:
                return found
            await trio.sleep(0.02)
    pytest.fail(f"{pattern!r} not in baresip's log\n{phone.log_text()[start:][-4000:]}")


class Received:
    """The server's ``trace``: the text of every message it received."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def __call__(self, direction: str, data: bytes, address: object, transport: str) -> None:
        if direction == "in" and data.strip():
            self.texts.append(data.decode("utf-8", "replace"))

    def requests(self, method: str) -> list[str]:
        return [t for t in self.texts if t.startswith(f"{method} ")]

    def responses_to(self, method: str) -> list[str]:
        return [
            t.split("\r\n", 1)[0]
            for t in self.texts
            if t.startswith("SIP/2.0 ") and re.search(rf"(?mi)^CSeq:\s*\d+ {method}\s*$", t)
        ]


async def test_baresip_watches_its_voicemail_at_sipx_serve(tmp_path: Path) -> None:
    received = Received()
    port = free_port()
    async with DevServer("127.0.0.1", port, mwi={"3333": (2, 8)}, trace=received) as server:
        notifier = server.notifier
        assert notifier is not None
        async with softphone(
            f"127.0.0.1:{port}", tmp_path / "mwi", modules=("mwi",), account_params=";mwi=yes"
        ) as phone:
            shown = r"----- MWI for sip:3333@127\.0\.0\.1:\d+ -----\nMessages-Waiting: {}\n"
            shown += r"Message-Account: sip:3333@127\.0\.0\.1:\d+\nVoice-Message: {}\n"
            await wait_log(phone, shown.format("yes", "2/8"))
            mark = phone.log_offset()
            server.set_message_summary("3333", 0, 10)
            await wait_log(phone, shown.format("no", "0/10"), mark)
            [subscribe] = [s for s in received.requests("SUBSCRIBE") if "Authorization" in s]
            assert re.search(r"(?mi)^Event:\s*message-summary\s*$", subscribe), subscribe
            assert "application/simple-message-summary" in subscribe
            assert len(notifier.subscriptions) == 1
        # stopping baresip unsubscribes (Expires: 0), the server sends the last NOTIFY
        with trio.fail_after(STEP):
            while notifier.subscriptions:
                await trio.sleep(0.02)
    unsubscribe = received.requests("SUBSCRIBE")[-1]
    assert re.search(r"(?mi)^Expires:\s*0\s*$", unsubscribe), unsubscribe
    assert set(received.responses_to("NOTIFY")) == {"SIP/2.0 200 OK"}
    assert len(received.responses_to("NOTIFY")) == 3  # 2/8, 0/10, terminated


async def test_baresip_watches_presence_at_sipx_serve(tmp_path: Path) -> None:
    port = free_port()
    buddy = f"sip:2222@127.0.0.1:{port}"
    async with (
        DevServer("127.0.0.1", port) as server,
        softphone(
            f"127.0.0.1:{port}",
            tmp_path / "presence",
            modules=("contact", "presence"),
            contacts=(f'"Buddy" <{buddy}>;presence=p2p',),
        ) as phone,
        AsyncClient("127.0.0.1", 0, auth=Auth.Digest("2222", USERS["2222"])) as client,
    ):
        notifier = server.notifier
        assert notifier is not None
        with trio.fail_after(STEP):
            while not notifier.subscriptions:  # baresip subscribes a second after it starts
                await trio.sleep(0.02)
        [watch] = notifier.subscriptions
        assert (watch.user, watch.package) == ("2222", "presence")
        mark = phone.log_offset()
        assert (await client.register(buddy, expires=60)).status_code == 200
        await wait_log(phone, rf"<{re.escape(buddy)}> changed status from Offline to Online", mark)
        mark = phone.log_offset()
        assert (await client.unregister(buddy)).status_code == 200
        await wait_log(phone, rf"<{re.escape(buddy)}> changed status from Online to Offline", mark)


async def test_sipx_watches_baresip_through_kamailio(kamailio: Kamailio, tmp_path: Path) -> None:
    async with (
        softphone(
            kamailio.hostport, tmp_path / "notifier", modules=("contact", "presence")
        ) as phone,
        AsyncClient("127.0.0.1", 0, auth=Auth.Digest("1111", USERS["1111"]), timeout=5) as client,
    ):
        with trio.fail_after(STEP):
            sub = await client.subscribe(kamailio.aor("3333"), "presence", expires=300)
            assert sub.response is not None and sub.response.status_code == 200
            assert [r.status_code for r in sub.response.history] == [407]
            assert sub.dialog is not None and sub.dialog.route_set  # record-routed by Kamailio
            first = await anext(sub)
            assert first.error is None and first.presence is not None
            assert first.presence.entity.startswith("sip:3333@")
            assert first.presence.basic is None  # baresip's "?" before a status is set
            phone.command("/presence_offline")
            closed = await anext(sub)
            assert closed.presence is not None and closed.presence.basic == "closed"
            phone.command("/presence_online")
            opened = await anext(sub)
            assert opened.presence is not None and opened.presence.open
            await sub.unsubscribe()
            assert sub.state == "terminated"
            assert sub.reason == "timeout", sipx.__version__
