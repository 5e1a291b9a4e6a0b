"""SIP over TLS on 127.0.0.1: two sipx clients, certificates from a test CA (trustme)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trio
import trustme

import sipx
from sipx._core.framer import StreamFramer
from sipx._core.parser import parse_message

LOOPBACK = "127.0.0.1"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def pki(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """PEM files: the CA, a certificate for 127.0.0.1 and localhost, one for another name."""
    folder = tmp_path_factory.mktemp("pki")
    files = {"ca": str(folder / "ca.pem")}
    ca.cert_pem.write_to_path(files["ca"])
    for name, hosts in (
        ("local", ("127.0.0.1", "localhost")),
        ("localhost", ("localhost",)),
        ("other", ("sip.example.test",)),
    ):
        issued = ca.issue_cert(*hosts)
        files[name] = str(folder / f"{name}.pem")  # chain and key in one file
        issued.private_key_and_cert_chain_pem.write_to_path(files[name])
        files[f"{name}-cert"] = str(folder / f"{name}-cert.pem")
        files[f"{name}-key"] = str(folder / f"{name}-key.pem")
        Path(files[f"{name}-cert"]).write_bytes(b"".join(p.bytes() for p in issued.cert_chain_pems))
        issued.private_key_pem.write_to_path(files[f"{name}-key"])
    return files


def tls_server(cert: str | tuple[str, str]) -> sipx.AsyncClient:
    return sipx.AsyncClient(LOOPBACK, 0, transport="TLS", cert=cert)


async def test_options_and_message_over_tls(pki: dict[str, str]) -> None:
    received: list[sipx.IncomingRequest] = []
    async with (
        tls_server((pki["local-cert"], pki["local-key"])) as server,
        sipx.AsyncClient(LOOPBACK, 0, transport="TLS", verify=pki["ca"]) as client,
    ):
        server.on_request("MESSAGE", received.append)

        def registrar(incoming: sipx.IncomingRequest) -> sipx.Response:
            received.append(incoming)
            return sipx.Response(200)

        server.on_request("REGISTER", registrar)
        port = server.local_address.port
        with trio.fail_after(5):
            options = await client.options(f"sip:bob@{LOOPBACK}:{port}")
            message = await client.message(f"sip:bob@{LOOPBACK}:{port}", "over TLS")
            register = await client.register(f"sip:alice@{LOOPBACK}:{port}")
        client_port = client.local_address.port
    assert options.status_code == message.status_code == register.status_code == 200
    incoming, registration = received
    assert incoming.text == "over TLS"
    via = incoming.request.top_via
    assert (via.transport, via.host, via.port) == ("TLS", LOOPBACK, client_port)
    contact = registration.request.contact[0].uri
    assert contact.params.get("transport") == "tls" and contact.port == client_port


async def test_certificate_checked_for_the_uri_host_name(pki: dict[str, str]) -> None:
    # The certificate names only localhost: reached as localhost it is good (the check used
    # the URI's name, not the address it resolved to); reached as 127.0.0.1 it is not.
    async with (
        tls_server(pki["localhost"]) as server,
        sipx.AsyncClient(LOOPBACK, 0, transport="TLS", verify=pki["ca"]) as client,
    ):
        port = server.local_address.port
        with trio.fail_after(5):
            response = await client.options(f"sip:localhost:{port}")
    assert response.status_code == 200
    async with (
        tls_server(pki["localhost"]) as server,
        sipx.AsyncClient(LOOPBACK, 0, transport="TLS", verify=pki["ca"]) as client,
    ):
        with trio.fail_after(5), pytest.raises(sipx.TransportError, match="mismatch"):
            await client.options(f"sip:{LOOPBACK}:{server.local_address.port}")


async def test_a_certificate_for_another_name_is_refused(pki: dict[str, str]) -> None:
    async with (
        tls_server(pki["other"]) as server,
        sipx.AsyncClient(LOOPBACK, 0, transport="TLS", verify=pki["ca"]) as client,
    ):
        port = server.local_address.port
        with trio.fail_after(5), pytest.raises(sipx.TransportError) as caught:
            await client.options(f"sip:{LOOPBACK}:{port}")
    message = str(caught.value)
    assert "OPTIONS" in message and f"{LOOPBACK}:{port}" in message
    assert "mismatch" in message.lower()


async def test_an_untrusted_certificate_fails_at_once(pki: dict[str, str]) -> None:
    # verify=True: the system's CAs, which do not know the test CA.
    async with (
        tls_server(pki["local"]) as server,
        sipx.AsyncClient(LOOPBACK, 0, transport="TLS") as client,
    ):
        start = trio.current_time()
        with trio.fail_after(10), pytest.raises(sipx.TransportError) as caught:
            await client.options(f"sip:{LOOPBACK}:{server.local_address.port}")
        assert trio.current_time() - start < 10  # not after Timer F's 32 s
    assert "certificate" in str(caught.value).lower()


async def test_verify_false_accepts_any_certificate(pki: dict[str, str]) -> None:
    async with (
        tls_server(pki["other"]) as server,
        sipx.AsyncClient(LOOPBACK, 0, transport="TLS", verify=False) as client,
    ):
        with trio.fail_after(5):
            response = await client.options(f"sip:{LOOPBACK}:{server.local_address.port}")
    assert response.status_code == 200


async def test_an_ssl_context_is_used_as_given(pki: dict[str, str], ca: trustme.CA) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with (
        tls_server(pki["local"]) as server,
        sipx.AsyncClient(LOOPBACK, 0, transport="TLS", verify=context) as client,
    ):
        with trio.fail_after(5):
            response = await client.options(f"sip:{LOOPBACK}:{server.local_address.port}")
    assert response.status_code == 200


async def test_a_client_without_certificate_serves_no_tls_connection(pki: dict[str, str]) -> None:
    async with (
        sipx.AsyncClient(LOOPBACK, 0, transport="TLS", verify=pki["ca"]) as client,
        tls_server(pki["local"]) as server,
    ):
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with trio.fail_after(5), pytest.raises(trio.BrokenResourceError):
            stream = await trio.open_ssl_over_tcp_stream(
                LOOPBACK, client.local_address.port, ssl_context=context
            )
            await stream.do_handshake()
        # ... and it still makes requests over the connections it opens.
        with trio.fail_after(5):
            response = await client.options(f"sip:{LOOPBACK}:{server.local_address.port}")
    assert response.status_code == 200


async def test_a_raw_tls_peer_gets_its_answer_on_its_connection(
    pki: dict[str, str], ca: trustme.CA
) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    request = (
        b"OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/TLS 127.0.0.1:9;branch=z9hG4bKtls1\r\n"
        b"From: <sip:alice@127.0.0.1>;tag=a\r\nTo: <sip:bob@127.0.0.1>\r\n"
        b"Call-ID: tls-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    async with tls_server(pki["local"]) as server:
        stream = await trio.open_ssl_over_tcp_stream(
            LOOPBACK, server.local_address.port, ssl_context=context
        )
        async with stream:
            await stream.send_all(request)
            framer = StreamFramer()
            messages: list[bytes] = []
            with trio.fail_after(5):
                while not messages:
                    messages = framer.feed(await stream.receive_some(65_536))
    response = parse_message(messages[0])
    assert isinstance(response, sipx.Response)
    assert response.status_code == 200 and response.top_via.branch == "z9hG4bKtls1"


async def test_tls_without_a_port_goes_to_5061() -> None:
    async with sipx.AsyncClient(LOOPBACK, 0, transport="TLS", timeout=5) as client:
        with trio.fail_after(10), pytest.raises(sipx.SIPError) as caught:
            await client.options(f"sip:{LOOPBACK}")  # nothing serves TLS on 5061 here
    assert f"{LOOPBACK}:5061" in str(caught.value)


@pytest.mark.parametrize("option", ["cert", "verify"])
def test_unreadable_files_are_a_value_error_naming_them(option: str, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(ValueError, match=r"missing\.pem"):
        sipx.AsyncClient(LOOPBACK, 0, transport="TLS", **{option: missing})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'UDP', 'TCP', 'TLS', 'WS' or 'WSS'"):
        sipx.AsyncClient(LOOPBACK, 0, transport="SCTP")


async def test_a_tls_connection_cut_without_close_notify_does_not_stop_the_client(
    pki: dict[str, str], ca: trustme.CA
) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with tls_server(pki["local"]) as server:
        port = server.local_address.port
        for _ in range(3):
            stream = await trio.open_ssl_over_tcp_stream(LOOPBACK, port, ssl_context=context)
            await stream.send_all(b"OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\n")  # half a request
            await trio.aclose_forcefully(stream.transport_stream)  # no close_notify
        await trio.sleep(0.2)
        async with sipx.AsyncClient(LOOPBACK, 0, transport="TLS", verify=pki["ca"]) as client:
            with trio.fail_after(5):
                response = await client.options(f"sip:{LOOPBACK}:{port}")
    assert response.status_code == 200
