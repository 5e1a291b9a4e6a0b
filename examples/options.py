"""Hello SIP: send OPTIONS to the server and print the methods it supports.

The guide's first example ("Primeiro Exemplo"). Run ``sipx serve`` in another terminal,
then ``python examples/options.py`` (or ``--server pbx.example.com:5060``).
"""

from __future__ import annotations

from _common import check, make_parser, parse_args, run, sip_uri

from sipx import Auth, Client


def main() -> None:
    args = parse_args(make_parser(__doc__))

    # Credentials are used only if the server challenges the OPTIONS: sipx serve and
    # Kamailio answer it directly, Asterisk challenges requests from its users
    auth = Auth.Digest(username=args.user, password=args.password, realm=args.realm)

    # Create the client
    with Client(
        local_host=args.local_host,
        local_port=args.local_port,
        transport=args.transport,
        auth=auth,
    ) as client:
        # Send OPTIONS to the server; host= says where to send it
        response = client.options(uri=sip_uri(args), host=args.host, port=args.port)

        print(f"Status: {response.status_code} {response.reason_phrase}")

        # See which methods the server supports
        if "Allow" in response.headers:
            methods = response.headers["Allow"]
            print(f"Methods: {methods}")

    check(response.status_code == 200, "the server answered OPTIONS with 200")


if __name__ == "__main__":
    run(main)
