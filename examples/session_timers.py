"""Session timers (RFC 4028) and UPDATE (RFC 3311): 1111 calls 2222 through the server, the
session is refreshed while the call lasts, then an UPDATE puts the call on hold.

Both users run here, each in its own AsyncClient. They ask for a short session interval
(``session_expires=``, ``--interval``, 4 s by default) so that the refreshes come within
seconds: the callee lets the caller refresh (``refresher=uac``), and the caller sends an
UPDATE without a body at half the interval. Each refresh is printed as it is answered;
after ``--refreshes`` of them, ``call.update()`` offers our SDP as sendonly (hold without a
re-INVITE) and the caller hangs up. RFC 4028 wants intervals of 90 s or more; the short
one is for the demonstration (``min_se`` is lowered with it).
"""

from __future__ import annotations

import argparse

import trio
from _common import check, make_parser, parse_args, run, sip_uri

from sipx import AsyncClient, Auth, Call, Events, RequestContext, Response


async def main(args: argparse.Namespace) -> None:
    refreshes: list[Response] = []

    def on_response(response: Response, context: RequestContext) -> None:
        # A refresh: an UPDATE without a body, answered 2xx with the session interval.
        request = context.request
        if request.method == "UPDATE" and not request.content and response.status_code == 200:
            refreshes.append(response)
            expires = response.headers.get("Session-Expires")
            print(f"Refresh {len(refreshes)}: UPDATE -> 200 (Session-Expires: {expires})")

    events = Events()
    events.on("response", on_response)
    options = {
        "local_host": args.local_host,
        "local_port": 0,  # any free port, for each of the two clients
        "transport": args.transport,
        "session_expires": args.interval,
        "min_se": min(90, args.interval),
    }
    caller_auth = Auth.Digest(args.user, args.password, realm=args.realm)
    callee_auth = Auth.Digest(args.callee, args.callee_password, realm=args.realm)
    async with (
        AsyncClient(auth=caller_auth, events=events, **options) as caller,
        AsyncClient(auth=callee_auth, **options) as callee,
    ):
        answered: list[Call] = []

        def answer(call: Call) -> None:
            answered.append(call)
            call.answer()

        callee.on_request("INVITE", answer)
        for client, user in ((caller, args.user), (callee, args.callee)):
            response = await client.register(sip_uri(args, user))
            check(response.status_code == 200, f"{user} registered")
        try:
            call = await caller.call(sip_uri(args, args.callee), timeout=10)
            check(call.established, f"{args.callee} answered")
            refresher = args.user if call.session_refresher == "local" else args.callee
            print(f"Session interval: {call.session_expires} s, refreshed by {refresher}")

            with trio.move_on_after(args.interval * (args.refreshes + 1)):
                while len(refreshes) < args.refreshes:
                    await trio.sleep(0.05)
            check(len(refreshes) >= args.refreshes, f"{args.refreshes} refreshes by UPDATE")

            assert call.local_sdp is not None
            response = await call.update(call.local_sdp.with_direction("sendonly"))
            [incoming] = answered
            held = incoming.remote_sdp is not None and incoming.remote_sdp.direction == "sendonly"
            check(response.status_code == 200 and held, "the call was put on hold by UPDATE")

            bye = await call.bye()
            check(bye.status_code == 200, f"BYE answered {bye.status_code} {bye.reason_phrase}")
            print(f"The callee's call ended by: {await incoming.wait_ended()}")
        finally:
            for client, user in ((caller, args.user), (callee, args.callee)):
                await client.unregister(sip_uri(args, user))


if __name__ == "__main__":
    parser = make_parser(__doc__)
    parser.add_argument("--callee", default="2222", help="the user called (default 2222)")
    parser.add_argument("--callee-password", default="2222xxx", help="(default 2222xxx)")
    parser.add_argument(
        "--interval", type=int, default=4, help="session interval in seconds (default 4)"
    )
    parser.add_argument(
        "--refreshes", type=int, default=2, help="refreshes to see before the hold (default 2)"
    )
    run(main, parse_args(parser))
