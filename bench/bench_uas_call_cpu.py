"""CPU per call answered by an AsyncClient UAS (INVITE, 200, ACK, BYE), in one process.

Run from the repository root::

    .venv/bin/python bench/bench_uas_call_cpu.py          # options: --count N --repeat R
    .venv/bin/python bench/bench_uas_call_cpu.py --no-media [--handler]
    .venv/bin/python bench/bench_uas_call_cpu.py --profile   # cProfile of one round

The in-process twin of ``bench_uas_cpu.py`` for calls, shaped like SIPp's
``uac_call_rr.xml`` against ``examples/dispatcher_worker.py``: an :class:`sipx.AsyncClient`
on a :class:`sipx.testing.MemoryNetwork` takes every call from ``client.calls()`` into a
task of its own that answers it (``call.answer()``: sipx's media, real RTP/RTCP sockets on
127.0.0.1; ``--no-media``: an ``a=inactive`` answer made with ``SDPBody.create_answer``
like the worker's, no socket) and waits for its end (``--handler``: a plain INVITE handler
answers each call, no task: the worker's way with ``--quiet``). A raw endpoint of the same network
places calls 50 at a time: INVITE with a PCMU offer (a new Call-ID, From tag and branch
each), reads the 200 (the To tag), sends ACK and BYE at once, reads the 200 to the BYE.
The figure is this process's CPU time (``time.process_time``) per call, the best of
``--repeat`` rounds of ``--count`` calls, garbage collector off; it includes the raw
endpoint's few byte operations and the memory network's delivery (the same before and
after a change). Also printed: the SIP datagrams the UAS sent per call (the memory network's
log; RTP goes over real sockets and is not counted). Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sipx
from examples.dispatcher_worker import no_media_sdp  # the worker's SDP: the same calls
from sipx.testing import MemoryNetwork

_PEER = ("127.0.0.1", 5999)
_SDP = (
    "v=0\r\no=load 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
_INVITE = (
    "INVITE sip:service@{target} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-{i}-1;rport\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:load@127.0.0.1:5999>;tag={i}SIPpTag01\r\n"
    "To: <sip:service@{target}>\r\n"
    "Call-ID: {i}-bench@127.0.0.1\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:load@127.0.0.1:5999>\r\n"
    "Content-Type: application/sdp\r\n"
    f"Content-Length: {len(_SDP)}\r\n\r\n{_SDP}"
)
_IN_DIALOG = (
    "{method} sip:service@{target} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-{i}-{seq};rport\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:load@127.0.0.1:5999>;tag={i}SIPpTag01\r\n"
    "To: <sip:service@{target}>;tag={tag}\r\n"
    "Call-ID: {i}-bench@127.0.0.1\r\n"
    "CSeq: {seq} {method}\r\n"
    "Content-Length: 0\r\n\r\n"
)
_BATCH = 50


def _field(data: bytes, name: bytes) -> bytes:
    """The value of header ``name`` (as the UAS writes it) in ``data``."""
    start = data.index(b"\r\n" + name + b": ") + len(name) + 4
    return data[start : data.index(b"\r\n", start)]


async def _serve(
    client: sipx.AsyncClient, media: bool, nursery: trio.Nursery, handler: bool = False
) -> None:
    """The worker's loop: each call in a task that answers it and waits for its end; with
    ``handler``, the worker's ``--quiet`` way: a plain INVITE handler answers each call."""
    host = client.local_address.host
    if handler:

        def on_invite(call: sipx.Call) -> None:
            call.answer(body=None if media else no_media_sdp(call, host))

        client.on_request("INVITE", on_invite)
        await trio.sleep_forever()

    async def serve_call(call: sipx.Call) -> None:
        if call.ended:
            return
        call.answer(body=None if media else no_media_sdp(call, host))
        await call.wait_ended()

    async for call in client.calls():
        nursery.start_soon(serve_call, call)


async def _calls(peer: object, address: tuple[str, int], first: int, count: int) -> None:
    host, port = address
    target = f"{host}:{port}"
    send = peer.send  # type: ignore[attr-defined]
    receive = peer.receive  # type: ignore[attr-defined]
    for start in range(first, first + count, _BATCH):
        numbers = range(start, min(start + _BATCH, first + count))
        for i in numbers:
            send(_INVITE.format(target=target, i=i).encode(), address)
        tags: dict[bytes, bytes] = {}
        while len(tags) < len(numbers):
            data, _ = await receive()
            if data.startswith(b"SIP/2.0 200") and _field(data, b"CSeq").endswith(b"INVITE"):
                to = _field(data, b"To")
                tags[_field(data, b"Call-ID")] = to[to.index(b";tag=") + 5 :]
        for call_id, tag in tags.items():
            number = call_id.split(b"-", 1)[0].decode()
            fields = {"target": target, "i": number, "tag": tag.decode()}
            send(_IN_DIALOG.format(method="ACK", seq=1, **fields).encode(), address)
            send(_IN_DIALOG.format(method="BYE", seq=2, **fields).encode(), address)
        ended = 0
        while ended < len(numbers):
            data, _ = await receive()
            if data.startswith(b"SIP/2.0 200") and _field(data, b"CSeq").endswith(b"BYE"):
                ended += 1


async def _run(
    count: int, repeat: int, media: bool, profile: bool, handler: bool = False
) -> tuple[list[float], list[float]]:
    network = MemoryNetwork(seed=1)
    rounds: list[float] = []
    sent: list[float] = []  # SIP datagrams the UAS sent per call, per round
    async with (
        sipx.AsyncClient(
            "127.0.0.1", 0, network=network, limits=sipx.Limits(max_server_transactions=10**7)
        ) as client,
        network.socket(_PEER) as peer,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(_serve, client, media, nursery, handler)
        address = next(a for a in network.bound_addresses if a != _PEER)
        await _calls(peer, address, 0, _BATCH)  # warm-up
        gc.collect()
        gc.disable()
        for number in range(repeat):
            network.clear_log()
            profiler = cProfile.Profile() if profile and number == repeat - 1 else None
            started = time.process_time()
            if profiler is not None:
                profiler.enable()
            await _calls(peer, address, (number + 1) * 10**6, count)
            if profiler is not None:
                profiler.disable()
            rounds.append((time.process_time() - started) / count * 1e6)
            sent.append(sum(1 for d in network.log if d.source == address) / count)
            if profiler is not None:
                pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
        gc.enable()
        nursery.cancel_scope.cancel()
    return rounds, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="calls per round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (the best is kept)")
    parser.add_argument("--no-media", action="store_true", help="answer a=inactive, no RTP")
    parser.add_argument("--profile", action="store_true", help="cProfile the last round")
    parser.add_argument(
        "--handler", action="store_true", help="answer in a plain INVITE handler, no task"
    )
    args = parser.parse_args()
    rounds, sent = trio.run(
        _run, args.count, args.repeat, not args.no_media, args.profile, args.handler
    )
    shown = ", ".join(f"{r:.0f}" for r in rounds)
    media = "without media" if args.no_media else "with sipx media"
    media += ", in an INVITE handler" if args.handler else ", a task per call"
    print(f"Python {sys.version.split()[0]}, sipx from {Path(sipx.__file__).parent}")
    print(f"CPU per call answered ({media}): {min(rounds):.0f} µs (best of {shown} µs)")
    print(f"SIP datagrams sent by the UAS per call: {max(sent):.2f}")


if __name__ == "__main__":
    main()
