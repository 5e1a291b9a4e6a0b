"""examples/dispatcher_worker.py run in this process: with ``--quiet`` and no
``--hangup-after`` it answers each call in a plain INVITE handler, without ``calls()`` and
a task per call; with ``--task-per-call`` it serves them through ``calls()`` as before.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import sys
from pathlib import Path
from types import ModuleType

import pytest
import trio

import sipx

ROOT = Path(__file__).resolve().parents[2]


def _worker_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "dispatcher_worker", ROOT / "examples" / "dispatcher_worker.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # its dataclass looks itself up there
    spec.loader.exec_module(sys.modules[spec.name])
    return sys.modules[spec.name]


async def _run_worker(
    extra: list[str], capsys: pytest.CaptureFixture[str], calls: int
) -> tuple[list[sipx.Call], str]:
    """Start the worker, place ``calls`` calls to it and hang them up, SIGTERM it; the
    calls and what it printed."""
    worker = _worker_module()
    where = ["--local-host", "127.0.0.1", "--local-port", "0", "--name", "w"]
    # --gc-default: the GC of the test process is left alone
    args = worker.parse_args([*where, "--no-media", "--gc-default", *extra])
    placed: list[sipx.Call] = []
    printed = ""
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.main, args)
            port = None
            while port is None:
                await trio.sleep(0.01)
                printed += capsys.readouterr().out
                found = re.search(r"w: listening on 127\.0\.0\.1:(\d+)", printed)
                port = found and int(found[1])
            async with sipx.AsyncClient("127.0.0.1", 0) as caller:
                for number in range(calls):
                    call = await caller.call(f"sip:callee{number}@127.0.0.1:{port}")
                    placed.append(call)
                    assert call.established, call.final_response
                    await call.bye()
            os.kill(os.getpid(), signal.SIGTERM)  # the worker's own way out
    printed += capsys.readouterr().out
    return placed, printed


async def test_a_quiet_worker_answers_in_an_invite_handler(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_calls(self: sipx.AsyncClient) -> None:
        raise AssertionError("the quiet worker iterated calls()")

    monkeypatch.setattr(sipx.AsyncClient, "calls", no_calls)
    placed, printed = await _run_worker(["--quiet"], capsys, 3)
    for call in placed:
        assert call.remote_sdp is not None
        [media] = call.remote_sdp.media
        assert (media.port, call.remote_sdp.media_direction(media)) == (9, "inactive")
        assert call.ended_by == "local"  # our BYE ended it
    assert printed.splitlines()[-1] == "w: 3 call(s) answered", printed


async def test_task_per_call_keeps_the_calls_iterator(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    iterated = []
    calls = sipx.AsyncClient.calls

    def counted(self: sipx.AsyncClient):  # type: ignore[no-untyped-def]
        iterated.append(self)
        return calls(self)

    monkeypatch.setattr(sipx.AsyncClient, "calls", counted)
    placed, printed = await _run_worker(["--quiet", "--task-per-call"], capsys, 2)
    assert len(iterated) == 1
    assert all(call.ended_by == "local" for call in placed)
    assert printed.splitlines()[-1] == "w: 2 call(s) answered", printed
