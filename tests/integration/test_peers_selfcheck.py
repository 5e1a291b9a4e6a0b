"""Self-check of the integration kit: real Kamailio and SIPp processes, no sipx.

If this module fails, the peers (not sipx) are broken: fix the kit first.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from peers import (
    HOST,
    USERS,
    Kamailio,
    SipClient,
    SIPp,
    SipResponse,
    build_request,
    free_port,
    parse_challenge,
    query_bindings,
    require_binary,
)

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
