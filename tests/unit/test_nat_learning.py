"""received/rport in responses (RFC 3581) are learned and used in later Contacts."""

from __future__ import annotations

import trio
import trio.testing

import sipx
from sipx.testing import MemoryNetwork

SERVER = ("127.0.0.1", 5080)


async def _answer(sock: object, via_params: str) -> sipx.Request:
    data, source = await sock.receive()  # type: ignore[attr-defined]
    request = sipx.parse_message(data)
    assert isinstance(request, sipx.Request)
    response = sipx.Response(200)
    top, *rest = request.headers.get_list("Via")
    response.headers.add("Via", top + via_params)
    for value in rest:
        response.headers.add("Via", value)
    for name in ("From", "Call-ID", "CSeq"):
        response.headers[name] = request.headers[name]
    response.headers["To"] = request.headers["To"] + ";tag=srv"
    response.headers["Contact"] = (
        request.headers.get("Contact", "<sip:x@127.0.0.1>") + ";expires=60"
    )
    sock.send(response.to_bytes(), source)  # type: ignore[attr-defined]
    return request


async def test_contact_uses_the_address_the_registrar_saw() -> None:
    network = MemoryNetwork()
    async with (
        network.socket(SERVER) as sock,
        sipx.AsyncClient("127.0.0.1", 5062, network=network) as client,
    ):
        async with trio.open_nursery() as nursery:
            first: list[sipx.Request] = []

            async def serve_first() -> None:
                first.append(await _answer(sock, ";received=203.0.113.7;rport=40123"))

            nursery.start_soon(serve_first)
            await client.register("sip:1111@127.0.0.1:5080")
        assert first[0].contact[0].uri.host == "127.0.0.1"
        assert first[0].top_via.has_rport

        async with trio.open_nursery() as nursery:
            second: list[sipx.Request] = []

            async def serve_second() -> None:
                second.append(await _answer(sock, ";received=127.0.0.1;rport=5062"))

            nursery.start_soon(serve_second)
            await client.register("sip:1111@127.0.0.1:5080")
        contact = second[0].contact[0].uri
        assert (contact.host, contact.port) == ("203.0.113.7", 40123)

        async with trio.open_nursery() as nursery:
            third: list[sipx.Request] = []

            async def serve_third() -> None:
                third.append(await _answer(sock, ""))

            nursery.start_soon(serve_third)
            await client.register("sip:1111@127.0.0.1:5080")
        # The registrar now saw our own address: the learned NAT mapping is dropped.
        contact = third[0].contact[0].uri
        assert (contact.host, contact.port) == ("127.0.0.1", 5062)


async def test_challenge_answer_carries_the_learned_contact() -> None:
    network = MemoryNetwork()
    async with (
        network.socket(SERVER) as sock,
        sipx.AsyncClient(
            "127.0.0.1", 5063, network=network, auth=sipx.Auth.Digest("1111", "1111xxx")
        ) as client,
    ):
        seen: list[sipx.Request] = []

        async def registrar() -> None:
            data, source = await sock.receive()
            request = sipx.parse_message(data)
            assert isinstance(request, sipx.Request)
            seen.append(request)
            challenge = sipx.Response(401)
            challenge.headers.add(
                "Via", request.headers["Via"] + ";received=203.0.113.9;rport=41000"
            )
            for name in ("From", "To", "Call-ID", "CSeq"):
                challenge.headers[name] = request.headers[name]
            challenge.headers["WWW-Authenticate"] = 'Digest realm="sipx", nonce="abc", qop="auth"'
            sock.send(challenge.to_bytes(), source)
            seen.append(await _answer(sock, ";received=203.0.113.9;rport=41000"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(registrar)
            response = await client.register("sip:1111@127.0.0.1:5080")
    assert response.status_code == 200
    first, retry = seen
    assert (first.contact[0].uri.host, first.contact[0].uri.port) == ("127.0.0.1", 5063)
    assert "Authorization" in retry.headers
    assert (retry.contact[0].uri.host, retry.contact[0].uri.port) == ("203.0.113.9", 41000)
