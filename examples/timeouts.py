"""Timeouts: a per-request ``timeout=`` (guide: "Timeouts Personalizados").

First an OPTIONS to the server with ``timeout=10`` (answered well within it), then one to
a peer that never answers (a local socket that reads nothing), which raises
``sipx.TimeoutError`` after ``--timeout`` seconds (default 2) instead of hanging. Without
``timeout=`` a request gives up after the transaction's own timer (32 s by default).
"""

from __future__ import annotations

import socket
import time

from _common import check, fail, make_parser, parse_args, run, sip_uri

import sipx
from sipx import Auth, Client


def silent_peer(transport: str) -> socket.socket:
    """A socket on 127.0.0.1 that accepts SIP and never answers."""
    if transport == "TCP":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen()  # connections are accepted by the kernel; nobody reads them
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
    return sock


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--timeout", type=float, default=2, help="seconds (default 2)")
    args = parse_args(parser)

    # (credentials in case the server challenges OPTIONS, as Asterisk does)
    auth = Auth.Digest(username=args.user, password=args.password, realm=args.realm)

    with Client(
        local_host=args.local_host,
        local_port=args.local_port,
        transport=args.transport,
        auth=auth,
    ) as client:
        # A timeout for one request
        response = client.options(
            uri=sip_uri(args),
            host=args.host,
            port=args.port,
            timeout=10.0,  # 10 seconds
        )
        print(f"OPTIONS {sip_uri(args)}: {response.status_code} {response.reason_phrase}")
        check(response.status_code == 200, "answered within the timeout")

        # A peer that never answers: the request fails after the timeout
        with silent_peer(args.transport) as peer:
            host, port = peer.getsockname()
            started = time.monotonic()
            try:
                client.options(uri=f"sip:{host}:{port}", timeout=args.timeout)
            except sipx.TimeoutError as exc:
                elapsed = time.monotonic() - started
                print(f"Timed out after {elapsed:.1f} s: {exc}")
                check(elapsed < args.timeout + 2, "gave up at the timeout")
            else:
                fail("a peer that never answers must time out")


if __name__ == "__main__":
    run(main)
