"""Self-check of the integration kit: real Kamailio and SIPp processes, no sipx.

If this module fails, the peers (not sipx) are broken: fix the kit first.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from peers import (
    USERS,
    Kamailio,
    SipClient,
    SIPp,
    free_port,
    parse_challenge,
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
