"""Whose digest challenges the client answers (sipx._challenge_policy), and that the password
never shows.

Anyone who sees a request's branch can send a 401 for it. The client used to answer any
such challenge (``realm=None``), and one with the configured realm from any host: a digest
of the password for whoever asked. Now a challenge is answered only when it comes from where
the request was sent (its next hop) or from a host the credentials list (``hosts=``); any
other comes back to the caller with the reason in ``response.challenge_unanswered``.

On the memory network a third socket plays the attacker: it reads the REGISTER's branch off
the network log and injects a 401 of its own before the real server answers.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

import sipx
from sipx import Auth
from sipx._cli import _explain_auth_failure
from sipx._core.message import Request
from sipx._core.parser import parse_message
from sipx._core.transaction import make_response
from sipx.testing import MemoryNetwork, MemorySocket, ScriptedUAS

CLIENT = ("127.0.0.1", 5060)
SERVER = ("127.0.0.2", 5080)  # the registrar the request goes to
ATTACKER = ("127.0.0.1", 5066)  # another host on the path (localhost, for hosts= by name)
AOR = "sip:alice@127.0.0.2:5080"
PASSWORD = "s3cr3t-Pa55w0rd"


def challenge(request: Request, realm: str = "evil", nonce: str = "attacker-nonce") -> bytes:
    response = make_response(request, 401, to_tag="x")
    response.headers["WWW-Authenticate"] = f'Digest realm="{realm}", nonce="{nonce}", qop="auth"'
    return response.to_bytes()


@asynccontextmanager
async def scene(
    credentials: Auth.Digest, **client_kwargs: object
) -> AsyncIterator[tuple[MemoryNetwork, sipx.AsyncClient, MemorySocket, MemorySocket]]:
    network = MemoryNetwork()
    async with (
        sipx.AsyncClient(*CLIENT, network=network, auth=credentials, **client_kwargs) as client,  # type: ignore[arg-type]
        network.socket(SERVER) as server,
        network.socket(ATTACKER) as attacker,
    ):
        yield network, client, server, attacker


async def register_with_injected_challenge(
    credentials: Auth.Digest, realm: str = "evil"
) -> tuple[sipx.Response, list[Request]]:
    """The attacker answers the REGISTER with a 401 first; the server stays silent. Returns
    what register() returned and every REGISTER the server received."""
    async with scene(credentials) as (_, client, server, attacker):
        async with trio.open_nursery() as nursery:
            result: list[sipx.Response] = []

            async def register() -> None:
                result.append(await client.register(AOR, timeout=10))

            nursery.start_soon(register)
            data, _ = await server.receive()
            first = parse_message(data)
            assert isinstance(first, Request)
            attacker.send(challenge(first, realm), CLIENT)
            seen = [first]
            with trio.move_on_after(5):  # a retry, if the client answered, reaches the server
                data, _ = await server.receive()
                retry = parse_message(data)
                assert isinstance(retry, Request)
                seen.append(retry)
                server.send(make_response(retry, 200, to_tag="ok").to_bytes(), CLIENT)
        return result[0], seen


async def test_a_challenge_from_another_host_is_not_answered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    response, seen = await register_with_injected_challenge(Auth.Digest("alice", PASSWORD))
    assert len(seen) == 1  # no second REGISTER: nothing computed from the attacker's nonce
    assert response.status_code == 401
    assert response.source == ATTACKER
    why = response.challenge_unanswered
    assert why is not None
    assert "127.0.0.1:5066" in why and "127.0.0.2:5080" in why and "hosts=" in why


async def test_the_configured_realm_from_another_host_is_not_answered_either(
    autojump_clock: trio.testing.MockClock,
) -> None:
    credentials = Auth.Digest("alice", PASSWORD, realm="sipx")
    response, seen = await register_with_injected_challenge(credentials, realm="sipx")
    assert len(seen) == 1
    assert response.status_code == 401 and response.challenge_unanswered


@pytest.mark.parametrize("listed", ["127.0.0.1", "127.0.0.1:5066"])
async def test_a_listed_host_may_challenge(
    autojump_clock: trio.testing.MockClock, listed: str
) -> None:
    await listed_host_may_challenge(listed)


async def test_a_listed_host_name_may_challenge() -> None:
    """A name is resolved (getaddrinfo, in a thread: real time, not the autojump clock)."""
    await listed_host_may_challenge("localhost")


async def listed_host_may_challenge(listed: str) -> None:
    credentials = Auth.Digest("alice", PASSWORD, hosts=[listed])
    response, seen = await register_with_injected_challenge(credentials)
    assert response.status_code == 200
    assert len(seen) == 2
    authorization = seen[1].headers["Authorization"]
    assert 'realm="evil"' in authorization and 'nonce="attacker-nonce"' in authorization


async def test_a_listed_host_on_another_port_may_not(
    autojump_clock: trio.testing.MockClock,
) -> None:
    credentials = Auth.Digest("alice", PASSWORD, hosts=["127.0.0.1:5070"])
    response, seen = await register_with_injected_challenge(credentials)
    assert len(seen) == 1 and response.status_code == 401


async def test_the_next_hop_challenge_is_answered(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, SERVER, users={"alice": PASSWORD}) as uas,
        sipx.AsyncClient(*CLIENT, network=network, auth=Auth.Digest("alice", PASSWORD)) as client,
    ):
        response = await client.register(AOR)
    assert response.status_code == 200
    assert response.history[0].source == SERVER
    assert response.history[0].challenge_unanswered is None
    assert uas.authorized == 1


async def test_an_outbound_proxy_relays_the_challenges_of_the_domain(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With an outbound proxy, every response comes from the proxy: its 407s (and the 401s
    it relays) are the next hop's, and are answered."""
    network = MemoryNetwork()
    proxy = ("127.0.0.3", 5070)
    async with (
        ScriptedUAS(network, proxy, users={"alice": PASSWORD}, auth_methods=["MESSAGE"]) as uas,
        sipx.AsyncClient(
            *CLIENT,
            network=network,
            auth=Auth.Digest("alice", PASSWORD),
            outbound_proxy="sip:127.0.0.3:5070",
        ) as client,
    ):
        response = await client.message("sip:bob@example.com", "hi")
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    assert uas.authorized == 1


async def test_retry_with_auth_refuses_a_foreign_challenge_with_the_reason(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scene(Auth.Digest("alice", PASSWORD)) as (_, client, server, attacker):
        client.auth = None
        async with trio.open_nursery() as nursery:
            result: list[sipx.Response] = []

            async def register() -> None:
                result.append(await client.register(AOR, timeout=10))

            nursery.start_soon(register)
            data, _ = await server.receive()
            first = parse_message(data)
            assert isinstance(first, Request)
            attacker.send(challenge(first), CLIENT)
        [response] = result
        assert response.challenge_unanswered == "no credentials to answer it with (auth=)"
        with pytest.raises(sipx.AuthError, match=r"127\.0\.0\.1:5066") as caught:
            await client.retry_with_auth(response, auth=Auth.Digest("alice", PASSWORD))
        assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    ("hosts", "error"),
    [
        ("proxy.example.com", TypeError),  # a string, not a list of them
        ([5060], TypeError),
        (["host:99999"], ValueError),
        (["user@host"], ValueError),
        ([""], ValueError),
    ],
)
def test_hosts_are_checked_when_the_credentials_are_made(hosts: object, error: type) -> None:
    with pytest.raises(error, match=r"host"):
        Auth.Digest("alice", PASSWORD, hosts=hosts)  # type: ignore[arg-type]


def test_the_cli_says_why_a_challenge_was_not_answered(capsys: pytest.CaptureFixture[str]) -> None:
    response = sipx.Response(401)
    response.request = sipx.Request("REGISTER", "sip:alice@127.0.0.2")
    response.challenge_unanswered = "the 401 challenge came from 127.0.0.1:5066, not from ..."
    args = argparse.Namespace(user="alice", password=PASSWORD)
    _explain_auth_failure(401, "Unauthorized", response, args)
    err = capsys.readouterr().err
    assert "did not answer the challenge: the 401 challenge came from 127.0.0.1:5066" in err
    assert PASSWORD not in err


# -- the password never shows ---------------------------------------------------------------------
async def test_the_password_appears_in_no_log_repr_error_or_trace(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every sipx logger, the wire included
    traced: list[bytes] = []
    texts: list[str] = []
    credentials = Auth.Digest("alice", PASSWORD, realm=None, hosts=["localhost"])
    texts += [repr(credentials), str(credentials)]
    network = MemoryNetwork()
    trace = lambda direction, data, address, transport: traced.append(data)  # noqa: E731
    async with (
        ScriptedUAS(network, SERVER, users={"alice": "another password"}),
        sipx.AsyncClient(*CLIENT, network=network, auth=credentials, trace=trace) as client,
    ):
        refused = await client.register(AOR)  # wrong password: 401, answered, 401 again
        texts += [repr(client), repr(refused), str(refused.challenge_unanswered)]
        texts += [repr(r) for r in refused.history]
        try:
            await client.retry_with_auth(refused, auth=credentials)
        except sipx.SIPError as exc:
            texts += [str(exc), repr(exc)]
        with pytest.raises(TypeError) as caught:
            Auth.Digest("alice", 1234)  # type: ignore[arg-type]
        texts.append(str(caught.value))
    assert refused.status_code == 401
    assert len(traced) >= 4
    assert len(caplog.records) >= 6  # the wire: 3 requests, 3 responses
    everything = "\n".join(
        [*texts, *(r.getMessage() for r in caplog.records), caplog.text]
    ).encode() + b"".join(traced)
    assert PASSWORD.encode() not in everything
    assert b"1234" not in b"\n".join(t.encode() for t in texts[-1:])


async def test_the_next_hop_may_answer_from_another_port(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Same IP address, another port (a server's other socket, or a new TCP connection
    after ours broke, RFC 3261 18.2.2): still the next hop."""
    network = MemoryNetwork()
    credentials = Auth.Digest("alice", PASSWORD)
    async with (
        sipx.AsyncClient(*CLIENT, network=network, auth=credentials) as client,
        network.socket(SERVER) as server,
        network.socket((SERVER[0], 5081)) as other_port,
        trio.open_nursery() as nursery,
    ):
        result: list[sipx.Response] = []

        async def register() -> None:
            result.append(await client.register(AOR, timeout=10))

        nursery.start_soon(register)
        data, _ = await server.receive()
        first = parse_message(data)
        assert isinstance(first, Request)
        other_port.send(challenge(first, realm="sipx"), CLIENT)
        data, _ = await server.receive()
        retry = parse_message(data)
        assert isinstance(retry, Request) and "Authorization" in retry.headers
        server.send(make_response(retry, 200, to_tag="ok").to_bytes(), CLIENT)
    assert result[0].status_code == 200
