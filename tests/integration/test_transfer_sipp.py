"""Transfer against SIPp (RFC 3515): SIPp answers a call from sipx and REFERs sipx, within
the call, to a second SIPp UAS; sipx accepts with 202, NOTIFYs ``SIP/2.0 100 Trying`` then
``SIP/2.0 200 OK`` (checked by the scenario's regexps: SIPp exits 1 otherwise) and places
the new call; SIPp then hangs up the old one, which ends "transferred".
"""

from __future__ import annotations

import pytest
import trio
from conftest import SIPpFactory
from peers import HOST

import sipx

pytestmark = pytest.mark.integration


async def test_sipp_refers_a_call_of_sipx(sipp: SIPpFactory) -> None:
    target = sipp("uas_answer.xml", service="carol", timeout_s=15)
    transferor = sipp(
        "uas_refer.xml", keys={"refer_to": f"sip:carol@{target.hostport}"}, timeout_s=15
    )
    trace: list[str] = []

    def record(direction: str, data: bytes, address: object, transport: str) -> None:
        start_line = data.split(b"\r\n", 1)[0].decode()
        trace.append(f"{direction} {start_line}")

    async with sipx.AsyncClient(HOST, 0, timeout=5, trace=record) as client:
        with trio.fail_after(10):
            call = await client.call(f"sip:transferor@{transferor.hostport}")
            assert call.established
            assert await call.wait_ended() == "transferred", "\n".join(trace)
            new = call.replaced_by
            assert new is not None and new.established
            assert str(new.invite.uri) == f"sip:carol@{target.hostport}"
            assert new.invite.headers["Referred-By"] == (f"<sip:transferor@{transferor.hostport}>")
            await trio.sleep(0.2)
            assert (await new.bye()).status_code == 200
    assert await trio.to_thread.run_sync(transferor.wait) == 0, transferor.describe()
    assert await trio.to_thread.run_sync(target.wait) == 0, target.describe()
    sent = [
        words[2] if words[1] == "SIP/2.0" else words[1]
        for words in (line.split() for line in trace)
        if words[0] == "out"
    ]
    # 202, NOTIFY (100), INVITE to the target, ..., NOTIFY (200); SIPp's BYE, not ours
    assert sent.count("NOTIFY") == 2, trace
    assert sent.index("202") < sent.index("NOTIFY"), trace
    assert sent.count("BYE") == 1, trace  # the one that ended the new call
    assert sum(line.startswith("in BYE ") for line in trace) == 1, trace  # SIPp hung up
