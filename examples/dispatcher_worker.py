"""A worker behind a SIP load balancer: answer every call that reaches this process.

One Python process runs on one core. To serve more calls, run several of these, each on
its own port (one per core, on as many machines as needed), and put a load balancer
in front that spreads the calls over them: Kamailio's ``dispatcher`` module (see
docs/SCALING.md and tests/integration/peers/kamailio-dispatcher.cfg). The balancer probes
each worker with OPTIONS, which sipx answers with 200 on its own, and stops sending calls
to a worker that no longer answers. A worker does not register anywhere: the balancer
knows the workers' addresses from its list file.

    # two workers on this machine
    python examples/dispatcher_worker.py --local-host 127.0.0.1 --local-port 5081 &
    python examples/dispatcher_worker.py --local-host 127.0.0.1 --local-port 5082 &
    # Kamailio on 5070, dispatching to them
    mkdir -p /tmp/ds
    printf '1 sip:127.0.0.1:5081\\n1 sip:127.0.0.1:5082\\n' > /tmp/ds/dispatcher.list
    kamailio -f tests/integration/peers/kamailio-dispatcher.cfg -DD -E -Y /tmp/ds -w /tmp/ds \\
        -A SIP_PORT=5070 -A 'DS_LIST="/tmp/ds/dispatcher.list"'
    # calls to any user at the balancer are answered by the workers in turn
    sipp -sf tests/integration/peers/sipp/uac_call_rr.xml -s 100 -r 10 -m 100 127.0.0.1:5070

Each call is answered at once with 200 OK and held until the caller hangs up
(``--hangup-after S``: the worker sends BYE after S seconds); both go through the balancer,
which record-routes. By default sipx carries the call's audio (silence: nothing is played);
``--no-media`` answers with an SDP whose stream is ``inactive`` and opens no RTP socket
(signalling-only load tests). A line is printed per call unless ``--quiet``; on SIGTERM or
Ctrl-C the worker ends its calls (BYE), prints how many calls it answered and exits 0.
Each call is served in a task of its own (``client.calls()``), except with ``--quiet`` and
no ``--hangup-after``: then there is nothing to do per call but answer it, which a plain
INVITE handler does as the INVITE arrives (``--task-per-call`` keeps the tasks).

Once listening, the worker tunes Python's garbage collector as a long-running server
should (``--gc-default`` leaves it as Python sets it): what exists after start-up (modules,
classes, the client) is frozen out of every later collection, and the first threshold is
raised so that the few dozen short-lived objects of each call do not start a collection
every 700 allocations. The collector stays on: cycles are still freed. See docs/SCALING.md.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import signal
import sys
from dataclasses import dataclass
from typing import Any

import trio

from sipx import AsyncClient, Call, SDPBody, SIPError


def no_media_sdp(call: Call, host: str) -> SDPBody:
    """An SDP that accepts the call but carries no audio (a=inactive, discard port 9)."""
    if call.offer is not None:
        return SDPBody.create_answer(
            call.offer,
            origin_username="worker",
            origin_address=host,
            connection_address=host,
            port=9,
            direction="inactive",
        )
    spec = {"media": "audio", "port": 9, "codecs": [{"payload": 0}], "direction": "inactive"}
    return SDPBody.create_offer("-", "worker", host, host, [spec])


def tune_gc() -> None:
    """A server's garbage collector: start-up objects frozen, young collections rarer."""
    gc.collect()
    gc.freeze()  # never garbage: later collections (full ones above all) skip them
    gc.set_threshold(50_000, 20, 10)  # Python's default is (700, 10, 10)


@dataclass
class Tally:
    """What this worker did: counted when it happens, so a count is right at any moment."""

    answered: int = 0


def answer_call(call: Call, number: int, args: argparse.Namespace, tally: Tally) -> bool:
    """Answer ``call`` (200 OK); False when it could not be answered."""
    if call.ended:  # cancelled before we got to it
        return False
    host = call.client.local_address.host
    try:
        call.answer(body=no_media_sdp(call, host) if args.no_media else None)
    except SIPError as exc:  # e.g. no free RTP port: sipx refused the call with 503
        print(f"{args.name}: call {number} not answered: {exc}")
        return False
    tally.answered += 1
    if not args.quiet:
        print(f"{args.name}: call {number} from {call.remote_uri} answered ({call.call_id})")
    return True


async def serve_call(call: Call, number: int, args: argparse.Namespace, tally: Tally) -> None:
    """Answer one call and hold it until it ends."""
    say = (lambda text: None) if args.quiet else print
    if not answer_call(call, number, args, tally):
        return
    if args.hangup_after:
        with trio.move_on_after(args.hangup_after):
            await call.wait_ended()
        if not call.ended:
            try:
                await call.bye()
            except SIPError as exc:  # no answer to our BYE: the call is over for us anyway
                print(f"{args.name}: call {number}: BYE failed: {exc}")
    ended_by = await call.wait_ended()
    say(f"{args.name}: call {number} ended ({ended_by})")


async def main(args: argparse.Namespace) -> None:
    tally = Tally()
    async with (
        AsyncClient(
            local_host=args.local_host,
            local_port=args.local_port,
            transport=args.transport,
            user_agent=f"sipx-worker/{args.name}",
        ) as client,
        trio.open_nursery() as nursery,
    ):

        async def stop_on_signal(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                task_status.started()
                async for _ in signals:
                    nursery.cancel_scope.cancel()  # leaving the client BYEs our calls

        await nursery.start(stop_on_signal)
        address = client.local_address
        if not args.gc_default:
            tune_gc()
        print(f"{args.name}: listening on {address.host}:{address.port}", flush=True)
        numbers = itertools.count(1)
        if args.quiet and not args.hangup_after and not args.task_per_call:
            # Nothing to do per call but answer it: a plain INVITE handler does that as each
            # INVITE arrives, with no task of ours per call (cheaper at high call rates).
            def on_invite(call: Call) -> None:
                answer_call(call, next(numbers), args, tally)

            client.on_request("INVITE", on_invite)
            await trio.sleep_forever()
        async for call in client.calls():
            nursery.start_soon(serve_call, call, next(numbers), args, tally)
    print(f"{args.name}: {tally.answered} call(s) answered", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    description, _, epilog = (__doc__ or "").partition("\n\n")
    parser = argparse.ArgumentParser(
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--local-host", default="0.0.0.0", help="address to bind (0.0.0.0)")
    parser.add_argument("--local-port", type=int, default=5080, help="port to bind (5080)")
    parser.add_argument(
        "--transport",
        type=str.upper,
        choices=("UDP", "TCP"),
        default="UDP",
        help="for the requests it sends (UDP); it listens on UDP and TCP",
    )
    parser.add_argument("--name", default=None, help="label in the output (worker-PORT)")
    parser.add_argument(
        "--hangup-after", type=float, default=0, help="send BYE after S seconds (0: never)"
    )
    parser.add_argument("--no-media", action="store_true", help="answer without audio")
    parser.add_argument("--quiet", action="store_true", help="no line per call")
    parser.add_argument(
        "--task-per-call",
        action="store_true",
        help="serve each call in a task even with --quiet and no --hangup-after",
    )
    parser.add_argument(
        "--gc-default", action="store_true", help="leave the garbage collector untuned"
    )
    args = parser.parse_args(argv)
    if args.name is None:
        args.name = f"worker-{args.local_port}"
    return args


if __name__ == "__main__":
    try:
        trio.run(main, parse_args())
    except KeyboardInterrupt:  # a second Ctrl-C while the calls were being ended
        sys.exit(130)
