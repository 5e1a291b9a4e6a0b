"""Stay registered: automatic re-registration in the background (guide: "Com Auto
Re-registration").

The guide refreshes every 300 s and waits 10 minutes; ``--interval`` and ``--duration``
shorten that (``--interval 1 --duration 3`` shows a few refreshes in seconds). An event
handler prints each REGISTER that reaches 200, so the refreshes are visible.
"""

from __future__ import annotations

import time

from _common import check, make_parser, parse_args, run, sip_uri

from sipx import Auth, Client, Events, event_handler
from sipx._types import RequestContext, Response


class RegistrationLog(Events):
    """Counts the REGISTER requests (not the final unregister) that got 200 OK."""

    def __init__(self) -> None:
        super().__init__()
        self.successes = 0

    @event_handler("response")
    def on_response(self, response: Response, context: RequestContext) -> Response:
        request = context.request
        refresh = request.method == "REGISTER" and request.headers.get("Expires") != "0"
        if refresh and response.status_code == 200:
            self.successes += 1
            print(f"REGISTER -> 200 OK (#{self.successes})")
        return response


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--interval", type=float, default=300, help="refresh period, s (default 300)"
    )
    parser.add_argument(
        "--duration", type=float, default=600, help="how long to stay, s (default 600)"
    )
    args = parse_args(parser)
    aor = sip_uri(args, args.user)

    auth = Auth.Digest(username=args.user, password=args.password, realm=args.realm)
    log = RegistrationLog()

    with Client(
        local_host=args.local_host,
        local_port=args.local_port,
        transport=args.transport,
        auth=auth,
        events=log,
    ) as client:
        # Initial registration
        response = client.register(aor=aor)
        if response.status_code == 401:
            response = client.retry_with_auth(response)
        check(response.status_code == 200, f"{args.user} registered")

        # Enable automatic re-registration (a background task of the client)
        client.enable_auto_reregister(aor=aor, interval=args.interval)
        print(f"Registered with auto-renewal every {args.interval:g} s")

        try:
            # Do other things... the refreshes happen by themselves
            time.sleep(args.duration)
            refreshes = log.successes - 1
        finally:
            # Stop refreshing and remove the binding (unregister() does both), Ctrl-C too
            response = client.unregister(aor)

    print(f"{refreshes} automatic refresh(es) in {args.duration:g} s")
    if args.duration >= args.interval * 1.5:
        check(refreshes >= 1, "the registration was refreshed automatically")
    check(response.status_code == 200, f"{args.user} unregistered")


if __name__ == "__main__":
    run(main)
