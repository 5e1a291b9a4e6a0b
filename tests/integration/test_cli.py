"""The ``sipx`` command line, run as a subprocess (``python -m sipx ...``).

Against ``python -m sipx serve`` (a subprocess too; plain tests, no third-party peer) and
against Kamailio (marked ``integration``): options, register (and un-register), message to a
registered peer, call to extension 100 with ``--duration 1``, each over UDP and TCP;
``--verbose`` printing whole messages; a wrong password failing with a clear message; and
``sipx demo`` printing its ladder.

Every test checks the SIP outcome: the status lines the CLI prints, what the peer received
(its handler, SIPp's trace) or what the registrar holds (a binding query).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from peers import HOST, Kamailio, SIPp, free_port, query_bindings, wait_sip_ready

from sipx import AsyncClient, Auth, __version__
from sipx.testing import DevServer

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "sipx"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
CREDENTIALS_1111 = ["--user", "1111", "--password", "1111xxx"]


@pytest.fixture(params=["udp", "tcp"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run_cli(
    *args: str, timeout: float = 20.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m sipx *args`` and return it (stdout/stderr as text)."""
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**ENV, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


async def arun_cli(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """``run_cli`` without blocking the trio loop (for tests with an in-process peer)."""
    with trio.fail_after(timeout):
        done = await trio.run_process(
            [*CLI, *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=ROOT,
            env=ENV,
            stdin=b"",
        )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def start_cli(*args: str) -> subprocess.Popen[str]:
    """``python -m sipx *args`` left running (stdout and stderr piped, as text)."""
    return subprocess.Popen(
        [*CLI, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**ENV, "PYTHONFAULTHANDLER": "1"},
        # Ctrl-C reaches it as it reaches a command in a terminal, even when these tests
        # run in a background job of a shell, which starts them with SIGINT ignored (then
        # so would be the child's, and Python keeps an ignored SIGINT ignored).
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Ctrl-C, then its output. Still running 20 s later, it is made to print where each
    thread is (SIGABRT, with PYTHONFAULTHANDLER set by start_cli) and the test fails with
    that."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        out, err = proc.communicate(timeout=10)
        pytest.fail(f"still running 20 s after Ctrl-C; stderr:\n{err[-8000:]}\nstdout:\n{out}")


def show(done: subprocess.CompletedProcess[str]) -> str:
    return f"rc={done.returncode}\n--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}"


def lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return done.stdout.splitlines()


def results(done: subprocess.CompletedProcess[str]) -> list[str]:
    """The printed lines without the progress of provisional responses (``Ringing (180)...``)."""
    return [line for line in lines(done) if not re.fullmatch(r".* \(1\d\d\)\.\.\.", line)]


def client_opts(transport: str, *more: str, local_port: int | None = None) -> list[str]:
    opts = ["--transport", transport, "--local-host", HOST, "--timeout", "5", *more]
    if local_port is not None:
        opts += ["--local-port", str(local_port)]
    return opts


def call_id_of(text: str) -> str:
    """The Call-ID of the first whole message printed by ``--verbose``."""
    m = re.search(r"^Call-ID:\s*(\S+)", text, re.M)
    assert m, text
    return m.group(1)


def printed_requests(text: str, method: str) -> list[str]:
    """The whole ``method`` requests in ``--verbose`` output (a message ends at a blank line)."""
    return re.findall(rf"^{method} sip:.*?(?=\n\n|\Z)", text, re.M | re.S)


# --------------------------------------------------------------------------------------- #
# python -m sipx serve (subprocess)
# --------------------------------------------------------------------------------------- #
class Serve:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log
        self.host = HOST

    @property
    def hostport(self) -> str:
        return f"{HOST}:{self.port}"

    def aor(self, user: str) -> str:
        return f"sip:{user}@{self.hostport}"


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    """``python -m sipx serve --host 127.0.0.1 --port P``, ready when OPTIONS gets 200
    over UDP and TCP."""
    with serving(tmp_path_factory.mktemp("serve") / "serve.log") as running:
        yield running


@contextlib.contextmanager
def serving(log: Path, *options: str) -> Iterator[Serve]:
    """A ``sipx serve`` process with ``options``, its output in ``log``; ended on exit."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*CLI, "serve", "--host", HOST, "--port", str(port), *options],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=ENV,
            start_new_session=True,
        )
    try:
        wait_sip_ready(HOST, port, timeout=15, proc=proc)
        yield Serve(proc, port, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_options_serve(serve: Serve, transport: str) -> None:
    done = run_cli("options", f"sip:{serve.hostport}", *client_opts(transport))
    assert done.returncode == 0, show(done)
    out = lines(done)
    assert out[0] == "OPTIONS: 200 OK", show(done)
    assert out[1].startswith("Allow: ")
    allowed = {m.strip() for m in out[1].removeprefix("Allow: ").split(",")}
    assert {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "MESSAGE", "REGISTER"} <= allowed
    assert done.stderr == ""


def test_register_and_unregister_serve(serve: Serve, transport: str) -> None:
    port = free_port()
    opts = client_opts(transport, *CREDENTIALS_1111, local_port=port)
    done = run_cli("register", serve.aor("1111"), "--expires", "60", *opts)
    assert done.returncode == 0, show(done)
    out = lines(done)
    assert out[0] == "REGISTER: 200 OK", show(done)
    suffix = ";transport=tcp" if transport == "tcp" else ""
    ours = [line for line in out[1:] if f"<sip:1111@{HOST}:{port}{suffix}>" in line]
    assert len(ours) == 1 and re.search(r";expires=(5\d|60)\b", ours[0]), out
    held = [c for c in query_bindings(serve, "1111") if f":{port}" in c]
    assert len(held) == 1 and held[0].startswith(f"<sip:1111@{HOST}:{port}{suffix}>"), held
    # un-register from the same local port (same Contact): the binding goes away
    done = run_cli("register", serve.aor("1111"), "--expires", "0", *opts)
    assert done.returncode == 0, show(done)
    assert lines(done)[0] == "REGISTER: 200 OK"
    assert not any(f":{port}" in line for line in lines(done)[1:]), show(done)
    assert not [c for c in query_bindings(serve, "1111") if f":{port}" in c]


def test_version_and_the_password_from_the_environment(serve: Serve) -> None:
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"sipx {__version__}"
    done = run_cli(
        "register",
        serve.aor("1111"),
        "--expires",
        "0",
        "--user",
        "1111",
        *client_opts("udp"),
        env={"SIPX_PASSWORD": "1111xxx"},  # not on the command line, where ps shows it
    )
    assert done.returncode == 0, show(done)
    assert lines(done)[0] == "REGISTER: 200 OK", show(done)


def test_register_wrong_password_serve(serve: Serve, transport: str) -> None:
    done = run_cli(
        "register",
        serve.aor("1111"),
        *client_opts(transport, "--user", "1111", "--password", "wrong"),
    )
    assert done.returncode != 0, show(done)
    assert lines(done)[0] == "REGISTER: 401 Unauthorized", show(done)
    assert "authentication failed" in done.stderr and "--password" in done.stderr, show(done)
    assert "Traceback" not in done.stderr


def test_call_without_credentials_says_so(serve: Serve) -> None:
    done = run_cli("call", f"sip:100@{serve.hostport}", "--duration", "1", *client_opts("udp"))
    assert done.returncode != 0, show(done)
    assert results(done)[0] == "INVITE: 407 Proxy Authentication Required", show(done)
    assert "requires authentication" in done.stderr and "--user" in done.stderr, show(done)


async def test_message_to_registered_peer_serve(serve: Serve, transport: str) -> None:
    await _message_to_registered_peer(serve, transport)


def test_call_extension_100_serve(serve: Serve, transport: str) -> None:
    started = time.monotonic()
    done = run_cli(
        "call",
        f"sip:100@{serve.hostport}",
        "--duration",
        "1",
        *client_opts(transport, *CREDENTIALS_1111),
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, show(done)
    out = lines(done)
    # the progress while it rings, then the answer
    assert out[:3] == ["Trying (100)...", "Ringing (180)...", "INVITE: 200 OK"], show(done)
    out = out[2:]
    assert out[1].startswith("Codecs: ") and "PCMU/8000" in out[1], out
    assert out[-1] == "BYE: 200 OK", out
    assert 1.0 <= elapsed < 10, elapsed  # held the call for --duration before the BYE


def test_call_held_until_ctrl_c_hangs_up(serve: Serve) -> None:
    """``--duration -1`` holds the call (it used to fail with no BYE); Ctrl-C then hangs up
    with a BYE and exits 130."""
    proc = start_cli(
        "call",
        f"sip:100@{serve.hostport}",
        "--duration",
        "-1",
        *client_opts("udp", *CREDENTIALS_1111),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        while line.endswith("..."):  # Trying (100)..., Ringing (180)...
            line = proc.stdout.readline().strip()
        assert line == "INVITE: 200 OK"
        assert proc.stdout.readline().startswith("Codecs: ")
        time.sleep(1.5)  # the call is held (the old code failed here at once)
        assert proc.poll() is None
        out, err = interrupt(proc)
    finally:
        proc.kill()
    assert proc.returncode == 130, (out, err)
    assert out.splitlines()[-1] == "BYE: 200 OK", (out, err)
    assert "Traceback" not in err


def test_verbose_prints_whole_messages(serve: Serve, transport: str) -> None:
    done = run_cli("options", f"sip:{serve.hostport}", "--verbose", *client_opts(transport))
    assert done.returncode == 0, show(done)
    text = done.stdout
    tr = transport.upper()
    # the ladder lines, then each whole message: request line, headers, status line
    assert re.search(rf"──OPTIONS sip:{re.escape(serve.hostport)}──▶ .*\({tr}\)", text), text
    assert re.search(rf"◀──200 OK \(1 OPTIONS\)── .*\({tr}\)", text), text
    assert re.search(rf"^OPTIONS sip:{re.escape(serve.hostport)} SIP/2\.0$", text, re.M), text
    assert re.search(rf"^Via: SIP/2\.0/{tr} 127\.0\.0\.1:\d+;branch=z9hG4bK", text, re.M)
    assert re.search(r"^CSeq: 1 OPTIONS$", text, re.M)
    assert re.search(r"^SIP/2\.0 200 OK$", text, re.M), text
    assert re.search(r"^Allow: .*INVITE", text, re.M)
    assert lines(done)[-2] == "OPTIONS: 200 OK"
    # without --verbose nothing but the summary
    quiet = run_cli("options", f"sip:{serve.hostport}", *client_opts(transport))
    assert "Via:" not in quiet.stdout and len(lines(quiet)) == 2, show(quiet)


def test_verbose_call_shows_the_ladder(serve: Serve) -> None:
    done = run_cli(
        "call",
        f"sip:100@{serve.hostport}",
        "--duration",
        "0.2",
        "-v",
        *client_opts("udp", *CREDENTIALS_1111),
    )
    assert done.returncode == 0, show(done)
    ladder = [line for line in lines(done) if "──" in line]
    steps = [re.sub(r"^\s*me (◀──|──)", "", line).split("──")[0] for line in ladder]
    assert [s.split(" ")[0] for s in steps] == [
        "INVITE",
        "407",
        "ACK",
        "INVITE",
        "100",
        "180",
        "200",
        "ACK",
        "BYE",
        "200",
    ], ladder
    assert re.search(r"^Proxy-Authorization: Digest ", done.stdout, re.M)
    assert re.search(r"^Content-Type: application/sdp$", done.stdout, re.M)


def test_unreachable_server_is_a_clear_error() -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    done = run_cli("options", f"sip:{HOST}:{port}", *client_opts("udp"), "--timeout", "5")
    assert done.returncode == 3, show(done)  # no usable answer
    # ICMP port unreachable fails the request at once, naming the address (not a timeout)
    assert done.stderr.startswith("error: "), show(done)
    assert f"transport failure to {HOST}:{port}" in done.stderr, show(done)
    assert time.monotonic() - started < 4
    done = run_cli("options", f"sip:{HOST}:{port}", *client_opts("tcp"))
    assert done.returncode == 3, show(done)
    assert done.stderr.startswith("error: "), show(done)
    assert "Traceback" not in done.stderr


# -- what the user waits for, and the exit status ---------------------------------------- #
async def test_call_timeout_is_what_the_user_waits_on_a_silent_peer() -> None:
    """Nothing answers the INVITE (no 1xx: nothing to CANCEL): ``--timeout 2`` is over
    after 2 s, and the exit status says "no answer" (3). It used to take 10 s."""
    with trio.socket.socket(type=trio.socket.SOCK_DGRAM) as silent:
        await silent.bind((HOST, 0))
        port = silent.getsockname()[1]
        started = time.monotonic()
        done = await arun_cli(
            "call", f"sip:100@{HOST}:{port}", *client_opts("udp"), "--timeout", "2"
        )
        elapsed = time.monotonic() - started
    assert done.returncode == 3, show(done)
    assert "no final response within 2" in done.stderr, show(done)
    assert elapsed < 4.5, elapsed  # 2 s, and the interpreter's start


async def test_call_timeout_while_ringing_cancels_and_returns() -> None:
    """It rings for ever: progress lines while waiting, then after ``--timeout`` the CANCEL
    and its 487 (one round trip) and exit status 3."""
    async with DevServer(HOST, 0, echo_answer_delay=60) as server:
        uri = f"sip:100@{HOST}:{server.address[1]}"
        opts = client_opts("udp", *CREDENTIALS_1111)
        started = time.monotonic()
        done = await arun_cli("call", uri, *opts, "--timeout", "2")
        elapsed = time.monotonic() - started
        assert done.returncode == 3, show(done)
        assert lines(done) == ["Trying (100)...", "Ringing (180)..."], show(done)
        assert elapsed < 4.5, elapsed
        # --ladder: a line per message, the CANCEL and the 487 included
        done = await arun_cli("call", uri, *opts, "--timeout", "1", "--ladder")
    assert done.returncode == 3, show(done)
    steps = [re.sub(r"^\s*me (◀──|──)", "", line).split("──")[0] for line in lines(done)]
    names = [step.split(" ")[0] for step in steps]
    assert names[:6] == ["INVITE", "407", "ACK", "INVITE", "100", "180"], show(done)
    assert names[6] == "CANCEL" and sorted(names[7:]) == ["200", "487", "ACK"], show(done)


def test_call_with_early_media_against_serve_early_media(tmp_path: Path) -> None:
    """``sipx serve --early-media --answer-delay 1`` rings with 183 and its SDP; ``sipx call
    --early-media`` says so, then gets the 200 and hangs up."""
    with serving(tmp_path / "serve.log", "--early-media", "--answer-delay", "1") as server:
        opts = client_opts("udp", *CREDENTIALS_1111)
        done = run_cli(
            "call", f"sip:100@{server.hostport}", *opts, "--early-media", "--duration", "0.3"
        )
    assert done.returncode == 0, show(done)
    out = results(done)
    assert out[0].startswith("INVITE: early media"), show(done)
    assert out[1] == "INVITE: 200 OK" and "BYE: 200 OK" in out, show(done)


def test_exit_status_of_a_refused_call_and_of_bad_values(serve: Serve) -> None:
    refused = run_cli(
        "call", f"sip:nobody@{serve.hostport}", *client_opts("udp", *CREDENTIALS_1111)
    )
    assert refused.returncode == 1, show(refused)
    assert results(refused)[0].startswith("INVITE: 4"), show(refused)
    for bad in (["--timeout", "-1"], ["--timeout", "nan"], ["--duration", "nan"]):
        done = run_cli("call", f"sip:100@{serve.hostport}", *client_opts("udp"), *bad)
        assert done.returncode == 2, show(done)
        assert f"argument {bad[0]}" in done.stderr and "Traceback" not in done.stderr


def test_a_bad_file_or_digit_is_refused_before_the_call(serve: Serve, tmp_path: Path) -> None:
    """``--play`` and ``--dtmf`` are checked before the INVITE goes out (``--ladder`` would
    show it): exit status 2 and a message naming the problem."""
    not_wav = tmp_path / "prompt.wav"
    not_wav.write_bytes(b"not a RIFF file")
    cases = {
        "--play": [str(tmp_path / "missing.wav"), str(not_wav)],
        "--dtmf": ["12x"],
    }
    for option, values in cases.items():
        for value in values:
            done = run_cli(
                "call",
                f"sip:100@{serve.hostport}",
                "--ladder",
                option,
                value,
                *client_opts("udp", *CREDENTIALS_1111),
            )
            assert done.returncode == 2, show(done)
            assert done.stdout == "", show(done)  # not a message sent
            assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert "missing.wav" in run_cli("call", "sip:100@127.0.0.1:1", "--play", "missing.wav").stderr


def test_register_says_the_binding_outlives_the_command(serve: Serve) -> None:
    credentials = ["--user", "3333", "--password", "3333xxx"]
    done = run_cli(
        "register", serve.aor("3333"), "--expires", "30", *client_opts("udp", *credentials)
    )
    assert done.returncode == 0, show(done)
    assert "note: the binding points at 127.0.0.1:" in done.stderr, show(done)
    assert "--keep" in done.stderr
    done = run_cli(
        "register", serve.aor("3333"), "--expires", "0", *client_opts("udp", *credentials)
    )
    assert done.returncode == 0 and done.stderr == "", show(done)


def test_subscribe_prints_the_notifies_serve(serve: Serve) -> None:
    """``sipx subscribe AOR presence --count 2``: the first NOTIFY (2222 not registered),
    the one its REGISTER causes, then the unsubscribe and its final state."""
    proc = start_cli(
        "subscribe",
        serve.aor("2222"),
        "presence",
        "--count",
        "2",
        *client_opts("udp", *CREDENTIALS_1111),
    )
    credentials = ["--user", "2222", "--password", "2222xxx"]
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "SUBSCRIBE: 200 OK"
        first = proc.stdout.readline().strip()
        assert re.fullmatch(
            rf"NOTIFY active \(expires 600\): sip:2222@{re.escape(serve.hostport)} is closed"
            r" \(not registered\)",
            first,
        ), first
        done = run_cli(
            "register", serve.aor("2222"), "--expires", "30", *client_opts("udp", *credentials)
        )
        assert done.returncode == 0, show(done)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        run_cli("register", serve.aor("2222"), "--expires", "0", *client_opts("udp", *credentials))
    assert proc.returncode == 0, (out, err)
    opened, final = out.splitlines()
    assert re.fullmatch(
        rf"NOTIFY active \(expires (599|600)\): sip:2222@{re.escape(serve.hostport)} is open"
        r" \(registered\)",
        opened,
    ), (out, err)
    assert final == "Subscription terminated (timeout)"


def test_subscribe_refused_serve(serve: Serve) -> None:
    done = run_cli(
        "subscribe", serve.aor("1111"), "presence", "--expires", "60", *client_opts("udp")
    )
    assert done.returncode == 1 and lines(done) == [
        "SUBSCRIBE: 407 Proxy Authentication Required"
    ], show(done)
    assert "pass --user and --password" in done.stderr


def test_register_keep_refreshes_until_ctrl_c(serve: Serve) -> None:
    """``--keep`` keeps the binding alive past its expiry, then removes it on Ctrl-C (130)."""
    port = free_port()
    credentials = ["--user", "3333", "--password", "3333xxx"]
    proc = start_cli(
        "register",
        serve.aor("3333"),
        *["--expires", "4", "--keep"],
        *client_opts("udp", *credentials, local_port=port),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "REGISTER: 200 OK"
        line = proc.stdout.readline().strip()
        while line.startswith("Contact:"):
            line = proc.stdout.readline().strip()
        assert line == "Registered; refreshing until Ctrl-C"
        time.sleep(5.5)  # past the 4 s expiry: only a refresh keeps the binding
        assert any(f":{port}" in c for c in query_bindings(serve, "3333"))
        out, err = interrupt(proc)
    finally:
        proc.kill()
    assert proc.returncode == 130, (out, err)
    assert out.splitlines()[-1] == "REGISTER (expires 0): 200 OK", (out, err)
    assert not any(f":{port}" in c for c in query_bindings(serve, "3333"))


@pytest.mark.parametrize("verbose", [False, True])
def test_demo(transport: str, verbose: bool) -> None:
    started = time.monotonic()
    done = run_cli("demo", "--transport", transport, *(["--verbose"] if verbose else []))
    elapsed = time.monotonic() - started
    assert done.returncode == 0, show(done)
    assert elapsed < 10, elapsed
    text = done.stdout
    tr = transport.upper()
    ladder = [line for line in lines(done) if "──" in line]
    assert ladder and all(line.endswith(f"({tr})") for line in ladder), ladder
    summary = "\n".join(ladder)
    for step in (
        "──REGISTER sip:",
        "◀──401 Unauthorized (1 REGISTER)──",
        "◀──200 OK (2 REGISTER)──",
        "──INVITE sip:100@",
        "◀──407 Proxy Authentication Required (1 INVITE)──",
        "◀──180 Ringing (2 INVITE)──",
        "◀──200 OK (2 INVITE)──",
        "──ACK sip:",
        "──BYE sip:",
        "◀──200 OK (3 BYE)──",
        "◀──MESSAGE sip:2222@",
        "◀──INVITE sip:2222@",
    ):
        assert step in summary, f"{step!r} missing from\n{summary}"
    assert "FAILED" not in text
    assert re.search(r"Echo from extension 100: \d+ packets, 1000 Hz", text), text
    assert "Demo finished" in lines(done)[-1]
    assert ("Via: SIP/2.0/" in text) is verbose  # whole messages only with --verbose


# --------------------------------------------------------------------------------------- #
# against Kamailio
# --------------------------------------------------------------------------------------- #
async def _message_to_registered_peer(registrar: Kamailio | Serve, transport: str) -> None:
    """2222 is a sipx client registered at ``registrar``; the CLI (1111) sends it a MESSAGE."""
    received: list[tuple[str, str]] = []
    aor = registrar.aor("2222")
    async with AsyncClient(
        HOST, 0, transport.upper(), Auth.Digest("2222", "2222xxx"), timeout=5
    ) as peer:
        peer.on_request(
            "MESSAGE",
            lambda incoming: received.append((incoming.text, str(incoming.request.from_.uri))),
        )
        assert (await peer.register(aor, expires=60)).status_code == 200
        try:
            done = await arun_cli(
                "message",
                aor,
                "Hello from the sipx CLI",
                *client_opts(transport, *CREDENTIALS_1111),
            )
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await peer.unregister(aor)
    assert done.returncode == 0, show(done)
    assert lines(done) == ["MESSAGE: 200 OK"], show(done)
    assert received == [("Hello from the sipx CLI", f"sip:1111@{registrar.hostport}")]


@pytest.mark.integration
def test_options_kamailio(kamailio: Kamailio, transport: str) -> None:
    done = run_cli("options", kamailio.uri, *client_opts(transport))
    assert done.returncode == 0, show(done)
    out = lines(done)
    assert out[0] == "OPTIONS: 200 OK", show(done)
    allowed = {m.strip() for m in out[1].removeprefix("Allow: ").split(",")}
    assert {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "MESSAGE", "REGISTER"} <= allowed, out


@pytest.mark.integration
def test_register_and_unregister_kamailio(kamailio: Kamailio, transport: str) -> None:
    port = free_port()
    opts = client_opts(transport, *CREDENTIALS_1111, local_port=port)
    done = run_cli("register", kamailio.aor("1111"), "--expires", "60", *opts)
    try:
        assert done.returncode == 0, show(done)
        assert lines(done)[0] == "REGISTER: 200 OK", show(done)
        suffix = ";transport=tcp" if transport == "tcp" else ""
        contact = f"<sip:1111@{HOST}:{port}{suffix}>"
        assert any(contact in line for line in lines(done)[1:]), show(done)
        held = [c for c in query_bindings(kamailio, "1111") if f":{port}" in c]
        assert len(held) == 1 and held[0].startswith(contact), held
    finally:
        gone = run_cli("register", kamailio.aor("1111"), "--expires", "0", *opts)
    assert gone.returncode == 0, show(gone)
    assert lines(gone)[0] == "REGISTER: 200 OK"
    assert [c for c in query_bindings(kamailio, "1111") if f":{port}" in c] == []


@pytest.mark.integration
def test_register_wrong_password_kamailio(kamailio: Kamailio, transport: str) -> None:
    done = run_cli(
        "register",
        kamailio.aor("1111"),
        *client_opts(transport, "--user", "1111", "--password", "wrong"),
    )
    assert done.returncode != 0, show(done)
    assert lines(done)[0] == "REGISTER: 401 Unauthorized", show(done)
    assert "authentication failed" in done.stderr and "'1111'" in done.stderr, show(done)
    assert "Traceback" not in done.stderr


@pytest.mark.integration
async def test_message_to_registered_peer_kamailio(kamailio: Kamailio, transport: str) -> None:
    await _message_to_registered_peer(kamailio, transport)


@pytest.mark.integration
def test_call_extension_100_kamailio(kamailio: Kamailio, echo_uas: SIPp, transport: str) -> None:
    started = time.monotonic()
    done = run_cli(
        "call",
        f"sip:100@{kamailio.hostport}",
        "--duration",
        "1",
        "--verbose",
        *client_opts(transport, *CREDENTIALS_1111),
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, show(done)
    out = lines(done)
    assert "INVITE: 200 OK" in out, show(done)
    assert out[-1] == "BYE: 200 OK", out
    assert any(line.startswith("Codecs: PCMU/8000") for line in out), out
    assert 1.0 <= elapsed < 10, elapsed
    # the echo UAS behind Kamailio got the INVITE, the ACK and the BYE of this call
    call_id = call_id_of(done.stdout)
    deadline = time.monotonic() + 3
    while True:
        log = echo_uas.log
        got = re.findall(
            rf"^(INVITE|ACK|BYE) sip:[^\n]*\n(?:[^\n]+\n)*?Call-ID: {re.escape(call_id)}",
            log.replace("\r\n", "\n"),
            re.M,
        )
        if got == ["INVITE", "ACK", "BYE"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert got == ["INVITE", "ACK", "BYE"], got
    # ACK and BYE followed Kamailio's Record-Route (Route header in the printed messages)
    ack_2xx = [m for m in printed_requests(done.stdout, "ACK") if "CSeq: 2 ACK" in m]
    (bye,) = printed_requests(done.stdout, "BYE")
    for message in (*ack_2xx, bye):
        assert re.search(rf"^Route: <sip:{re.escape(kamailio.hostport)}[;>]", message, re.M), (
            message
        )
    assert len(ack_2xx) == 1, ack_2xx
