"""Choosing the transport: the same requests over TCP and over UDP (guide: "Transport
Personalizado").

The guide binds 192.168.1.100:5060 and 0.0.0.0:5060; here ``--local-host`` and
``--local-port`` say where to bind (default: all interfaces, any free port). Over TCP the
client connects to the server, and its Contact says ``;transport=tcp`` so that requests
for it come back over TCP. (``--transport`` is ignored: this example uses both.)
"""

from __future__ import annotations

from _common import check, make_parser, parse_args, run, sip_uri

from sipx import Auth, Client


def main() -> None:
    args = parse_args(make_parser(__doc__))
    aor = sip_uri(args, args.user)
    auth = Auth.Digest(username=args.user, password=args.password, realm=args.realm)

    for transport in ("TCP", "UDP"):
        # TCP transport, then UDP transport (the default)
        with Client(
            local_host=args.local_host,
            local_port=args.local_port,
            transport=transport,
            auth=auth,
        ) as client:
            response = client.options(uri=sip_uri(args), host=args.host, port=args.port)
            print(
                f"{transport}: OPTIONS -> {response.status_code} {response.reason_phrase}"
                f" (Via: {response.top_via.transport}, bound to {client.local_address.port})"
            )
            check(response.status_code == 200, f"OPTIONS over {transport} answered 200")
            check(response.top_via.transport == transport, f"the response came over {transport}")

            response = client.register(aor=aor)
            request = response.request
            contact = request.headers.get("Contact") if request is not None else None
            print(f"{transport}: REGISTER -> {response.status_code}, Contact: {contact}")
            check(response.status_code == 200, f"registered over {transport}")
            response = client.unregister(aor)
            check(response.status_code == 200, f"unregistered over {transport}")


if __name__ == "__main__":
    run(main)
