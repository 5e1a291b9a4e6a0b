"""Event handlers: hooks that see every request before it is sent, every response, and
every digest challenge (guide: "Event Handlers").

Sends OPTIONS (servers answer it directly) and REGISTER (challenged with 401, answered
automatically because the client has credentials), then unregisters.
"""

from __future__ import annotations

from _common import check, make_parser, parse_args, run, sip_uri

from sipx import Auth, Client, Events, event_handler
from sipx._types import Request, RequestContext, Response


class MyEvents(Events):
    """Custom event handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.challenges = 0

    @event_handler("request")
    def on_request(self, request: Request, context: RequestContext) -> Request:
        """Called before a request is sent (it may change it, and returns it)."""
        print(f">> Sending {request.method} -> {request.uri}")
        return request

    @event_handler("response")
    def on_response(self, response: Response, context: RequestContext) -> Response:
        """Called for every response received (provisional ones too)."""
        if 200 <= response.status_code < 300:
            print(f"<< {response.status_code} {response.reason_phrase}")
        elif response.status_code in (401, 407):
            print("<< Authentication required")
        else:
            print(f"<< {response.status_code} {response.reason_phrase}")
        return response

    @event_handler("auth_challenge")
    def on_auth(self, response: Response, context: RequestContext) -> Response:
        """Called for a 401/407 challenge."""
        header = "WWW-Authenticate" if response.status_code == 401 else "Proxy-Authenticate"
        print(f"<< Challenge received: {response.headers.get(header)}")
        self.challenges += 1
        return response


def main() -> None:
    args = parse_args(make_parser(__doc__))
    aor = sip_uri(args, args.user)

    auth = Auth.Digest(username=args.user, password=args.password, realm=args.realm)
    events = MyEvents()

    with Client(
        local_host=args.local_host,
        local_port=args.local_port,
        transport=args.transport,
        auth=auth,
        events=events,
    ) as client:
        # Requests trigger the event handlers
        response = client.options(uri=sip_uri(args), host=args.host, port=args.port)
        check(response.status_code == 200, "OPTIONS answered 200")

        # REGISTER: request, 401 + challenge, request again (with credentials), 200
        registered = client.register(aor=aor)
        check(registered.status_code == 200, f"{args.user} registered")

        unregistered = client.unregister(aor)
        check(unregistered.status_code == 200, f"{args.user} unregistered")
        check(events.challenges >= 1, "the auth_challenge handler saw the challenge")


if __name__ == "__main__":
    run(main)
