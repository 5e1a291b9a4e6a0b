"""Watch a voicemail box: SUBSCRIBE to message-summary (RFC 3842) and print every update.

Subscribes to the message summary of ``--mailbox`` (by default our own user) at
``--server``, prints the counts each NOTIFY reports, and unsubscribes after ``--count``
NOTIFYs or ``--duration`` seconds. ``sipx serve --mwi 1111=2/8`` sets the counts it
reports; Asterisk and Kamailio report their voicemail's.

The subscription refreshes itself before it expires; a NOTIFY whose body is not a valid
summary is printed as an error, the watch goes on.
"""

from __future__ import annotations

import trio
from _common import check, make_parser, parse_args, run, sip_uri

from sipx import AsyncClient, Auth


async def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--mailbox", default=None, help="whose voicemail (default: --user)")
    parser.add_argument("--count", type=int, default=1, help="NOTIFYs to print (default 1)")
    parser.add_argument(
        "--duration", type=float, default=30.0, help="seconds to watch at most (default 30)"
    )
    args = parse_args(parser)
    mailbox = sip_uri(args, args.mailbox or args.user)

    auth = Auth.Digest(username=args.user, password=args.password, realm=args.realm)
    client = AsyncClient(args.local_host, args.local_port, transport=args.transport, auth=auth)
    async with client:
        sub = await client.subscribe(mailbox, "message-summary", expires=600)
        assert sub.response is not None
        print(f"SUBSCRIBE {mailbox}: {sub.response.status_code} {sub.response.reason_phrase}")
        check(sub.response.is_success, "the subscription was accepted")
        seen = 0
        with trio.move_on_after(args.duration):
            async for notification in sub:
                summary = notification.summary
                if summary is not None:
                    waiting = "yes" if summary.waiting else "no"
                    print(
                        f"Messages waiting: {waiting} ({summary.new} new, {summary.old} old)"
                        f" [{notification.state}]"
                    )
                elif notification.error is not None:
                    print(f"Unreadable summary: {notification.error}")
                else:
                    print(f"NOTIFY without a summary [{notification.state}]")
                seen += 1
                if seen >= args.count:
                    break
        await sub.unsubscribe()
        print(f"Subscription {sub.state} ({sub.reason})")
        check(seen >= args.count, f"{args.count} message summaries received")


if __name__ == "__main__":
    run(main)
