"""The asynchronous client on trio: register, OPTIONS, and automatic re-registration in
the background (guide: "Cliente Assíncrono" and "Auto Re-registration Assíncrono").

sipx's AsyncClient runs on trio, so the guide's ``asyncio.run(main())`` is
``trio.run(main)`` and ``asyncio.sleep`` is ``trio.sleep``. The guide refreshes every
300 s and waits 10 minutes; ``--interval`` and ``--duration`` shorten that.
"""

from __future__ import annotations

import argparse

import trio
from _common import check, make_parser, parse_args, run, sip_uri

from sipx import AsyncClient, Auth, Events, RequestContext, Response


async def main(args: argparse.Namespace) -> None:
    aor = sip_uri(args, args.user)
    auth = Auth.Digest(username=args.user, password=args.password, realm=args.realm)

    # Count the successful REGISTERs, to see the background refreshes (an event handler
    # added as a plain function; AsyncClient also accepts async handlers)
    registered = 0

    def on_response(response: Response, context: RequestContext) -> None:
        nonlocal registered
        if context.request.method == "REGISTER" and response.status_code == 200:
            registered += 1

    events = Events()
    events.on("response", on_response)

    async with AsyncClient(
        local_host=args.local_host,
        local_port=args.local_port,
        transport=args.transport,
        auth=auth,
        events=events,
    ) as client:
        # Registration
        response = await client.register(aor=aor)
        if response.status_code == 401:
            response = await client.retry_with_auth(response)

        print(f"Status: {response.status_code}")
        check(response.status_code == 200, f"{args.user} registered")

        try:
            # OPTIONS
            response = await client.options(uri=sip_uri(args), host=args.host, port=args.port)
            print(f"OPTIONS: {response.status_code}")
            check(response.status_code == 200, "OPTIONS answered 200")

            # Enable automatic re-registration (a task in the client's nursery)
            await client.enable_auto_reregister(aor=aor, interval=args.interval)
            print("Auto re-registration enabled")

            # Wait (the re-registration happens in the background)
            await trio.sleep(args.duration)
            refreshes = registered - 1
        finally:
            # Stop refreshing and remove the binding (also after a failure or Ctrl-C)
            response = await client.unregister(aor)

    print(f"{refreshes} automatic refresh(es) in {args.duration:g} s")
    if args.duration >= args.interval * 1.5:
        check(refreshes >= 1, "the registration was refreshed automatically")
    check(response.status_code == 200, f"{args.user} unregistered")


if __name__ == "__main__":
    parser = make_parser(__doc__)
    parser.add_argument(
        "--interval", type=float, default=300, help="refresh period, s (default 300)"
    )
    parser.add_argument(
        "--duration", type=float, default=600, help="how long to stay, s (default 600)"
    )
    # Run it
    run(main, parse_args(parser))
