"""SIP over WebSocket (RFC 7118): REGISTER, a MESSAGE to ourselves and a call to extension
100, everything through the WebSocket server (not a guide section).

``--server`` is the SIP domain (``sipx serve``'s address, as in the other examples);
``--ws HOST:PORT`` is its WebSocket listener (``sipx serve --ws-port 8080``; Kamailio with
its websocket module). A WebSocket client listens on no port: every request goes to the
WebSocket server (its outbound proxy), and the server reaches the client back over that
connection, so the Contact names a host under ``.invalid``. ``--transport`` is ignored.
"""

from __future__ import annotations

from _common import check, make_parser, parse_args, run, sip_uri, split_hostport

from sipx import Auth, Client


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--ws", default="127.0.0.1:8080", metavar="HOST:PORT", help="the WebSocket server"
    )
    args = parse_args(parser)
    ws_host, ws_port = split_hostport(args.ws, default_port=80)
    aor = sip_uri(args, args.user)
    auth = Auth.Digest(username=args.user, password=args.password, realm=args.realm)

    with Client(
        local_host=args.local_host,
        transport="WS",
        auth=auth,
        outbound_proxy=f"sip:{ws_host}:{ws_port};transport=ws",
    ) as client:
        response = client.register(aor=aor)
        request = response.request
        contact = request.headers.get("Contact") if request is not None else None
        print(f"REGISTER -> {response.status_code}, Contact: {contact}")
        check(response.status_code == 200, "registered over WebSocket")
        check(response.top_via.transport == "WS", "our Via says WS")

        received: list[str] = []
        client.on_request("MESSAGE", lambda incoming: received.append(incoming.text))
        response = client.message(to_uri=aor, text="Hello over WebSocket!")
        print(f"MESSAGE -> {response.status_code}, received: {received}")
        check(
            response.status_code == 200 and received == ["Hello over WebSocket!"],
            "our MESSAGE came back to us over our WebSocket connection",
        )

        call = client.call(sip_uri(args, "100"), timeout=30)
        final = call.final_response
        print(f"Call to 100 -> {final.status_code if final else 'no answer'}")
        check(call.established, "extension 100 answered over WebSocket")
        bye = call.bye()
        check(bye.status_code == 200, f"BYE answered {bye.status_code} {bye.reason_phrase}")

        response = client.unregister(aor)
        check(response.status_code == 200, "unregistered")


if __name__ == "__main__":
    run(main)
