"""Fixtures that start real peers (Kamailio, SIPp, baresip, dnsmasq) on 127.0.0.1.

Fixtures
--------
``echo_uas``          (module) SIPp ``uas_answer.xml`` answering every call of the
                      module (extension 100 of both Kamailio instances); a
                      :class:`peers.SIPp` with ``.port``, ``.uri``, ``.log``.
``kamailio``          (module) fresh MD5 Kamailio on a free port, extension 100
                      relayed to ``echo_uas``; a :class:`peers.Kamailio`
                      (``.host``, ``.port``, ``.uri``, ``.aor(user)``, ``.log_text()``).
``kamailio_sha256``   (module) the same with ``algorithm=SHA-256`` challenges.
``kamailio_asterisk`` (module) the same (MD5) with realm "asterisk", as in the guide.
``kamailio_tls``      (module) MD5 Kamailio that also listens for TLS on ``.tls_port``
                      (``.tls_uri``) with a trustme certificate for 127.0.0.1/localhost;
                      ``.tls_ca`` is the trustme.CA (``ca.configure_trust(ctx)``).
``sipp``              (function) factory ``sipp(scenario, remote=None, **kw) -> SIPp``
                      (see :meth:`peers.SIPp.start`); ``sipp.run(...) -> (rc, text)``;
                      ``sipp.registered_uas(kamailio, "2222", "uas_answer.xml", ...)``
                      registers a user whose calls a SIPp UAS answers.
                      Everything it started is stopped (and unregistered) at teardown.
``baresip``           (function) factory ``baresip(user, password=None, registrar=None,
                      **kw) -> Baresip``; registrar defaults to the module's ``kamailio``.
``dnsmasq``           (function) factory ``dnsmasq(srv=(), hosts=None, **kw) -> Dnsmasq``
                      (see :meth:`peers.Dnsmasq.start`; ``domain="example.test"``): a DNS
                      server on ``.host``:``.port`` (``.nameserver`` = "127.0.0.1:port")
                      answering only its own records, never forwarding; ``.resolver()``
                      is a dnspython resolver for it, ``.queries()`` what was asked.
                      Everything it started is stopped at teardown.

A missing binary skips the test, or fails it when CI is set (see ``require_binary``).
On a failing test that used a Kamailio fixture, the Kamailio log tail is attached
to the report.
"""

from __future__ import annotations

import sys
from collections.abc import Generator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # works with any --import-mode
    sys.path.insert(0, _HERE)

from peers import (  # noqa: E402
    Baresip,
    Dnsmasq,
    Kamailio,
    SIPp,
    free_port,
    require_binary,
)

#: calls the module-scoped echo UAS accepts before it exits
ECHO_UAS_CALLS = 100_000
#: hard upper bound on the lifetime of the module's echo UAS (seconds)
ECHO_UAS_LIFETIME_S = 3600.0


@pytest.fixture(scope="module")
def echo_uas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SIPp]:
    """A SIPp UAS (uas_answer.xml: 100/180/200+SDP, ACK, BYE->200) on a free UDP port."""
    require_binary("sipp")
    uas = SIPp.start(
        "uas_answer.xml",
        local_port=free_port(),
        service="100",
        calls=ECHO_UAS_CALLS,
        timeout_s=ECHO_UAS_LIFETIME_S,
        # a caller that never sends BYE must not pin a call forever
        extra=("-recv_timeout", "120000"),
        work_dir=tmp_path_factory.mktemp("echo_uas"),
        name="echo-uas",
    )
    try:
        yield uas
    finally:
        uas.stop()


def _start_kamailio(
    tmp_path_factory: pytest.TempPathFactory, echo: SIPp, **kwargs: Any
) -> Kamailio:
    require_binary("kamailio")
    return Kamailio.start(
        free_port(),
        echo_uri=f"sip:{echo.hostport}",
        run_dir=tmp_path_factory.mktemp("kamailio"),
        **kwargs,
    )


@pytest.fixture(scope="module")
def kamailio(tmp_path_factory: pytest.TempPathFactory, echo_uas: SIPp) -> Iterator[Kamailio]:
    """Fresh MD5 Kamailio per test module (registrations do not leak between modules)."""
    k = _start_kamailio(tmp_path_factory, echo_uas)
    try:
        yield k
    finally:
        k.stop()


@pytest.fixture(scope="module")
def kamailio_sha256(tmp_path_factory: pytest.TempPathFactory, echo_uas: SIPp) -> Iterator[Kamailio]:
    """Fresh Kamailio per test module whose challenges say algorithm=SHA-256."""
    k = _start_kamailio(tmp_path_factory, echo_uas, sha256=True)
    try:
        yield k
    finally:
        k.stop()


@pytest.fixture(scope="module")
def kamailio_asterisk(
    tmp_path_factory: pytest.TempPathFactory, echo_uas: SIPp
) -> Iterator[Kamailio]:
    """Fresh MD5 Kamailio whose realm is "asterisk", like the guide's Asterisk (the guide
    writes ``Auth.Digest(..., realm="asterisk")`` and shows ``Digest realm="asterisk"``)."""
    k = _start_kamailio(tmp_path_factory, echo_uas, extra_defines=['AUTH_REALM="asterisk"'])
    try:
        yield k
    finally:
        k.stop()


@pytest.fixture(scope="module")
def kamailio_tls(tmp_path_factory: pytest.TempPathFactory, echo_uas: SIPp) -> Iterator[Kamailio]:
    """Fresh MD5 Kamailio with an extra TLS listener (``.tls_port``, ``.tls_uri``).

    The server certificate (for "127.0.0.1" and "localhost") is issued by a fresh trustme
    CA, attached as ``.tls_ca``: verify with ``k.tls_ca.configure_trust(ctx)`` and
    ``server_hostname="127.0.0.1"``.  Kamailio does not verify UA certificates.
    """
    import trustme  # test dependency: imported only when a test asks for TLS

    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_dir = tmp_path_factory.mktemp("kamailio_tls_certs")
    cert_path, key_path = cert_dir / "server-chain.pem", cert_dir / "server-key.pem"
    cert_path.write_bytes(b"".join(blob.bytes() for blob in server_cert.cert_chain_pems))
    server_cert.private_key_pem.write_to_path(str(key_path))
    ca.cert_pem.write_to_path(str(cert_dir / "ca.pem"))  # for openssl s_client & co
    k = _start_kamailio(tmp_path_factory, echo_uas, tls_cert=cert_path, tls_key=key_path)
    k.tls_ca = ca
    try:
        yield k
    finally:
        k.stop()


class SIPpFactory:
    """``sipp(scenario, remote=None, **kw)`` starts SIPp (background); all stopped at teardown."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.started: list[SIPp] = []

    def __call__(self, scenario: str, remote: Any = None, **kwargs: Any) -> SIPp:
        kwargs.setdefault("work_dir", self.work_dir)
        s = SIPp.start(scenario, remote, **kwargs)
        self.started.append(s)
        return s

    start = __call__

    def run(
        self, scenario: str, remote: Any = None, *, wait_timeout: float | None = None, **kwargs: Any
    ) -> tuple[int, str]:
        """start + wait: (exit code, message trace; describe() text on failure)."""
        s = self(scenario, remote, **kwargs)
        rc = s.wait(wait_timeout)
        return rc, (s.describe() if rc != 0 else s.log)

    def registered_uas(
        self, registrar: Any, user: str, scenario: str = "uas_answer.xml", **kwargs: Any
    ) -> SIPp:
        """SIPp UAS registered as ``user`` (see SIPp.registered_uas); unregistered at teardown."""
        kwargs.setdefault("work_dir", self.work_dir)
        s = SIPp.registered_uas(registrar, user, scenario, **kwargs)
        self.started.append(s)
        return s

    def stop_all(self) -> None:
        for s in self.started:
            s.stop()
        for s in self.started:
            if s.registration is not None and not _registrar_gone(s.registration[0]):
                s.unregister()


def _registrar_gone(registrar: Any) -> bool:
    return isinstance(registrar, Kamailio) and not registrar.running()


@pytest.fixture
def sipp(tmp_path: Path) -> Iterator[SIPpFactory]:
    require_binary("sipp")
    factory = SIPpFactory(tmp_path / "sipp")
    try:
        yield factory
    finally:
        factory.stop_all()


class BaresipFactory:
    def __init__(self, work_dir: Path, registrar: Any) -> None:
        self.work_dir = work_dir
        self.registrar = registrar
        self.started: list[Baresip] = []

    def __call__(
        self, user: str, password: str | None = None, registrar: Any = None, **kwargs: Any
    ) -> Baresip:
        kwargs.setdefault("run_dir", self.work_dir / f"baresip-{user}-{len(self.started)}")
        b = Baresip.start(user, password, registrar or self.registrar, **kwargs)
        self.started.append(b)
        return b

    def stop_all(self) -> None:
        for b in self.started:
            b.stop()


@pytest.fixture
def baresip(tmp_path: Path, kamailio: Kamailio) -> Iterator[BaresipFactory]:
    require_binary("baresip")
    factory = BaresipFactory(tmp_path, kamailio)
    try:
        yield factory
    finally:
        factory.stop_all()


class DnsmasqFactory:
    """``dnsmasq(srv=..., hosts=..., domain=..., **kw)`` starts dnsmasq (waits until it
    answers); every instance is stopped at teardown."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.started: list[Dnsmasq] = []

    def __call__(
        self, srv: Iterable[Any] = (), hosts: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Dnsmasq:
        kwargs.setdefault("run_dir", self.work_dir / f"dnsmasq-{len(self.started)}")
        d = Dnsmasq.start(srv, hosts, **kwargs)
        self.started.append(d)
        return d

    start = __call__

    def stop_all(self) -> None:
        for d in self.started:
            d.stop()


@pytest.fixture
def dnsmasq(tmp_path: Path) -> Iterator[DnsmasqFactory]:
    require_binary("dnsmasq")
    factory = DnsmasqFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the Kamailio log tail, and what each SIPp of the test said (exit status,
    stderr, errors, messages), to the report of a failing test that used them."""
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for name in ("kamailio", "kamailio_sha256", "kamailio_tls"):
            k = funcargs.get(name)
            if isinstance(k, Kamailio):
                report.sections.append((f"{name} log tail ({k.log_path})", k.log_tail(60)))
        factory = funcargs.get("sipp")
        if isinstance(factory, SIPpFactory):
            for s in factory.started:
                report.sections.append((f"SIPp {s.name}", s.describe(4000)))
    return report
