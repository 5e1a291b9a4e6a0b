"""The floor for a call answered in pure Python on trio: a bare UAS with no SIP stack.

Not a user agent: the least work a trio program in Python does per call SIPp places
(``uac_call_rr.xml``: INVITE with an offer, 200, ACK, BYE, 200), so that sipx's calls/s can
be read against what this interpreter and trio reach on the same machine
(``bench_dispatcher.py --floor``). It reads datagrams with the same drain loop as sipx's
UDP transport (non-blocking ``recvfrom`` until it would block, then
``trio.lowlevel.wait_readable``), splits each into lines, answers an INVITE with a 200
(its Via, From, Call-ID and CSeq lines copied, a To tag added, a Contact, a fixed SDP
answer), forgets the ACK and answers a BYE with a 200; a dict holds the calls up.
``--task-per-call`` adds what every AsyncClient answering calls has: a trio task per call
that waits for the call's end (an Event set by the BYE). No retransmission, no parsing into
objects, no transactions, no checks: nothing a SIP stack must do.

    python bench/floor_uas.py --local-port 5090 [--task-per-call]

Prints ``listening on HOST:PORT`` when ready and, on SIGTERM, ``N call(s) answered``.
"""

from __future__ import annotations

import argparse
import itertools
import signal
import socket

import trio

_SDP = (
    b"v=0\r\no=floor 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=inactive\r\n"
)
_COPIED = (b"via:", b"from:", b"call-id:", b"cseq:", b"v:", b"f:", b"i:")


def _response(lines: list[bytes], to_tag: bytes | None, extra: bytes, body: bytes) -> bytes:
    """A 200 to the request split into ``lines``: its Via, From, Call-ID and CSeq copied."""
    out = [b"SIP/2.0 200 OK"]
    for line in lines[1:]:
        if not line:
            break
        lower = line[:9].lower()
        if lower.startswith(_COPIED):
            out.append(line)
        elif lower.startswith((b"to:", b"t:")):
            out.append(line + b";tag=" + to_tag if to_tag is not None else line)
    out.append(extra + b"Content-Length: %d\r\n" % len(body))
    return b"\r\n".join(out) + b"\r\n" + body


async def serve(args: argparse.Namespace) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind((args.local_host, args.local_port))
    contact = b"Contact: <sip:floor@%s:%d>\r\n" % (args.local_host.encode(), args.local_port)
    invite_extra = contact + b"Content-Type: application/sdp\r\n"
    calls: dict[bytes, trio.Event | None] = {}
    tags = itertools.count(1)
    answered = 0

    async def hold(ended: trio.Event) -> None:
        await ended.wait()

    async with trio.open_nursery() as nursery:

        async def stop_on_signal() -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()

        nursery.start_soon(stop_on_signal)
        print(f"floor: listening on {args.local_host}:{args.local_port}", flush=True)
        try:
            while True:
                for _ in range(256):
                    try:
                        data, source = sock.recvfrom(65535)
                    except BlockingIOError:
                        break
                    lines = data.split(b"\r\n")
                    method = lines[0][:3]
                    call_id = b""
                    for line in lines:
                        head = line[:8].lower()
                        if head == b"call-id:" or head[:2] == b"i:":
                            call_id = line.partition(b":")[2].strip()
                            break
                    if method == b"INV":
                        if call_id not in calls:
                            ended = trio.Event() if args.task_per_call else None
                            calls[call_id] = ended
                            if ended is not None:
                                nursery.start_soon(hold, ended)
                            answered += 1
                        tag = b"%d" % next(tags)
                        sock.sendto(_response(lines, tag, invite_extra, _SDP), source)
                    elif method == b"BYE":
                        ended = calls.pop(call_id, None)
                        if ended is not None:
                            ended.set()
                        sock.sendto(_response(lines, None, b"", b""), source)
                else:
                    await trio.lowlevel.checkpoint()
                    continue
                await trio.lowlevel.wait_readable(sock.fileno())
        finally:
            sock.close()
            print(f"floor: {answered} call(s) answered", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--local-host", default="127.0.0.1")
    parser.add_argument("--local-port", type=int, default=5090)
    parser.add_argument("--task-per-call", action="store_true", help="a trio task per call")
    trio.run(serve, parser.parse_args())


if __name__ == "__main__":
    main()
