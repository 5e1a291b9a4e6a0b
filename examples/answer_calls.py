"""Answer incoming calls: register, ring, answer with an SDP answer, wait for the hang-up.

The callee side of a call, with :class:`sipx.AsyncClient` on trio. Runs as 2222 by default;
while it runs, ``python examples/call_with_sdp.py --to 2222`` (or a softphone) can call it.

``--early-media`` sends 183 Session Progress with SDP instead of 180 Ringing (for
``early_media.py``), ``--ring-time`` is how long it rings before answering, ``--calls N``
stops after N calls and ``--duration`` after that many seconds (default: run until Ctrl-C).
The registration is removed when it stops.
"""

from __future__ import annotations

import argparse
import math
import signal
from typing import Any

import trio
from _common import check, make_parser, parse_args, run, sip_uri

from sipx import AsyncClient, Auth, Call, SDPBody


async def answer(call: Call, args: argparse.Namespace) -> bool:
    """Ring, answer, and wait until the call ends; True when the call was answered."""
    print(f"Incoming call from {call.remote_uri}")
    client = call.client
    host = client.local_address.host
    # Our SDP: an answer to the caller's offer (a late-offer INVITE has none: answer() offers)
    sdp = (
        SDPBody.create_answer(
            offer=call.offer,
            origin_username=args.user,
            origin_address=host,
            connection_address=host,
        )
        if call.offer is not None
        else None
    )
    if sdp is not None and all(media.port == 0 for media in sdp.media):
        call.reject(488, "Not Acceptable Here")  # not one codec in common
        print("  rejected: no codec in common (488)")
        return False
    if args.early_media and sdp is not None:
        call.ring(183, body=sdp)  # 183 Session Progress: early media, with our SDP
        print("  sent 183 Session Progress (early media)")
    else:
        call.ring()  # 180 Ringing
        print("  sent 180 Ringing")
    await trio.sleep(args.ring_time)
    if call.ended:  # the caller gave up (CANCEL) while it rang
        print(f"  the caller hung up before the answer ({call.ended_by})")
        return False
    call.answer(body=sdp)  # 200 OK
    print("  answered (200 OK)")
    ended_by = await call.wait_ended()
    print(f"  call ended ({ended_by})")
    return True


async def main(args: argparse.Namespace) -> None:
    aor = sip_uri(args, args.user)
    auth = Auth.Digest(username=args.user, password=args.password, realm=args.realm)
    answered = 0

    async with AsyncClient(
        local_host=args.local_host,
        local_port=args.local_port,
        transport=args.transport,
        auth=auth,
    ) as client:
        response = await client.register(aor=aor)
        check(response.status_code == 200, f"{args.user} registered")

        try:
            async with trio.open_nursery() as nursery:

                async def handle(call: Call) -> None:
                    nonlocal answered
                    if await answer(call, args):
                        answered += 1
                        if args.calls and answered >= args.calls:
                            nursery.cancel_scope.cancel()  # done: stop listening

                async def stop_on_signal(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
                    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                        task_status.started()  # Ctrl-C is ours from here on
                        async for _ in signals:
                            nursery.cancel_scope.cancel()

                await nursery.start(stop_on_signal)
                nursery.cancel_scope.deadline = trio.current_time() + (args.duration or math.inf)
                print(f"Waiting for calls to {aor} (Ctrl-C to stop)")
                # Incoming calls arrive here; each gets its own task
                async for call in client.calls():
                    nursery.start_soon(handle, call)
        finally:
            # Remove the registration before leaving (after a failure too)
            with trio.move_on_after(5):
                response = await client.unregister(aor)
                print(f"Unregistered: {response.status_code} {response.reason_phrase}")

    print(f"{answered} call(s) answered")
    if args.calls:
        check(answered >= args.calls, f"{args.calls} call(s) answered")


if __name__ == "__main__":
    parser = make_parser(__doc__, default_user="2222", default_password="2222xxx")
    parser.add_argument("--early-media", action="store_true", help="183 with SDP, not 180")
    parser.add_argument("--ring-time", type=float, default=1, help="s before answering (1)")
    parser.add_argument("--calls", type=int, default=0, help="stop after N calls (0: never)")
    parser.add_argument("--duration", type=float, default=0, help="stop after N s (0: never)")
    run(main, parse_args(parser))
