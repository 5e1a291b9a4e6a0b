"""Locating servers through DNS (RFC 3263) with a real DNS server: dnsmasq on 127.0.0.1.

dnsmasq serves the zone example.test: SRV records point at ``pbx.example.test`` on the
test Kamailio's ports (Kamailio treats example.test as its own domain). sipx clients that
only know ``sip:example.test`` register, ask OPTIONS and call extension 100 over UDP and
TCP, and over TLS with the certificate checked against the URI's domain (RFC 5922).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from peers import USERS, Kamailio, SIPp, free_port, require_binary

from sipx import AsyncClient, Auth, TransportError

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
DOMAIN = "example.test"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A test CA and a certificate naming only the domain (not the SRV target, not the IP)."""
    import trustme

    ca = trustme.CA()
    issued = ca.issue_cert(DOMAIN)
    folder = tmp_path_factory.mktemp("srv_pki")
    files = {name: folder / f"{name}.pem" for name in ("ca", "cert", "key")}
    ca.cert_pem.write_to_path(str(files["ca"]))
    files["cert"].write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(files["key"]))
    return files


@pytest.fixture(scope="module")
def kamailio_domain(
    tmp_path_factory: pytest.TempPathFactory, echo_uas: SIPp, pki: dict[str, Path]
) -> Iterator[Kamailio]:
    """A Kamailio serving example.test on UDP, TCP and TLS (with the domain's certificate)."""
    require_binary("kamailio")
    k = Kamailio.start(
        free_port(),
        echo_uri=f"sip:{echo_uas.hostport}",
        run_dir=tmp_path_factory.mktemp("kamailio_domain"),
        extra_defines=[f'SIP_DOMAIN="{DOMAIN}"'],
        tls_cert=pki["cert"],
        tls_key=pki["key"],
    )
    try:
        yield k
    finally:
        k.stop()


def zone(k: Kamailio) -> dict[str, object]:
    """SRV for the three services; the best-priority UDP/TCP target does not resolve."""
    assert k.tls_port is not None
    srv = []
    for service, port in (("_sip._udp", k.port), ("_sip._tcp", k.port), ("_sips._tcp", k.tls_port)):
        name = f"{service}.{DOMAIN}"
        if service != "_sips._tcp":
            srv.append((name, f"gone.{DOMAIN}", port, 5, 0))  # no address: skipped
        srv.append((name, f"pbx.{DOMAIN}", port, 10, 0))
    return {"srv": srv, "hosts": {f"pbx.{DOMAIN}": HOST}, "domain": DOMAIN}


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
async def test_register_options_and_call_through_srv(
    transport: str, kamailio_domain: Kamailio, dnsmasq: object
) -> None:
    dns = dnsmasq(**zone(kamailio_domain))  # type: ignore[operator]
    sent_to: set[tuple[str, int]] = set()

    def trace(direction: str, data: bytes, address: tuple[str, int], tr: str) -> None:
        if direction == "out":
            sent_to.add((address[0], address[1]))

    aor = f"sip:1111@{DOMAIN}"
    async with AsyncClient(
        HOST,
        0,
        transport,
        Auth.Digest("1111", USERS["1111"]),
        nameservers=[dns.nameserver],
        trace=trace,
        timeout=5,
    ) as client:
        options = await client.options(f"sip:{DOMAIN}")
        registered = await client.register(aor, expires=60)
        call = await client.call(f"sip:100@{DOMAIN}")
        assert call.established, call.final_response
        await trio.sleep(0.3)  # let the ACK reach the echo before the BYE (see TLS tests)
        bye = await call.bye()
        gone = await client.unregister(aor)
    assert options.status_code == 200
    assert registered.status_code == 200 and [r.status_code for r in registered.history] == [401]
    assert bye.status_code == 200 and gone.status_code == 200
    assert sent_to == {(HOST, kamailio_domain.port)}
    service = "_sip._udp" if transport == "UDP" else "_sip._tcp"
    asked = dns.queries()
    assert ("SRV", f"{service}.{DOMAIN}") in asked
    assert ("A", f"gone.{DOMAIN}") in asked and ("A", f"pbx.{DOMAIN}") in asked
    # The SRV answer was cached: one SRV query however many requests went out.
    assert asked.count(("SRV", f"{service}.{DOMAIN}")) == 1


async def test_tls_through_srv_checks_the_certificate_for_the_domain(
    kamailio_domain: Kamailio, dnsmasq: object, pki: dict[str, Path]
) -> None:
    dns = dnsmasq(**zone(kamailio_domain))  # type: ignore[operator]
    async with AsyncClient(
        HOST, 0, "TLS", nameservers=[dns.nameserver], verify=str(pki["ca"]), timeout=5
    ) as client:
        response = await client.options(f"sip:{DOMAIN}")
    assert response.status_code == 200
    # The certificate names example.test only: the same server reached by address fails
    # (a new client: the first one would reuse its connection).
    async with AsyncClient(HOST, 0, "TLS", verify=str(pki["ca"]), timeout=5) as client:
        with pytest.raises(TransportError, match="mismatch"):
            await client.options(f"sip:{HOST}:{kamailio_domain.tls_port}")
    assert ("SRV", f"_sips._tcp.{DOMAIN}") in dns.queries()


async def test_without_srv_records_the_name_is_used_on_the_default_port(
    dnsmasq: object,
) -> None:
    # a loopback address of its own: nothing listens on its 5060, whatever else runs here
    unused = "127.0.59.1"
    dns = dnsmasq(srv=[], hosts={DOMAIN: unused}, domain=DOMAIN)  # type: ignore[operator]
    async with AsyncClient(HOST, 0, "TCP", nameservers=[dns.nameserver], timeout=5) as client:
        with pytest.raises(TransportError) as caught:
            await client.options(f"sip:{DOMAIN}")
    assert f"{unused}:5060" in str(caught.value)  # refused
    assert ("SRV", f"_sip._tcp.{DOMAIN}") in dns.queries()


async def test_a_dot_target_means_the_domain_offers_no_sip(dnsmasq: object) -> None:
    dns = dnsmasq(srv=[(f"_sip._udp.{DOMAIN}", None)], hosts={}, domain=DOMAIN)  # type: ignore[operator]
    async with AsyncClient(HOST, 0, "UDP", nameservers=[dns.nameserver], timeout=5) as client:
        with pytest.raises(TransportError, match="offers no such service"):
            await client.options(f"sip:{DOMAIN}")


@pytest.mark.parametrize("transport", ["TCP", "TLS"])
async def test_the_next_srv_target_when_the_first_refuses(
    transport: str, kamailio_domain: Kamailio, dnsmasq: object, pki: dict[str, Path]
) -> None:
    dead = free_port("tcp")  # nothing listens there
    service = "_sip._tcp" if transport == "TCP" else "_sips._tcp"
    good = kamailio_domain.port if transport == "TCP" else kamailio_domain.tls_port
    assert good is not None
    dns = dnsmasq(  # type: ignore[operator]
        srv=[
            (f"{service}.{DOMAIN}", f"down.{DOMAIN}", dead, 5, 0),
            (f"{service}.{DOMAIN}", f"pbx.{DOMAIN}", good, 10, 0),
        ],
        hosts={f"down.{DOMAIN}": HOST, f"pbx.{DOMAIN}": HOST},
        domain=DOMAIN,
    )
    sent: list[tuple[int, str]] = []  # (port, top Via) of every request sent

    def trace(direction: str, data: bytes, address: tuple[str, int], tr: str) -> None:
        if direction == "out":
            via = next(line for line in data.split(b"\r\n") if line.lower().startswith(b"via:"))
            sent.append((address[1], via.decode()))

    async with AsyncClient(
        HOST,
        0,
        transport,
        nameservers=[dns.nameserver],
        verify=str(pki["ca"]),
        trace=trace,
        timeout=5,
    ) as client:
        response = await client.options(f"sip:{DOMAIN}")
    assert response.status_code == 200
    assert [port for port, _ in sent] == [dead, good]
    first_via, second_via = (via for _, via in sent)
    assert first_via != second_via  # a new transaction: a new branch


async def test_naptr_names_the_srv_records_of_our_transport(
    kamailio_domain: Kamailio, dnsmasq: object
) -> None:
    provider = f"provider.{DOMAIN}"
    dns = dnsmasq(  # type: ignore[operator]
        naptr=[
            (DOMAIN, 10, 50, "s", "SIP+D2T", "", f"_sip._tcp.{provider}"),
            (DOMAIN, 20, 50, "s", "SIP+D2U", "", f"_sip._udp.{provider}"),
            (DOMAIN, 5, 50, "s", "SIPS+D2T", "", f"_sips._tcp.{provider}"),  # not for us
        ],
        srv=[
            (f"_sip._tcp.{provider}", f"pbx.{DOMAIN}", kamailio_domain.port, 10, 0),
            (f"_sip._udp.{provider}", f"pbx.{DOMAIN}", kamailio_domain.port, 10, 0),
        ],
        hosts={f"pbx.{DOMAIN}": HOST},
        domain=DOMAIN,
    )
    for transport in ("UDP", "TCP"):
        async with AsyncClient(
            HOST, 0, transport, nameservers=[dns.nameserver], timeout=5
        ) as client:
            response = await client.options(f"sip:{DOMAIN}")
        assert response.status_code == 200, transport
    asked = dns.queries()
    assert ("NAPTR", DOMAIN) in asked
    assert ("SRV", f"_sip._udp.{provider}") in asked and ("SRV", f"_sip._tcp.{provider}") in asked
    # The names NAPTR replaced were never asked for.
    assert not {("SRV", f"_sip._udp.{DOMAIN}"), ("SRV", f"_sip._tcp.{DOMAIN}")} & set(asked)
