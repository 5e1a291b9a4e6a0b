"""Detect early media: an event handler that spots 183 Session Progress and its SDP while
a call is being set up (guide: "Event Handler com Early Media").

Whether early media happens is up to the callee: ``sipx serve``'s extension 100 only sends
180 Ringing, so the default call shows none. To see it, run a callee that sends 183 with SDP
and call it::

    python examples/answer_calls.py --user 3333 --password 3333xxx --early-media
    python examples/early_media.py --to 3333

``--require-early-media`` makes the script fail when no 183 arrived.
"""

from __future__ import annotations

from _common import check, make_parser, parse_args, run, sip_uri

from sipx import Auth, Client, Events, Response, SDPBody, event_handler
from sipx._types import RequestContext


class CallEvents(Events):
    def __init__(self) -> None:
        super().__init__()
        self.early_media_detected = False

    @event_handler("response")
    def on_response(self, response: Response, context: RequestContext) -> Response:
        """Detect early media (183)."""
        if response.status_code == 183:
            print("Early Media (183 Session Progress)")
            self.early_media_detected = True

            # Look at the SDP
            if isinstance(response.body, SDPBody):
                codecs = response.body.get_codecs_summary()
                print(f"   Codecs: {', '.join(codecs)}")
        elif response.status_code < 200:
            print(f"{response.status_code} {response.reason_phrase}")

        return response


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--to", default="100", help="who to call (default 100)")
    parser.add_argument("--require-early-media", action="store_true", help="fail if no 183 arrives")
    args = parse_args(parser)

    auth = Auth.Digest(username=args.user, password=args.password, realm=args.realm)
    events = CallEvents()

    with Client(
        local_host=args.local_host,
        local_port=args.local_port,
        transport=args.transport,
        auth=auth,
        events=events,
    ) as client:
        host = client.local_address.host
        offer = SDPBody.create_offer(
            session_name="Early",
            origin_username=args.user,
            origin_address=host,
            connection_address=host,
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
        response = client.invite(to_uri=sip_uri(args, args.to), body=offer.to_string())
        check(response.status_code == 200, f"the call to {args.to} was answered")
        client.ack(response=response)
        bye = client.bye(response=response)
        check(bye.status_code == 200, f"BYE answered {bye.status_code} {bye.reason_phrase}")

    print(f"Early media seen: {'yes' if events.early_media_detected else 'no'}")
    if args.require_early_media:
        check(events.early_media_detected, "early media (183) was received")


if __name__ == "__main__":
    run(main)
