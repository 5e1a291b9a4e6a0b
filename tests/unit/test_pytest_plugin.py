"""The pytest plugin (``pytest_sipx``), run in inner pytest sessions with ``pytester``.

The plugin is found through its ``pytest11`` entry point (the editable install), as a user's
pytest would find it; nothing here loads it by hand.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import sipx.testing  # noqa: F401 - imported once here, not again by every inner session

pytest_plugins = ["pytester"]

TRIO_MODE = ("-p", "no:cacheprovider", "-o", "trio_mode=true")

MEMORY_TESTS = """
import pytest
import trio
import trio.testing
import sipx
from sipx.testing import ScriptedUAS

SERVER = ("127.0.0.1", 5080)


@pytest.mark.sipx_network(seed=7, loss=0.3)
async def test_register_in_memory(sipx_network, sipx_client):
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, trio.testing.MockClock) and clock.autojump_threshold == 0
    assert sipx_network.loss == 0.3
    async with ScriptedUAS(sipx_network, SERVER, users={"alice": "secret"}):
        async with sipx_client(auth=sipx.Auth.Digest("alice", "secret")) as client:
            assert client.local_address.port != 0
            response = await client.register("sip:alice@127.0.0.1:5080")
    assert response.status_code == 200
    assert [c.fate for c in sipx_network.requests("REGISTER")][:3] == ["delivered", "lost", "lost"]


async def test_timer_f_in_no_real_time(sipx_network, sipx_client):
    assert isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)
    async with ScriptedUAS(sipx_network, SERVER, ignore={"REGISTER"}):
        async with sipx_client() as client:
            start = trio.current_time()
            with pytest.raises(sipx.TimeoutError):
                await client.register("sip:alice@127.0.0.1:5080")
            assert trio.current_time() - start == 32.0
            with pytest.raises(ValueError, match="no sipx_server"):
                sipx_client("alice")
"""

SERVER_TESTS = """
import pytest


@pytest.mark.sipx_server(users={"alice": "secret"})
async def test_register_and_call_100(sipx_server, sipx_client):
    assert sipx_server.address[0] == "127.0.0.1" and sipx_server.address[1] != 0
    async with sipx_client("alice") as client:
        response = await client.register(sipx_server.uri("alice"))
        assert response.status_code == 200
        assert [r.status_code for r in response.history] == [401]
        assert "alice" in sipx_server.registrations
        call = await client.call(sipx_server.uri("100"), timeout=10)
        assert call.established
        await call.bye()
        await client.unregister(sipx_server.uri("alice"))


async def test_not_with_the_memory_network(sipx_server, sipx_network):
    pass
"""

LADDER_TESTS = """
import sipx
from sipx.testing import ScriptedUAS


async def test_fails_after_registering(sipx_server, sipx_client):
    async with sipx_client("1111") as client:
        response = await client.register(sipx_server.uri("1111"))
        await client.options(sipx_server.uri())
    assert response.status_code == 403


async def test_passes_after_registering(sipx_network, sipx_client):
    async with ScriptedUAS(sipx_network, ("127.0.0.1", 5080)):
        async with sipx_client() as client:
            response = await client.message("sip:bob@127.0.0.1:5080", "hello")
    assert response.status_code == 200
"""

NO_FIXTURE_TEST = """
import sipx
from sipx.testing import DevServer


async def test_own_server_and_client():
    async with DevServer("127.0.0.1", 0) as server:
        async with sipx.AsyncClient("127.0.0.1", 0) as client:
            response = await client.options(server.uri())
    assert response.status_code == 500
"""


def ladder(output: str) -> list[str]:
    """The lines of every "SIP ladder" section in pytest's output."""
    lines: list[str] = []
    inside = False
    for line in output.splitlines():
        if line.startswith(("---", "===", "___")):
            inside = "SIP ladder" in line
        elif inside:
            lines.append(line)
    return lines


def test_the_import_loads_neither_sipx_nor_trio() -> None:
    code = "import pytest_sipx, sys; assert not {'sipx', 'trio'} & set(sys.modules), sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_registered_by_its_entry_point(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--trace-config", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines(
        [
            "PLUGIN registered: <module 'pytest_sipx' from *pytest_sipx.py'>",
            "plugins: *sipx-*",  # the distributions whose pytest11 entry points were loaded
        ]
    )
    result = pytester.runpytest("--markers", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["@pytest.mark.sipx_server(**kwargs):*"])
    result.stdout.fnmatch_lines(["@pytest.mark.sipx_network(**kwargs):*"])
    result.stdout.fnmatch_lines(["@pytest.mark.sipx_ladder(full=False):*"])
    assert "--sipx-ladder=MODE" in pytester.runpytest("--help").stdout.str()


@pytest.mark.parametrize("trio_mode", [True, False], ids=["trio_mode", "no_trio_mode"])
def test_the_memory_network_runs_on_the_autojump_clock(
    pytester: pytest.Pytester, trio_mode: bool
) -> None:
    pytester.makepyfile(test_memory=MEMORY_TESTS)
    options = TRIO_MODE if trio_mode else ("-p", "no:cacheprovider")
    result = pytester.runpytest(*options, "--strict-markers")
    result.assert_outcomes(passed=2)
    assert result.duration < 10  # Timer F's 32 s and the retransmissions are virtual


def test_the_dev_server_and_a_client_for_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_server=SERVER_TESTS)
    result = pytester.runpytest(*TRIO_MODE)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*sipx_server runs on real sockets and the real clock: not with sipx_network*"]
    )


def test_a_failing_test_shows_its_ladder_and_a_passing_one_does_not(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_ladder=LADDER_TESTS)
    result = pytester.runpytest(*TRIO_MODE)
    result.assert_outcomes(passed=1, failed=1)
    output = result.stdout.str()
    assert output.count("SIP ladder") == 1
    lines = ladder(output)
    client, server = r"127\.0\.0\.1:\d+", r"serve 127\.0\.0\.1:\d+"
    result.stdout.re_match_lines(
        [
            rf"\s+\d+\.\d{{3}}\s+{client} ──REGISTER sip:127\.0\.0\.1:\d+──▶ {client} \(UDP\)$",
            rf"\s+\d+\.\d{{3}}\s+{server} ◀──REGISTER sip:127\.0\.0\.1:\d+── {client} \(UDP\)$",
            rf".*{server} ──401 Unauthorized \(1 REGISTER\)──▶ {client} \(UDP\)$",
            rf".*{client} ◀──200 OK \(2 REGISTER\)── {client} \(UDP\)$",
            rf".*{client} ──OPTIONS sip:127\.0\.0\.1:\d+──▶ {client} \(UDP\)$",
            rf".*{client} ◀──200 OK \(1 OPTIONS\)── {client} \(UDP\)$",
        ]
    )
    # client and server each log every message once: 4 REGISTER + 4 responses, 2 + 2 OPTIONS
    assert len(lines) == 12, lines
    assert not any("MESSAGE" in line for line in lines)  # the passing test's messages
    assert "DEBUG" not in output  # whole messages do not also fill "Captured log"


@pytest.mark.parametrize(
    ("options", "shown", "whole"),
    [
        ((), False, False),
        (("--sipx-ladder=all",), True, False),
        (("--sipx-ladder=full",), True, True),
        (("-o", "sipx_ladder=all"), True, False),
    ],
    ids=["auto", "all", "full", "ini"],
)
def test_which_tests_record(
    pytester: pytest.Pytester, options: tuple[str, ...], shown: bool, whole: bool
) -> None:
    pytester.makepyfile(test_own=NO_FIXTURE_TEST)
    result = pytester.runpytest(*TRIO_MODE, *options)
    result.assert_outcomes(failed=1)
    lines = ladder(result.stdout.str())
    assert any("──OPTIONS sip:127.0.0.1:" in line for line in lines) is shown
    assert any(line.strip() == "CSeq: 1 OPTIONS" for line in lines) is whole


def test_the_marker_and_off(pytester: pytest.Pytester) -> None:
    marked = NO_FIXTURE_TEST.replace(
        "async def", "import pytest\n\n\n@pytest.mark.sipx_ladder(full=True)\nasync def"
    )
    pytester.makepyfile(test_marked=marked, test_ladder=LADDER_TESTS)
    result = pytester.runpytest(*TRIO_MODE, "test_marked.py")
    result.assert_outcomes(failed=1)
    assert "CSeq: 1 OPTIONS" in "\n".join(ladder(result.stdout.str()))
    result = pytester.runpytest(*TRIO_MODE, "--sipx-ladder=off", "test_ladder.py")
    result.assert_outcomes(passed=1, failed=1)
    assert "SIP ladder" not in result.stdout.str()


def test_a_wrong_ini_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("-o", "sipx_ladder=sometimes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*sipx_ladder is one of auto, all, full, off, not 'sometimes'*"])
