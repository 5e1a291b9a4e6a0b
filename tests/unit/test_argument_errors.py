"""Mistakes in what users pass are reported at the public boundary, naming the argument
(not as a TypeError deep in the URI parser, 42 NUL bytes sent as a message, or trio's
wording about ``seconds``)."""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import pytest
import trio
import trio.testing

import sipx
from sipx.testing import MemoryNetwork

URI = "sip:bob@127.0.0.1:5099"


@pytest.mark.parametrize(
    ("call", "error", "pattern"),
    [
        (lambda c: c.message(URI, 42), TypeError, "text is a string"),
        (lambda c: c.message(42, "hi"), TypeError, "uri is a SIP URI"),
        (lambda c: c.register(1111), TypeError, "aor is a SIP URI"),
        (lambda c: c.register("sip:1111@127.0.0.1", expires=-1), ValueError, "expires"),
        (lambda c: c.options(URI, timeout=-1), ValueError, "timeout must be a number"),
        (lambda c: c.options(URI, timeout=math.nan), ValueError, "timeout must be a number"),
        (lambda c: c.options(URI, timeout="5"), TypeError, "timeout is a number of seconds"),
        (lambda c: c.options(URI, port=70000), ValueError, "port must be a port number"),
        (lambda c: c.options(URI, host=5), TypeError, "host is a string"),
        (lambda c: c.request("MESSAGE", URI, body=3.5), TypeError, "body is text, bytes"),
        (lambda c: c.options(URI, auth=("a", "b")), TypeError, "auth is an Auth.Digest"),
        (lambda c: c.call(URI, from_uri=7), TypeError, "from_uri is a SIP URI"),
    ],
)
async def test_bad_arguments_name_themselves(
    autojump_clock: trio.testing.MockClock, call: Any, error: type[Exception], pattern: str
) -> None:
    network = MemoryNetwork()
    async with sipx.AsyncClient("127.0.0.1", 0, network=network) as client:
        with pytest.raises(error, match=pattern):
            await call(client)
        assert network.log == []  # nothing was sent


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"local_port": 70000}, ValueError, "local_port must be a port number from 0 to 65535"),
        ({"local_port": "5060"}, TypeError, "local_port is a port number"),
        ({"timeout": -2}, ValueError, "timeout must be a number of seconds >= 0"),
        ({"transport": 17}, TypeError, "transport is a string"),
        ({"auth": "1111:secret"}, TypeError, "auth is an Auth.Digest"),
        ({"rtp_ports": (20000, 10000)}, ValueError, "rtp_ports"),
    ],
)
def test_bad_constructor_arguments(
    kwargs: dict[str, Any], error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        sipx.AsyncClient(**kwargs)


def test_digest_credentials_are_checked_when_made_and_the_password_is_not_echoed() -> None:
    with pytest.raises(TypeError, match="username is a string, not int"):
        sipx.Auth.Digest(1111, "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="password is a string, not int") as caught:
        sipx.Auth.Digest("1111", 98765)  # type: ignore[arg-type]
    assert "98765" not in str(caught.value)


async def test_a_blocking_client_inside_trio_says_to_use_async_client() -> None:
    with pytest.raises(RuntimeError, match=r"use 'async with sipx\.AsyncClient"):
        sipx.Client("127.0.0.1", 0)


def test_setting_a_bad_default_timeout_is_refused() -> None:
    client = sipx.AsyncClient("127.0.0.1", 0)
    with pytest.raises(ValueError, match="timeout"):
        client.timeout = -1


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--port", "70000"],
        ["serve", "--tls-port", "-1"],
        ["options", "sip:a@127.0.0.1", "--port", "99999"],
        ["call", "sip:a@127.0.0.1", "--local-port", "x"],
    ],
)
def test_the_cli_refuses_bad_ports_without_a_traceback(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sipx", *argv], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2, done
    assert "port" in done.stderr and "Traceback" not in done.stderr, done.stderr


async def test_a_timeout_says_when_only_malformed_replies_came_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A server answering garbage: the TimeoutError says that malformed messages from it
    were dropped (the cause), not only "no final response"."""
    network = MemoryNetwork()
    peer_address = ("127.0.0.1", 5098)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(peer_address) as peer,
    ):

        async def answer_garbage() -> None:
            while True:
                _, source = await peer.receive()
                peer.send(b"SIP/2.0 200 OK\r\nVia: garbage\r\n\r\n", source)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_garbage)
            with pytest.raises(
                sipx.TimeoutError, match=r"malformed messages? from 127\.0\.0\.1:5098"
            ):
                await client.options(f"sip:x@{peer_address[0]}:{peer_address[1]}", timeout=3)
            nursery.cancel_scope.cancel()
        # a silent host gets the plain message
        with pytest.raises(sipx.TimeoutError) as caught:
            await client.options("sip:x@127.0.0.1:5097", timeout=1)
        assert caught.value.detail is None
