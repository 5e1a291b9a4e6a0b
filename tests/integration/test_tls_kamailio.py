"""SIP over TLS with Kamailio's TLS listener (its certificate from a trustme CA).

sipx clients check Kamailio's certificate against the test CA, register over TLS with the
401 round, message each other (Kamailio opens a TLS connection to the callee's listener,
which serves with its own certificate), call extension 100 (Kamailio bridges TLS to the
SIPp echo UAS over UDP) and each other. Every test checks what went over the wire.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from peers import USERS, Kamailio, query_bindings

from sipx import AsyncClient, Auth, Call, IncomingRequest, TransportError

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"


class Wire:
    """The client's trace hook: (direction, first line, transport) of every message."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def __call__(self, direction: str, data: bytes, address: tuple[str, int], tr: str) -> None:
        if data.strip():
            self.seen.append((direction, data.split(b"\r\n", 1)[0].decode(), tr))

    def lines(self, direction: str) -> list[str]:
        return [line for d, line, _ in self.seen if d == direction]


@pytest.fixture(scope="module")
def pki(kamailio_tls: Kamailio, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The CA that issued Kamailio's certificate, and a client certificate from it."""
    ca = kamailio_tls.tls_ca
    assert ca is not None
    folder = tmp_path_factory.mktemp("client_pki")
    files = {"ca": str(folder / "ca.pem"), "cert": str(folder / "client.pem")}
    ca.cert_pem.write_to_path(files["ca"])
    ca.issue_cert(HOST).private_key_and_cert_chain_pem.write_to_path(files["cert"])
    return files


def aor(kamailio: Kamailio, user: str) -> str:
    return f"sip:{user}@{kamailio.tls_hostport}"


@asynccontextmanager
async def registered(
    kamailio: Kamailio,
    user: str,
    pki: dict[str, str],
    wire: Wire | None = None,
    *,
    cert: bool = True,
) -> AsyncIterator[AsyncClient]:
    """A TLS client registered as ``user`` (serving TLS with its certificate, if ``cert``)."""
    async with AsyncClient(
        HOST,
        0,
        "TLS",
        Auth.Digest(user, USERS[user]),
        trace=wire,
        timeout=5,
        verify=pki["ca"],
        cert=pki["cert"] if cert else None,
    ) as client:
        response = await client.register(aor(kamailio, user), expires=120)
        assert response.status_code == 200, response
        assert [r.status_code for r in response.history] == [401]
        try:
            yield client
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await client.unregister(aor(kamailio, user))


async def test_options_over_tls_checks_the_certificate(
    kamailio_tls: Kamailio, pki: dict[str, str]
) -> None:
    wire = Wire()
    async with AsyncClient(HOST, 0, "TLS", verify=pki["ca"], trace=wire, timeout=5) as client:
        response = await client.options(f"sip:{kamailio_tls.tls_hostport}")
    assert response.status_code == 200
    assert response.top_via.transport == "TLS"
    assert {tr for _, _, tr in wire.seen} == {"TLS"}
    # The system's CAs do not know the test CA: refused at the handshake.
    async with AsyncClient(HOST, 0, "TLS", timeout=5) as client:
        with pytest.raises(TransportError, match="certificate verify failed"):
            await client.options(f"sip:{kamailio_tls.tls_hostport}")


async def test_register_over_tls_binds_a_tls_contact(
    kamailio_tls: Kamailio, pki: dict[str, str]
) -> None:
    wire = Wire()
    async with registered(kamailio_tls, "1111", pki, wire) as client:
        port = client.local_address.port
        bindings = await trio.to_thread.run_sync(
            lambda: query_bindings(kamailio_tls, "1111", transport="tls")
        )
    [binding] = [b for b in bindings if f":{port}" in b]
    assert ";transport=tls" in binding
    registers = [line for line in wire.lines("out") if line.startswith("REGISTER")]
    assert len(registers) >= 2 and {tr for _, _, tr in wire.seen} == {"TLS"}


async def test_message_between_tls_clients(kamailio_tls: Kamailio, pki: dict[str, str]) -> None:
    inbox: list[IncomingRequest] = []
    bob_wire = Wire()
    async with (
        registered(kamailio_tls, "2222", pki, bob_wire) as bob,
        registered(kamailio_tls, "1111", pki) as alice,
    ):
        bob.on_request("MESSAGE", inbox.append)
        bob_port = bob.local_address.port
        response = await alice.message(aor(kamailio_tls, "2222"), "hello over TLS")
        with trio.fail_after(5):
            while not inbox:
                await trio.sleep(0.01)
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [407]
    [incoming] = inbox
    assert incoming.text == "hello over TLS"
    # Kamailio reached bob over TLS, through bob's listener.
    assert (
        "in",
        f"MESSAGE sip:2222@{HOST}:{bob_port};transport=tls SIP/2.0",
        "TLS",
    ) in bob_wire.seen


async def test_call_to_extension_100_over_tls(kamailio_tls: Kamailio, pki: dict[str, str]) -> None:
    wire = Wire()
    async with registered(kamailio_tls, "1111", pki, wire) as alice:
        call = await alice.call(aor(kamailio_tls, "100"))
        assert call.established, call.final_response
        assert call.answer_sdp is not None and call.answer_sdp.media
        # Kamailio may hand the ACK and a BYE right behind it to different workers; the
        # SIPp echo would take a BYE that overtook the ACK as unexpected.
        await trio.sleep(0.3)
        bye = await call.bye()
    assert bye.status_code == 200
    out = wire.lines("out")
    assert any(line.startswith("ACK ") for line in out)
    assert any(line.startswith("BYE ") for line in out)
    assert {tr for _, _, tr in wire.seen} == {"TLS"}


async def test_call_between_tls_clients(kamailio_tls: Kamailio, pki: dict[str, str]) -> None:
    send, receive = trio.open_memory_channel[Call](math.inf)
    async with (
        registered(kamailio_tls, "2222", pki) as bob,
        registered(kamailio_tls, "1111", pki) as alice,
        trio.open_nursery() as nursery,
    ):

        async def answer() -> None:
            async for incoming in bob.calls():
                incoming.ring()
                incoming.answer()
                send.send_nowait(incoming)

        nursery.start_soon(answer)
        await trio.sleep(0)
        with trio.fail_after(10):
            call = await alice.call(aor(kamailio_tls, "2222"))
            answered = await receive.receive()
            assert call.established and answered.established
            while not answered.acked:  # the ACK went first: let it arrive before the BYE
                await trio.sleep(0.01)
            await call.bye()
            assert await answered.wait_ended() == "remote"
        nursery.cancel_scope.cancel()


def test_cli_options_over_tls(kamailio_tls: Kamailio, pki: dict[str, str]) -> None:
    uri = f"sip:{kamailio_tls.tls_hostport}"
    command = [sys.executable, "-m", "sipx", "options", uri, "--transport", "tls"]
    good = subprocess.run(
        [*command, "--ca", pki["ca"]], capture_output=True, text=True, timeout=30, check=False
    )
    assert good.returncode == 0, good.stderr
    assert "200" in good.stdout
    refused = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert refused.returncode == 3 and "certificate verify failed" in refused.stderr
    missing = str(Path(pki["ca"]).with_name("missing.pem"))
    bad = subprocess.run(
        [*command, "--ca", missing], capture_output=True, text=True, timeout=30, check=False
    )
    assert bad.returncode == 2 and "missing.pem" in bad.stderr


async def test_a_tls_client_without_certificate_is_reached_over_its_connection(
    kamailio_tls: Kamailio, pki: dict[str, str]
) -> None:
    """RFC 5923: our Via says ;alias, so Kamailio reuses bob's connection to reach him (bob
    has no certificate, so nobody could open a TLS connection to him)."""
    inbox: list[IncomingRequest] = []
    bob_wire = Wire()
    async with (
        registered(kamailio_tls, "2222", pki, bob_wire, cert=False) as bob,
        registered(kamailio_tls, "1111", pki, cert=False) as alice,
    ):
        bob.on_request("MESSAGE", inbox.append)
        response = await alice.message(aor(kamailio_tls, "2222"), "no certificate needed")
        with trio.fail_after(5):
            while not inbox:
                await trio.sleep(0.01)
    assert response.status_code == 200
    assert [m.text for m in inbox] == ["no certificate needed"]
    assert any(d == "in" and line.startswith("MESSAGE ") for d, line, _ in bob_wire.seen)
