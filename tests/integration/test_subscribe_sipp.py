"""Subscriptions (RFC 6665) against SIPp, both ways, over UDP and TCP.

* SIPp as notifier (``uas_notifier_mwi.xml``): it sends its first NOTIFY (message-summary,
  3/5 with 1 urgent) *before* the 200 to our SUBSCRIBE; sipx takes the NOTIFY (the dialog
  comes from it), returns the subscription when the 200 follows, reads the counts, and
  unsubscribes: SIPp checks the SUBSCRIBE (Event, Accept, then Expires: 0 in the dialog) and
  ends the subscription with terminated;reason=timeout.
* SIPp as subscriber (``uac_subscribe_presence.xml``) to an AsyncClient serving
  ``presence``: 200 with the granted Expires, a NOTIFY with an open PIDF, a second one
  (closed, "gone fishing") when the application notifies, then SIPp unsubscribes and gets
  the last NOTIFY; every check is SIPp's (it exits 1 otherwise).
"""

from __future__ import annotations

import pytest
import trio
from conftest import SIPpFactory
from peers import HOST

import sipx
from sipx import IncomingSubscription, Presence, ServerSubscription

pytestmark = pytest.mark.integration

STEP = 10.0


@pytest.fixture(params=["udp", "tcp"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Trace:
    """Start lines of what sipx sent and received."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, direction: str, data: bytes, address: object, transport: str) -> None:
        if data.strip():
            start = data.split(b"\r\n", 1)[0].decode()
            self.lines.append(f"{direction} {start}")

    def __str__(self) -> str:
        return "\n".join(self.lines)


async def test_sipx_subscribes_to_a_sipp_notifier(sipp: SIPpFactory, transport: str) -> None:
    notifier = sipp("uas_notifier_mwi.xml", transport=transport, timeout_s=15)
    trace = Trace()
    async with sipx.AsyncClient(HOST, 0, transport=transport.upper(), trace=trace) as client:
        with trio.fail_after(STEP):
            uri = f"sip:vm@{notifier.hostport}" + ("" if transport == "udp" else ";transport=tcp")
            sub = await client.subscribe(uri, "message-summary", expires=600)
            assert sub.response is not None and sub.response.status_code == 200, trace
            first = await anext(sub)
            assert first.summary is not None and first.error is None, first.text
            counts = first.summary.voice_counts
            assert (counts.new, counts.old, counts.urgent_new) == (3, 5, 1)
            assert first.summary.account == f"sip:vm@{notifier.hostport}"
            assert (first.state, first.expires) == ("active", 600)
            assert sub.dialog is not None and "SIPpTag01" in sub.dialog.remote_tag
            await sub.unsubscribe()
            assert (sub.state, sub.reason) == ("terminated", "timeout"), trace
        # SIPp ends before our TCP connection closes (it takes a closed one for a failure)
        assert await trio.to_thread.run_sync(notifier.wait) == 0, notifier.describe()
    arrived = [line.split()[1] for line in trace.lines if line.startswith("in ")]
    assert arrived[:2] == ["NOTIFY", "SIP/2.0"], trace  # the NOTIFY overtook the 200


async def test_sipp_subscribes_to_a_sipx_notifier(sipp: SIPpFactory, transport: str) -> None:
    served: list[ServerSubscription] = []
    accepted = trio.Event()

    def on_subscribe(incoming: IncomingSubscription) -> None:
        document = Presence.build(incoming.uri, "open", note="at my desk").to_xml()
        served.append(incoming.accept(body=document))
        accepted.set()

    trace = Trace()
    async with sipx.AsyncClient(HOST, 0, transport=transport.upper(), trace=trace) as client:
        client.on_subscribe("presence", on_subscribe)
        watcher = sipp(
            "uac_subscribe_presence.xml",
            f"{HOST}:{client.local_address.port}",
            service="bob",
            transport=transport,
            timeout_s=15,
        )
        with trio.fail_after(STEP):
            await accepted.wait()
            [subscription] = served
            closed = Presence.build("sip:bob@example.com", "closed", note="gone fishing")
            response = await subscription.notify(closed.to_xml())
            assert response is not None and response.status_code == 200, trace
            assert await subscription.wait_terminated() == "timeout", trace
        assert await trio.to_thread.run_sync(watcher.wait) == 0, watcher.describe()
    notifies = [line for line in trace.lines if line.startswith("out NOTIFY")]
    assert len(notifies) == 3, trace
