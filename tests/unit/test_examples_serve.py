"""Every script in ``examples/`` run as a subprocess against ``sipx serve``'s DevServer.

No external peers: one background thread runs ``trio.run`` and hosts a fresh
:class:`~sipx._serve.DevServer` on a free port for every scenario (so that scenarios running
at the same time never see each other's registrations). A scenario runs one or more examples
exactly as a user would (``python examples/X.py --server 127.0.0.1:PORT ...``), then asserts
the exit status, the key lines of their output, and what the server saw on the wire (its
trace) or holds (its registrations).

The scenarios selected for a session run concurrently on a thread pool (module fixture
``outcomes``); each ``test_example[...]`` waits for its own. ``test_every_example_is_tested``
fails when a file in ``examples/`` is not exercised by any scenario.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio

from sipx._serve import DevServer
from sipx.media import dominant_frequency, tone

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
#: a single example must never take longer than this (they take about a second)
RUN_TIMEOUT = 30.0


# --------------------------------------------------------------------------------------- #
# the dev servers (one trio thread hosting one DevServer per scenario)
# --------------------------------------------------------------------------------------- #
@dataclass
class Server:
    """A running DevServer and the messages it received (start lines and whole texts)."""

    dev: DevServer
    host: str
    port: int
    token: trio.lowlevel.TrioToken
    tls_port: int | None = None
    ws_port: int | None = None
    received: list[tuple[str, str]] = field(default_factory=list)  # (transport, text)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def trace(self, direction: str, data: bytes, address: Any, transport: str) -> None:
        if direction == "in" and data.strip():
            with self.lock:
                self.received.append((transport, data.decode("utf-8", "replace")))

    def requests(self, method: str) -> list[tuple[str, str]]:
        """``(transport, text)`` of every ``method`` request the server received."""
        with self.lock:
            return [(t, text) for t, text in self.received if text.startswith(f"{method} ")]

    def registered_users(self) -> dict[str, int]:
        """User -> number of live bindings (read on the server's own trio thread)."""

        def snapshot() -> dict[str, int]:
            return {user: len(b) for user, b in self.dev.registrations.items() if b}

        return trio.from_thread.run_sync(snapshot, trio_token=self.token)


class ServerThread:
    """``trio.run`` in a daemon thread; :meth:`new` starts one more DevServer in it."""

    def __init__(self) -> None:
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    async def _main(self) -> None:
        async with trio.open_nursery() as nursery:
            self._token = trio.lowlevel.current_trio_token()
            self._nursery = nursery
            self._ready.set()
            await trio.sleep_forever()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        assert self._ready.wait(10), "the server thread did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._nursery is not None and self._token is not None
        trio.from_thread.run_sync(self._nursery.cancel_scope.cancel, trio_token=self._token)
        self._thread.join(10)

    def new(self, cert: str | None = None) -> Server:
        """A DevServer on free ports, serving WebSocket too (``ws_port``); with ``cert`` it
        serves TLS too (``tls_port``)."""
        assert self._nursery is not None and self._token is not None
        nursery, token = self._nursery, self._token
        holder: dict[str, Server] = {}

        async def start() -> None:
            dev = DevServer("127.0.0.1", 0, cert=cert, tls_port=0, ws_port=0)
            server = Server(dev, "", 0, token)
            dev.trace = server.trace
            host, port = await nursery.start(dev.serve)
            server.host, server.port = host, port
            if dev.tls_address is not None:
                server.tls_port = dev.tls_address[1]
            if dev.ws_address is not None:
                server.ws_port = dev.ws_address[1]
            holder["server"] = server

        trio.from_thread.run(start, trio_token=token)
        return holder["server"]


# --------------------------------------------------------------------------------------- #
# running examples
# --------------------------------------------------------------------------------------- #
def _env() -> dict[str, str]:
    """The user's environment without SIPX_* settings, sipx importable, output unbuffered."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPX_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Run:
    """A finished example: its command, exit status and output."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    def __str__(self) -> str:
        return (
            f"$ {' '.join(self.args)}\nexit status {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"
        )

    def has(self, pattern: str) -> bool:
        """A whole line of stdout matches the regular expression ``pattern``."""
        return any(re.fullmatch(pattern, line) for line in self.lines)


def command(example: str, server: Server | None, *args: str) -> list[str]:
    """The example's command line; with ``server``, ``--server`` names it."""
    where = ("--server", server.address) if server is not None else ()
    return [sys.executable, str(EXAMPLES / f"{example}.py"), *where, *args]


def run_example(example: str, server: Server, *args: str, env: dict[str, str] | None = None) -> Run:
    cmd = command(example, server, *args)
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=env or _env(),
        cwd=ROOT,
    )
    return Run(cmd, done.returncode, done.stdout, done.stderr)


class Background:
    """An example running in the background (a callee), its stdout read line by line."""

    def __init__(self, example: str, server: Server | None, *args: str) -> None:
        self.args = command(example, server, *args)
        self.proc = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
            cwd=ROOT,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float = 10.0) -> None:
        """Wait until a line matching ``pattern`` (regex search) was printed."""
        deadline = time.monotonic() + timeout
        while True:
            if any(re.search(pattern, line) for line in self.seen):
                return
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                self.proc.kill()
                raise AssertionError(f"{pattern!r} never printed\n{self.finish()}")
            self.seen.append(line)

    def finish(self, timeout: float = RUN_TIMEOUT) -> Run:
        """Wait for the exit (killing it after ``timeout``) and collect everything."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        while (line := self.lines.get(timeout=5)) is not None:
            self.seen.append(line)
        assert self.proc.stderr is not None
        stderr = self.proc.stderr.read()
        self.proc.stderr.close()
        return Run(self.args, self.proc.returncode, "".join(self.seen), stderr)


def cseq(message: str) -> str:
    found = re.search(r"^CSeq:\s*(.+?)\s*$", message, re.M | re.I)
    assert found, message
    return found[1]


def ok(run: Run) -> Run:
    assert run.returncode == 0, str(run)
    assert "FAILED" not in run.stderr, str(run)
    return run


# --------------------------------------------------------------------------------------- #
# the scenarios
# --------------------------------------------------------------------------------------- #
@dataclass
class Scenario:
    covers: tuple[str, ...]  # example files (stems) it exercises
    body: Callable[[Server], None]
    tls: bool = False  # the server gets a certificate (see examples_pki)


SCENARIOS: dict[str, Scenario] = {}
TRANSPORTS = ("udp", "tcp")


def scenario(
    name: str,
    *,
    covers: tuple[str, ...] = (),
    transports: tuple[str, ...] = TRANSPORTS,
    tls: bool = False,
) -> Callable[[Callable[[Server, str], None]], Callable[[Server, str], None]]:
    """Register ``body(server, transport)`` as ``name-udp`` and ``name-tcp`` (or as given)."""

    def register(body: Callable[[Server, str], None]) -> Callable[[Server, str], None]:
        for transport in transports:
            key = f"{name}-{transport}" if transports != ("udp",) else name
            SCENARIOS[key] = Scenario(
                covers or (name,), functools.partial(_call, body, transport), tls
            )
        return body

    return register


def _call(body: Callable[[Server, str], None], transport: str, server: Server) -> None:
    body(server, transport)


@scenario("options", transports=("udp",))
def _options(server: Server, transport: str) -> None:
    run = ok(run_example("options", server, "--transport", transport))
    assert run.lines[0] == "Status: 200 OK", str(run)
    assert run.has(r"Methods: .*\bINVITE\b.*"), str(run)
    assert run.has("ok: the server answered OPTIONS with 200"), str(run)
    assert [t for t, _ in server.requests("OPTIONS")] == [transport.upper()]


@scenario("options-env", covers=("options",), transports=("udp",))
def _options_env(server: Server, transport: str) -> None:
    """The server comes from SIPX_SERVER when --server is not given."""
    env = {**_env(), "SIPX_SERVER": server.address, "SIPX_TRANSPORT": "tcp"}
    cmd = [sys.executable, str(EXAMPLES / "options.py")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env)
    run = ok(Run(cmd, done.returncode, done.stdout, done.stderr))
    assert run.lines[0] == "Status: 200 OK", str(run)
    assert [t for t, _ in server.requests("OPTIONS")] == ["TCP"]


@scenario("options-no-server", covers=("options",), transports=("tcp",))
def _options_no_server(server: Server, transport: str) -> None:
    """Nobody listens at --server (TCP: refused at once): exit 1 with a hint, no traceback."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        address = f"127.0.0.1:{closed.getsockname()[1]}"
        cmd = [
            sys.executable,
            str(EXAMPLES / "options.py"),
            "--server",
            address,
            "--transport",
            "tcp",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=_env())
    run = Run(cmd, done.returncode, done.stdout, done.stderr)
    assert run.returncode == 1, str(run)
    assert f"FAILED: TransportError: OPTIONS sip:{address}" in run.stderr, str(run)
    assert "Is a SIP server running at --server?" in run.stderr, str(run)
    assert "Traceback" not in run.stderr, str(run)


@scenario("register", transports=("udp",))
def _register(server: Server, transport: str) -> None:
    run = ok(run_example("register", server, "--transport", transport))
    assert run.has(rf"REGISTER sip:1111@{server.address}: 401 -> 200"), str(run)
    assert run.has("Registered successfully!"), str(run)
    assert run.has("Expires in: 3600 seconds"), str(run)
    assert run.has("Unregistered: 200 OK"), str(run)
    assert server.registered_users() == {}
    # four REGISTERs: challenged, accepted; the unregister challenged, accepted
    assert len(server.requests("REGISTER")) == 4


@scenario("register-keep", covers=("register",), transports=("udp",))
def _register_keep(server: Server, transport: str) -> None:
    run = ok(run_example("register", server, "--keep", "--user", "3333", "--password", "3333xxx"))
    assert run.has(rf"REGISTER sip:3333@{server.address}: 401 -> 200"), str(run)
    assert server.registered_users() == {"3333": 1}


@scenario("register-wrong-password", covers=("register",), transports=("udp",))
def _register_wrong_password(server: Server, transport: str) -> None:
    """A failed SIP outcome gives a non-zero exit status and says what failed."""
    run = run_example("register", server, "--password", "nope")
    assert run.returncode == 1, str(run)
    assert "FAILED: 1111 registered" in run.stderr, str(run)
    assert "Traceback" not in run.stderr, str(run)
    assert server.registered_users() == {}


@scenario("auto_reregister", transports=("udp",))
def _auto_reregister(server: Server, transport: str) -> None:
    run = ok(
        run_example(
            "auto_reregister",
            server,
            "--transport",
            transport,
            "--interval",
            "0.3",
            "--duration",
            "1",
        )
    )
    refreshes = [int(m[1]) for m in re.finditer(r"(\d+) automatic refresh", run.stdout)]
    assert refreshes and refreshes[0] >= 1, str(run)
    assert run.has("ok: the registration was refreshed automatically"), str(run)
    assert run.has("ok: 1111 unregistered"), str(run)
    # initial + refreshes + unregister, each challenged once (UDP may add retransmissions)
    assert len(server.requests("REGISTER")) >= 2 * (1 + refreshes[0] + 1), str(run)
    assert server.registered_users() == {}


@scenario("call_with_sdp")
def _call_with_sdp(server: Server, transport: str) -> None:
    run = ok(run_example("call_with_sdp", server, "--transport", transport, "--duration", "0.1"))
    assert run.has(rf"INVITE sip:100@{server.address}: 407 -> (1\d\d -> )*200"), str(run)
    assert run.has("Answer codecs: PCMU/8000, PCMA/8000"), str(run)
    assert run.has("ok: BYE answered 200 OK"), str(run)
    invites = server.requests("INVITE")
    assert len(invites) == 2 and all("m=audio 8000 RTP/AVP 0 8" in t for _, t in invites)
    assert {t for t, _ in invites} == {transport.upper()}
    # the ACK of the 407 (CSeq 1, sent by the transaction) and the ACK of the 200 (CSeq 2)
    assert [cseq(text) for _, text in server.requests("ACK")] == ["1 ACK", "2 ACK"]
    assert len(server.requests("BYE")) == 1


@scenario("late_offer")
def _late_offer(server: Server, transport: str) -> None:
    run = ok(run_example("late_offer", server, "--transport", transport, "--duration", "0.1"))
    assert run.has(rf"INVITE \(no SDP\) sip:100@{server.address}: 407 -> (1\d\d -> )*200")
    assert run.has("Offer codecs: PCMU/8000, PCMA/8000, telephone-event/8000"), str(run)
    assert run.has("Call accepted with SDP answer \\(sent in the ACK\\)"), str(run)
    assert run.has("ok: BYE answered 200 OK"), str(run)
    assert all("v=0" not in text for _, text in server.requests("INVITE"))
    acks = [text for _, text in server.requests("ACK")]
    assert [cseq(text) for text in acks] == ["1 ACK", "2 ACK"]
    assert "application/sdp" in acks[1] and "m=audio 8000 RTP/AVP 0 8 101" in acks[1], acks[1]


@scenario("play_and_collect")
def _play_and_collect(server: Server, transport: str) -> None:
    """Extension 100 echoes RTP: the RFC 4733 events sent come back and are collected."""
    run = ok(run_example("play_and_collect", server, "--transport", transport))
    assert run.has(r"Media: PCMU, RTP on port \d+"), str(run)
    assert run.has("Played a 440 Hz tone"), str(run)
    assert run.has(r"Sent DTMF 1234 \(RFC 4733\)"), str(run)
    assert run.has("Collected: 1234"), str(run)
    assert run.has(r"RTP: \d+ packets sent, \d+ received"), str(run)
    assert run.has("ok: collected 1234") and run.has("ok: RTP arrived from the peer"), str(run)
    assert server.requests("INFO") == []  # the digits went in RTP
    assert len(server.requests("BYE")) == 1


@scenario("play_and_collect-info", covers=("play_and_collect",), transports=("udp",))
def _play_and_collect_info(server: Server, transport: str) -> None:
    """A WAV prompt (16 kHz stereo, converted), DTMF by SIP INFO: extension 100 answers
    each INFO 200 but echoes only RTP, so nothing comes back."""
    with tempfile.TemporaryDirectory(prefix="sipx-prompt-") as folder:
        prompt = str(Path(folder) / "prompt.wav")
        with wave.open(prompt, "wb") as wav:
            wav.setnchannels(2)
            wav.setsampwidth(2)
            wav.setframerate(16000)
            mono = tone(600, 0.3, rate=16000)
            wav.writeframes(b"".join(mono[i : i + 2] * 2 for i in range(0, len(mono), 2)))
        run = ok(
            run_example(
                "play_and_collect",
                server,
                *("--prompt", prompt, "--digits", "5*", "--method", "info"),
                *("--expect", "", "--timeout", "0.5"),
            )
        )
    assert run.has(f"Played {re.escape(prompt)}"), str(run)
    assert run.has(r"Sent DTMF 5\* \(SIP INFO\)"), str(run)
    assert run.has(r"Collected: \(nothing\)"), str(run)
    bodies = [text for _, text in server.requests("INFO") if "Signal=" in text]
    assert re.findall(r"Signal=(\S+)", "".join(bodies)) == ["5", "*"], bodies
    assert all("application/dtmf-relay" in body for body in bodies), bodies


@scenario("play_and_collect-bad-prompt", covers=("play_and_collect",), transports=("udp",))
def _play_and_collect_bad_prompt(server: Server, transport: str) -> None:
    """A prompt that cannot be read: exit 1 naming the file, the call still hung up."""
    missing = str(ROOT / "no-such-prompt.wav")
    run = run_example("play_and_collect", server, "--prompt", missing)
    assert run.returncode == 1, str(run)
    assert f"FAILED: cannot play the prompt: cannot read {missing!r}" in run.stderr, str(run)
    assert "Traceback" not in run.stderr, str(run)
    assert len(server.requests("BYE")) == 1


@scenario("record_call")
def _record_call(server: Server, transport: str) -> None:
    """The echoed tone is recorded; the WAV holds it at its frequency."""
    with tempfile.TemporaryDirectory(prefix="sipx-record-") as folder:
        path = str(Path(folder) / "echo.wav")
        run = ok(
            run_example(
                "record_call",
                server,
                *("--transport", transport, "--output", path),
                *("--frequency", "800", "--seconds", "0.6"),
            )
        )
        with wave.open(path) as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
            pcm = wav.readframes(wav.getnframes())
    assert run.has("Played 0.6 s of 800 Hz"), str(run)
    assert run.has(rf"Recorded \d+\.\d\d s to {re.escape(path)} \(RMS level \d+\)"), str(run)
    assert run.has("Dominant frequency: 800 Hz"), str(run)
    assert run.has("ok: the recording holds 800 Hz"), str(run)
    assert len(pcm) >= 2 * 8000 * 0.5 and abs(dominant_frequency(pcm) - 800) <= 20
    assert len(server.requests("BYE")) == 1


@scenario("session_timers")
def _session_timers(server: Server, transport: str) -> None:
    """Refreshes by UPDATE at half the 2 s interval, then a hold by UPDATE, via the proxy."""
    run = ok(run_example("session_timers", server, "--transport", transport, "--interval", "2"))
    assert run.has("Session interval: 2 s, refreshed by 1111"), str(run)
    assert run.has(r"Refresh 2: UPDATE -> 200 \(Session-Expires: 2;refresher=uac\)"), str(run)
    assert run.has("ok: the call was put on hold by UPDATE"), str(run)
    assert run.has("The callee's call ended by: remote"), str(run)
    [(_, invite)] = [r for r in server.requests("INVITE") if "Authorization" in r[1]]
    assert "Session-Expires: 2" in invite and "Supported: timer" in invite, invite
    updates = [text for _, text in server.requests("UPDATE")]
    assert len(updates) >= 3, str(run)  # two refreshes (no body) and the hold (an offer)
    assert "a=sendonly" in updates[-1] and "a=sendonly" not in updates[0]
    assert {t for t, _ in server.requests("UPDATE")} == {transport.upper()}
    assert server.registered_users() == {}


@scenario("per_request_credentials", transports=("udp",))
def _per_request_credentials(server: Server, transport: str) -> None:
    run = ok(run_example("per_request_credentials", server, "--transport", transport))
    expected = [
        f"REGISTER sip:1111@{server.address}: 401 Unauthorized",
        "  retried as 1111: 200 OK",
        f"INVITE sip:100@{server.address}: 407 Proxy Authentication Required",
        "  retried as 2222: 200 OK",
    ]
    assert [line for line in run.lines if not line.startswith("ok:")][:4] == expected, str(run)
    assert run.has("ok: 1111 unregistered"), str(run)
    invites = [text for _, text in server.requests("INVITE")]
    assert 'username="2222"' in invites[1] and "From: <sip:2222@" in invites[1], invites[1]
    assert server.registered_users() == {}


@scenario("event_handlers", transports=("tcp",))
def _event_handlers(server: Server, transport: str) -> None:
    run = ok(run_example("event_handlers", server, "--transport", transport))
    events = [line for line in run.lines if line.startswith((">>", "<<"))]
    assert events[:7] == [
        f">> Sending OPTIONS -> sip:{server.address}",
        "<< 200 OK",
        f">> Sending REGISTER -> sip:{server.address}",
        "<< Authentication required",
        events[4],
        f">> Sending REGISTER -> sip:{server.address}",
        "<< 200 OK",
    ], str(run)
    assert re.fullmatch(r'<< Challenge received: Digest realm="sipx", nonce="[^"]+".*', events[4])
    assert run.has("ok: the auth_challenge handler saw the challenge"), str(run)


@scenario("early_media-ext100", covers=("early_media",), transports=("udp",))
def _early_media_ext100(server: Server, transport: str) -> None:
    """Extension 100 of the dev server rings with 180, so no early media is seen."""
    run = ok(run_example("early_media", server, "--transport", transport))
    assert run.has("180 Ringing"), str(run)
    assert not run.has(r"Early Media.*"), str(run)
    assert run.has("Early media seen: no"), str(run)
    failed = run_example("early_media", server, "--transport", transport, "--require-early-media")
    assert failed.returncode == 1, str(failed)
    assert "FAILED: early media (183) was received" in failed.stderr, str(failed)


@scenario("early_media-answer_calls", covers=("early_media", "answer_calls"))
def _early_media_callee(server: Server, transport: str) -> None:
    """A registered answer_calls.py that sends 183 with SDP: the early media is seen."""
    callee = Background(
        "answer_calls",
        server,
        *("--transport", transport, "--user", "3333", "--password", "3333xxx"),
        *("--early-media", "--ring-time", "0.2", "--calls", "1", "--duration", "20"),
    )
    callee.wait_for("Waiting for calls to sip:3333@")
    caller = run_example(
        "early_media", server, "--transport", transport, "--to", "3333", "--require-early-media"
    )
    answered = ok(callee.finish())
    ok(caller)
    assert caller.has("Early Media \\(183 Session Progress\\)"), str(caller)
    assert caller.has("   Codecs: PCMU/8000, PCMA/8000"), str(caller)
    assert caller.has("Early media seen: yes"), str(caller)
    for line in (
        "ok: 3333 registered",
        f"Incoming call from sip:1111@{server.address}",
        "  sent 183 Session Progress (early media)",
        "  answered (200 OK)",
        "  call ended (remote)",
        "Unregistered: 200 OK",
        "ok: 1 call(s) answered",
    ):
        assert answered.has(re.escape(line)), str(answered)
    assert server.registered_users() == {}


@scenario("answer_calls", covers=("answer_calls", "call_with_sdp"), transports=("tcp",))
def _answer_calls(server: Server, transport: str) -> None:
    """call_with_sdp.py calls 2222, a registered answer_calls.py (180, then 200)."""
    callee = Background(
        "answer_calls",
        server,
        *("--transport", transport, "--ring-time", "0.1", "--calls", "1", "--duration", "20"),
    )
    callee.wait_for("Waiting for calls to sip:2222@")
    caller = ok(
        run_example(
            "call_with_sdp", server, "--transport", transport, "--to", "2222", "--duration", "0.1"
        )
    )
    answered = ok(callee.finish())
    assert caller.has(rf"INVITE sip:2222@{server.address}: 407 -> (1\d\d -> )*180 -> 200"), str(
        caller
    )
    assert caller.has("Answer codecs: PCMU/8000, PCMA/8000"), str(caller)
    assert answered.has("  sent 180 Ringing"), str(answered)
    assert answered.has("  call ended \\(remote\\)"), str(answered)
    assert server.registered_users() == {}


@scenario("answer_calls-stops", covers=("answer_calls",), transports=("udp",))
def _answer_calls_stops(server: Server, transport: str) -> None:
    """Without calls it stops at --duration (failing when --calls were due) or on Ctrl-C
    (SIGINT), unregistered either way."""
    run = run_example("answer_calls", server, "--duration", "0.3", "--calls", "1")
    assert run.returncode == 1, str(run)
    assert run.has("Unregistered: 200 OK") and run.has("0 call\\(s\\) answered"), str(run)
    assert "FAILED: 1 call(s) answered" in run.stderr, str(run)
    callee = Background("answer_calls", server)
    callee.wait_for("Waiting for calls to sip:2222@")
    assert server.registered_users() == {"2222": 1}
    callee.proc.send_signal(signal.SIGINT)
    stopped = ok(callee.finish(timeout=10))
    assert stopped.has("Unregistered: 200 OK"), str(stopped)
    assert "Traceback" not in stopped.stderr, str(stopped)
    assert server.registered_users() == {}


@scenario("async_client", transports=("tcp",))
def _async_client(server: Server, transport: str) -> None:
    run = ok(
        run_example(
            "async_client", server, "--transport", transport, "--interval", "0.3", "--duration", "1"
        )
    )
    assert run.lines[:2] == ["Status: 200", "ok: 1111 registered"], str(run)
    assert run.has("OPTIONS: 200"), str(run)
    assert run.has("ok: the registration was refreshed automatically"), str(run)
    assert run.has("ok: 1111 unregistered"), str(run)
    assert server.registered_users() == {}


@scenario("message")
def _message(server: Server, transport: str) -> None:
    run = ok(run_example("message", server, "--transport", transport))
    assert run.has(
        rf"\[2222\] received from sip:1111@{re.escape(server.address)}: Hello from SIPX!"
    ), str(run)
    assert run.has("Message sent \\(200 OK\\)"), str(run)
    assert run.has("ok: 2222 received 'Hello from SIPX!'"), str(run)
    messages = server.requests("MESSAGE")
    assert len(messages) == 2 and "Proxy-Authorization" in messages[1][1]  # 407, then sent
    assert server.registered_users() == {}


@scenario("message-nobody", covers=("message",), transports=("udp",))
def _message_nobody(server: Server, transport: str) -> None:
    """With --no-receiver nobody is registered as 2222: the server says 480, exit 1."""
    run = run_example("message", server, "--no-receiver")
    assert run.returncode == 1, str(run)
    assert run.has("Failed: 480 .*"), str(run)
    assert "FAILED: MESSAGE to 2222 accepted" in run.stderr, str(run)


@scenario("transfer")
def _transfer(server: Server, transport: str) -> None:
    """Blind: Bob REFERs Alice to 3333; the NOTIFYs report 100 then 200; Bob hangs up."""
    run = ok(run_example("transfer", server, "--transport", transport))
    assert run.has(r"Bob: REFER 202, NOTIFYs: 100 Trying, 200 OK"), str(run)
    assert run.has(r"Alice: the call with Bob ended \(transferred\)"), str(run)
    assert run.has("ok: Alice is in a call with Carol"), str(run)
    [(_, refer)] = server.requests("REFER")
    assert re.search(rf"(?m)^Refer-To: <sip:3333@{re.escape(server.address)}>\r?$", refer), refer
    notifies = [text for _, text in server.requests("NOTIFY")]
    assert [n.rpartition("\r\n\r\n")[2] for n in notifies] == [
        "SIP/2.0 100 Trying\r\n",
        "SIP/2.0 200 OK\r\n",
    ], notifies
    assert all(t == transport.upper() for t, _ in server.requests("NOTIFY"))
    assert server.registered_users() == {}


@scenario("transfer-attended", covers=("transfer",), transports=("udp",))
def _transfer_attended(server: Server, transport: str) -> None:
    """Attended: Alice's INVITE (to Carol's Contact) carries Replaces; Carol ends her call
    with Bob."""
    run = ok(run_example("transfer", server, "--mode", "attended"))
    assert run.has(r"Carol: the call with Bob ended \(replaced\)"), str(run)
    assert run.has("ok: Alice is in a call with Carol"), str(run)
    [(_, refer)] = server.requests("REFER")
    assert "?Replaces=" in refer and "%3Bto-tag%3D" in refer, refer
    # Refer-To names Carol's Contact: Alice's INVITE with Replaces goes there directly.
    assert not [t for _, t in server.requests("INVITE") if "\r\nReplaces: " in t]
    assert server.registered_users() == {}


@scenario("mwi_watcher")
def _mwi_watcher(server: Server, transport: str) -> None:
    """The counts set on the server, then a change while the watcher waits; it unsubscribes."""
    set_mwi = server.dev.set_message_summary
    trio.from_thread.run_sync(set_mwi, "1111", 2, 8, trio_token=server.token)
    watcher = Background("mwi_watcher", server, "--transport", transport, "--count", "2")
    watcher.wait_for(r"^Messages waiting: yes \(2 new, 8 old\) \[active\]$")
    trio.from_thread.run_sync(set_mwi, "1111", 0, 10, trio_token=server.token)
    run = ok(watcher.finish())
    assert run.has(rf"SUBSCRIBE sip:1111@{re.escape(server.address)}: 200 OK"), str(run)
    assert run.has(r"Messages waiting: no \(0 new, 10 old\) \[active\]"), str(run)
    assert run.has(r"Subscription terminated \(timeout\)"), str(run)
    subscribes = [text for _, text in server.requests("SUBSCRIBE")]
    # challenged (407), authorized, then the unsubscribe in the dialog (never challenged)
    assert [cseq(text) for text in subscribes] == ["1 SUBSCRIBE", "2 SUBSCRIBE", "3 SUBSCRIBE"]
    assert re.search(r"(?mi)^Expires: 0\r?$", subscribes[-1]), subscribes[-1]
    assert {t for t, _ in server.requests("SUBSCRIBE")} == {transport.upper()}


@scenario("presence_watcher")
def _presence_watcher(server: Server, transport: str) -> None:
    """2222 registers and unregisters (--toggle): the watcher sees closed, open, closed."""
    run = ok(run_example("presence_watcher", server, "--transport", transport, "--toggle"))
    lines = [line for line in run.lines if line.startswith("2222 is ")]
    assert lines == [
        "2222 is closed (not registered)",
        "2222 is open (registered)",
        "2222 is closed (not registered)",
    ], str(run)
    assert run.has("ok: the buddy went online and offline"), str(run)
    assert server.registered_users() == {}


@scenario("dispatcher_worker", transports=("udp",))
def _dispatcher_worker(server: Server, transport: str) -> None:
    """The worker alone (no balancer here: tests/integration/test_dispatcher_kamailio.py puts
    Kamailio in front): OPTIONS (the balancer's probe) gets 200; a call is answered with
    an inactive stream (--no-media) and ended by the worker's BYE (--hangup-after); SIGTERM
    ends it with its count."""
    from sipx import Client

    worker = Background(
        "dispatcher_worker",
        None,
        *("--local-host", "127.0.0.1", "--local-port", "0", "--name", "w"),
        *("--no-media", "--hangup-after", "0.3"),
    )
    try:
        worker.wait_for(r"^w: listening on 127\.0\.0\.1:\d+$")
        [port] = [
            m[1] for line in worker.seen if (m := re.match(r"w: listening on .*:(\d+)$", line))
        ]
        target = f"sip:127.0.0.1:{port}"
        with Client(local_host="127.0.0.1", local_port=0) as caller:
            assert caller.options(target, timeout=5).status_code == 200
            call = caller.call(f"sip:anyone@127.0.0.1:{port}", timeout=10)
            assert call.established, call.final_response
            assert call.remote_sdp is not None
            [media] = call.remote_sdp.media
            assert (media.port, call.remote_sdp.media_direction(media)) == (9, "inactive")
            assert call.wait_ended(10) == "remote"  # the worker's BYE
        worker.wait_for(r"^w: call 1 ended \(local\)$")
    finally:
        worker.proc.send_signal(signal.SIGTERM)
    run = ok(worker.finish(timeout=10))
    assert run.has(rf"w: call 1 from sip:.* answered \({re.escape(call.call_id)}\)"), str(run)
    assert run.lines[-1] == "w: 1 call(s) answered", str(run)


@scenario("tcp_transport", transports=("udp",))
def _tcp_transport(server: Server, transport: str) -> None:
    run = ok(run_example("tcp_transport", server))
    assert run.has(r"TCP: OPTIONS -> 200 OK \(Via: TCP, bound to \d+\)"), str(run)
    assert run.has(r"UDP: OPTIONS -> 200 OK \(Via: UDP, bound to \d+\)"), str(run)
    assert run.has(r"TCP: REGISTER -> 200, Contact: <sip:1111@[^>]+;transport=tcp>"), str(run)
    assert run.has(r"UDP: REGISTER -> 200, Contact: <sip:1111@[^;>]+>"), str(run)
    assert [t for t, _ in server.requests("OPTIONS")] == ["TCP", "UDP"]
    assert server.registered_users() == {}


@functools.cache
def examples_pki() -> dict[str, str]:
    """A throwaway CA and a certificate for 127.0.0.1 (PEM files), made once."""
    import tempfile

    import trustme

    folder = Path(tempfile.mkdtemp(prefix="sipx-examples-pki-"))
    ca = trustme.CA()
    files = {"ca": str(folder / "ca.pem"), "server": str(folder / "server.pem")}
    ca.cert_pem.write_to_path(files["ca"])
    issued = ca.issue_cert("127.0.0.1")
    issued.private_key_and_cert_chain_pem.write_to_path(files["server"])
    return files


@scenario("tls_transport", transports=("udp",), tls=True)
def _tls_transport(server: Server, transport: str) -> None:
    tls = f"{server.host}:{server.tls_port}"
    run = ok(run_example("tls_transport", server, "--server", tls, "--ca", examples_pki()["ca"]))
    assert run.has("OPTIONS -> 200 OK"), str(run)
    assert run.has(r"REGISTER -> 200, Contact: <sip:1111@[^>]+;transport=tls>"), str(run)
    assert run.has(r"MESSAGE -> 200, received: \['Hello over TLS!'\]"), str(run)
    assert {t for t, _ in server.received} == {"TLS"}
    assert server.registered_users() == {}
    # Without the CA the system's CAs refuse the certificate: a clear failure, exit 1.
    refused = run_example("tls_transport", server, "--server", tls)
    assert refused.returncode != 0 and "certificate verify failed" in refused.stderr, str(refused)


@scenario("ws_client", transports=("udp",))
def _ws_client(server: Server, transport: str) -> None:
    ws = f"{server.host}:{server.ws_port}"
    run = ok(run_example("ws_client", server, "--ws", ws))
    contact = r"<sip:1111@[0-9a-f]{12}\.invalid;transport=ws>"
    assert run.has(f"REGISTER -> 200, Contact: {contact}"), str(run)
    assert run.has(r"MESSAGE -> 200, received: \['Hello over WebSocket!'\]"), str(run)
    assert run.has("Call to 100 -> 200"), str(run)
    assert {t for t, _ in server.received} == {"WS"}
    assert [cseq(text) for _, text in server.requests("BYE")] == ["3 BYE"]
    assert server.registered_users() == {}


@scenario("timeouts")
def _timeouts(server: Server, transport: str) -> None:
    started = time.monotonic()
    run = ok(run_example("timeouts", server, "--transport", transport, "--timeout", "0.5"))
    assert run.has(f"OPTIONS sip:{server.address}: 200 OK"), str(run)
    assert run.has(
        r"Timed out after 0\.\d s: OPTIONS sip:127\.0\.0\.1:\d+: no final response within 0\.5 s"
    ), str(run)
    assert time.monotonic() - started < 10


@scenario("asterisk_demo")
def _asterisk_demo(server: Server, transport: str) -> None:
    run = ok(
        run_example(
            "asterisk_demo",
            server,
            "--transport",
            transport,
            "--ring-time",
            "0.1",
            "--duration",
            "0.2",
        )
    )
    users = ("1111", "2222", "3333")
    for user, to in zip(users, users[1:] + users[:1]):
        assert run.has(rf"   \[{user}\] REGISTER: 401 -> 200"), str(run)
        assert run.has(rf"   \[{to}\] message from {user}: 'Hello {to}, this is {user}!'"), str(run)
        assert run.has(rf"ok: {user} -> {to} MESSAGE accepted \(200\)"), str(run)
        assert run.has(rf"ok: {user} -> {to} call answered \(200\)"), str(run)
        assert run.has(rf"   \[{to}\] incoming call from sip:{user}@.*"), str(run)
        assert run.has(rf"ok: {to} saw the hang-up"), str(run)
    assert run.lines[-1] == "All steps passed!", str(run)
    assert len(server.requests("BYE")) == 3
    assert server.registered_users() == {}


@scenario("simple_example", transports=("udp",))
def _simple_example(server: Server, transport: str) -> None:
    run = ok(run_example("simple_example", server, "--transport", transport))
    for pattern in (
        "1. REGISTER with auth=: 401 -> 200 OK",
        '   Authorization: Digest username="1111", realm="sipx", .*',
        "2. REGISTER without auth: 401 Unauthorized",
        '   WWW-Authenticate: Digest realm="sipx", .*',
        "   retry_with_auth: 401 -> 200 OK",
        "3. REGISTER, wrong password: 401 -> (401 Unauthorized|403 Forbidden)",
        "ok: a wrong password is refused",
    ):
        assert run.has(pattern), f"{pattern!r} not printed\n{run}"
    assert server.registered_users() == {}


# --------------------------------------------------------------------------------------- #
# the tests
# --------------------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def servers() -> Iterator[ServerThread]:
    with ServerThread() as thread:
        yield thread


@pytest.fixture(scope="module")
def outcomes(
    request: pytest.FixtureRequest, servers: ServerThread
) -> Iterator[dict[str, Future[None]]]:
    """Start every selected scenario at once (a fresh server each); tests wait for theirs."""
    selected = [
        item.callspec.params["scenario"]
        for item in request.session.items
        if getattr(item, "module", None) is request.module
        and hasattr(item, "callspec")
        and "scenario" in item.callspec.params
    ]

    def play(name: str) -> None:
        chosen = SCENARIOS[name]
        chosen.body(servers.new(examples_pki()["server"] if chosen.tls else None))

    with ThreadPoolExecutor(max_workers=6, thread_name_prefix="example") as pool:
        yield {name: pool.submit(play, name) for name in dict.fromkeys(selected)}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_example(scenario: str, outcomes: dict[str, Future[None]]) -> None:
    outcomes[scenario].result(timeout=4 * RUN_TIMEOUT)


def test_every_example_is_tested() -> None:
    """Each script in examples/ is run by some scenario (and no scenario names a ghost)."""
    files = {p.stem for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    covered = {name for s in SCENARIOS.values() for name in s.covers}
    assert files - covered == set(), "examples without a test"
    assert covered - files == set(), "tests of examples that do not exist"


def _load_common() -> ModuleType:
    spec = importlib.util.spec_from_file_location("examples_common", EXAMPLES / "_common.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5070", ("127.0.0.1", 5070)),
        ("pbx.example.com", ("pbx.example.com", 5060)),
        ("[::1]:5080", ("::1", 5080)),
        ("[::1]", ("::1", 5060)),
        ("::1", ("::1", 5060)),
    ],
)
def test_server_argument(text: str, expected: tuple[str, int]) -> None:
    assert _load_common().split_hostport(text) == expected


@pytest.mark.parametrize("text", ["", ":5060", "host:port"])
def test_bad_server_argument(text: str) -> None:
    with pytest.raises(ValueError):
        _load_common().split_hostport(text)
