"""The call and message examples (``examples/*.py``) against Kamailio and the SIPp echo UAS.

Each example runs as a subprocess exactly as a user would run it against a PBX
(``python examples/X.py --server 127.0.0.1:PORT --transport udp|tcp``), over UDP and TCP.
Kamailio's realm is "127.0.0.1" (the examples answer any realm) and it challenges REGISTER
with 401 and INVITE/MESSAGE with 407. Extension 100 is relayed to the module's SIPp echo
UAS, whose message trace shows what really reached the callee.

Every test checks that the example removed its registrations (a binding query); the
``bindings_removed`` fixture removes whatever is left (``Contact: *``) so that a failing
example cannot fork later calls to a dead port.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from peers import USERS, Kamailio, SIPp, query_bindings

import sipx

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
RUN_TIMEOUT = 60.0


@pytest.fixture(params=["udp", "tcp"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def bindings_removed(kamailio: Kamailio) -> Iterator[None]:
    """Teardown: unregister every binding of the guide's users (REGISTER Contact: *)."""
    yield
    for user, password in USERS.items():
        try:
            with sipx.Client(
                local_host="127.0.0.1", local_port=0, auth=sipx.Auth.Digest(user, password)
            ) as client:
                client.register(kamailio.aor(user), contact="*", expires=0, timeout=5)
        except (sipx.SIPError, RuntimeError):
            pass


@dataclass
class Run:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (
            f"$ {' '.join(self.args)}\nexit status {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"
        )

    def has(self, pattern: str) -> bool:
        """A whole line of stdout matches the regular expression ``pattern``."""
        return any(re.fullmatch(pattern, line) for line in self.stdout.splitlines())


def run_example(example: str, kamailio: Kamailio, transport: str, *args: str) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPX_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [
        sys.executable,
        str(EXAMPLES / f"{example}.py"),
        *("--server", kamailio.hostport, "--transport", transport),
        *args,
    ]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env, cwd=ROOT
    )
    run = Run(cmd, done.returncode, done.stdout, done.stderr)
    assert run.returncode == 0, str(run)
    return run


def assert_unregistered(kamailio: Kamailio, *users: str) -> None:
    for user in users:
        assert query_bindings(kamailio, user) == [], f"{user} is still registered"


# --------------------------------------------------------------------------------------- #
# the SIPp echo UAS's message trace
# --------------------------------------------------------------------------------------- #
_SEPARATOR = re.compile(r"^-{20,} .*$", re.M)


def received_by(uas: SIPp, since: int) -> list[str]:
    """The requests and responses the UAS received after offset ``since`` of its trace."""
    out = []
    for block in _SEPARATOR.split(uas.log[since:]):
        head, _, message = block.strip("\r\n").partition("\n")
        if "message received" in head:
            out.append(message.strip("\r\n").replace("\r\n", "\n"))
    return out


def wait_received(uas: SIPp, since: int, methods: list[str], timeout: float = 5.0) -> list[str]:
    """Poll the trace until the UAS received requests of ``methods`` (in that order)."""
    deadline = time.monotonic() + timeout
    while True:
        messages = received_by(uas, since)
        if [m.split(" ", 1)[0] for m in messages] == methods or time.monotonic() > deadline:
            return messages
        time.sleep(0.05)


def header(message: str, name: str) -> str:
    found = re.search(rf"^{name}\s*:\s*(.*?)\s*$", message, re.M | re.I)
    assert found, f"no {name} in\n{message}"
    return found[1]


# --------------------------------------------------------------------------------------- #
# the tests
# --------------------------------------------------------------------------------------- #
def test_simple_example(kamailio: Kamailio, transport: str, bindings_removed: None) -> None:
    run = run_example("simple_example", kamailio, transport)
    for pattern in (
        "1. REGISTER with auth=: 401 -> 200 OK",
        '   Authorization: Digest username="1111", realm="127.0.0.1", .*',
        "2. REGISTER without auth: 401 Unauthorized",
        '   WWW-Authenticate: Digest realm="127.0.0.1", .*',
        "   retry_with_auth: 401 -> 200 OK",
        "3. REGISTER, wrong password: 401 -> (401 Unauthorized|403 Forbidden)",
    ):
        assert run.has(pattern), f"{pattern!r} not printed\n{run}"
    assert_unregistered(kamailio, "1111")


def test_call_with_sdp(
    kamailio: Kamailio, echo_uas: SIPp, transport: str, bindings_removed: None
) -> None:
    since = len(echo_uas.log)
    run = run_example("call_with_sdp", kamailio, transport, "--duration", "0.2")
    assert run.has(rf"INVITE sip:100@{kamailio.hostport}: 407 -> (1\d\d -> )*200"), str(run)
    # the echo UAS only takes PCMU: the answer keeps what both sides have
    assert run.has("Answer codecs: PCMU/8000"), str(run)
    assert run.has("ok: BYE answered 200 OK"), str(run)
    invite, ack, bye = wait_received(echo_uas, since, ["INVITE", "ACK", "BYE"])
    assert "m=audio 8000 RTP/AVP 0 8" in invite, invite
    # the INVITE that got through is the retry that answered the 407 (Kamailio consumed
    # its Proxy-Authorization)
    assert header(invite, "CSeq") == "2 INVITE", invite
    assert header(invite, "From").startswith(f"<sip:1111@{kamailio.hostport}>"), invite
    assert header(ack, "CSeq") == "2 ACK" and header(bye, "CSeq") == "3 BYE"
    assert header(invite, "Call-ID") == header(ack, "Call-ID") == header(bye, "Call-ID")
    # our Via (below Kamailio's) names the example's transport
    vias = re.findall(r"^Via\s*:\s*(.*?)\s*$", invite, re.M | re.I)
    assert len(vias) == 2 and vias[1].startswith(f"SIP/2.0/{transport.upper()} "), vias


def test_late_offer(
    kamailio: Kamailio, echo_uas: SIPp, transport: str, bindings_removed: None
) -> None:
    since = len(echo_uas.log)
    run = run_example("late_offer", kamailio, transport, "--duration", "0.2")
    assert run.has(rf"INVITE \(no SDP\) sip:100@{kamailio.hostport}: 407 -> (1\d\d -> )*200")
    assert run.has("Offer codecs: PCMU/8000"), str(run)
    assert run.has("Call accepted with SDP answer \\(sent in the ACK\\)"), str(run)
    assert run.has("ok: BYE answered 200 OK"), str(run)
    invite, ack, _bye = wait_received(echo_uas, since, ["INVITE", "ACK", "BYE"])
    assert header(invite, "Content-Length") == "0", invite
    assert header(ack, "Content-Type") == "application/sdp", ack
    assert re.search(r"^m=audio \d+ RTP/AVP 0$", ack, re.M), ack
    assert header(invite, "From").startswith(f"<sip:2222@{kamailio.hostport}>"), invite


def test_message(kamailio: Kamailio, transport: str, bindings_removed: None) -> None:
    run = run_example("message", kamailio, transport)
    assert run.has(
        rf"\[2222\] received from sip:1111@{re.escape(kamailio.hostport)}: Hello from SIPX!"
    ), str(run)
    assert run.has("Message sent \\(200 OK\\)"), str(run)
    assert run.has("ok: 2222 received 'Hello from SIPX!'"), str(run)
    assert_unregistered(kamailio, "2222")


def test_asterisk_demo(kamailio: Kamailio, transport: str, bindings_removed: None) -> None:
    run = run_example(
        "asterisk_demo", kamailio, transport, "--ring-time", "0.1", "--duration", "0.2"
    )
    users = ("1111", "2222", "3333")
    for user, to in zip(users, users[1:] + users[:1]):
        assert run.has(rf"   \[{user}\] REGISTER: 401 -> 200"), str(run)
        assert run.has(rf"   \[{to}\] message from {user}: 'Hello {to}, this is {user}!'"), str(run)
        assert run.has(rf"ok: {user} -> {to} call answered \(200\)"), str(run)
        assert run.has(rf"ok: {to} saw the hang-up"), str(run)
    assert run.stdout.splitlines()[-1] == "All steps passed!", str(run)
    assert_unregistered(kamailio, *users)
