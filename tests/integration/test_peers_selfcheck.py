"""Self-check of the integration kit: real Kamailio, SIPp, baresip and dnsmasq processes,
no sipx.

If this module fails, the peers (not sipx) are broken: fix the kit first.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from peers import (
    DNS_NXDOMAIN,
    DNS_REFUSED,
    HOST,
    USERS,
    Dnsmasq,
    Kamailio,
    SipClient,
    SIPp,
    SipResponse,
    build_request,
    dns_query,
    free_port,
    parse_challenge,
    query_bindings,
    require_binary,
)

if TYPE_CHECKING:
    import dns.resolver

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_options_200_from_stdlib_socket(kamailio: Kamailio, transport: str) -> None:
    with SipClient(kamailio.host, kamailio.port, transport) as c:
        r = c.options()
    assert r.status == 200, r.raw
    assert r.header("Server") == "kamailio-test"
    assert "INVITE" in (r.header("Allow") or "")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sipp_register_auth(kamailio: Kamailio, sipp, transport: str) -> None:
    rc, trace = sipp.run(
        "register_auth.xml",
        kamailio,
        service="1111",
        auth=("1111", USERS["1111"]),
        transport=transport,
        timeout_s=10,
    )
    assert rc == 0, trace
    assert "SIP/2.0 401 Unauthorized" in trace
    assert "SIP/2.0 200 OK" in trace
    # MD5 challenge: no algorithm= and no opaque (absent algorithm means MD5)
    chal = next(line for line in trace.splitlines() if line.startswith("WWW-Authenticate:"))
    params = parse_challenge(chal.split(":", 1)[1])
    assert params["realm"] == "127.0.0.1"
    assert params["qop"] == "auth"
    assert "algorithm" not in params and "opaque" not in params


def test_sipp_call_to_echo_extension(kamailio: Kamailio, echo_uas: SIPp, sipp) -> None:
    before = echo_uas.log.count("INVITE sip:100@")
    rc, trace = sipp.run(
        "uac_invite_auth.xml",
        kamailio,
        service="100",
        keys={"caller": "1111"},
        auth=("1111", USERS["1111"]),
        timeout_s=10,
    )
    assert rc == 0, trace
    assert "SIP/2.0 407 Proxy Authentication Required" in trace
    assert f"Record-Route: <sip:127.0.0.1:{kamailio.port};lr>" in trace
    # the call really reached the module's echo UAS through Kamailio
    assert echo_uas.running(), echo_uas.describe()
    assert echo_uas.log.count("INVITE sip:100@") == before + 1, echo_uas.describe()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_registered_sipp_uas_answers_and_unregisters(
    kamailio: Kamailio, sipp, transport: str
) -> None:
    uas = sipp.registered_uas(kamailio, "2222", "uas_answer.xml", transport=transport)
    rc, trace = sipp.run(
        "uac_invite_auth.xml",
        kamailio,
        service="2222",
        keys={"caller": "1111"},
        auth=("1111", USERS["1111"]),
        transport=transport,
        timeout_s=10,
    )
    assert rc == 0, trace
    # the UAS answered the call (it lingers 2 s in timewait; no need to wait for its exit)
    assert "SIP/2.0 200 OK" in uas.log and "BYE sip:" in uas.log, uas.describe()
    assert uas.unregister() == 0
    # the binding is gone: 2222 is provisioned but not registered any more
    with SipClient(kamailio.host, kamailio.port, "udp") as c:
        *_, final = c.message("1111", "2222", USERS["1111"])
    assert final.status == 480, final.raw


def test_sha256_instance_challenges_with_sha256(kamailio_sha256: Kamailio) -> None:
    with SipClient(kamailio_sha256.host, kamailio_sha256.port, "udp") as c:
        challenge, final = c.register("1111", USERS["1111"])
    assert challenge.status == 401, challenge.raw
    hdr = challenge.header("WWW-Authenticate") or ""
    assert "algorithm=SHA-256" in hdr, hdr
    assert parse_challenge(hdr)["algorithm"] == "SHA-256"
    # and a SHA-256 answer is accepted (a stdlib digest, not sipx's)
    assert final.status == 200, final.raw


def test_md5_instance_rejects_wrong_password(kamailio: Kamailio) -> None:
    with SipClient(kamailio.host, kamailio.port, "udp") as c:
        challenge, final = c.register("2222", "wrong")
    assert (challenge.status, final.status) == (401, 401), final.raw


def _live_members_of_group(pgid: int) -> list[str]:
    """Non-zombie processes of a process group, read from /proc (independent of peers.py)."""
    left = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        state, _ppid, pgrp = text[text.rfind(")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state not in "ZX":
            left.append(text[: text.rfind(")") + 1])
    return left


def test_kamailio_start_stop_leaves_nothing(tmp_path) -> None:
    port = free_port()
    k = Kamailio.start(port, fr_timer=2000, run_dir=tmp_path / "k")
    pgid = k.proc.pid
    assert k.running()
    k.stop()
    k.stop()  # idempotent
    assert not k.running()
    assert _live_members_of_group(pgid) == []
    # the port is free again for both transports: nothing orphaned holds it
    deadline = time.monotonic() + 2
    while True:
        try:
            Kamailio.start(port, run_dir=tmp_path / "k2").stop()
            break
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert f"SIP_PORT={port}" in " ".join(k.args)


def test_free_port_is_free_and_distinct() -> None:
    import socket

    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20
    for p in list(ports)[:5]:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind(("127.0.0.1", p))


def test_require_binary_skips_locally_and_fails_in_ci(monkeypatch) -> None:
    assert require_binary("sipp")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_binary("no-such-sip-peer-xyz")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI requires the real peer"):
        require_binary("no-such-sip-peer-xyz")
    monkeypatch.setenv("CI", "0")
    with pytest.raises(pytest.skip.Exception):
        require_binary("no-such-sip-peer-xyz")
    assert os.environ["CI"] == "0"


def test_baresip_answers_and_calls(kamailio: Kamailio, baresip, sipp) -> None:
    b = baresip("3333")
    # SIPp calls baresip (auto-answer) through Kamailio
    rc, trace = sipp.run(
        "uac_invite_auth.xml",
        kamailio,
        service="3333",
        keys={"caller": "1111"},
        auth=("1111", USERS["1111"]),
        timeout_s=10,
    )
    assert rc == 0, trace
    # baresip calls the echo extension through Kamailio (407 handled) and hangs up
    off = b.log_offset()
    b.dial(f"sip:100@{kamailio.hostport}")
    b.wait_for(r"Call established", timeout=10, start=off)
    b.hangup()
    # ... and the echo UAS answered its BYE with 200 (log: ANSI stripped, \n line ends)
    b.wait_for(r"\nSIP/2\.0 200 OK\n(?:.+\n)*?CSeq: \d+ BYE\n", timeout=5, start=off)


# --------------------------------------------------------------------------- #
# TLS listener (kamailio_tls fixture)
# --------------------------------------------------------------------------- #
def _verifying_context(kamailio_tls: Kamailio) -> ssl.SSLContext:
    assert kamailio_tls.tls_ca is not None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname
    kamailio_tls.tls_ca.configure_trust(ctx)
    return ctx


def test_tls_options_200_with_verified_certificate(kamailio_tls: Kamailio) -> None:
    assert kamailio_tls.tls_port is not None and kamailio_tls.tls_port != kamailio_tls.port
    assert kamailio_tls.tls_uri == f"sip:127.0.0.1:{kamailio_tls.tls_port};transport=tls"
    ctx = _verifying_context(kamailio_tls)
    with SipClient(
        kamailio_tls.host,
        kamailio_tls.tls_port,
        "tls",
        ssl_context=ctx,
        server_hostname="127.0.0.1",
    ) as c:
        assert isinstance(c.sock, ssl.SSLSocket)
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
        r = c.options()
    assert r.status == 200, r.raw
    assert r.header("Server") == "kamailio-test"
    assert (r.header("Via") or "").startswith("SIP/2.0/TLS "), r.raw
    # the certificate really is checked: without the trustme CA the handshake fails
    with pytest.raises(ssl.SSLCertVerificationError):
        SipClient(
            kamailio_tls.host,
            kamailio_tls.tls_port,
            "tls",
            ssl_context=ssl.create_default_context(),
        )


def test_tls_register_auth_and_plain_listeners(kamailio_tls: Kamailio) -> None:
    assert kamailio_tls.tls_port is not None
    with SipClient(
        kamailio_tls.host,
        kamailio_tls.tls_port,
        "tls",
        ssl_context=_verifying_context(kamailio_tls),
        server_hostname="127.0.0.1",
    ) as c:
        challenge, final = c.register("1111", USERS["1111"])
        assert challenge.status == 401, challenge.raw
        assert final.status == 200, final.raw
        assert f":{c.local_port};transport=tls>" in (final.header("Contact") or ""), final.raw
        # the binding is visible over UDP too (registrations are transport independent)
        bindings = query_bindings(kamailio_tls, "1111")
        assert any(f":{c.local_port};transport=tls>" in b for b in bindings), bindings
        *_, gone = c.register("1111", USERS["1111"], expires=0)
        assert gone.status == 200, gone.raw
    left = query_bindings(kamailio_tls, "1111", transport="tls")
    assert not any(";transport=tls" in b for b in left), left
    # the plain listeners of the TLS instance still answer
    for transport in ("udp", "tcp"):
        with SipClient(kamailio_tls.host, kamailio_tls.port, transport) as c:
            r = c.options()
        assert r.status == 200, (transport, r.raw)


def test_plain_kamailio_has_no_tls(kamailio: Kamailio) -> None:
    assert kamailio.tls_port is None and kamailio.tls_config is None
    assert "WITH_TLS" not in kamailio.args
    assert not (kamailio.run_dir / "tls.cfg").exists()
    with pytest.raises(RuntimeError, match="no TLS listener"):
        _ = kamailio.tls_uri
    # enable_tls=no and no tls module: nothing of it in the startup log
    assert "tls_mod.c" not in kamailio.log_text()
    with pytest.raises(ValueError, match="together"):
        Kamailio.start(tls_cert=kamailio.log_path)


class _TlsUas:
    """Minimal UA listening for TLS on 127.0.0.1 (its own trustme certificate).

    Answers every request but ACK with 200 (copying Via, Record-Route, From, To+tag,
    Call-ID, CSeq); keeps the raw requests in ``requests``.  Enough to check that Kamailio
    opens a TLS connection to a UA registered with ``;transport=tls`` and routes the dialog.
    """

    def __init__(self, ctx: ssl.SSLContext, user: str) -> None:
        self.ctx, self.user = ctx, user
        self.listener = socket.create_server((HOST, 0))
        self.listener.settimeout(0.1)
        self.port: int = self.listener.getsockname()[1]
        self.requests: list[str] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def contact(self) -> str:
        return f"sip:{self.user}@{HOST}:{self.port};transport=tls"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(raw,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            raw.settimeout(5.0)
            with self.ctx.wrap_socket(raw, server_side=True) as conn:
                conn.settimeout(0.1)
                buf = b""
                while not self._stop.is_set():
                    head_end = buf.find(b"\r\n\r\n")
                    if head_end >= 0:
                        m = re.search(rb"(?im)^(?:content-length|l)\s*:\s*(\d+)", buf[:head_end])
                        total = head_end + 4 + (int(m.group(1)) if m else 0)
                        if len(buf) >= total:
                            msg, buf = buf[:total].decode(errors="replace"), buf[total:]
                            self._answer(conn, msg)
                            continue
                    try:
                        chunk = conn.recv(65535)
                    except TimeoutError:
                        continue
                    if not chunk:
                        return
                    buf += chunk
        except (OSError, ValueError) as exc:
            if not self._stop.is_set():
                self.errors.append(exc)

    def _answer(self, conn: ssl.SSLSocket, msg: str) -> None:
        self.requests.append(msg)
        if msg.startswith("ACK "):
            return
        req = SipResponse(msg)  # a header parser; status is 0 for a request
        to = req.header("To") or ""
        lines = ["SIP/2.0 200 OK"]
        lines += [f"Via: {v}" for v in req.header_all("Via")]
        lines += [f"Record-Route: {v}" for v in req.header_all("Record-Route")]
        lines += [
            f"From: {req.header('From')}",
            f"To: {to}" + ("" if ";tag=" in to else ";tag=tlsuas"),
            f"Call-ID: {req.header('Call-ID')}",
            f"CSeq: {req.header('CSeq')}",
            f"Contact: <{self.contact}>",
            "Content-Length: 0",
        ]
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def methods(self) -> list[str]:
        return [r.split(" ", 1)[0] for r in self.requests]

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        for t in self._threads:
            t.join(timeout=2.0)


def _tag(header: str | None) -> str:
    m = re.search(r";tag=([^;>\s]+)", header or "")
    assert m, header
    return m.group(1)


def _wait_methods(uas: _TlsUas, want: list[str], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while uas.methods() != want and time.monotonic() < deadline:
        time.sleep(0.01)
    assert uas.methods() == want, uas.requests


def test_tls_registered_ua_reached_over_new_tls_connection(kamailio_tls: Kamailio) -> None:
    """UDP caller -> Kamailio -> UA registered over TLS (Kamailio connects to its Contact,
    without verifying the UA's certificate); double Record-Route; ACK/BYE loose-routed."""
    k, srv = kamailio_tls, kamailio_tls.hostport
    assert k.tls_ca is not None and k.tls_port is not None
    uas_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    k.tls_ca.issue_cert("127.0.0.1").configure_cert(uas_ctx)
    uas = _TlsUas(uas_ctx, "2222")
    try:
        with SipClient(k.host, k.tls_port, "tls") as reg:
            *_, ok = reg.register("2222", USERS["2222"], contact=uas.contact)
        assert ok.status == 200, ok.raw
        # the REGISTER connection is closed: Kamailio has to open a new one to the Contact
        with SipClient(k.host, k.port, "udp", timeout=5.0) as c:
            *_, answer = c._request_with_auth(
                "INVITE",
                f"sip:2222@{srv}",
                user="1111",
                to_uri=f"sip:2222@{srv}",
                password=USERS["1111"],
                contact=f"sip:1111@{HOST}:{c.local_port}",
            )
            assert answer.status == 200, f"{answer.raw}\n{k.log_tail()}"
            rr = answer.header_all("Record-Route")
            # transports differ -> rr's double Record-Route: TLS side on top, UDP side below
            assert len(rr) == 2, rr
            assert f"127.0.0.1:{k.tls_port};transport=tls;r2=on;lr" in rr[0], rr
            assert f"127.0.0.1:{k.port};r2=on;lr" in rr[1], rr
            # in-dialog requests: R-URI = the UA's Contact, Route = reversed Record-Route
            dialog: dict[str, Any] = dict(
                transport="udp",
                local_port=c.local_port,
                from_uri=f"sip:1111@{srv}",
                to_uri=f"sip:2222@{srv}",
                call_id=(answer.header("Call-ID") or "").removesuffix(f"@{HOST}"),
                from_tag=_tag(answer.header("From")),
                to_tag=_tag(answer.header("To")),
                headers=[f"Route: {r}" for r in reversed(rr)],
            )
            c.send(build_request("ACK", uas.contact, cseq=2, **dialog))
            # ACK and BYE may be handled by different Kamailio workers: keep them ordered
            _wait_methods(uas, ["INVITE", "ACK"])
            bye = c.transact(build_request("BYE", uas.contact, cseq=3, **dialog))
            assert bye.status == 200, bye.raw
            assert bye.header("CSeq") == "3 BYE"
        _wait_methods(uas, ["INVITE", "ACK", "BYE"])
        assert uas.errors == []
        for raw in uas.requests:  # everything reached the UA from Kamailio's TLS listener
            via = SipResponse(raw).header("Via") or ""
            assert via.startswith(f"SIP/2.0/TLS 127.0.0.1:{k.tls_port}"), raw
        with SipClient(k.host, k.tls_port, "tls") as reg:
            *_, gone = reg.register("2222", USERS["2222"], expires=0, contact=uas.contact)
        assert gone.status == 200, gone.raw
    finally:
        uas.close()


# --------------------------------------------------------------------------- #
# dnsmasq (dnsmasq fixture): RFC 3263 records from a real DNS server
# --------------------------------------------------------------------------- #
#: the ``dnsmasq`` fixture (conftest.DnsmasqFactory): ``dnsmasq(srv, hosts, **kw) -> Dnsmasq``
DnsmasqFactory = Callable[..., Dnsmasq]

PBX_SRV = [
    ("_sip._udp.example.test", "pbx.example.test", 5070, 10, 60),
    ("_sip._udp.example.test", "backup.example.test", 5080, 20, 0),
]
PBX_HOSTS = {"pbx.example.test": "127.0.0.1", "backup.example.test": ["127.0.0.2", "::1"]}


def _resolver(d: Dnsmasq) -> dns.resolver.Resolver:
    """dnspython resolver asking only this dnsmasq (never the system configuration)."""
    import dns.resolver  # runtime dependency of sipx; imported here so SIP checks run without

    r = dns.resolver.Resolver(configure=False)
    r.nameservers = ["127.0.0.1"]
    r.port = d.port
    r.lifetime = r.timeout = 2.0
    return r


def _srv_set(answer: Any) -> set[tuple[int, int, int, str]]:
    return {(r.priority, r.weight, r.port, r.target.to_text()) for r in answer}


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_dnsmasq_srv_records(dnsmasq: DnsmasqFactory, tcp: bool) -> None:
    import dns.flags

    d = dnsmasq(srv=PBX_SRV[:1], hosts=PBX_HOSTS, domain="example.test")
    assert (d.host, d.nameserver) == (HOST, f"127.0.0.1:{d.port}")
    answer = _resolver(d).resolve("_sip._udp.example.test", "SRV", tcp=tcp)
    assert _srv_set(answer) == {(10, 60, 5070, "pbx.example.test.")}
    assert answer.rrset is not None and answer.rrset.ttl == 60
    assert answer.response.flags & dns.flags.AA
    assert answer.nameserver == "127.0.0.1" and answer.port == d.port
    assert d.queries() == [("SRV", "_sip._udp.example.test")], d.log_text()


def test_dnsmasq_two_priorities_both_returned(dnsmasq: DnsmasqFactory) -> None:
    d = dnsmasq(srv=PBX_SRV, hosts=PBX_HOSTS)
    answer = _resolver(d).resolve("_sip._udp.example.test", "SRV")
    # both records, in no particular order (dnsmasq does not sort by priority)
    assert _srv_set(answer) == {
        (10, 60, 5070, "pbx.example.test."),
        (20, 0, 5080, "backup.example.test."),
    }


def test_dnsmasq_a_and_aaaa_records(dnsmasq: DnsmasqFactory) -> None:
    d = dnsmasq(srv=PBX_SRV, hosts=PBX_HOSTS)
    r = _resolver(d)
    assert [a.address for a in r.resolve("pbx.example.test", "A")] == ["127.0.0.1"]
    assert [a.address for a in r.resolve("backup.example.test", "A")] == ["127.0.0.2"]
    assert [a.address for a in r.resolve("backup.example.test", "AAAA")] == ["::1"]
    # the name exists, the type does not: NODATA, not NXDOMAIN
    import dns.resolver

    with pytest.raises(dns.resolver.NoAnswer):
        r.resolve("pbx.example.test", "AAAA")


def test_dnsmasq_unknown_names_nxdomain_fast_never_forwarded(dnsmasq: DnsmasqFactory) -> None:
    import dns.resolver

    d = dnsmasq(srv=PBX_SRV, hosts=PBX_HOSTS, domain="example.test")
    r = _resolver(d)
    for name, qtype in [
        ("nope.example.test", "A"),
        ("_sip._tcp.example.test", "SRV"),  # no TCP service published
        ("_sips._tcp.example.test", "SRV"),
    ]:
        t0 = time.monotonic()
        with pytest.raises(dns.resolver.NXDOMAIN):
            r.resolve(name, qtype)
        assert time.monotonic() - t0 < 1.0, name
    # authoritative NXDOMAIN (AA, SOA for negative caching), over UDP and TCP
    for transport in ("udp", "tcp"):
        reply = dns_query(d.host, d.port, "nope.example.test", "SRV", transport)
        assert reply is not None and reply.rcode == DNS_NXDOMAIN, reply
        assert reply.authoritative and reply.answers == 0
    # outside the domain: REFUSED at once (no upstream to ask)
    t0 = time.monotonic()
    with pytest.raises(dns.resolver.NoNameservers, match="REFUSED"):
        r.resolve("sip.example.com", "A")
    assert time.monotonic() - t0 < 1.0
    reply = d.query("sip.example.com")
    assert reply is not None and reply.rcode == DNS_REFUSED
    log = d.log_text()
    assert "forwarded" not in log and "no upstream servers configured" in log, log


def test_dnsmasq_naptr_and_service_not_available(dnsmasq: DnsmasqFactory) -> None:
    d = dnsmasq(
        srv=[*PBX_SRV, ("_sips._tcp.example.test", None)],
        hosts=PBX_HOSTS,
        naptr=[("example.test", 10, 50, "s", "SIP+D2U", "", "_sip._udp.example.test")],
    )
    r = _resolver(d)
    (naptr,) = r.resolve("example.test", "NAPTR")
    assert (naptr.order, naptr.preference, naptr.flags, naptr.service) == (
        10,
        50,
        b"s",
        b"SIP+D2U",
    )
    assert naptr.replacement.to_text() == "_sip._udp.example.test."
    # RFC 2782: target "." means the service is decidedly not available
    (srv,) = r.resolve("_sips._tcp.example.test", "SRV")
    assert srv.target.to_text() == "."
    assert d.queries() == [("NAPTR", "example.test"), ("SRV", "_sips._tcp.example.test")]


def test_dnsmasq_non_authoritative_mode_and_zone_check(dnsmasq: DnsmasqFactory) -> None:
    import dns.resolver

    with pytest.raises(ValueError, match="outside the authoritative"):
        dnsmasq(hosts={"pbx.other.test": "127.0.0.1"})  # domain defaults to example.test
    d = dnsmasq(
        srv=[("_sip._udp.other.test", "pbx.other.test", 5070, 0, 0)],
        hosts={"pbx.other.test": "127.0.0.1"},
        domain="other.test",
        authoritative=False,
        ttl=5,
    )
    answer = _resolver(d).resolve("_sip._udp.other.test", "SRV")
    assert _srv_set(answer) == {(0, 0, 5070, "pbx.other.test.")}
    assert answer.rrset is not None and answer.rrset.ttl == 5
    # the recursive path adds the target's address as an additional record
    assert any(rr.name.to_text() == "pbx.other.test." for rr in answer.response.additional)
    with pytest.raises(dns.resolver.NXDOMAIN):
        _resolver(d).resolve("nope.other.test", "A")
    reply = d.query("nope.other.test")
    assert reply is not None and reply.rcode == DNS_NXDOMAIN and not reply.authoritative


def test_dnsmasq_stop_frees_the_port(tmp_path: Path) -> None:
    require_binary("dnsmasq")
    d = Dnsmasq.start(PBX_SRV, PBX_HOSTS, run_dir=tmp_path / "d1")
    port, pgid = d.port, d.proc.pid
    for transport in ("udp", "tcp"):  # a TCP query is served by a forked child
        assert d.query("pbx.example.test", "A", transport) is not None
    assert d.running()
    d.stop()
    d.stop()  # idempotent
    assert not d.running() and d.proc.returncode is not None
    assert _live_members_of_group(pgid) == []
    assert d.query("pbx.example.test") is None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, port))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # like dnsmasq's listener
        s.bind((HOST, port))
    # and a new instance can take it over at once
    with Dnsmasq.start(PBX_SRV, PBX_HOSTS, port=port, run_dir=tmp_path / "d2") as again:
        assert again.port == port
        assert _srv_set(_resolver(again).resolve("_sip._udp.example.test", "SRV"))
    assert not again.running()


def test_dnsmasq_port_clash_fails_loudly_or_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_binary("dnsmasq")
    import peers

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind((HOST, 0))
        taken = busy.getsockname()[1]
        with pytest.raises(RuntimeError, match="Address already in use"):
            Dnsmasq.start(port=taken, run_dir=tmp_path / "explicit")
        # a port we picked ourselves that turns out busy is replaced by a fresh one
        picks = iter([taken])
        real_free_port = peers.free_port
        monkeypatch.setattr(peers, "free_port", lambda: next(picks, None) or real_free_port())
        with Dnsmasq.start(PBX_SRV, PBX_HOSTS, run_dir=tmp_path / "picked") as d:
            assert d.port != taken
            assert d.run_dir.name == "picked-retry1"
