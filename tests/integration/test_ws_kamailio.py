"""SIP over WebSocket (RFC 7118), plain and secure, with Kamailio's websocket module.

Kamailio (``peers/kamailio.cfg`` with ``-A WITH_WS``, and ``WITH_TLS``/``WITH_WSS`` for the
secure listener, its certificate from a trustme CA) serves WebSocket clients on a TCP port
and a TLS port of its own: the handshake in ``event_route[xhttp:request]``, the client's
binding kept with its source address (``fix_nated_register``), its other requests and
replies aliased to its connection (``add_contact_alias``). sipx WS clients send everything
to that port (their outbound proxy) and are reached over the connection they opened. The
tests register (401 then 200), exchange MESSAGEs with a UDP client both ways, and make calls
both ways between a WS client and a UDP client (INVITE, 200, ACK, BYE), checking what went
over which transport; a WSS client registers and is called the same way, and refuses a
certificate it cannot check.
"""

from __future__ import annotations

import glob
import math
import os
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
import trio
from peers import (
    USERS,
    Kamailio,
    SIPp,
    free_port,
    in_ci,
    query_bindings,
    require_binary,
    wait_port_bound,
)

from sipx import AsyncClient, Auth, Call, TransportError

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"


class Wire:
    """The client's trace hook: (direction, first line, transport) of every message."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []
        self.messages: list[tuple[str, bytes, str]] = []

    def __call__(self, direction: str, data: bytes, address: tuple[str, int], tr: str) -> None:
        if data.strip():
            self.seen.append((direction, data.split(b"\r\n", 1)[0].decode(), tr))
            self.messages.append((direction, data, tr))

    def lines(self, direction: str) -> list[str]:
        return [line for d, line, _ in self.seen if d == direction]

    def transports(self) -> set[str]:
        return {tr for _, _, tr in self.seen}


def require_websocket_module() -> None:
    """Kamailio's websocket module (Debian: kamailio-websocket-modules): skipped without
    it, failed under CI (like a missing peer binary)."""
    folders = [
        os.environ.get("SIPX_KAMAILIO_MPATH", ""),
        *glob.glob("/usr/lib*/*/kamailio/modules"),
    ]
    folders += glob.glob("/usr/lib*/kamailio/modules") + glob.glob(
        "/usr/local/lib*/kamailio/modules"
    )
    if any(os.path.isfile(os.path.join(f, "websocket.so")) for f in folders if f):
        return
    if in_ci():
        pytest.fail("Kamailio's websocket module is not installed (kamailio-websocket-modules)")
    pytest.skip("Kamailio's websocket module is not installed (kamailio-websocket-modules)")


@dataclass
class WsLab:
    """A Kamailio serving WebSocket on ``ws_port`` and secure WebSocket on ``wss_port``
    (its certificate issued by the CA in ``ca_file``)."""

    kamailio: Kamailio
    ws_port: int
    wss_port: int
    ca_file: str

    def aor(self, user: str) -> str:
        return self.kamailio.aor(user)


@pytest.fixture(scope="module")
def kamailio_ws(tmp_path_factory: pytest.TempPathFactory, echo_uas: SIPp) -> Iterator[WsLab]:
    """A Kamailio with its WebSocket listeners, plain and over TLS."""
    import trustme  # test dependency: imported only when a test asks for TLS

    require_binary("kamailio")
    require_websocket_module()
    ca = trustme.CA()
    certs = tmp_path_factory.mktemp("kamailio_wss_certs")
    issued = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, ca_file = certs / "chain.pem", certs / "key.pem", certs / "ca.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    ws_port, wss_port = free_port("tcp"), free_port("tcp")
    kamailio = Kamailio.start(
        free_port(),
        echo_uri=f"sip:{echo_uas.hostport}",
        run_dir=tmp_path_factory.mktemp("kamailio_ws"),
        tls_cert=cert,
        tls_key=key,
        extra_defines=["WITH_WS", f"WS_PORT={ws_port}", "WITH_WSS", f"WSS_PORT={wss_port}"],
    )
    try:
        wait_port_bound(ws_port, "tcp", proc=kamailio.proc)
        wait_port_bound(wss_port, "tcp", proc=kamailio.proc)
        yield WsLab(kamailio, ws_port, wss_port, str(ca_file))
    finally:
        kamailio.stop()


def ws_proxy(port: int) -> str:
    return f"sip:{HOST}:{port};transport=ws"


@asynccontextmanager
async def registered(
    lab: WsLab, user: str, transport: str, wire: Wire | None = None
) -> AsyncIterator[AsyncClient]:
    """A client registered as ``user``: over WebSocket (through Kamailio's WS port), secure
    WebSocket (its WSS port, the certificate checked) or UDP."""
    proxies = {"WS": ws_proxy(lab.ws_port), "WSS": ws_proxy(lab.wss_port)}
    async with AsyncClient(
        HOST,
        0,
        transport,
        Auth.Digest(user, USERS[user]),
        outbound_proxy=proxies.get(transport),
        trace=wire,
        timeout=5,
        verify=lab.ca_file if transport == "WSS" else True,
    ) as client:
        response = await client.register(lab.aor(user), expires=120)
        assert response.status_code == 200, response
        assert [r.status_code for r in response.history] == [401]
        try:
            yield client
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await client.unregister(lab.aor(user))


@pytest.mark.parametrize("transport", ["WS", "WSS"])
async def test_register_over_websocket(kamailio_ws: WsLab, transport: str) -> None:
    wire = Wire()
    async with registered(kamailio_ws, "1111", transport, wire):
        bindings = await trio.to_thread.run_sync(
            lambda: query_bindings(kamailio_ws.kamailio, "1111")
        )
    [binding] = bindings
    # RFC 7118 5.2: "ws" names both transports in a URI; the Via names the one used
    assert re.search(r"<sip:1111@[0-9a-f]{12}\.invalid;transport=ws>", binding), binding
    registers = [line for line in wire.lines("out") if line.startswith("REGISTER")]
    assert len(registers) >= 2 and wire.transports() == {transport}
    [first, *_] = [data for d, data, _ in wire.messages if d == "out"]
    via = rf"\r\nVia: SIP/2\.0/{transport} [0-9a-f]{{12}}\.invalid;branch=z9hG4bK"
    assert re.search(via.encode(), first)


async def test_secure_websocket_checks_kamailios_certificate(kamailio_ws: WsLab) -> None:
    """Without the CA that issued Kamailio's certificate the WSS connection is refused:
    the request fails with a TransportError and nothing goes out in clear."""
    wire = Wire()
    async with AsyncClient(
        HOST, 0, "WSS", outbound_proxy=ws_proxy(kamailio_ws.wss_port), trace=wire, timeout=5
    ) as client:
        with pytest.raises(TransportError):
            await client.options(kamailio_ws.aor("1111"))
    assert wire.transports() <= {"WSS"}


async def test_message_between_a_websocket_and_a_udp_client(
    kamailio_ws: WsLab,
) -> None:
    ws_inbox: list[str] = []
    udp_inbox: list[str] = []
    ws_wire, udp_wire = Wire(), Wire()
    async with (
        registered(kamailio_ws, "1111", "WS", ws_wire) as alice,
        registered(kamailio_ws, "2222", "UDP", udp_wire) as bob,
    ):
        alice.on_request("MESSAGE", lambda incoming: ws_inbox.append(incoming.text))
        bob.on_request("MESSAGE", lambda incoming: udp_inbox.append(incoming.text))
        to_udp = await alice.message(kamailio_ws.aor("2222"), "hello from WebSocket")
        to_ws = await bob.message(kamailio_ws.aor("1111"), "hello over UDP")
        with trio.fail_after(5):
            while not (ws_inbox and udp_inbox):
                await trio.sleep(0.01)
    assert to_udp.status_code == 200 and [r.status_code for r in to_udp.history] == [407]
    assert to_ws.status_code == 200 and [r.status_code for r in to_ws.history] == [407]
    assert ws_inbox == ["hello over UDP"] and udp_inbox == ["hello from WebSocket"]
    # Kamailio reached alice over her WebSocket connection, bob over UDP.
    assert any(
        d == "in" and line.startswith("MESSAGE sip:1111@") and tr == "WS"
        for d, line, tr in ws_wire.seen
    )
    assert ws_wire.transports() == {"WS"} and udp_wire.transports() == {"UDP"}


async def answer_calls(client: AsyncClient, calls: trio.MemorySendChannel[Call]) -> None:
    async for incoming in client.calls():
        incoming.ring()
        incoming.answer()
        calls.send_nowait(incoming)


async def test_call_from_a_websocket_client_to_a_udp_client(
    kamailio_ws: WsLab,
) -> None:
    ws_wire = Wire()
    send, receive = trio.open_memory_channel[Call](math.inf)
    async with (
        registered(kamailio_ws, "2222", "UDP") as bob,
        registered(kamailio_ws, "1111", "WS", ws_wire) as alice,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(answer_calls, bob, send)
        await trio.sleep(0)
        with trio.fail_after(10):
            call = await alice.call(kamailio_ws.aor("2222"))
            answered = await receive.receive()
            assert call.established and answered.established
            while not answered.acked:
                await trio.sleep(0.01)
            bye = await call.bye()
            assert await answered.wait_ended() == "remote"
        nursery.cancel_scope.cancel()
    assert bye.status_code == 200
    methods = [
        line.split()[0]
        for line in ws_wire.lines("out")
        if not line.startswith(("REGISTER", "SIP/"))
    ]
    # the 407 is ACKed, the INVITE sent again with credentials
    assert methods == ["INVITE", "ACK", "INVITE", "ACK", "BYE"]
    assert ws_wire.transports() == {"WS"}


@pytest.mark.parametrize("transport", ["WS", "WSS"])
async def test_call_from_a_udp_client_to_a_websocket_client(
    kamailio_ws: WsLab, transport: str
) -> None:
    """Kamailio reaches the WS client over its connection, for the INVITE and for the ACK
    and BYE of the UDP caller (its Contact alias, as Kamailio rewrote it, names the
    connection)."""
    ws_wire = Wire()
    send, receive = trio.open_memory_channel[Call](math.inf)
    async with (
        registered(kamailio_ws, "1111", transport, ws_wire) as alice,
        registered(kamailio_ws, "2222", "UDP") as bob,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(answer_calls, alice, send)
        await trio.sleep(0)
        with trio.fail_after(10):
            call = await bob.call(kamailio_ws.aor("1111"))
            answered = await receive.receive()
            assert call.established and answered.established
            while not answered.acked:
                await trio.sleep(0.01)
            bye = await call.bye()
            assert await answered.wait_ended() == "remote"
        nursery.cancel_scope.cancel()
    assert bye.status_code == 200
    received = ws_wire.lines("in")
    assert any(line.startswith("INVITE sip:1111@") for line in received)
    assert any(line.startswith("ACK ") for line in received)
    assert any(line.startswith("BYE ") for line in received)
    assert ws_wire.transports() == {transport}


async def test_call_from_a_websocket_client_to_extension_100(
    kamailio_ws: WsLab,
) -> None:
    wire = Wire()
    async with registered(kamailio_ws, "1111", "WS", wire) as alice:
        call = await alice.call(kamailio_ws.aor("100"))
        assert call.established, call.final_response
        assert call.answer_sdp is not None and call.answer_sdp.media
        # Kamailio may hand the ACK and a BYE right behind it to different workers; the
        # SIPp echo would take a BYE that overtook the ACK as unexpected.
        await trio.sleep(0.3)
        bye = await call.bye()
    assert bye.status_code == 200
    assert wire.transports() == {"WS"}
