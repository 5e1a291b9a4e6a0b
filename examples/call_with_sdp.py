"""Place a call with an SDP offer: INVITE, 200 OK with the answer, ACK, BYE
(guide: "INVITE Básico").

Calls extension 100 by default (``--to``), which answers on ``sipx serve``, on the guide's
Asterisk and on the Kamailio test setup. ``--duration`` is how long the call stays up
(the guide waits 5 s).
"""

from __future__ import annotations

import time

from _common import check, make_parser, parse_args, run, sip_uri

from sipx import Auth, Client, SDPBody


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--to", default="100", help="who to call (default 100)")
    parser.add_argument("--duration", type=float, default=5, help="call length, s (default 5)")
    args = parse_args(parser)

    auth = Auth.Digest(username=args.user, password=args.password, realm=args.realm)

    with Client(
        local_host=args.local_host,
        local_port=args.local_port,
        transport=args.transport,
        auth=auth,
    ) as client:
        local = client.local_address

        # Create the SDP offer: one audio stream, PCMU and PCMA
        sdp_offer = SDPBody.create_offer(
            session_name="My Call",
            origin_username=args.user,
            origin_address=local.host,
            connection_address=local.host,
            media_specs=[
                {
                    "media": "audio",
                    "port": 8000,
                    "codecs": [
                        {"payload": "0", "name": "PCMU", "rate": "8000"},
                        {"payload": "8", "name": "PCMA", "rate": "8000"},
                    ],
                }
            ],
        )

        # Send the INVITE (over TCP the Contact says so, for requests the callee sends us)
        suffix = ";transport=tcp" if args.transport == "TCP" else ""
        response = client.invite(
            to_uri=sip_uri(args, args.to),
            from_uri=sip_uri(args, args.user),
            body=sdp_offer.to_string(),
            headers={"Contact": f"<sip:{args.user}@{local.host}:{local.port}{suffix}>"},
        )

        # Authentication: a client with auth= answers the 401/407 itself; this is the
        # explicit way, for a challenge it could not answer on its own
        if response.status_code in (401, 407):
            response = client.retry_with_auth(response)

        steps = [r.status_code for r in response.history] + [response.status_code]
        print(f"INVITE {sip_uri(args, args.to)}: {' -> '.join(map(str, steps))}")
        check(response.status_code == 200, "the call was answered")
        print("Call accepted!")

        # The answer: the codecs both sides support
        if isinstance(response.body, SDPBody):
            print(f"Answer codecs: {', '.join(response.body.get_codecs_summary())}")

        # Send the ACK (a 2xx to INVITE must be acknowledged)
        client.ack(response=response)

        # The call is up...
        time.sleep(args.duration)

        # Hang up
        bye = client.bye(response=response)
        check(bye.status_code == 200, f"BYE answered {bye.status_code} {bye.reason_phrase}")
        print("Call ended")


if __name__ == "__main__":
    run(main)
