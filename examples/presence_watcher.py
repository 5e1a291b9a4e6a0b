"""Watch a buddy's presence: SUBSCRIBE to presence (RFC 3856) and print open/closed.

Subscribes to the presence of ``--buddy`` (default 2222) at ``--server`` and prints the
basic status (and note) of every NOTIFY's PIDF document, until ``--count`` NOTIFYs or
``--duration`` seconds. ``sipx serve`` reports a user open while registered, closed
otherwise. With ``--toggle`` the script also plays the buddy: it registers the buddy
(``--buddy-password``, default the guide's) and unregisters it, so the status changes.
"""

from __future__ import annotations

import trio
from _common import check, make_parser, parse_args, run, sip_uri

from sipx import AsyncClient, Auth


async def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--buddy", default="2222", help="whose presence (default 2222)")
    parser.add_argument("--buddy-password", default=None, help="(default: BUDDYxxx)")
    parser.add_argument("--toggle", action="store_true", help="register/unregister the buddy")
    parser.add_argument("--count", type=int, default=1, help="NOTIFYs to print (default 1)")
    parser.add_argument(
        "--duration", type=float, default=30.0, help="seconds to watch at most (default 30)"
    )
    args = parse_args(parser)
    if args.toggle:
        args.count = max(args.count, 3)  # closed, open, closed
    buddy = sip_uri(args, args.buddy)

    def client(user: str, password: str, port: int = 0) -> AsyncClient:
        auth = Auth.Digest(username=user, password=password, realm=args.realm)
        return AsyncClient(args.local_host, port, transport=args.transport, auth=auth)

    states: list[str] = []
    async with client(args.user, args.password, args.local_port) as watcher:
        sub = await watcher.subscribe(buddy, "presence", expires=600)
        assert sub.response is not None
        print(f"SUBSCRIBE {buddy}: {sub.response.status_code} {sub.response.reason_phrase}")
        check(sub.response.is_success, "the subscription was accepted")

        async def play_the_buddy() -> None:
            password = args.buddy_password or f"{args.buddy}xxx"
            async with client(args.buddy, password) as phone:
                while len(states) < 1:
                    await trio.sleep(0.05)
                print(f"({args.buddy} registers)")
                await phone.register(buddy)
                while len(states) < 2:
                    await trio.sleep(0.05)
                print(f"({args.buddy} unregisters)")
                await phone.unregister(buddy)

        async with trio.open_nursery() as nursery:
            if args.toggle:
                nursery.start_soon(play_the_buddy)
            with trio.move_on_after(args.duration):
                async for notification in sub:
                    presence = notification.presence
                    if presence is not None:
                        basic = presence.basic or "unknown"
                        note = f" ({presence.note})" if presence.note else ""
                        print(f"{args.buddy} is {basic}{note}")
                        states.append(basic)
                    elif notification.error is not None:
                        print(f"Unreadable presence document: {notification.error}")
                        states.append("error")
                    else:
                        print(f"NOTIFY without a document [{notification.state}]")
                        states.append("unknown")
                    if len(states) >= args.count:
                        break
        await sub.unsubscribe()
        print(f"Subscription {sub.state} ({sub.reason})")
    check(len(states) >= args.count, f"{args.count} presence states received")
    if args.toggle:
        check(states[:3] == ["closed", "open", "closed"], "the buddy went online and offline")


if __name__ == "__main__":
    run(main)
