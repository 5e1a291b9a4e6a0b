"""Send an instant message (SIP MESSAGE, RFC 3428) from 1111 to 2222 (guide: "MESSAGE").

A MESSAGE is delivered only to a registered user, so by default this script also starts
the receiver: a second client registered as ``--to`` (2222) that prints what arrives.
With ``--no-receiver`` it only sends (to a softphone already registered as ``--to``).
"""

from __future__ import annotations

import threading

from _common import check, make_parser, parse_args, run, sip_uri

from sipx import Auth, Client, IncomingRequest


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--to", default="2222", help="recipient (default 2222)")
    parser.add_argument("--to-password", default="2222xxx", help="its password (2222xxx)")
    parser.add_argument("--text", default="Hello from SIPX!", help="the message")
    parser.add_argument("--no-receiver", action="store_true", help="do not run the receiver")
    args = parse_args(parser)

    # The receiver: registered as --to; its handler runs for every MESSAGE it gets, and
    # returning without responding sends the default 200 OK
    received: list[str] = []
    arrived = threading.Event()

    def on_message(incoming: IncomingRequest) -> None:
        print(f"[{args.to}] received from {incoming.request.from_.uri}: {incoming.text}")
        received.append(incoming.text)
        arrived.set()

    receiver = None
    if not args.no_receiver:
        receiver = Client(
            local_host=args.local_host,
            local_port=0,  # any free port
            transport=args.transport,
            auth=Auth.Digest(username=args.to, password=args.to_password, realm=args.realm),
        )
        receiver.on_request("MESSAGE", on_message)
        response = receiver.register(aor=sip_uri(args, args.to))
        check(response.status_code == 200, f"receiver {args.to} registered")

    try:
        # The sender
        auth = Auth.Digest(username=args.user, password=args.password, realm=args.realm)
        with Client(
            local_host=args.local_host,
            local_port=args.local_port,
            transport=args.transport,
            auth=auth,
        ) as client:
            # Send the message
            response = client.message(to_uri=sip_uri(args, args.to), text=args.text)

            # Authentication if needed (a client with auth= answers 401/407 by itself)
            if response.status_code in (401, 407):
                response = client.retry_with_auth(response)

            # 200 OK when the recipient took it; a PBX that stores and forwards (Asterisk)
            # says 202 Accepted
            if 200 <= response.status_code < 300:
                print(f"Message sent ({response.status_code} {response.reason_phrase})")
            else:
                print(f"Failed: {response.status_code} {response.reason_phrase}")
            check(200 <= response.status_code < 300, f"MESSAGE to {args.to} accepted")

        if receiver is not None:
            arrived.wait(timeout=5)
            check(received == [args.text], f"{args.to} received {args.text!r}")
    finally:
        if receiver is not None:
            receiver.unregister(sip_uri(args, args.to))
            receiver.close()


if __name__ == "__main__":
    run(main)
