"""A late-offer call: INVITE without SDP, the callee offers in its 200 OK and our answer
goes in the ACK (guide: "INVITE com Late Offer").

The guide builds the SDP answer but forgets to send it: here the ACK carries it, as RFC
3264 requires, and the call is ended with BYE. Runs as 2222 by default.
"""

from __future__ import annotations

import time

from _common import check, make_parser, parse_args, run, sip_uri

from sipx import Auth, Client, SDPBody


def main() -> None:
    parser = make_parser(__doc__, default_user="2222", default_password="2222xxx")
    parser.add_argument("--to", default="100", help="who to call (default 100)")
    parser.add_argument("--duration", type=float, default=1, help="call length, s (default 1)")
    args = parse_args(parser)

    auth = Auth.Digest(username=args.user, password=args.password, realm=args.realm)

    with Client(
        local_host=args.local_host,
        local_port=args.local_port,
        transport=args.transport,
        auth=auth,
    ) as client:
        local = client.local_address
        suffix = ";transport=tcp" if args.transport == "TCP" else ""

        # INVITE without SDP (late offer)
        response = client.invite(
            to_uri=sip_uri(args, args.to),
            from_uri=sip_uri(args, args.user),
            body=None,  # no SDP
            headers={"Contact": f"<sip:{args.user}@{local.host}:{local.port}{suffix}>"},
        )

        # Authentication (if the client could not answer the challenge itself)
        if response.status_code in (401, 407):
            response = client.retry_with_auth(response)

        steps = [r.status_code for r in response.history] + [response.status_code]
        print(f"INVITE (no SDP) {sip_uri(args, args.to)}: {' -> '.join(map(str, steps))}")
        check(response.status_code == 200, "the call was answered")

        # Process the response: the 200 OK carries the callee's offer
        offer = response.body
        check(isinstance(offer, SDPBody), "the 200 OK carries an SDP offer")
        assert isinstance(offer, SDPBody)
        print(f"Offer codecs: {', '.join(offer.get_codecs_summary())}")

        # Create the SDP answer (only codecs both sides support). local_address now names
        # the interface that faces the server (before the first request it is a guess)
        local = client.local_address
        sdp_answer = SDPBody.create_answer(
            offer=offer,
            origin_username=args.user,
            origin_address=local.host,
            connection_address=local.host,
        )
        print(f"Answer codecs: {', '.join(sdp_answer.get_codecs_summary())}")

        # ACK with the SDP answer
        client.ack(response=response, body=sdp_answer.to_string())
        print("Call accepted with SDP answer (sent in the ACK)")

        time.sleep(args.duration)

        bye = client.bye(response=response)
        check(bye.status_code == 200, f"BYE answered {bye.status_code} {bye.reason_phrase}")


if __name__ == "__main__":
    run(main)
