"""Different credentials per request: a client without ``auth=`` that registers as one
user and calls as another (guide: "Credenciais Diferentes por Request").

REGISTER is answered with ``--user``'s credentials (1111), the INVITE with
``--invite-user``'s (2222), each passed to ``retry_with_auth(response, auth=...)``; the
unregister at the end shows the ``auth=`` keyword that every request method accepts.
"""

from __future__ import annotations

from _common import check, make_parser, parse_args, run, sip_uri

from sipx import Auth, Client


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--invite-user", default="2222", help="user for the INVITE (2222)")
    parser.add_argument("--invite-password", default="2222xxx", help="its password (2222xxx)")
    parser.add_argument("--to", default="100", help="who to call (default 100)")
    args = parse_args(parser)
    aor = sip_uri(args, args.user)

    # A client without credentials of its own
    with Client(
        local_host=args.local_host, local_port=args.local_port, transport=args.transport
    ) as client:
        # Auth for REGISTER
        register_auth = Auth.Digest(username=args.user, password=args.password, realm=args.realm)
        response = client.register(aor=aor)
        print(f"REGISTER {aor}: {response.status_code} {response.reason_phrase}")
        if response.status_code == 401:
            response = client.retry_with_auth(response, auth=register_auth)
            print(f"  retried as {args.user}: {response.status_code} {response.reason_phrase}")
        check(response.status_code == 200, f"registered as {args.user}")

        try:
            # Different auth for INVITE. The From names the user whose credentials answer
            # the challenge (servers refuse credentials of another user). Proxies challenge
            # an INVITE with 407 (Proxy-Authenticate) rather than 401.
            invite_auth = Auth.Digest(
                username=args.invite_user, password=args.invite_password, realm=args.realm
            )
            response = client.invite(
                to_uri=sip_uri(args, args.to), from_uri=sip_uri(args, args.invite_user)
            )
            print(
                f"INVITE {sip_uri(args, args.to)}: {response.status_code} {response.reason_phrase}"
            )
            if response.status_code in (401, 407):
                response = client.retry_with_auth(response, auth=invite_auth)
                print(
                    f"  retried as {args.invite_user}: "
                    f"{response.status_code} {response.reason_phrase}"
                )
            check(response.status_code == 200, f"the call was answered (as {args.invite_user})")
            client.ack(response=response)
            bye = client.bye(response=response)
            check(bye.status_code == 200, f"BYE answered {bye.status_code} {bye.reason_phrase}")
        finally:
            # Every request method also takes auth= for this one request (the challenge is
            # then answered automatically)
            response = client.unregister(aor, auth=register_auth)
        check(response.status_code == 200, f"{args.user} unregistered")


if __name__ == "__main__":
    run(main)
