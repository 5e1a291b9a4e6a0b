"""``sipx demo``: the guide's flows against an in-process development server.

Starts :class:`~sipx._serve.DevServer` on 127.0.0.1 and runs, with sipx clients: REGISTER
(401 then 200), OPTIONS, a MESSAGE from 1111 received by 2222's handler, a call to
extension 100 (the echo) that plays a 1 s tone and checks it comes back at its frequency,
then BYE, and a call from 1111 answered by 2222. Every message is printed as a ladder.
Needs no network beyond loopback.
"""

from __future__ import annotations

import sys
from typing import TextIO

import trio

from ._async_client import AsyncClient
from ._auth import Auth
from ._ladder import Ladder
from ._serve import DevServer
from .media import dominant_frequency, tone

ECHO_TONE = 1000  # Hz, played to extension 100 for ECHO_SECONDS
ECHO_SECONDS = 1.0


class DemoFailed(Exception):
    pass


def _check(condition: bool, what: str, out: TextIO) -> None:
    print(f"  {'ok ' if condition else 'FAILED'} {what}", file=out)
    if not condition:
        raise DemoFailed(what)


async def demo(*, transport: str = "UDP", full: bool = False, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    start = trio.current_time()
    ladder = Ladder(out, full=full, clock=lambda: trio.current_time() - start)
    async with DevServer("127.0.0.1", 0) as server:
        host, port = server.address
        domain = f"{host}:{port}"
        print(f"sipx dev server on {domain} ({transport}); users 1111, 2222, 3333\n", file=out)
        alice = AsyncClient(
            "127.0.0.1",
            0,
            transport,
            Auth.Digest("1111", "1111xxx"),
            trace=ladder.hook("1111"),
            timeout=5,
        )
        bob = AsyncClient(
            "127.0.0.1",
            0,
            transport,
            Auth.Digest("2222", "2222xxx"),
            trace=ladder.hook("2222"),
            timeout=5,
        )
        async with alice, bob:
            print("== REGISTER (401 then 200)", file=out)
            response = await alice.register(f"sip:1111@{domain}")
            _check(
                response.status_code == 200 and [r.status_code for r in response.history] == [401],
                "1111 registered after a 401 challenge",
                out,
            )
            response = await bob.register(f"sip:2222@{domain}")
            _check(response.status_code == 200, "2222 registered", out)

            print("\n== OPTIONS", file=out)
            response = await alice.options(f"sip:{domain}")
            _check(
                response.status_code == 200 and "INVITE" in response.headers.get("Allow", ""),
                f"server answers 200, Allow: {response.headers.get('Allow')}",
                out,
            )

            print("\n== MESSAGE 1111 -> 2222", file=out)
            inbox: list[str] = []
            bob.on_request("MESSAGE", lambda incoming: inbox.append(incoming.text))
            response = await alice.message(f"sip:2222@{domain}", "Hello from SIPX!")
            _check(
                response.status_code == 200 and inbox == ["Hello from SIPX!"],
                f"2222's handler got {inbox!r}",
                out,
            )

            print("\n== Call extension 100 (the echo): a 1 s tone, heard back, BYE", file=out)
            echo_call = await alice.call(f"sip:100@{domain}")
            answer = echo_call.remote_sdp
            _check(
                echo_call.established and answer is not None,
                "extension 100 answered with SDP",
                out,
            )
            assert answer is not None
            print(f"       answer codecs: {', '.join(answer.get_codecs_summary())}", file=out)
            heard: list[bytes] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(echo_call.play, tone(ECHO_TONE, ECHO_SECONDS))
                with trio.move_on_after(ECHO_SECONDS + 0.1):  # + the last packets' round trip
                    async for frame in echo_call.audio_frames():
                        heard.append(frame)
            frequency = dominant_frequency(b"".join(heard))
            echoed = abs(frequency - ECHO_TONE) <= 20
            _check(
                echoed,
                f"Echo from extension 100: {len(heard)} packets, {frequency:.0f} Hz"
                + ("" if echoed else f" (expected the {ECHO_TONE} Hz tone back)"),
                out,
            )
            response = await echo_call.bye()
            _check(response.status_code == 200, "BYE answered 200", out)

            print("\n== Call 1111 -> 2222, answered by 2222", file=out)
            ended: list[str | None] = []

            async def answer_calls() -> None:
                async for call in bob.calls():
                    call.ring()
                    await trio.sleep(0.1)
                    call.answer()
                    ended.append(await call.wait_ended())
                    return

            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer_calls)
                await trio.sleep(0.05)
                call = await alice.call(f"sip:2222@{domain}")
                _check(call.established, "2222 answered the call", out)
                await trio.sleep(0.2)
                await call.bye()
            _check(ended == ["remote"], "2222 saw 1111 hang up", out)

            await alice.unregister(f"sip:1111@{domain}")
            await bob.unregister(f"sip:2222@{domain}")
    print("\nDemo finished: every flow worked.", file=out)


def run_demo(*, transport: str = "UDP", full: bool = False) -> int:
    try:
        trio.run(lambda: demo(transport=transport, full=full))
    except DemoFailed as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    return 0


__all__ = ["demo", "run_demo"]
