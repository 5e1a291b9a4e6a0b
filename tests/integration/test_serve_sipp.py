"""``sipx serve`` against SIPp: the scenarios written for Kamailio run unchanged against it.

The server runs in-process on a background thread (``trio.run`` in a thread) for most
tests, and once as a subprocess (``python -m sipx._serve.cli``) to prove the command line.
Every scenario runs over UDP and over TCP (``-t t1``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from peers import HOST, USERS, SipClient, free_port, require_binary

from sipx._serve import DevServer

pytestmark = pytest.mark.integration

TRANSPORTS = ["udp", "tcp"]
ROOT = Path(__file__).resolve().parents[2]


class ServerThread:
    """A :class:`DevServer` running ``trio.run`` on a daemon thread; ``.host``/``.port``."""

    host = HOST

    def __init__(self, server: DevServer) -> None:
        self.server = server
        self.port = 0
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sipx-serve", daemon=True)

    def start(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the dev server did not start")
        if self._error is not None:
            raise RuntimeError("the dev server failed to start") from self._error
        return self

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to the test thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            self._scope = scope
            async with trio.open_nursery() as nursery:
                _, self.port = await nursery.start(self.server.serve)
                self._ready.set()

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the server's trio thread (the server is not thread-safe)."""
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def registrations(self) -> dict[str, Any]:
        return self.call(lambda: self.server.registrations)  # type: ignore[no-any-return]

    def clear(self) -> None:
        def remove_all() -> None:
            for user in list(self.server.users):
                self.server.registrar.remove(user)

        self.call(remove_all)

    def stop(self) -> None:
        if self._scope is not None and self._thread.is_alive():
            self.call(self._scope.cancel)
        self._thread.join(10)
        assert not self._thread.is_alive(), "the dev server thread did not stop"
        if self._error is not None:
            raise self._error

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"


@pytest.fixture(scope="module")
def dev_server() -> Iterator[ServerThread]:
    require_binary("sipp")
    thread = ServerThread(DevServer(HOST, 0)).start()
    try:
        yield thread
    finally:
        thread.stop()


@pytest.fixture
def server(dev_server: ServerThread) -> Iterator[ServerThread]:
    """The module's server, with every binding removed after the test."""
    try:
        yield dev_server
    finally:
        dev_server.clear()


def _rr(server: ServerThread, transport: str) -> str:
    suffix = ";transport=tcp" if transport == "tcp" else ""
    return f"Record-Route: <sip:{server.hostport}{suffix};lr>"


# -- REGISTER ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sipp_register_with_digest(server: ServerThread, sipp: Any, transport: str) -> None:
    port = free_port()
    rc, trace = sipp.run(
        "register_auth.xml",
        server,
        local_port=port,
        service="1111",
        auth=("1111", USERS["1111"]),
        transport=transport,
        timeout_s=10,
    )
    assert rc == 0, trace
    assert "SIP/2.0 401 Unauthorized" in trace
    assert 'WWW-Authenticate: Digest realm="sipx"' in trace
    assert re.search(rf"Contact: <sip:1111@127\.0\.0\.1:{port};transport=\w+>;expires=3600", trace)
    (binding,) = server.registrations()["1111"]
    assert binding.transport == transport.upper()
    assert binding.uri.port == port


# -- INVITE to the built-in UA ------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sipp_call_to_extension_100(server: ServerThread, sipp: Any, transport: str) -> None:
    rc, trace = sipp.run(
        "uac_invite_auth.xml",
        server,
        service="100",
        keys={"caller": "1111"},
        auth=("1111", USERS["1111"]),
        transport=transport,
        timeout_s=10,
    )
    assert rc == 0, trace
    assert "SIP/2.0 407 Proxy Authentication Required" in trace
    assert "SIP/2.0 180 Ringing" in trace
    assert "Server: sipx-serve" in trace
    # the built-in UA answered with SDP and its own Contact; BYE got 200
    ports = [int(port) for port in re.findall(r"m=audio (\d+) RTP/AVP 0", trace)]
    low, high = server.server.rtp_ports
    # SIPp's offer, then our answer on a real port: extension 100 echoes RTP
    assert any(low <= port <= high for port in ports[1:]), trace
    assert f"Contact: <sip:100@{server.hostport}" in trace
    assert re.search(r"SIP/2\.0 200 OK\r?\n(?:.+\r?\n)*?CSeq: 3 BYE", trace), trace
    # no call is left behind in the built-in UA
    echo = server.server.echo
    assert echo is not None
    assert server.call(lambda: echo.calls) == []


# -- INVITE and MESSAGE proxied to a registered SIPp UAS ----------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sipp_call_proxied_to_registered_uas(
    server: ServerThread, sipp: Any, transport: str
) -> None:
    uas = sipp.registered_uas(server, "2222", "uas_answer.xml", transport=transport)
    assert "2222" in server.registrations()
    rc, trace = sipp.run(
        "uac_invite_auth.xml",
        server,
        service="2222",
        keys={"caller": "1111"},
        auth=("1111", USERS["1111"]),
        transport=transport,
        timeout_s=10,
    )
    assert rc == 0, trace + "\n" + uas.describe()
    assert "SIP/2.0 407 Proxy Authentication Required" in trace
    assert _rr(server, transport) in trace
    callee = uas.log
    # the INVITE was forwarded by us: our Via (derived branch) and Record-Route on top
    assert re.search(
        rf"Via: SIP/2\.0/{transport.upper()} {re.escape(server.hostport)};branch=z9hG4bKsx",
        callee,
    ), uas.describe()
    assert _rr(server, transport) in callee
    assert "Proxy-Authorization" not in callee  # credentials are consumed
    assert "Max-Forwards: 69" in callee
    # ACK and BYE were loose-routed through us (the UAS got them with our Via on top)
    for method in ("ACK", "BYE"):
        block = _request_block(callee, method)
        assert f"Via: SIP/2.0/{transport.upper()} {server.hostport};branch=z9hG4bKsx" in block, (
            block
        )
        assert "Route:" not in block.replace("Record-Route:", ""), block


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sipp_message_proxied_to_registered_uas(
    server: ServerThread, sipp: Any, transport: str
) -> None:
    uas = sipp.registered_uas(server, "2222", "uas_message.xml", transport=transport)
    rc, trace = sipp.run(
        "uac_message_auth.xml",
        server,
        service="2222",
        keys={"caller": "1111"},
        auth=("1111", USERS["1111"]),
        transport=transport,
        timeout_s=10,
    )
    assert rc == 0, trace + "\n" + uas.describe()
    assert "SIP/2.0 407 Proxy Authentication Required" in trace
    assert "hello 2222 from 1111" in uas.log
    assert uas.wait(10) == 0, uas.describe()


def test_message_to_unregistered_and_unknown_users(server: ServerThread) -> None:
    with SipClient(server.host, server.port, "udp") as client:
        *_, unregistered = client.message("1111", "3333", USERS["1111"])
        *_, unknown = client.message("1111", "9999", USERS["1111"])
    assert unregistered.status == 480, unregistered.raw
    assert unknown.status == 404, unknown.raw


def _request_block(log: str, method: str) -> str:
    """The message block of the first received ``method`` request in a SIPp trace."""
    match = re.search(rf"(?ms)^{method} sip:.*?(?=^-{{5,}}|\Z)", log)
    assert match is not None, f"no {method} in\n{log}"
    return match.group(0)


# -- the command line, as a subprocess ------------------------------------------------------


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    require_binary("sipp")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sipx._serve.cli", "--port", str(port), "--user", "1111:1111xxx"],
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "serve.err", "w"),  # noqa: SIM115
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert f"listening on 127.0.0.1:{port}" in banner, (
            banner + (tmp_path / "serve.err").read_text()
        )
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cli_subprocess_serves_sipp(
    serve_process: tuple[subprocess.Popen[str], int], sipp: Any, transport: str
) -> None:
    proc, port = serve_process
    remote = f"{HOST}:{port}"
    rc, trace = sipp.run(
        "register_auth.xml",
        remote,
        service="1111",
        auth=("1111", "1111xxx"),
        transport=transport,
        timeout_s=10,
    )
    assert rc == 0, trace
    rc, trace = sipp.run(
        "uac_invite_auth.xml",
        remote,
        service="100",
        keys={"caller": "1111"},
        auth=("1111", "1111xxx"),
        transport=transport,
        timeout_s=10,
    )
    assert rc == 0, trace
    # 2222 is not a user of this server (only --user 1111 was given)
    with SipClient(HOST, port, transport) as client:
        *_, final = client.message("1111", "2222", "1111xxx")
    assert final.status == 404, final.raw
    # Ctrl-C stops it cleanly
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0
