"""Real third-party peers (Kamailio, SIPp, baresip, dnsmasq) for sipx integration tests.

Pure stdlib + pytest: this module never imports sipx, so the peers can be
started (and the kit self-checked) before the library exists.

Everything runs on 127.0.0.1.  The kit (Kamailio config, SIPp scenarios,
baresip config templates) lives next to this file in ``peers/``.

Overview::

    port = free_port()                       # free for UDP *and* TCP on 127.0.0.1
    with Kamailio.start(port, sha256=False) as k:   # waits for OPTIONS 200 on UDP+TCP
        rc, trace = SIPp.run("register_auth.xml", k, service="1111",
                             auth=("1111", "1111xxx"))
        assert rc == 0, trace

Users provisioned in Kamailio: 1111/1111xxx, 2222/2222xxx, 3333/3333xxx
(see ``USERS``).  Extension 100 is relayed to ``echo_uri``.

Kamailio as a load balancer (peers/kamailio-dispatcher.cfg: the dispatcher module,
round robin, record-routing, OPTIONS probes; no auth, no registrar)::

    with Kamailio.start_dispatcher(["sip:127.0.0.1:5081", "sip:127.0.0.1:5082"]) as k:
        k.dispatcher_flags()    # {"sip:127.0.0.1:5081": "AP", ...} (kamcmd dispatcher.list)
        k.rpc("dispatcher.set_state", "d", "1", "sip:127.0.0.1:5081")

DNS (RFC 3263 lookups against a real server; dnsmasq, no upstream, 127.0.0.1 only)::

    with Dnsmasq.start(srv=[("_sip._udp.example.test", "pbx.example.test", 5070, 10, 60)],
                       hosts={"pbx.example.test": "127.0.0.1"}) as d:   # domain="example.test"
        d.port, d.nameserver            # 20431, "127.0.0.1:20431"
        d.resolver().resolve("_sip._udp.example.test", "SRV")   # dnspython, this server only
        d.queries()                     # [("SRV", "_sip._udp.example.test")]

TLS (optional)::

    with Kamailio.start(tls_cert="cert.pem", tls_key="key.pem") as k:  # + OPTIONS 200 over TLS
        with SipClient(k.host, k.tls_port, "tls") as c:  # probe context: no verification
            assert c.options().status == 200

Pitfalls handled here (see peers/README in the shared kit):
  * Kamailio is started in its own session/process group and stopped by
    signalling the *group* (main + ~8 forked children); a child left behind
    keeps the port and answers OPTIONS for the next instance.
  * readiness = 200 to OPTIONS over UDP *and* TCP (stopping right after the
    first UDP answer can hang a child forever).
  * the main process is reaped with poll() before the group is tested, and
    zombies (PID 1 of a container may not reap orphans) count as dead.
  * all paths handed to Kamailio are absolute (-w chdirs before -P is written).
  * with TLS, readiness also needs a 200 to OPTIONS over TLS (the TLS listener
    is served by the TCP workers; its port is a separate, TCP-only free port).
  * dnsmasq runs with --keep-in-foreground (otherwise it daemonizes into a new
    session, out of reach of the group stop), --user=root (its default "nobody" must
    exist), no resolv.conf/hosts/dnsmasq.conf; readiness = a configured record answered
    over UDP *and* TCP (TCP queries are served by forked children).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import ipaddress
import os
import random
import re
import shutil
import signal
import socket
import ssl
import string
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Self

import pytest

if TYPE_CHECKING:  # test dependencies, never imported at runtime here
    import dns.resolver
    import trustme

HOST = "127.0.0.1"
PEERS_DIR = Path(__file__).resolve().with_name("peers")
KAMAILIO_CFG = PEERS_DIR / "kamailio.cfg"
#: Kamailio as a load balancer (dispatcher module) in front of several UAs
KAMAILIO_DISPATCHER_CFG = PEERS_DIR / "kamailio-dispatcher.cfg"
SIPP_DIR = PEERS_DIR / "sipp"
BARESIP_DIR = PEERS_DIR / "baresip"

#: users provisioned in peers/kamailio.cfg (user -> password)
USERS: dict[str, str] = {"1111": "1111xxx", "2222": "2222xxx", "3333": "3333xxx"}
#: extension that Kamailio relays to its ECHO_URI
ECHO_EXTENSION = "100"

_TRUE_WORDS = {"1", "true", "yes", "on", "y"}
#: transports of the stdlib SipClient (TLS: stream framing like TCP, over ssl)
TRANSPORTS = ("udp", "tcp", "tls")
_VIA_PROTO = {"udp": "UDP", "tcp": "TCP", "tls": "TLS"}


# --------------------------------------------------------------------------- #
# environment helpers
# --------------------------------------------------------------------------- #
def in_ci() -> bool:
    """True when the environment variable CI is set to a true value."""
    value = os.environ.get("CI", "").strip().lower()
    return value in _TRUE_WORDS


def require_binary(name: str) -> str:
    """Return the path of ``name``; skip the test if missing (fail under CI).

    In CI (``CI`` set to a true value) a missing peer is a failure, never a skip.
    """
    path = shutil.which(name)
    if path is None:
        path = next(
            (
                str(p)
                for d in ("/usr/sbin", "/sbin", "/usr/local/sbin")
                if (p := Path(d) / name).is_file() and os.access(p, os.X_OK)
            ),
            None,
        )
    if path is None:
        if in_ci():
            pytest.fail(f"{name} is not installed (CI requires the real peer)", pytrace=False)
        pytest.skip(f"{name} is not installed (integration peer)")
    return path


# --------------------------------------------------------------------------- #
# ports
# --------------------------------------------------------------------------- #
_handed_out: set[int] = set()


def _port_pool() -> range:
    """Ports outside the kernel's ephemeral range (so no autobind can steal them)."""
    lo, hi = 32768, 60999
    with contextlib.suppress(OSError, ValueError):
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        lo, hi = int(text[0]), int(text[1])
    if lo - 20000 >= 2000:
        return range(20000, lo)  # below the ephemeral range, above SIPp's 6000/8888
    if 65535 - hi >= 2000:
        return range(hi + 1, 65536)
    return range(lo, hi + 1)  # tiny gaps: fall back to the ephemeral range


def _bind_free(port: int, kind: str, host: str = HOST, reuse: bool = False) -> bool:
    """Bind-probe; without ``reuse`` a TCP port in TIME_WAIT counts as busy (conservative)."""
    kinds = {"udp": ("udp",), "tcp": ("tcp",), "udp+tcp": ("udp", "tcp")}[kind]
    for k in kinds:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if k == "udp" else socket.SOCK_STREAM)
        try:
            if reuse and k == "tcp":  # like Kamailio's own listen socket
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_port(kind: str = "udp+tcp") -> int:
    """A port on 127.0.0.1 that is currently free for ``kind`` ("udp", "tcp", "udp+tcp").

    Lock-free: random candidates outside the ephemeral range, bind-probed for
    both UDP and TCP, never handing out the same port twice in one process.
    (Another process may still grab it before you bind; that is unlikely
    with random picks from ~12k ports, and Kamailio.start then fails loudly.)
    """
    if kind not in ("udp", "tcp", "udp+tcp"):
        raise ValueError(f"kind must be 'udp', 'tcp' or 'udp+tcp', not {kind!r}")
    pool = _port_pool()
    rng = random.SystemRandom()
    for _ in range(500):
        port = rng.choice(pool)
        if port in _handed_out:
            continue
        if _bind_free(port, "udp+tcp" if kind == "udp+tcp" else kind):
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port found on 127.0.0.1")


def free_media_port() -> int:
    """An even port P on 127.0.0.1 with P to P+3 free for UDP, for SIPp's ``-mp``: SIPp
    binds P (audio) and P+2 (video) at start and exits when either is taken."""
    pool = _port_pool()
    rng = random.SystemRandom()
    for _ in range(500):
        port = rng.choice(pool) & ~1
        block = range(port, port + 4)
        if block[-1] not in pool or any(p in _handed_out for p in block):
            continue
        if all(_bind_free(p, "udp") for p in block):
            _handed_out.update(block)
            return port
    raise RuntimeError("no free block of media ports found on 127.0.0.1")


def wait_port_bound(
    port: int, kind: str = "udp", timeout: float = 5.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until something has bound ``port`` (bind probe fails); raise on timeout/exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _bind_free(port, kind):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"process exited (rc={proc.returncode}) before binding {kind} {port}"
            )
        time.sleep(0.01)
    raise TimeoutError(f"nothing bound {kind} port {port} within {timeout} s")


# --------------------------------------------------------------------------- #
# minimal stdlib SIP client (port of sip_ping.py + the digest probe)
# --------------------------------------------------------------------------- #
class SipResponse:
    """A parsed SIP response (status line + headers + body)."""

    def __init__(self, raw: str) -> None:
        self.raw = raw
        head, _, self.body = raw.partition("\r\n\r\n")
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        self.reason = parts[2] if len(parts) > 2 else ""
        self.headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                self.headers.append((name.strip(), value.strip()))

    def header(self, name: str) -> str | None:
        vals = self.header_all(name)
        return vals[0] if vals else None

    def header_all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def __repr__(self) -> str:
        return f"<SipResponse {self.status} {self.reason}>"


def _rand(bits: int = 32) -> str:
    return f"{random.getrandbits(bits):0{bits // 4}x}"


def build_request(
    method: str,
    ruri: str,
    *,
    transport: str = "udp",
    local_port: int,
    from_uri: str,
    to_uri: str,
    call_id: str | None = None,
    cseq: int = 1,
    from_tag: str | None = None,
    to_tag: str | None = None,
    headers: Sequence[str] = (),
    body: str = "",
    contact: str | None = None,
) -> bytes:
    proto = _VIA_PROTO[transport]
    lines = [
        f"{method} {ruri} SIP/2.0",
        f"Via: SIP/2.0/{proto} {HOST}:{local_port};branch=z9hG4bK{_rand()}{_rand()};rport",
        "Max-Forwards: 70",
        f"From: <{from_uri}>;tag={from_tag or _rand()}",
        f"To: <{to_uri}>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id or 'peers-' + _rand(64)}@{HOST}",
        f"CSeq: {cseq} {method}",
    ]
    if contact:
        lines.append(f"Contact: <{contact}>")
    lines.extend(headers)
    if body:
        lines.append("Content-Type: text/plain")
    lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def insecure_client_context() -> ssl.SSLContext:
    """TLS client context that checks neither the certificate nor the host name (probes)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class SipClient:
    """A tiny blocking SIP client socket (UDP, TCP or TLS) on 127.0.0.1.

    ``transact(request)`` sends and returns the first *final* response.
    Use as a context manager.  Good enough for probes and peer self-checks;
    it is not a SIP stack (no retransmission over UDP).

    TLS: ``ssl_context`` defaults to :func:`insecure_client_context` (no verification);
    pass a verifying context (e.g. ``ca.configure_trust(ctx)`` with trustme) to check the
    server certificate against ``server_hostname`` (default: ``host``).
    """

    def __init__(
        self,
        host: str,
        port: int,
        transport: str = "udp",
        timeout: float = 2.0,
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        self.host, self.port, self.transport, self.timeout = host, port, transport, timeout
        self.sock: socket.socket
        if transport in ("tcp", "tls"):
            self.sock = socket.create_connection((host, port), timeout=timeout)
            if transport == "tls":
                ctx = ssl_context or insecure_client_context()
                try:  # handshake now, bounded by the socket timeout
                    self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname or host)
                except BaseException:
                    self.sock.close()
                    raise
        elif transport == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((HOST, 0))
        else:
            raise ValueError(f"transport must be one of {TRANSPORTS}, not {transport!r}")
        self.sock.settimeout(timeout)
        self.local_port: int = self.sock.getsockname()[1]
        self._buf = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SipClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def uri_params(self) -> str:
        """``;transport=tcp`` / ``;transport=tls`` for stream transports, else ``""``."""
        return "" if self.transport == "udp" else f";transport={self.transport}"

    def send(self, data: bytes) -> None:
        if self.transport != "udp":
            self.sock.sendall(data)
        else:
            self.sock.sendto(data, (self.host, self.port))

    def recv(self) -> SipResponse:
        if self.transport == "udp":
            return SipResponse(self.sock.recv(65535).decode(errors="replace"))
        while True:  # TCP/TLS: frame by Content-Length
            head_end = self._buf.find(b"\r\n\r\n")
            if head_end >= 0:
                m = re.search(
                    rb"^(?:content-length|l)\s*:\s*(\d+)", self._buf[:head_end], re.I | re.M
                )
                total = head_end + 4 + (int(m.group(1)) if m else 0)
                if len(self._buf) >= total:
                    msg, self._buf = self._buf[:total], self._buf[total:]
                    return SipResponse(msg.decode(errors="replace"))
            chunk = self.sock.recv(65535)
            if not chunk:
                raise ConnectionError("connection closed by peer")
            self._buf += chunk

    def transact(self, request: bytes) -> SipResponse:
        self.send(request)
        while True:
            resp = self.recv()
            if resp.status >= 200:
                return resp

    # -- convenience ------------------------------------------------------
    def options(self) -> SipResponse:
        ruri = f"sip:{self.host}:{self.port}{self.uri_params}"
        return self.transact(
            build_request(
                "OPTIONS",
                ruri,
                transport=self.transport,
                local_port=self.local_port,
                from_uri=f"sip:ping@{HOST}:{self.local_port}",
                to_uri=f"sip:{self.host}:{self.port}",
            )
        )

    def register(
        self,
        user: str,
        password: str | None = None,
        *,
        expires: int = 60,
        auth_user: str | None = None,
        algorithm: str | None = None,
        contact: str | None = None,
    ) -> list[SipResponse]:
        """REGISTER ``user``; answer one digest challenge if ``password`` is given.

        Returns every final response received (challenge first).  The Contact defaults to
        this socket's address (``;transport=tls`` over TLS); ``expires=0`` removes it.
        Over TLS the R-URI carries ``;transport=tls`` too.
        """
        srv = f"{self.host}:{self.port}"
        if contact is None:
            contact = f"sip:{user}@{HOST}:{self.local_port}" + (
                ";transport=tls" if self.transport == "tls" else ""
            )
        return self._request_with_auth(
            "REGISTER",
            f"sip:{srv}" + (";transport=tls" if self.transport == "tls" else ""),
            user=user,
            to_uri=f"sip:{user}@{srv}",
            password=password,
            auth_user=auth_user,
            algorithm=algorithm,
            headers=[f"Expires: {expires}"],
            contact=contact,
        )

    def message(
        self, user: str, to_user: str, password: str | None = None, body: str = "hello"
    ) -> list[SipResponse]:
        srv = f"{self.host}:{self.port}"
        return self._request_with_auth(
            "MESSAGE",
            f"sip:{to_user}@{srv}",
            user=user,
            to_uri=f"sip:{to_user}@{srv}",
            password=password,
            body=body,
        )

    def _request_with_auth(
        self,
        method: str,
        ruri: str,
        *,
        user: str,
        to_uri: str,
        password: str | None,
        auth_user: str | None = None,
        algorithm: str | None = None,
        headers: Sequence[str] = (),
        body: str = "",
        contact: str | None = None,
    ) -> list[SipResponse]:
        srv = f"{self.host}:{self.port}"
        call_id, tag = "peers-" + _rand(64), _rand()
        common: dict[str, Any] = dict(
            transport=self.transport,
            local_port=self.local_port,
            from_uri=f"sip:{user}@{srv}",
            to_uri=to_uri,
            call_id=call_id,
            from_tag=tag,
            body=body,
            contact=contact,
        )
        out = [self.transact(build_request(method, ruri, cseq=1, headers=headers, **common))]
        if password is None or out[-1].status not in (401, 407):
            return out
        resp = out[-1]
        chal_name = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
        cred_name = "Authorization" if resp.status == 401 else "Proxy-Authorization"
        chal = parse_challenge(resp.header(chal_name) or "")
        cred = digest_credentials(
            chal,
            method=method,
            uri=ruri,
            username=auth_user or user,
            password=password,
            algorithm=algorithm,
        )
        out.append(
            self.transact(
                build_request(
                    method, ruri, cseq=2, headers=[*headers, f"{cred_name}: {cred}"], **common
                )
            )
        )
        return out


def parse_challenge(value: str) -> dict[str, str]:
    """Parse ``Digest realm="x", nonce="y", ...`` into a lower-cased dict."""
    value = re.sub(r"^\s*Digest\s+", "", value, flags=re.I)
    out: dict[str, str] = {}
    for m in re.finditer(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))', value):
        out[m.group(1).lower()] = m.group(2) if m.group(2) is not None else m.group(3)
    return out


def digest_credentials(
    chal: Mapping[str, str],
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    algorithm: str | None = None,
) -> str:
    """RFC 2617/7616 digest answer (qop=auth or none; MD5 or SHA-256), for probes only."""
    alg = algorithm or chal.get("algorithm", "MD5")
    fn = hashlib.sha256 if alg.upper().startswith("SHA-256") else hashlib.md5

    def h(s: str) -> str:
        return fn(s.encode()).hexdigest()

    realm, nonce = chal["realm"], chal["nonce"]
    qops = [q.strip() for q in chal.get("qop", "").split(",") if q.strip()]
    ha1 = h(f"{username}:{realm}:{password}")
    ha2 = h(f"{method}:{uri}")
    cred = f'Digest username="{username}", realm="{realm}", nonce="{nonce}", uri="{uri}"'
    if "auth" in qops:
        cnonce, nc = _rand(), "00000001"
        resp = h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        cred += f', response="{resp}", algorithm={alg}, qop=auth, nc={nc}, cnonce="{cnonce}"'
    else:
        cred += f', response="{h(f"{ha1}:{nonce}:{ha2}")}", algorithm={alg}'
    if "opaque" in chal:
        cred += f', opaque="{chal["opaque"]}"'
    return cred


def sip_options(
    host: str,
    port: int,
    transport: str = "udp",
    timeout: float = 0.5,
    *,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> SipResponse | None:
    """Send one OPTIONS; return the final response or None (no answer / refused /
    TLS handshake failed).  TLS: see :class:`SipClient` (default: no verification)."""
    try:
        with SipClient(
            host,
            port,
            transport,
            timeout=timeout,
            ssl_context=ssl_context,
            server_hostname=server_hostname,
        ) as c:
            return c.options()
    except (OSError, ValueError):  # ssl.SSLError is an OSError
        return None


def query_bindings(
    registrar: Any, user: str, password: str | None = None, transport: str = "udp"
) -> list[str]:
    """The Contacts the registrar holds for ``user`` (REGISTER without Contact, RFC 3261 10.2.3).

    Answers the digest challenge (MD5 or the challenge's algorithm); raises AssertionError
    when the final response is not 200. Each entry is a Contact value as the registrar sent
    it, e.g. ``<sip:1111@127.0.0.1:20001>;expires=42``.  ``transport="tls"`` needs a
    registrar with ``tls_port`` (a TLS :class:`Kamailio`).
    """
    host, _, port = _hostport(registrar).rpartition(":")
    if transport == "tls":
        port = str(registrar.tls_port)
    with SipClient(host, int(port), transport) as c:
        srv = f"{host}:{port}"
        responses = c._request_with_auth(
            "REGISTER",
            f"sip:{srv}",
            user=user,
            to_uri=f"sip:{user}@{srv}",
            password=password if password is not None else USERS[user],
        )
    final = responses[-1]
    assert final.status == 200, f"binding query for {user} got {final.status}\n{final.raw}"
    contacts = [v.strip() for value in final.header_all("Contact") for v in value.split(",")]
    return [c for c in contacts if c]


def wait_sip_ready(
    host: str,
    port: int,
    timeout: float = 10.0,
    transports: Iterable[str] = ("udp", "tcp"),
    proc: subprocess.Popen[bytes] | None = None,
    tls_port: int | None = None,
) -> float:
    """Wait until OPTIONS gets a 200 over every transport; return seconds waited.

    "tls" probes ``tls_port`` (default ``port``) without certificate verification.
    Raises TimeoutError, or RuntimeError if ``proc`` exits meanwhile.
    """
    want, done = set(transports), set[str]()
    ports = {tr: tls_port if tr == "tls" and tls_port is not None else port for tr in want}
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        for tr in sorted(want - done):
            r = sip_options(host, ports[tr], tr, timeout=0.05 if tr == "udp" else 0.5)
            if r is not None and r.status == 200:
                done.add(tr)
        if done == want:
            return time.monotonic() - t0
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with rc={proc.returncode} before it was ready")
        time.sleep(0.01)
    missing = ", ".join(f"{tr} {ports[tr]}" for tr in sorted(want - done))
    raise TimeoutError(f"no 200 to OPTIONS from {host} over {missing} within {timeout} s")


# --------------------------------------------------------------------------- #
# process-group handling
# --------------------------------------------------------------------------- #
def _group_alive(pgid: int) -> bool:
    """True while any non-zombie process is in process group ``pgid``."""
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():  # not Linux: fall back on kill(0) (zombies count as alive)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        # fields: state ppid pgrp ...
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def _stop_group(
    proc: subprocess.Popen[bytes], term_timeout: float, sig: int = signal.SIGTERM
) -> None:
    """Signal the process group of ``proc`` (a session leader) and wait until it is gone."""
    pgid = proc.pid
    for s, wait_s in ((sig, term_timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, s)
        deadline = time.monotonic() + wait_s
        while True:
            proc.poll()  # reap the main first, or its zombie keeps the group "alive"
            if proc.returncode is not None and not _group_alive(pgid):
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.01)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=1.0)


_LIVE: set[Any] = set()


@atexit.register
def stop_all() -> None:
    """Stop every peer this process started and did not stop (safety net)."""
    for peer in list(_LIVE):
        with contextlib.suppress(Exception):
            peer.stop()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"<{path} not readable>"
    return "\n".join(text.splitlines()[-lines:])


def _mkdir(run_dir: str | os.PathLike[str] | None, prefix: str) -> Path:
    if run_dir is None:
        return Path(tempfile.mkdtemp(prefix=prefix)).resolve()
    p = Path(run_dir).resolve()
    p.mkdir(parents=True, exist_ok=True)
    return p


# --------------------------------------------------------------------------- #
# Kamailio
# --------------------------------------------------------------------------- #
_TLS_CFG_TEMPLATE = """\
# written by peers.py (Kamailio.start); Kamailio 5.6 tls module config
[server:default]
method = TLSv1.2+
certificate = {cert}
private_key = {key}
verify_certificate = no
require_certificate = no

# outgoing TLS (to UAs registered with ;transport=tls): their certificates are NOT verified
[client:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
"""


class _GroupProcess:
    """A peer started in its own process group (Kamailio, dnsmasq: forked children) with a
    log file: ``running()``, idempotent ``stop()`` (SIGTERM to the group, SIGKILL after
    ``term_timeout`` s), ``log_text()``/``log_tail()``, and a context manager."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    _stopped: bool
    term_timeout = 5.0

    def running(self) -> bool:
        return not self._stopped and self.proc.poll() is None

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            _stop_group(self.proc, term_timeout=self.term_timeout)
        finally:
            _LIVE.discard(self)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Kamailio(_GroupProcess):
    """A Kamailio registrar/proxy from peers/kamailio.cfg on 127.0.0.1:port (UDP+TCP),
    optionally with a TLS listener on ``tls_port``.

    Use ``Kamailio.start(...)``; ``stop()`` is idempotent; context manager.
    """

    host = HOST

    def __init__(
        self,
        port: int,
        run_dir: Path,
        proc: subprocess.Popen[bytes],
        args: list[str],
        sha256: bool,
        tls_port: int | None = None,
    ) -> None:
        self.port = port
        self.run_dir = run_dir
        self.proc = proc
        self.args = args
        self.sha256 = sha256
        #: TLS listener port on 127.0.0.1 (None: no TLS listener)
        self.tls_port = tls_port
        #: the tls module config written into run_dir (None without TLS)
        self.tls_config: Path | None = run_dir / "tls.cfg" if tls_port is not None else None
        #: the CA that issued the server certificate, when the creator attached it
        #: (the ``kamailio_tls`` fixture does); None otherwise
        self.tls_ca: trustme.CA | None = None
        self.log_path = run_dir / "kamailio.log"
        self.ready_after: float | None = None
        self._stopped = False

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def uri(self) -> str:
        """``sip:127.0.0.1:port`` (the registrar / outbound proxy URI)."""
        return f"sip:{self.hostport}"

    def aor(self, user: str) -> str:
        return f"sip:{user}@{self.hostport}"

    @property
    def tls_hostport(self) -> str:
        """``127.0.0.1:tls_port``; RuntimeError when started without TLS."""
        if self.tls_port is None:
            raise RuntimeError("this Kamailio has no TLS listener (start it with tls_cert/tls_key)")
        return f"{self.host}:{self.tls_port}"

    @property
    def tls_uri(self) -> str:
        """``sip:127.0.0.1:tls_port;transport=tls``; RuntimeError when started without TLS."""
        return f"sip:{self.tls_hostport};transport=tls"

    @classmethod
    def start(
        cls,
        port: int | None = None,
        *,
        sha256: bool = False,
        nonce_expire: int | None = None,
        echo_uri: str | None = None,
        fr_timer: int | None = None,
        extra_defines: Iterable[str] = (),
        run_dir: str | os.PathLike[str] | None = None,
        ready_timeout: float = 10.0,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        tls_port: int | None = None,
        config: str | os.PathLike[str] | None = None,
        shm_mb: int = 64,
    ) -> Kamailio:
        """Launch Kamailio and wait until OPTIONS gets 200 over UDP and TCP (and TLS).

        ``extra_defines`` are passed as ``-A <define>`` each (e.g. "QUIET",
        "AUTH_QOP_FLAGS=0", 'AUTH_REALM="test.realm"').  ``config``: another Kamailio
        config than peers/kamailio.cfg (it must take ``SIP_PORT`` and answer OPTIONS
        without a user part with 200; see :meth:`start_dispatcher`).  ``shm_mb``: its shared
        memory (``-m``), where the transactions live (64 MB: a few hundred calls/s).

        TLS: with ``tls_cert`` (PEM chain, leaf first) and ``tls_key`` (PEM private key)
        Kamailio also listens for TLS on 127.0.0.1:``tls_port`` (default: a free TCP
        port), presenting that certificate; it requires no client certificate and does not
        verify the certificates of UAs it connects to.  ``run_dir/tls.cfg`` is written.
        """
        binary = require_binary("kamailio")
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together")
        if tls_port is not None and tls_cert is None:
            raise ValueError("tls_port needs tls_cert and tls_key")
        if port is None:
            port = free_port()
        elif not _bind_free(port, "udp+tcp", reuse=True):
            raise RuntimeError(f"port {port} is already in use on {HOST} (udp or tcp)")
        rd = _mkdir(run_dir, f"sipx-kamailio-{port}-")
        defines = [f"SIP_PORT={port}"]
        if tls_cert is not None and tls_key is not None:
            cert, key = Path(tls_cert).resolve(), Path(tls_key).resolve()
            for f in (cert, key):
                if not f.is_file():
                    raise FileNotFoundError(f"TLS file not found: {f}")
            if tls_port is None:
                tls_port = free_port("tcp")
            elif tls_port == port or not _bind_free(tls_port, "tcp", reuse=True):
                raise RuntimeError(f"TLS port {tls_port} is already in use on {HOST} (tcp)")
            tls_cfg = rd / "tls.cfg"
            tls_cfg.write_text(_TLS_CFG_TEMPLATE.format(cert=cert, key=key))
            defines += ["WITH_TLS", f"TLS_PORT={tls_port}", f'TLS_CONFIG="{tls_cfg}"']
        if sha256:
            defines.append("WITH_SHA256")
        if nonce_expire is not None:
            defines.append(f"NONCE_EXPIRE={int(nonce_expire)}")
        if echo_uri is not None:
            defines.append(f'ECHO_URI="{echo_uri}"')
        if fr_timer is not None:
            defines.append(f"FR_TIMER={int(fr_timer)}")
        defines.extend(extra_defines)
        args = [
            binary,
            "-f",
            str(Path(config).resolve() if config is not None else KAMAILIO_CFG),
            "-DD",
            "-E",
            "-Y",
            str(rd),
            "-P",
            str(rd / "kamailio.pid"),
            "-w",
            str(rd),
            "-m",
            str(int(shm_mb)),
            "-M",
            "8",
        ]
        if os.environ.get("SIPX_KAMAILIO_MPATH"):
            args += ["-L", os.environ["SIPX_KAMAILIO_MPATH"]]
        for d in defines:
            args += ["-A", d]
        log = open(rd / "kamailio.log", "wb")  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=rd,
                start_new_session=True,
            )
        finally:
            log.close()
        self = cls(port, rd, proc, args, sha256, tls_port)
        _LIVE.add(self)
        transports = ("udp", "tcp") if tls_port is None else ("udp", "tcp", "tls")
        try:
            self.ready_after = wait_sip_ready(
                HOST, port, ready_timeout, transports, proc=proc, tls_port=tls_port
            )
            if proc.poll() is not None:  # someone else answered (pitfall 2)
                raise RuntimeError(f"kamailio exited with rc={proc.returncode}")
        except (TimeoutError, RuntimeError) as exc:
            self.stop()
            raise RuntimeError(
                f"kamailio on {HOST}:{port}"
                + (f" (TLS {tls_port})" if tls_port is not None else "")
                + f" did not become ready: {exc}\n"
                f"command: {' '.join(args)}\n--- log tail ---\n{_tail(self.log_path)}"
            ) from None
        return self

    @classmethod
    def start_dispatcher(
        cls,
        workers: Iterable[str],
        *,
        port: int | None = None,
        ping_interval: int = 1,
        fr_timer: int = 1000,
        algorithm: int = 4,
        quiet: bool = False,
        shm_mb: int = 64,
        extra_defines: Iterable[str] = (),
        run_dir: str | os.PathLike[str] | None = None,
        ready_timeout: float = 10.0,
    ) -> Kamailio:
        """Kamailio as a load balancer (peers/kamailio-dispatcher.cfg) in front of ``workers``.

        ``workers``: SIP URIs (``sip:127.0.0.1:5081``), written as set 1 of the dispatcher's
        list file in ``run_dir``.  Initial requests to a user are sent to them by
        ``algorithm`` (4: round robin, 0: hash of the Call-ID, ...), INVITEs record-routed;
        every worker gets an OPTIONS probe every ``ping_interval`` s and is taken out after
        one probe without a 200 (a probe, or a branch without any reply, fails after
        ``fr_timer`` ms).  The ctl module listens on ``run_dir/ctl``: see :meth:`rpc`.
        """
        uris = list(workers)
        if not uris:
            raise ValueError("a dispatcher needs at least one worker")
        rd = _mkdir(run_dir, "sipx-dispatcher-")
        ds_list = rd / "dispatcher.list"
        ds_list.write_text("".join(f"1 {uri}\n" for uri in uris))
        defines = [
            f'DS_LIST="{ds_list}"',
            f'CTL_SOCKET="unix:{rd / "ctl"}"',
            f"DS_PING_INTERVAL={int(ping_interval)}",
            f"DS_ALG={int(algorithm)}",
        ]
        if quiet:
            defines.append("QUIET")
        return cls.start(
            port,
            fr_timer=fr_timer,
            extra_defines=[*defines, *extra_defines],
            run_dir=rd,
            ready_timeout=ready_timeout,
            config=KAMAILIO_DISPATCHER_CFG,
            shm_mb=shm_mb,
        )

    def rpc(self, *command: str, timeout: float = 5.0) -> str:
        """Run ``kamcmd`` against this Kamailio's ctl socket (a dispatcher started by
        :meth:`start_dispatcher`), e.g. ``rpc("dispatcher.list")``; its output as text."""
        kamcmd = require_binary("kamcmd")
        done = subprocess.run(
            [kamcmd, "-s", f"unix:{self.run_dir / 'ctl'}", *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"kamcmd {' '.join(command)} failed: {done.stderr or done.stdout}")
        return done.stdout

    def dispatcher_flags(self) -> dict[str, str]:
        """URI -> FLAGS of every dispatcher destination (``AP``: active and probed,
        ``IP``: inactive and probed, ``TP``: trying), from ``dispatcher.list``."""
        text = self.rpc("dispatcher.list")
        return dict(re.findall(r"URI:\s*(\S+)\s+FLAGS:\s*(\S+)", text))

    def __repr__(self) -> str:
        tls = f" tls={self.tls_port}" if self.tls_port is not None else ""
        return (
            f"<Kamailio {self.hostport}{tls} pid={self.proc.pid} "
            f"{'SHA-256' if self.sha256 else 'MD5'} {'running' if self.running() else 'stopped'}>"
        )


# --------------------------------------------------------------------------- #
# SIPp
# --------------------------------------------------------------------------- #
def _hostport(remote: Any) -> str:
    if remote is None:
        return ""
    if isinstance(remote, str):
        return remote
    if isinstance(remote, tuple):
        return f"{remote[0]}:{remote[1]}"
    return f"{remote.host}:{remote.port}"  # Kamailio, SIPp, anything with host/port


def scenario_path(scenario: str | os.PathLike[str]) -> Path:
    """Resolve a scenario name ("register_auth" / "register_auth.xml") or a path."""
    p = Path(scenario)
    if p.is_absolute() or p.parent != Path("."):
        return p.resolve()
    name = p.name if p.suffix == ".xml" else p.name + ".xml"
    return SIPP_DIR / name


class SIPp:
    """One SIPp process (UAC or UAS) running a scenario from peers/sipp/.

    Every run has ``-nostdin -i 127.0.0.1 -m calls -timeout -timeout_error``
    so it cannot hang, and ``-trace_msg``/``-trace_err`` into ``work_dir`` so a
    failure can show the messages (``describe()``).
    """

    host = HOST

    def __init__(
        self,
        args: list[str],
        proc: subprocess.Popen[bytes],
        work_dir: Path,
        local_port: int,
        transport: str,
        timeout_s: float,
        name: str,
    ) -> None:
        self.args = args
        self.proc = proc
        self.work_dir = work_dir
        self.local_port = local_port
        self.transport = transport
        self.timeout_s = timeout_s
        self.name = name
        self.stdout_path = work_dir / f"{name}.out"
        self.stderr_path = work_dir / f"{name}.err"
        self.message_path = work_dir / f"{name}.msg"
        self.error_path = work_dir / f"{name}.errors"
        #: (registrar, user, password) when started by registered_uas()
        self.registration: tuple[Any, str, str] | None = None
        self._stopped = False

    # port / uri -------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.local_port

    @property
    def hostport(self) -> str:
        return f"{HOST}:{self.local_port}"

    @property
    def uri(self) -> str:
        """``sip:127.0.0.1:<local_port>`` (+ ``;transport=tcp`` for TCP)."""
        return f"sip:{self.hostport}" + (";transport=tcp" if self.transport == "tcp" else "")

    @classmethod
    def start(
        cls,
        scenario: str | os.PathLike[str],
        remote: Any = None,
        *,
        local_port: int | None = None,
        service: str | None = None,
        auth: tuple[str, str] | None = None,
        keys: Mapping[str, str] | None = None,
        transport: str = "udp",
        calls: int = 1,
        timeout_s: float = 15.0,
        extra: Sequence[str] = (),
        work_dir: str | os.PathLike[str] | None = None,
        name: str | None = None,
        wait_bound: bool = True,
    ) -> SIPp:
        """Start SIPp in the background and return at once (after it bound its port).

        ``remote``: "host:port", (host, port) or an object with .host/.port
        (None for a pure UAS).  ``service`` = ``-s``; ``auth`` = (``-au``, ``-ap``);
        ``keys`` = ``-key name value`` each; ``transport`` "udp" | "tcp" (``-t t1``).
        """
        binary = require_binary("sipp")
        if transport not in ("udp", "tcp"):
            raise ValueError(f"transport must be 'udp' or 'tcp', not {transport!r}")
        path = scenario_path(scenario)
        if not path.is_file():
            raise FileNotFoundError(f"SIPp scenario not found: {path}")
        if local_port is None:
            local_port = free_port()
        wd = _mkdir(work_dir, "sipx-sipp-")
        name = name or f"{path.stem}-{local_port}"
        args = [binary]
        hp = _hostport(remote)
        if hp:
            args.append(hp)
        args += [
            "-sf",
            str(path),
            "-i",
            HOST,
            "-p",
            str(local_port),
            "-m",
            str(int(calls)),
            "-t",
            "t1" if transport == "tcp" else "u1",
            "-nostdin",
            "-timeout",
            f"{max(1, int(timeout_s * 1000))}ms",
            "-timeout_error",
            "-trace_msg",
            "-message_file",
            str(wd / f"{name}.msg"),
            "-trace_err",
            "-error_file",
            str(wd / f"{name}.errors"),
        ]
        if service is not None:
            args += ["-s", str(service)]
        if auth is not None:
            args += ["-au", str(auth[0]), "-ap", str(auth[1])]
        for k, v in (keys or {}).items():
            args += ["-key", str(k), str(v)]
        args += [str(a) for a in extra]
        if "-mp" not in args:  # else 6000 and 6002, which another SIPp may hold
            args += ["-mp", str(free_media_port())]
        with open(wd / f"{name}.out", "wb") as out, open(wd / f"{name}.err", "wb") as err:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=wd,
                start_new_session=True,
            )
        self = cls(args, proc, wd, local_port, transport, timeout_s, name)
        _LIVE.add(self)
        if wait_bound:
            try:
                wait_port_bound(
                    local_port, "tcp" if transport == "tcp" else "udp", timeout=5.0, proc=proc
                )
            except (TimeoutError, RuntimeError):
                # it may already have finished (fast run) - only fail if it is stuck
                if proc.poll() is None:
                    self.stop()
                    raise RuntimeError(
                        f"SIPp did not bind port {local_port}\n{self.describe()}"
                    ) from None
        return self

    @classmethod
    def run(
        cls,
        scenario: str | os.PathLike[str],
        remote: Any = None,
        *,
        wait_timeout: float | None = None,
        **kwargs: Any,
    ) -> tuple[int, str]:
        """start() + wait(); returns (exit code, message trace text).

        The exit code is 0 when every call succeeded.
        """
        s = cls.start(scenario, remote, **kwargs)
        try:
            rc = s.wait(wait_timeout)
        finally:
            s.stop()
        return rc, s.describe() if rc != 0 else s.log

    def wait(self, timeout: float | None = None) -> int:
        """Wait for exit and return the exit code (0 = all calls succeeded).

        Default timeout: the SIPp ``-timeout`` + 5 s.  On timeout the process is
        killed and TimeoutError raised.
        """
        if timeout is None:
            timeout = self.timeout_s + 5.0
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise TimeoutError(f"SIPp still running after {timeout} s\n{self.describe()}") from None
        self.stop()  # reap anything left in its group, mark stopped
        return rc

    @classmethod
    def registered_uas(
        cls,
        registrar: Any,
        user: str,
        scenario: str | os.PathLike[str] = "uas_answer.xml",
        *,
        password: str | None = None,
        transport: str = "udp",
        local_port: int | None = None,
        work_dir: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> SIPp:
        """REGISTER ``user`` at ``registrar`` with the UAS's port as Contact, then start
        the UAS scenario (``-s user``) on that port.  Call ``unregister()`` after
        ``stop()`` (the ``sipp`` fixture does) or the stale binding stays in Kamailio.
        """
        password = password if password is not None else USERS[user]
        local_port = local_port or free_port()
        wd = _mkdir(work_dir, "sipx-sipp-")
        rc, text = cls.run(
            "register_auth.xml",
            registrar,
            local_port=local_port,
            service=user,
            auth=(user, password),
            transport=transport,
            timeout_s=10,
            work_dir=wd,
            name=f"register-{user}-{local_port}",
        )
        if rc != 0:
            raise RuntimeError(f"registering {user} for the SIPp UAS failed\n{text}")
        kwargs.setdefault("service", user)
        uas = cls.start(
            scenario, None, local_port=local_port, transport=transport, work_dir=wd, **kwargs
        )
        uas.registration = (registrar, user, password)
        return uas

    def unregister(self) -> int:
        """Remove the binding that registered_uas() made (stops the UAS first)."""
        if self.registration is None:
            return 0
        self.stop()
        registrar, user, password = self.registration
        self.registration = None
        # the UAS just released the port; retry briefly if it is not yet free
        rc, _ = SIPp.run(
            "unregister_auth.xml",
            registrar,
            local_port=self.local_port,
            service=user,
            auth=(user, password),
            transport=self.transport,
            timeout_s=5,
            work_dir=self.work_dir,
            name=f"unregister-{user}-{self.local_port}",
        )
        return rc

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int | None:
        """Stop the process group (SIGTERM, SIGKILL after 3 s); idempotent. Returns rc."""
        if not self._stopped:
            self._stopped = True
            try:
                if self.proc.poll() is None or _group_alive(self.proc.pid):
                    _stop_group(self.proc, term_timeout=3.0)
            finally:
                _LIVE.discard(self)
        return self.proc.poll()

    # outputs ---------------------------------------------------------------
    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def stdout(self) -> str:
        return self._read(self.stdout_path)

    @property
    def stderr(self) -> str:
        return self._read(self.stderr_path)

    @property
    def log(self) -> str:
        """The message trace (-trace_msg): every message sent and received."""
        return self._read(self.message_path)

    @property
    def errors(self) -> str:
        """SIPp's error log (-trace_err): unexpected messages, aborted calls..."""
        return self._read(self.error_path)

    def describe(self, max_chars: int = 12000) -> str:
        """Everything useful for an assertion message."""
        msgs = self.log
        if len(msgs) > max_chars:
            msgs = "...\n" + msgs[-max_chars:]
        return (
            f"SIPp {self.name} rc={self.proc.poll()}\n"
            f"command: {' '.join(self.args)}\n"
            f"--- stderr ---\n{self.stderr.strip()}\n"
            f"--- errors ---\n{self.errors.strip()[-4000:]}\n"
            f"--- messages ---\n{msgs}"
        )

    def __enter__(self) -> SIPp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"<SIPp {self.name} port={self.local_port} pid={self.proc.pid} rc={self.proc.poll()}>"
        )


# --------------------------------------------------------------------------- #
# baresip (optional peer)
# --------------------------------------------------------------------------- #
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _baresip_module_path() -> str:
    for d in (
        "/usr/lib/baresip/modules",
        "/usr/local/lib/baresip/modules",
        "/usr/lib64/baresip/modules",
    ):
        if Path(d).is_dir():
            return d
    return "/usr/lib/baresip/modules"


class Baresip:
    """Headless, auto-answering baresip registered through Kamailio.

    Controlled over its UDP ``cons`` interface (every command ends in "\\n").
    Its SIP trace (``-s``) goes to ``log_path``.
    """

    host = HOST

    def __init__(
        self,
        user: str,
        proc: subprocess.Popen[bytes],
        run_dir: Path,
        sip_port: int,
        cons_port: int,
        registrar: str,
    ) -> None:
        self.user = user
        self.proc = proc
        self.run_dir = run_dir
        self.sip_port = sip_port
        self.cons_port = cons_port
        self.registrar = registrar
        self.log_path = run_dir / "baresip.log"
        self._stopped = False

    @property
    def port(self) -> int:
        return self.sip_port

    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{self.registrar}"

    @classmethod
    def start(
        cls,
        user: str,
        password: str | None = None,
        registrar: Any = None,
        *,
        sip_port: int | None = None,
        cons_port: int | None = None,
        answermode: str = "auto",
        run_dir: str | os.PathLike[str] | None = None,
        timeout: float = 10.0,
        play: str | os.PathLike[str] | None = None,
        modules: Sequence[str] = (),
        account_params: str = "",
        contacts: Sequence[str] = (),
    ) -> Baresip:
        """Start baresip as ``user`` and wait until its REGISTER got 200.

        ``play``: a WAV file baresip sends in its calls (module aufile) instead of looping
        back what it receives; the sndfile module then also records each call's audio in
        the run directory (``dump-*-dec.wav``: what it received).
        ``modules``: more modules to load (e.g. ``("mwi", "contact", "presence")``);
        ``account_params``: appended to the account line (e.g. ``";mwi=yes"``);
        ``contacts``: lines of its contacts file (e.g. ``"<sip:2222@...>;presence=p2p"``).
        """
        binary = require_binary("baresip")
        if password is None:
            password = USERS[user]
        reg = _hostport(registrar)
        if not reg:
            raise ValueError("registrar (Kamailio or 'host:port') is required")
        # Ports are bind-probed, not reserved: another process may take one before baresip
        # binds it (then "module cons.so: Address already in use" and baresip runs on without
        # its control interface, or it cannot register). A clash is retried with fresh ports.
        for attempt in range(3):
            last = attempt == 2 or bool(sip_port or cons_port)  # retry only our own picks
            rd = Path(f"{run_dir}-retry{attempt}") if attempt and run_dir else run_dir
            try:
                self = cls._start_once(
                    binary,
                    user,
                    password,
                    reg,
                    sip_port=sip_port or free_port(),
                    cons_port=cons_port or free_port(),  # cons listens on UDP *and* TCP
                    rtp=free_port("udp"),
                    answermode=answermode,
                    rd=_mkdir(rd, f"sipx-baresip-{user}-"),
                    timeout=timeout,
                    play=play,
                    modules=modules,
                    account_params=account_params,
                    contacts=contacts,
                )
            except RuntimeError as exc:
                if last or "in use" not in str(exc):
                    raise
                continue
            clash = re.search(
                r"(?m)^.*(?:failed to listen|module \S+:).*in use.*$", self.log_text()
            )
            if clash is None:
                return self
            self.stop()
            if last:
                raise RuntimeError(f"baresip could not bind its ports: {clash.group(0)}")
        raise AssertionError("unreachable")

    @classmethod
    def _start_once(
        cls,
        binary: str,
        user: str,
        password: str,
        reg: str,
        *,
        sip_port: int,
        cons_port: int,
        rtp: int,
        answermode: str,
        rd: Path,
        timeout: float,
        play: str | os.PathLike[str] | None = None,
        modules: Sequence[str] = (),
        account_params: str = "",
        contacts: Sequence[str] = (),
    ) -> Baresip:
        cfg = string.Template((BARESIP_DIR / "config.template").read_text()).substitute(
            sip_port=sip_port,
            cons_port=cons_port,
            rtp_ports=f"{rtp}-{rtp + 9}",
            module_path=_baresip_module_path(),
        )
        if play is not None:  # play a file, record the call (modules aufile and sndfile)
            cfg = cfg.replace("audio_source\t\taubridge,nil", f"audio_source\t\taufile,{play}")
            cfg += f"module\t\t\taufile.so\nmodule\t\t\tsndfile.so\nsnd_path\t\t{rd}\n"
        cfg += "".join(f"module\t\t\t{name}.so\n" for name in modules)
        (rd / "config").write_text(cfg)
        account = string.Template((BARESIP_DIR / "accounts.template").read_text()).substitute(
            user=user, registrar=reg, password=password, answermode=answermode, regint=600
        )
        (rd / "accounts").write_text(account.rstrip("\n") + account_params + "\n")
        if contacts:
            (rd / "contacts").write_text("".join(f"{line}\n" for line in contacts))
        log = open(rd / "baresip.log", "wb")  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                [binary, "-f", str(rd), "-s"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=rd,
                start_new_session=True,
                env={**os.environ, "HOME": str(rd)},
            )
        finally:
            log.close()
        self = cls(user, proc, rd, sip_port, cons_port, reg)
        _LIVE.add(self)
        try:
            self.wait_for(rf"(?m)^{re.escape(user)}@\S+.*200 OK", timeout=timeout)
        except (TimeoutError, RuntimeError) as exc:
            self.stop()
            raise RuntimeError(
                f"baresip did not register: {exc}\n--- log tail ---\n{_tail(self.log_path)}"
            ) from None
        return self

    def log_text(self) -> str:
        """The log (console output + SIP trace), ANSI colours stripped, ``\\n`` line ends."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return _ANSI.sub("", text).replace("\r\n", "\n")

    def wait_for(self, pattern: str, timeout: float = 10.0, start: int = 0) -> re.Match[str]:
        """Wait until ``pattern`` (regex) appears in the log after offset ``start``."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log_text(), start)
            if m:
                return m
            if self.proc.poll() is not None:
                raise RuntimeError(f"baresip exited with rc={self.proc.returncode}")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{pattern!r} not in baresip log within {timeout} s")
            time.sleep(0.02)

    def log_offset(self) -> int:
        return len(self.log_text())

    def command(self, cmd: str) -> None:
        """Send one cons command (e.g. '/dial sip:100@127.0.0.1:5070', '/hangup')."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto((cmd.rstrip("\n") + "\n").encode(), (HOST, self.cons_port))

    def dial(self, uri: str) -> None:
        self.command(f"/dial {uri}")

    def hangup(self) -> None:
        self.command("/hangup")

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            _stop_group(self.proc, term_timeout=3.0)
        finally:
            _LIVE.discard(self)

    def __enter__(self) -> Baresip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"<Baresip {self.user} sip={self.sip_port} cons={self.cons_port} pid={self.proc.pid}>"
        )


# --------------------------------------------------------------------------- #
# dnsmasq (DNS server for RFC 3263 NAPTR/SRV/A lookups)
# --------------------------------------------------------------------------- #
#: query types the stdlib probe (:func:`dns_query`) knows
DNS_TYPES: dict[str, int] = {
    "A": 1,
    "NS": 2,
    "CNAME": 5,
    "SOA": 6,
    "PTR": 12,
    "TXT": 16,
    "AAAA": 28,
    "SRV": 33,
    "NAPTR": 35,
}
DNS_NOERROR, DNS_SERVFAIL, DNS_NXDOMAIN, DNS_REFUSED = 0, 2, 3, 5
_DNS_RCODE_TEXT = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
}
#: a name (or SRV/NAPTR field) must not break dnsmasq's comma/slash separated options
_DNS_NAME = re.compile(r"^[A-Za-z0-9_*-]+(?:\.[A-Za-z0-9_*-]+)*\.?$")


class DnsReply(NamedTuple):
    """What :func:`dns_query` saw: response code, answer count (ANCOUNT), AA flag."""

    rcode: int
    answers: int
    authoritative: bool

    @property
    def rcode_text(self) -> str:
        return _DNS_RCODE_TEXT.get(self.rcode, str(self.rcode))


def _dns_wire_query(name: str, qtype: str, qid: int) -> bytes:
    qname = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise ValueError(f"bad DNS name {name!r}")
        qname += bytes([len(raw)]) + raw
    qtype_code = DNS_TYPES[qtype.upper()]
    # header: id, flags (RD), QDCOUNT=1, AN/NS/AR=0; question: name, type, class IN
    return (
        struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0)
        + qname
        + b"\0"
        + struct.pack("!2H", qtype_code, 1)
    )


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed by the DNS server")
        data += chunk
    return data


def dns_query(
    host: str,
    port: int,
    name: str,
    qtype: str = "A",
    transport: str = "udp",
    timeout: float = 0.5,
) -> DnsReply | None:
    """One stdlib DNS query (class IN, RD set) to ``host:port`` over "udp" or "tcp".

    Returns the reply's rcode/answer count/AA flag, or None when nothing (valid) answered
    in time.  For probes only: the records themselves are not parsed (use dnspython).
    """
    if transport not in ("udp", "tcp"):
        raise ValueError(f"transport must be 'udp' or 'tcp', not {transport!r}")
    qid = random.getrandbits(16)
    msg = _dns_wire_query(name, qtype, qid)
    try:
        if transport == "udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(timeout)
                s.connect((host, port))  # only replies from host:port; ICMP -> error
                s.send(msg)
                while True:  # skip stale datagrams (other ids)
                    data = s.recv(65535)
                    if len(data) >= 12 and data[:2] == msg[:2]:
                        break
        else:
            with socket.create_connection((host, port), timeout=timeout) as s:
                s.sendall(struct.pack("!H", len(msg)) + msg)
                (length,) = struct.unpack("!H", _recv_exact(s, 2))
                data = _recv_exact(s, length)
    except OSError:  # timeout, refused, reset
        return None
    if len(data) < 12:
        return None
    rid, flags, _qd, ancount = struct.unpack("!4H", data[:8])
    if rid != qid or not flags & 0x8000:
        return None
    return DnsReply(flags & 0x000F, ancount, bool(flags & 0x0400))


class SrvRecord(NamedTuple):
    """``--srv-host``: ``name`` (``_sip._udp.example.test``) -> ``target``:``port``.

    ``target=None`` publishes the RFC 2782 "service not available" record (target ".").
    """

    name: str
    target: str | None
    port: int = 5060
    priority: int = 0
    weight: int = 0


class NaptrRecord(NamedTuple):
    """``--naptr-record`` (RFC 3403), e.g. ``("example.test", 10, 50, "s", "SIP+D2U", "",
    "_sip._udp.example.test")``."""

    name: str
    order: int
    preference: int
    flags: str
    service: str
    regexp: str = ""
    replacement: str = ""


def _in_zones(name: str, zones: Iterable[str]) -> bool:
    n = name.rstrip(".").lower()
    return any(n == z or n.endswith("." + z) for z in zones)


def _check_name(name: str, what: str) -> str:
    if not _DNS_NAME.match(name):
        raise ValueError(f"{what} {name!r} is not a plain DNS name (letters, digits, - _ .)")
    return name.rstrip(".")


class Dnsmasq(_GroupProcess):
    """A dnsmasq DNS server on 127.0.0.1:port (UDP+TCP) answering only from its options.

    No upstream server (``--no-resolv``, no ``--server``), no /etc/hosts, no
    /etc/dnsmasq.conf, no DHCP: it never sends a query anywhere.  By default it is the
    authoritative server of ``domain`` (``--auth-zone``): answers carry AA, a name under
    the domain without records gets NXDOMAIN (AA, SOA in the authority section), a name
    with records of other types NODATA; names outside every domain get REFUSED.
    Use ``Dnsmasq.start(...)``; ``stop()`` is idempotent; context manager.
    """

    term_timeout = 3.0  # TCP queries are served by forked children

    host = HOST

    def __init__(
        self,
        port: int,
        run_dir: Path,
        proc: subprocess.Popen[bytes],
        args: list[str],
        *,
        srv: list[SrvRecord],
        hosts: dict[str, list[str]],
        naptr: list[NaptrRecord],
        domains: list[str],
        ttl: int,
        authoritative: bool,
    ) -> None:
        self.port = port
        self.run_dir = run_dir
        self.proc = proc
        self.args = args
        self.srv = srv
        self.hosts = hosts
        self.naptr = naptr
        self.domains = domains
        self.ttl = ttl
        self.authoritative = authoritative
        #: dnsmasq's query log (--log-facility); startup errors go to ``out_path``
        self.log_path = run_dir / "dnsmasq.log"
        #: dnsmasq's stdout/stderr ("failed to create listening socket ...")
        self.out_path = run_dir / "dnsmasq.out"
        self.ready_after: float | None = None
        self._ready_offset = 0
        self._stopped = False

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def nameserver(self) -> str:
        """``127.0.0.1:<port>`` (the form ``sipx``'s ``Resolver(nameservers=[...])`` takes)."""
        return self.hostport

    @classmethod
    def start(
        cls,
        srv: Iterable[SrvRecord | Sequence[Any]] = (),
        hosts: Mapping[str, str | Iterable[str]] | None = None,
        *,
        naptr: Iterable[NaptrRecord | Sequence[Any]] = (),
        domain: str | Iterable[str] | None = "example.test",
        ttl: int = 60,
        authoritative: bool = True,
        port: int | None = None,
        run_dir: str | os.PathLike[str] | None = None,
        extra: Sequence[str] = (),
        ready_timeout: float = 5.0,
    ) -> Dnsmasq:
        """Launch dnsmasq and wait until it answers over UDP and TCP.

        ``srv``: :class:`SrvRecord` or tuples ``(name, target, port, priority, weight)``
        (port default 5060, priority/weight 0; target None: "not available").  ``hosts``:
        name -> address or addresses (IPv4 -> A, IPv6 -> AAAA; the PTR too, but only when
        not authoritative).  ``naptr``: :class:`NaptrRecord` or tuples.
        ``domain``: the zone(s) this server answers for; unknown names under them get
        NXDOMAIN at once, never a forward.  ``authoritative`` (default): ``--auth-zone`` per
        domain, every SRV/host/NAPTR name must lie in one (ValueError otherwise); AA set on
        every answer, SOA with negative answers.  ``authoritative=False``: only
        ``--local=/domain/`` (NXDOMAIN without AA/SOA; records may lie anywhere; SRV answers
        carry the targets' addresses as additional records); ``domain=None`` is allowed then.
        ``ttl``: TTL of every record and the SOA minimum (``--local-ttl``/``--auth-ttl``;
        dnsmasq's defaults are 0 and 600).
        ``extra``: more dnsmasq options (e.g. ``"--cname=alias.example.test,pbx.example.test"``).
        ``port`` default: a free UDP+TCP port (retried with a fresh one on a clash).

        Readiness: the first SRV (else host, else NAPTR) record is queried over UDP and TCP
        and must be answered with NOERROR and at least one record (no records: a name
        under ``domain`` must get NXDOMAIN).
        """
        binary = require_binary("dnsmasq")
        srv_records = [r if isinstance(r, SrvRecord) else SrvRecord(*r) for r in srv]
        naptr_records = [r if isinstance(r, NaptrRecord) else NaptrRecord(*r) for r in naptr]
        host_map: dict[str, list[str]] = {}
        for name, addrs in (hosts or {}).items():
            values = [addrs] if isinstance(addrs, str) else list(addrs)
            for a in values:
                ipaddress.ip_address(a)  # ValueError for anything else
            host_map[_check_name(name, "host name")] = values
        if domain is None:
            domains: list[str] = []
        else:
            domains = [domain] if isinstance(domain, str) else list(domain)
        domains = [_check_name(d, "domain").lower() for d in domains]
        if authoritative:
            if not domains:
                raise ValueError("authoritative=True needs a domain (or authoritative=False)")
            names = [r.name for r in srv_records] + list(host_map) + [n.name for n in naptr_records]
            outside = [n for n in names if not _in_zones(n, domains)]
            if outside:
                raise ValueError(
                    f"names outside the authoritative domain(s) {domains}: {outside} "
                    "(dnsmasq would answer REFUSED; add their domain or authoritative=False)"
                )
        options = cls._record_options(srv_records, host_map, naptr_records, domains)
        options.append(f"--local-ttl={int(ttl)}")
        if authoritative:
            # queries to 127.0.0.1 are answered from the zones only (glue-less, AA, SOA)
            options.append(f"--auth-server=ns.{domains[0]},{HOST}")
            options += [f"--auth-zone={d}" for d in domains]
            options.append(f"--auth-ttl={int(ttl)}")
        options += [str(e) for e in extra]
        probe = cls._probe(srv_records, host_map, naptr_records, domains)
        for attempt in range(3):
            last = attempt == 2 or port is not None  # retry only our own picks
            rd = Path(f"{run_dir}-retry{attempt}") if attempt and run_dir else run_dir
            p = port if port is not None else free_port()
            try:
                self = cls._start_once(
                    binary,
                    p,
                    _mkdir(rd, f"sipx-dnsmasq-{p}-"),
                    options,
                    probe,
                    ready_timeout,
                    dict(
                        srv=srv_records,
                        hosts=host_map,
                        naptr=naptr_records,
                        domains=domains,
                        ttl=int(ttl),
                        authoritative=authoritative,
                    ),
                )
            except RuntimeError as exc:
                if last or "in use" not in str(exc):
                    raise
                continue
            return self
        raise AssertionError("unreachable")

    @staticmethod
    def _record_options(
        srv: list[SrvRecord],
        hosts: dict[str, list[str]],
        naptr: list[NaptrRecord],
        domains: list[str],
    ) -> list[str]:
        out = []
        for r in srv:
            name = _check_name(r.name, "SRV name")
            if r.target is None or r.target == ".":
                out.append(f"--srv-host={name}")  # answered as "0 0 1 ." (not available)
                continue
            target = _check_name(r.target, "SRV target")
            fields = [int(r.port), int(r.priority), int(r.weight)]
            if not all(0 <= v <= 65535 for v in fields):
                raise ValueError(f"SRV port/priority/weight out of range: {r}")
            out.append(f"--srv-host={name},{target},{fields[0]},{fields[1]},{fields[2]}")
        for name, addrs in hosts.items():
            # one --host-record per address: a record takes at most one IPv4 and one IPv6
            out += [f"--host-record={name},{a}" for a in addrs]
        for n in naptr:
            texts = (n.flags, n.service, n.regexp)
            if any("," in t or "\n" in t for t in texts):
                raise ValueError(f"NAPTR fields must not contain commas: {n}")
            repl = _check_name(n.replacement, "NAPTR replacement") if n.replacement else ""
            out.append(
                f"--naptr-record={_check_name(n.name, 'NAPTR name')},{int(n.order)},"
                f"{int(n.preference)},{n.flags},{n.service},{n.regexp}"
                + (f",{repl}" if repl else "")
            )
        out += [f"--local=/{d}/" for d in domains]
        return out

    @staticmethod
    def _probe(
        srv: list[SrvRecord],
        hosts: dict[str, list[str]],
        naptr: list[NaptrRecord],
        domains: list[str],
    ) -> tuple[str, str, int] | None:
        """(name, type, expected rcode) of the readiness query; None: any reply will do."""
        if srv:
            return srv[0].name.rstrip("."), "SRV", DNS_NOERROR
        for name, addrs in hosts.items():
            if addrs:
                v6 = ipaddress.ip_address(addrs[0]).version == 6
                return name, "AAAA" if v6 else "A", DNS_NOERROR
        if naptr:
            return naptr[0].name.rstrip("."), "NAPTR", DNS_NOERROR
        if domains:
            return f"sipx-ready-probe.{domains[0]}", "A", DNS_NXDOMAIN
        return None

    @classmethod
    def _start_once(
        cls,
        binary: str,
        port: int,
        rd: Path,
        options: list[str],
        probe: tuple[str, str, int] | None,
        ready_timeout: float,
        records: dict[str, Any],
    ) -> Dnsmasq:
        args = [
            binary,
            "--keep-in-foreground",  # no fork+setsid: it stays in our process group
            "--conf-file=/dev/null",  # not /etc/dnsmasq.conf (nor its conf-dir)
            "--no-resolv",  # no upstream from /etc/resolv.conf: never forwards
            "--no-hosts",  # not /etc/hosts
            "--no-poll",
            f"--listen-address={HOST}",
            "--bind-interfaces",  # bind 127.0.0.1:port itself, not the wildcard address
            f"--port={port}",
            # default is to drop to "nobody" (group "dip"), which must exist; root keeps
            # the current user (also when not started as root)
            "--user=root",
            "--group=root",
            f"--pid-file={rd / 'dnsmasq.pid'}",
            "--log-queries",
            f"--log-facility={rd / 'dnsmasq.log'}",  # contains "/": a file, not a facility
            *options,
        ]
        with open(rd / "dnsmasq.out", "wb") as out:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=rd,
                start_new_session=True,
            )
        self = cls(port, rd, proc, args, **records)
        _LIVE.add(self)
        try:
            self.ready_after = self._wait_ready(probe, ready_timeout)
            if proc.poll() is not None:  # someone else answered
                raise RuntimeError(f"dnsmasq exited with rc={proc.returncode}")
        except (TimeoutError, RuntimeError) as exc:
            self.stop()
            out_text = self.out_path.read_text(errors="replace").strip()
            raise RuntimeError(
                f"dnsmasq on {HOST}:{port} did not become ready: {exc}\n"
                f"command: {' '.join(args)}\n--- output ---\n{out_text}\n"
                f"--- log tail ---\n{_tail(self.log_path)}"
            ) from None
        self._ready_offset = len(self.log_text())
        return self

    def _wait_ready(self, probe: tuple[str, str, int] | None, timeout: float) -> float:
        t0 = time.monotonic()
        done: set[str] = set()
        last: dict[str, DnsReply | None] = {}
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dnsmasq exited with rc={self.proc.returncode}")
            for tr in ("udp", "tcp"):
                if tr in done:
                    continue
                name, qtype = (probe[0], probe[1]) if probe else ("sipx-ready-probe.test", "A")
                reply = dns_query(HOST, self.port, name, qtype, tr, timeout=0.2)
                last[tr] = reply
                if reply is not None and (
                    probe is None
                    or (reply.rcode == probe[2] and (probe[2] != DNS_NOERROR or reply.answers > 0))
                ):
                    done.add(tr)
            if len(done) == 2:
                return time.monotonic() - t0
            time.sleep(0.01)
        want = f"{probe[1]} {probe[0]} -> {_DNS_RCODE_TEXT[probe[2]]}" if probe else "any reply"
        raise TimeoutError(f"no valid answer ({want}) within {timeout} s; last replies: {last}")

    # queries -------------------------------------------------------------
    def query(self, name: str, qtype: str = "A", transport: str = "udp") -> DnsReply | None:
        """A stdlib probe query to this server (see :func:`dns_query`)."""
        return dns_query(HOST, self.port, name, qtype, transport, timeout=1.0)

    def resolver(self, lifetime: float = 2.0) -> dns.resolver.Resolver:
        """A dnspython resolver that asks only this server (never the system's config)."""
        import dns.resolver  # test dependency: imported on use only

        r = dns.resolver.Resolver(configure=False)
        r.nameservers = [HOST]
        r.port = self.port
        r.lifetime = r.timeout = lifetime
        r.cache = None
        return r

    def log_offset(self) -> int:
        return len(self.log_text())

    def queries(self, start: int | None = None) -> list[tuple[str, str]]:
        """(type, name) of every query logged after offset ``start`` (default: after the
        readiness probes), e.g. ``[("NAPTR", "example.test"), ("SRV", "_sip._udp...")]``."""
        text = self.log_text()[self._ready_offset if start is None else start :]
        # "query[SRV] name from ..." (recursive path) or "auth[SRV] ..." (auth zone)
        return re.findall(r"(?:query|auth)\[(\w+)\] (\S+) from ", text)

    # lifecycle -------------------------------------------------------------
    def __repr__(self) -> str:
        return (
            f"<Dnsmasq {self.hostport} pid={self.proc.pid} "
            f"{'running' if self.running() else 'stopped'}>"
        )
