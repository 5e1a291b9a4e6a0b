"""Register and authenticate: the digest challenge flow step by step.

1. A client created with credentials (``auth=``) registers: the registrar challenges with
   401 and the client answers it by itself (guide: "Digest Authentication", method 1).
2. A client without credentials gets the 401 back and answers it explicitly with
   ``retry_with_auth(response, auth=...)`` (method 2, "Retry Manual").
3. A wrong password is refused.

Both registrations are removed at the end.
"""

from __future__ import annotations

from _common import check, make_parser, parse_args, run, sip_uri

from sipx import Auth, Client, Response


def show(label: str, response: Response) -> None:
    """One line per exchange: every response received, the final one last."""
    steps = [f"{r.status_code}" for r in response.history if r.status_code >= 200]
    steps.append(f"{response.status_code} {response.reason_phrase}")
    print(f"{label}: {' -> '.join(steps)}")


def main() -> None:
    args = parse_args(make_parser(__doc__))
    aor = sip_uri(args, args.user)
    auth = Auth.Digest(username=args.user, password=args.password, realm=args.realm)

    # 1. Credentials in the client's constructor: challenges are answered automatically
    with Client(
        local_host=args.local_host,
        local_port=args.local_port,
        transport=args.transport,
        auth=auth,
    ) as client:
        response = client.register(aor=aor)
        show("1. REGISTER with auth=", response)
        check(response.status_code == 200, f"{args.user} registered")
        check(client.unregister(aor).status_code == 200, "unregistered")

        # The registrar challenged once (401); the retry carried the credentials
        challenges = [r.status_code for r in response.history]
        check(challenges == [401], "the registrar challenged once (401) and the client answered")
        request = response.request
        assert request is not None
        print(f"   Authorization: {request.headers['Authorization'][:60]}...")

    # 2. A client without credentials: the 401 comes back and is answered explicitly
    with Client(local_host=args.local_host, local_port=0, transport=args.transport) as client:
        response = client.register(aor=aor)
        show("2. REGISTER without auth", response)
        check(response.status_code == 401, "a client without credentials gets the 401")
        header = response.headers["WWW-Authenticate"]
        print(f"   WWW-Authenticate: {header}")

        # Retry with authentication: a new transaction (new branch, CSeq + 1)
        custom_auth = Auth.Digest(username=args.user, password=args.password, realm=args.realm)
        response = client.retry_with_auth(response, auth=custom_auth)
        show("   retry_with_auth", response)
        check(response.status_code == 200, "authenticated and accepted")
        check(client.unregister(aor, auth=custom_auth).status_code == 200, "unregistered")

    # 3. A wrong password: the registrar does not accept it
    wrong = Auth.Digest(username=args.user, password=args.password + "-wrong", realm=args.realm)
    with Client(
        local_host=args.local_host, local_port=0, transport=args.transport, auth=wrong
    ) as client:
        response = client.register(aor=aor)
        show("3. REGISTER, wrong password", response)
        check(response.status_code in (401, 403), "a wrong password is refused")


if __name__ == "__main__":
    run(main)
