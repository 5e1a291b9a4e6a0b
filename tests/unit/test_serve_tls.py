"""``sipx serve`` with a certificate: TLS on a port of its own, sipx clients over TLS."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trustme

import sipx
from sipx.testing import DevServer

LOOPBACK = "127.0.0.1"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    ca = trustme.CA()
    folder = tmp_path_factory.mktemp("serve_pki")
    files = {"ca": str(folder / "ca.pem"), "server": str(folder / "server.pem")}
    ca.cert_pem.write_to_path(files["ca"])
    ca.issue_cert(LOOPBACK, "localhost").private_key_and_cert_chain_pem.write_to_path(
        files["server"]
    )
    return files


def tls_client(user: str, pki: dict[str, str]) -> sipx.AsyncClient:
    """A TLS client without a certificate of its own: reachable only over its connection."""
    return sipx.AsyncClient(
        LOOPBACK,
        0,
        "TLS",
        sipx.Auth.Digest(user, f"{user}xxx"),
        verify=pki["ca"],
        timeout=5,
    )


async def test_register_message_and_calls_over_tls(pki: dict[str, str]) -> None:
    inbox: list[sipx.IncomingRequest] = []
    async with DevServer(LOOPBACK, 0, cert=pki["server"], tls_port=0) as server:
        tls = server.tls_address
        assert tls is not None and tls[1] != server.address[1]
        assert server.uri("2222", "TLS") == f"sip:2222@{LOOPBACK}:{tls[1]};transport=tls"
        async with tls_client("1111", pki) as alice, tls_client("2222", pki) as bob:
            bob.on_request("MESSAGE", inbox.append)
            for client, user in ((alice, "1111"), (bob, "2222")):
                response = await client.register(server.uri(user, "TLS"))
                assert response.status_code == 200
                assert [r.status_code for r in response.history] == [401]
            [binding] = server.registrations["2222"]
            assert binding.transport == "TLS"
            # bob has no certificate (no TLS listener): the server uses bob's connection.
            message = await alice.message(server.uri("2222", "TLS"), "hi over TLS")
            assert message.status_code == 200
            assert [m.text for m in inbox] == ["hi over TLS"]
            echo = await alice.call(server.uri("100", "TLS"))
            assert echo.established
            assert (await echo.bye()).status_code == 200

            calls, received = trio.open_memory_channel[sipx.Call](math.inf)

            async def answer() -> None:
                async for incoming in bob.calls():
                    incoming.answer()
                    calls.send_nowait(incoming)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer)
                with trio.fail_after(5):
                    call = await alice.call(server.uri("2222", "TLS"))
                    answered = await received.receive()
                    assert call.established and answered.established
                    while not answered.acked:
                        await trio.sleep(0.01)
                    await call.bye()
                    assert await answered.wait_ended() == "remote"
                nursery.cancel_scope.cancel()


async def test_without_a_certificate_there_is_no_tls(pki: dict[str, str]) -> None:
    async with DevServer(LOOPBACK, 0) as server:
        assert server.tls_address is None
        with pytest.raises(RuntimeError, match="no TLS listener"):
            server.uri("1111", "TLS")


def test_cli_serves_tls_with_cert(
    pki: dict[str, str], tmp_path: Path, serve_banner: Callable[..., str]
) -> None:
    missing = str(tmp_path / "missing.pem")
    bad = subprocess.run(
        [sys.executable, "-m", "sipx", "serve", "--port", "0", "--cert", missing],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert bad.returncode == 2 and "missing.pem" in bad.stderr
    banner = serve_banner("--tls-port", "0", "--cert", pki["server"])
    assert "TLS on port" in banner


async def test_the_blocking_client_over_tls(pki: dict[str, str]) -> None:
    async with DevServer(LOOPBACK, 0, cert=pki["server"], tls_port=0) as server:
        uri = server.uri("1111", "TLS")

        def blocking() -> tuple[int, int]:
            with sipx.Client(
                LOOPBACK, 0, "TLS", sipx.Auth.Digest("1111", "1111xxx"), verify=pki["ca"]
            ) as client:
                registered = client.register(uri)
                options = client.options(uri)
            return registered.status_code, options.status_code

        with trio.fail_after(10):
            assert await trio.to_thread.run_sync(blocking) == (200, 200)
