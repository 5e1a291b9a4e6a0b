"""Call transfer (REFER, RFC 3515; Replaces, RFC 3891) between three users of one server.

Alice (1111) calls Bob (2222); Bob transfers her to Carol (3333): blind (``--mode blind``,
the default: REFER to Carol's URI) or attended (``--mode attended``: Bob first calls Carol,
then asks Alice to take over that call, REFER with Replaces). All three clients run in
this process and register with ``--server`` (``sipx serve``, Kamailio, a PBX).

Alice's sipx carries the REFER out by itself: 202, the new call, NOTIFYs with the outcome.
Bob's ``transfer()`` returns that outcome and hangs up on Alice when it worked.
"""

from __future__ import annotations

import trio
from _common import check, make_parser, parse_args, run, sip_uri

from sipx import AsyncClient, Auth, Call

USERS = {"1111": "1111xxx", "2222": "2222xxx", "3333": "3333xxx"}


async def main() -> None:
    parser = make_parser(__doc__, user=False)
    parser.add_argument("--mode", choices=("blind", "attended"), default="blind")
    parser.add_argument("--realm", default=None, help="digest realm (default: any)")
    args = parse_args(parser)

    def client(user: str) -> AsyncClient:
        auth = Auth.Digest(username=user, password=USERS[user], realm=args.realm)
        return AsyncClient(args.local_host, 0, transport=args.transport, auth=auth, timeout=10)

    answered: dict[str, list[Call]] = {"2222": [], "3333": []}

    async with client("1111") as alice, client("2222") as bob, client("3333") as carol:
        for user, phone in (("1111", alice), ("2222", bob), ("3333", carol)):
            response = await phone.register(sip_uri(args, user))
            check(response.status_code == 200, f"{user} registered")
        for user, phone in (("2222", bob), ("3333", carol)):
            # Answer every call at once (a softphone would ring first).
            phone.on_request(
                "INVITE", lambda call, user=user: (answered[user].append(call), call.answer())
            )

        alice_call = await alice.call(sip_uri(args, "2222"))
        check(alice_call.established, "Alice is in a call with Bob")
        [bob_call] = answered["2222"]
        await bob_call.wait_acked()

        if args.mode == "blind":
            print("Bob: transferring Alice to 3333 ...")
            result = await bob_call.transfer(sip_uri(args, "3333"))
        else:
            consultation = await bob.call(sip_uri(args, "3333"))
            check(consultation.established, "Bob is in a call with Carol")
            print("Bob: asking Alice to take over his call with Carol ...")
            result = await bob_call.transfer(consultation)
        reported = ", ".join(str(frag) for frag in result.notifications)
        print(f"Bob: REFER {result.refer_response.status_code}, NOTIFYs: {reported}")
        check(result.succeeded, f"the transfer succeeded ({result})")

        with trio.fail_after(10):
            print(f"Alice: the call with Bob ended ({await alice_call.wait_ended()})")
        new_call = alice_call.replaced_by
        check(new_call is not None and new_call.established, "Alice is in a call with Carol")
        assert new_call is not None
        carol_call = answered["3333"][0]
        if args.mode == "attended":
            with trio.fail_after(10):
                print(f"Carol: the call with Bob ended ({await carol_call.wait_ended()})")
            check(carol_call.replaced_by is not None, "Carol's call with Bob was replaced")
        print(f"Alice hangs up: {(await new_call.bye()).status_code}")

        for user, phone in (("1111", alice), ("2222", bob), ("3333", carol)):
            await phone.unregister(sip_uri(args, user))


if __name__ == "__main__":
    run(main)
