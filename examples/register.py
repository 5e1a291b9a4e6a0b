"""Register a user: REGISTER, the 401 digest challenge, and 200 OK (guide: "Registro SIP").

The binding is removed again at the end (``--keep`` leaves it). ``--realm asterisk`` sets
the realm as the guide does for its Asterisk; by default any realm is answered.
"""

from __future__ import annotations

from _common import check, make_parser, parse_args, run, sip_uri

from sipx import Auth, Client


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--expires", type=int, default=3600, help="seconds (default 3600)")
    parser.add_argument("--keep", action="store_true", help="do not unregister at the end")
    args = parse_args(parser)
    aor = sip_uri(args, args.user)

    # Credentials (realm=None answers whatever realm the server names)
    auth = Auth.Digest(username=args.user, password=args.password, realm=args.realm)

    # Client
    with Client(
        local_host=args.local_host,
        local_port=args.local_port,
        transport=args.transport,
        auth=auth,
    ) as client:
        # Register
        response = client.register(aor=aor, expires=args.expires)

        # A client created with auth= answers the challenge by itself; when it could not
        # (no matching realm, for example) the 401 comes back and can be retried explicitly
        if response.status_code == 401:
            response = client.retry_with_auth(response)

        # What happened on the wire: the challenge(s), then the final response
        steps = [r.status_code for r in response.history] + [response.status_code]
        print(f"REGISTER {aor}: {' -> '.join(map(str, steps))}")

        if response.status_code == 200:
            print("Registered successfully!")
            # The granted expiry: an Expires header, or the expires parameter of our Contact
            # (the 200 lists every binding of the user; ours is the one we sent)
            expires = response.expires
            if expires is None and response.request is not None:
                ours = response.request.contact[0].uri
                expires = next((c.expires for c in response.contact if c.uri == ours), None)
            print(f"Expires in: {expires if expires is not None else 'unknown'} seconds")
        else:
            print(f"Failed: {response.status_code} {response.reason_phrase}")
        check(response.status_code == 200, f"{args.user} registered")

        if not args.keep:
            response = client.unregister(aor)
            print(f"Unregistered: {response.status_code} {response.reason_phrase}")
            check(response.status_code == 200, f"{args.user} unregistered")


if __name__ == "__main__":
    run(main)
