"""SIP over TLS: OPTIONS, REGISTER and a MESSAGE to ourselves, the server's certificate
checked (not a guide section: what its "Transport Personalizado" leads to).

``--server`` is the server's TLS address: ``sipx serve --cert server.pem`` serves TLS on
its port + 1 (5061 beside 5060). ``--ca FILE`` checks the certificate with that CA bundle
(default: the system's CAs); ``--insecure`` does not check it (a lab's self-signed
certificate). ``--transport`` is ignored: this example speaks TLS.
"""

from __future__ import annotations

from _common import check, make_parser, parse_args, run, sip_uri

from sipx import Auth, Client


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--ca", help="CA bundle (PEM) to check the server's certificate with")
    parser.add_argument("--insecure", action="store_true", help="do not check the certificate")
    args = parse_args(parser)
    verify: str | bool = False if args.insecure else (args.ca or True)
    aor = sip_uri(args, args.user)
    auth = Auth.Digest(username=args.user, password=args.password, realm=args.realm)

    with Client(
        local_host=args.local_host,
        local_port=args.local_port,
        transport="TLS",
        auth=auth,
        verify=verify,
    ) as client:
        # A TLS client sends every request over TLS; its Contact says ;transport=tls.
        response = client.options(uri=sip_uri(args))
        print(f"OPTIONS -> {response.status_code} {response.reason_phrase}")
        check(response.status_code == 200, "OPTIONS over TLS answered 200")
        check(response.top_via.transport == "TLS", "our Via says TLS")

        response = client.register(aor=aor)
        request = response.request
        contact = request.headers.get("Contact") if request is not None else None
        print(f"REGISTER -> {response.status_code}, Contact: {contact}")
        check(response.status_code == 200, "registered over TLS")

        received: list[str] = []
        client.on_request("MESSAGE", lambda incoming: received.append(incoming.text))
        response = client.message(to_uri=aor, text="Hello over TLS!")
        print(f"MESSAGE -> {response.status_code}, received: {received}")
        check(
            response.status_code == 200 and received == ["Hello over TLS!"],
            "our MESSAGE came back to us over our TLS connection",
        )

        response = client.unregister(aor)
        check(response.status_code == 200, "unregistered")


if __name__ == "__main__":
    run(main)
