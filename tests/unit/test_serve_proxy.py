"""Routing decisions and message rewriting of ``sipx serve``'s proxy, sans-I/O."""

from __future__ import annotations

import pytest

from sipx._core.digest import build_credentials, parse_challenge
from sipx._core.ids import IdSource, counter_token
from sipx._core.message import Request, Response
from sipx._core.parser import parse_message
from sipx._core.uri import URI
from sipx._serve.auth import DEFAULT_USERS, DigestAuthenticator
from sipx._serve.common import Outgoing, ServerIdentity
from sipx._serve.echo import EchoUA
from sipx._serve.proxy import BRANCH_PREFIX, Proxy
from sipx._serve.registrar import Registrar

SECRET = b"proxy-test-secret"
HOST, PORT = "127.0.0.1", 5070
SERVER = f"{HOST}:{PORT}"
CALLER = ("127.0.0.1", 5091)  # where the caller's requests come from
CALLEE_UDP = ("127.0.0.1", 5090)
CALLEE_TCP = ("127.0.0.1", 5092)


@pytest.fixture
def proxy() -> Proxy:
    identity = ServerIdentity(HOST, PORT)
    auth = DigestAuthenticator(None, secret=SECRET)
    echo = EchoUA(identity, ids=IdSource(counter_token()))
    return Proxy(identity, registrar=Registrar(), authenticator=auth, secret=SECRET, echo=echo)


def build(
    method: str,
    uri: str,
    *,
    from_user: str = "1111",
    from_host: str = SERVER,
    to: str | None = None,
    to_tag: str | None = None,
    branch: str = "z9hG4bKcaller1",
    via_host: str = "127.0.0.1:5091",
    transport: str = "UDP",
    cseq: int = 1,
    call_id: str = "call-1",
    extra: tuple[str, ...] = (),
    body: str = "",
    max_forwards: int | None = 70,
) -> Request:
    to_value = to or f"<{uri.split(';')[0]}>"
    if to_tag:
        to_value += f";tag={to_tag}"
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport} {via_host};branch={branch};rport",
        *([f"Max-Forwards: {max_forwards}"] if max_forwards is not None else []),
        f"From: <sip:{from_user}@{from_host}>;tag=caller-tag",
        f"To: {to_value}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        *extra,
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    text = "\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def send(
    proxy: Proxy,
    request: Request | Response,
    *,
    now: float = 0.0,
    transport: str = "UDP",
    source: tuple[str, int] = CALLER,
) -> list[Outgoing]:
    return proxy.handle(request, now, transport=transport, source=source)


def only(out: list[Outgoing]) -> Outgoing:
    assert len(out) == 1, out
    return out[0]


def status(out: list[Outgoing]) -> int:
    message = only(out).message
    assert isinstance(message, Response)
    return message.status_code


def authorized(proxy: Proxy, request: Request, *, now: float = 0.0, user: str = "1111") -> Request:
    """``request`` with credentials answering a fresh challenge of the proxy."""
    register = request.method == "REGISTER"
    challenge = parse_challenge(proxy.authenticator.challenge(now))
    credentials = build_credentials(
        challenge,
        username=user,
        password=DEFAULT_USERS[user],
        method=request.method,
        uri=f"sip:{SERVER}",
        cnonce="abcdef01",
    )
    request.headers.add(
        "Authorization" if register else "Proxy-Authorization", credentials.to_header_value()
    )
    return request


def register(
    proxy: Proxy,
    user: str,
    contact: str,
    *,
    transport: str = "UDP",
    source: tuple[str, int] = CALLEE_UDP,
    now: float = 0.0,
) -> None:
    request = build(
        "REGISTER",
        f"sip:{SERVER}",
        from_user=user,
        to=f"<sip:{user}@{SERVER}>",
        extra=(f"Contact: <{contact}>",),
        transport=transport,
        call_id=f"reg-{user}-{contact}",
    )
    out = send(
        proxy, authorized(proxy, request, user=user), now=now, transport=transport, source=source
    )
    assert status(out) == 200


# -- the server itself -------------------------------------------------------------------------


def test_options_to_the_server_is_answered_without_auth(proxy: Proxy) -> None:
    out = only(send(proxy, build("OPTIONS", f"sip:{SERVER}")))
    response = out.message
    assert isinstance(response, Response)
    assert response.status_code == 200
    assert "INVITE" in response.headers["Allow"] and "REGISTER" in response.headers["Allow"]
    assert response.headers["Accept"] == "application/sdp"
    assert (out.transport, out.address) == ("UDP", CALLER)
    assert response.to.tag is not None and response.to.tag.startswith(proxy.tag_prefix + ".")
    # received/rport (forced) in the Via it echoes
    assert response.top_via.params["rport"] == "5091"
    assert "received" not in response.top_via.params


def test_received_is_added_when_the_source_differs_from_sent_by(proxy: Proxy) -> None:
    request = build("OPTIONS", f"sip:{SERVER}", via_host="10.0.0.9:5060")
    out = only(send(proxy, request, source=("192.0.2.7", 40000)))
    assert isinstance(out.message, Response)
    assert out.message.top_via.params["received"] == "192.0.2.7"
    assert out.message.top_via.params["rport"] == "40000"
    assert out.address == ("192.0.2.7", 40000)


def test_tcp_requests_are_answered_over_tcp(proxy: Proxy) -> None:
    request = build("OPTIONS", f"sip:{SERVER};transport=tcp", transport="TCP")
    out = only(send(proxy, request, transport="TCP", source=("127.0.0.1", 40001)))
    assert (out.transport, out.address) == ("TCP", ("127.0.0.1", 40001))


# -- registrar and auth ------------------------------------------------------------------------


def test_register_is_challenged_401_then_accepted(proxy: Proxy) -> None:
    request = build(
        "REGISTER",
        f"sip:{SERVER}",
        to=f"<sip:1111@{SERVER}>",
        extra=("Contact: <sip:1111@127.0.0.1:5091>",),
    )
    out = only(send(proxy, request))
    challenge = out.message
    assert isinstance(challenge, Response) and challenge.status_code == 401
    assert challenge.headers["WWW-Authenticate"].startswith('Digest realm="sipx"')
    assert proxy.registrar.lookup("1111", 0.0) == []
    request = build(
        "REGISTER",
        f"sip:{SERVER}",
        to=f"<sip:1111@{SERVER}>",
        cseq=2,
        extra=("Contact: <sip:1111@127.0.0.1:5091>",),
    )
    response = only(send(proxy, authorized(proxy, request))).message
    assert isinstance(response, Response) and response.status_code == 200
    assert response.headers["Contact"] == "<sip:1111@127.0.0.1:5091>;expires=3600"
    (binding,) = proxy.registrar.lookup("1111", 0.0)
    assert (binding.transport, binding.source) == ("UDP", CALLER)


def test_register_with_someone_elses_credentials_is_403(proxy: Proxy) -> None:
    request = build("REGISTER", f"sip:{SERVER}", to=f"<sip:1111@{SERVER}>")
    out = send(proxy, authorized(proxy, request, user="2222"))
    assert status(out) == 403
    assert only(out).message.reason_phrase == "Forbidden auth ID"  # type: ignore[union-attr]


def test_register_whose_from_differs_from_to_is_403(proxy: Proxy) -> None:
    request = build("REGISTER", f"sip:{SERVER}", from_user="2222", to=f"<sip:1111@{SERVER}>")
    assert status(send(proxy, authorized(proxy, request, user="1111"))) == 403


def test_wrong_password_is_challenged_again(proxy: Proxy) -> None:
    request = build("MESSAGE", f"sip:2222@{SERVER}")
    request.headers.add(
        "Proxy-Authorization",
        build_credentials(
            parse_challenge(proxy.authenticator.challenge(0.0)),
            username="1111",
            password="wrong",
            method="MESSAGE",
            uri=f"sip:{SERVER}",
            cnonce="c",
        ).to_header_value(),
    )
    assert status(send(proxy, request)) == 407


def test_stale_nonce_is_challenged_with_stale_true(proxy: Proxy) -> None:
    request = authorized(proxy, build("MESSAGE", f"sip:3333@{SERVER}"), now=0.0)
    out = only(send(proxy, request, now=1000.0))
    assert isinstance(out.message, Response) and out.message.status_code == 407
    assert "stale=true" in out.message.headers["Proxy-Authenticate"]


def test_initial_request_from_a_local_user_is_challenged_407(proxy: Proxy) -> None:
    response = only(send(proxy, build("MESSAGE", f"sip:2222@{SERVER}"))).message
    assert isinstance(response, Response) and response.status_code == 407
    assert "Proxy-Authenticate" in response.headers


def test_from_uri_naming_the_server_is_challenged(proxy: Proxy) -> None:
    assert status(send(proxy, build("MESSAGE", f"sip:2222@{SERVER}", from_user="9999"))) == 407


def test_foreign_caller_may_reach_local_users_without_auth(proxy: Proxy) -> None:
    request = build("MESSAGE", f"sip:3333@{SERVER}", from_user="bob", from_host="example.org")
    assert status(send(proxy, request)) == 480


def test_foreign_caller_may_not_relay(proxy: Proxy) -> None:
    request = build("MESSAGE", "sip:alice@192.0.2.50", from_user="bob", from_host="example.org")
    out = send(proxy, request)
    assert status(out) == 403
    assert only(out).message.reason_phrase == "Not relaying"  # type: ignore[union-attr]


def test_authenticated_user_may_relay_to_an_ip_address(proxy: Proxy) -> None:
    request = authorized(proxy, build("MESSAGE", "sip:alice@192.0.2.50:5080"))
    out = only(send(proxy, request))
    assert isinstance(out.message, Request)
    assert out.address == ("192.0.2.50", 5080)


# -- location: 404, 480, forwarding ------------------------------------------------------------


def test_unknown_user_is_404_after_auth(proxy: Proxy) -> None:
    assert status(send(proxy, authorized(proxy, build("MESSAGE", f"sip:9999@{SERVER}")))) == 404


def test_configured_but_unregistered_user_is_480(proxy: Proxy) -> None:
    assert status(send(proxy, authorized(proxy, build("MESSAGE", f"sip:3333@{SERVER}")))) == 480


def test_no_user_part_is_484(proxy: Proxy) -> None:
    assert status(send(proxy, authorized(proxy, build("MESSAGE", f"sip:{SERVER}")))) == 484


def test_message_to_a_registered_user_is_forwarded(proxy: Proxy) -> None:
    register(proxy, "2222", "sip:2222@127.0.0.1:5090")
    request = authorized(proxy, build("MESSAGE", f"sip:2222@{SERVER}", body="hi"))
    out = only(send(proxy, request))
    forwarded = out.message
    assert isinstance(forwarded, Request)
    assert (out.transport, out.address) == ("UDP", CALLEE_UDP)
    assert str(forwarded.uri) == "sip:2222@127.0.0.1:5090"
    assert forwarded.max_forwards == 69
    assert "Proxy-Authorization" not in forwarded.headers
    assert "Record-Route" not in forwarded.headers  # MESSAGE forms no dialog
    ours, theirs = forwarded.via
    assert ours.host == HOST and ours.port == PORT and ours.transport == "UDP"
    assert ours.branch is not None and ours.branch.startswith(BRANCH_PREFIX)
    assert theirs.branch == "z9hG4bKcaller1"
    assert theirs.params["rport"] == "5091"
    assert forwarded.content == b"hi"


def test_the_most_recent_binding_wins(proxy: Proxy) -> None:
    register(proxy, "2222", "sip:2222@127.0.0.1:5090", now=0.0)
    register(proxy, "2222", "sip:2222@127.0.0.1:5092;transport=tcp", now=1.0, source=CALLEE_TCP)
    out = only(send(proxy, authorized(proxy, build("MESSAGE", f"sip:2222@{SERVER}")), now=2.0))
    assert (out.transport, out.address) == ("TCP", CALLEE_TCP)


def test_invite_gets_record_route(proxy: Proxy) -> None:
    register(proxy, "2222", "sip:2222@127.0.0.1:5090")
    out = only(send(proxy, authorized(proxy, build("INVITE", f"sip:2222@{SERVER}"))))
    assert out.message.headers.get_list("Record-Route") == [f"<sip:{SERVER};lr>"]


def test_record_route_says_tcp_for_requests_over_tcp(proxy: Proxy) -> None:
    register(proxy, "2222", "sip:2222@127.0.0.1:5092;transport=tcp", source=CALLEE_TCP)
    request = authorized(proxy, build("INVITE", f"sip:2222@{SERVER}", transport="TCP"))
    out = only(send(proxy, request, transport="TCP", source=("127.0.0.1", 40000)))
    assert out.transport == "TCP"
    assert out.message.headers.get_list("Record-Route") == [f"<sip:{SERVER};transport=tcp;lr>"]
    assert out.message.top_via.transport == "TCP"


def test_changing_transport_double_record_routes(proxy: Proxy) -> None:
    register(proxy, "2222", "sip:2222@127.0.0.1:5092;transport=tcp", source=CALLEE_TCP)
    out = only(send(proxy, authorized(proxy, build("INVITE", f"sip:2222@{SERVER}"))))
    assert out.transport == "TCP"
    # the callee's route set starts with the entry facing it; the caller's with the other
    assert out.message.headers.get_list("Record-Route") == [
        f"<sip:{SERVER};transport=tcp;lr>",
        f"<sip:{SERVER};lr>",
    ]


def test_contact_with_a_host_name_is_reached_at_its_source(proxy: Proxy) -> None:
    register(proxy, "2222", "sip:2222@phone.invalid:5090", source=("127.0.0.1", 41000))
    out = only(send(proxy, authorized(proxy, build("MESSAGE", f"sip:2222@{SERVER}"))))
    assert out.address == ("127.0.0.1", 41000)
    assert str(out.message.uri) == "sip:2222@phone.invalid:5090"  # type: ignore[union-attr]


def test_binding_that_points_at_us_is_a_loop(proxy: Proxy) -> None:
    register(proxy, "2222", f"sip:2222@{SERVER}")
    assert status(send(proxy, authorized(proxy, build("MESSAGE", f"sip:2222@{SERVER}")))) == 482


# -- Max-Forwards ------------------------------------------------------------------------------


def test_max_forwards_zero_is_483(proxy: Proxy) -> None:
    register(proxy, "2222", "sip:2222@127.0.0.1:5090")
    request = authorized(proxy, build("MESSAGE", f"sip:2222@{SERVER}", max_forwards=0))
    assert status(send(proxy, request)) == 483


def test_max_forwards_one_leaves_with_zero_and_missing_becomes_70(proxy: Proxy) -> None:
    register(proxy, "2222", "sip:2222@127.0.0.1:5090")
    request = authorized(proxy, build("MESSAGE", f"sip:2222@{SERVER}", max_forwards=1))
    assert only(send(proxy, request)).message.max_forwards == 0
    request = authorized(proxy, build("MESSAGE", f"sip:2222@{SERVER}", max_forwards=None))
    assert only(send(proxy, request)).message.max_forwards == 70


# -- the derived branch (RFC 3261 16.11) -------------------------------------------------------


def test_branch_is_derived_from_the_incoming_branch(proxy: Proxy) -> None:
    register(proxy, "2222", "sip:2222@127.0.0.1:5090")

    def forwarded_branch(method: str, branch: str, **kw: object) -> str:
        request = build(method, f"sip:2222@{SERVER}", branch=branch, **kw)  # type: ignore[arg-type]
        if method not in ("CANCEL", "ACK"):
            request = authorized(proxy, request)
        out = only(send(proxy, request))
        assert isinstance(out.message, Request)
        assert out.address == CALLEE_UDP
        return out.message.top_via.branch or ""

    invite = forwarded_branch("INVITE", "z9hG4bKaaa")
    assert invite.startswith(BRANCH_PREFIX)
    assert forwarded_branch("INVITE", "z9hG4bKaaa") == invite  # a retransmission
    assert forwarded_branch("CANCEL", "z9hG4bKaaa") == invite  # its CANCEL
    # the ACK for the callee's non-2xx: same branch, the callee's To tag, no Route
    assert forwarded_branch("ACK", "z9hG4bKaaa", to_tag="callee-tag") == invite
    assert forwarded_branch("INVITE", "z9hG4bKbbb") != invite
    assert forwarded_branch("INVITE", "z9hG4bKaaa", via_host="127.0.0.1:5093") != invite


def test_rfc2543_requests_get_a_stable_branch_too(proxy: Proxy) -> None:
    a = proxy.branch_for(build("INVITE", f"sip:2222@{SERVER}", branch="old1"))
    b = proxy.branch_for(build("INVITE", f"sip:2222@{SERVER}", branch="old1"))
    c = proxy.branch_for(build("INVITE", f"sip:2222@{SERVER}", branch="old1", cseq=2))
    assert a == b != c
    assert a.startswith(BRANCH_PREFIX)


def test_cancel_without_a_binding_is_481(proxy: Proxy) -> None:
    assert status(send(proxy, build("CANCEL", f"sip:2222@{SERVER}"))) == 481


# -- in-dialog requests and loose routing ------------------------------------------------------


def test_in_dialog_request_pops_our_route_and_goes_to_the_request_uri(proxy: Proxy) -> None:
    request = build(
        "BYE",
        "sip:2222@127.0.0.1:5090",
        to=f"<sip:2222@{SERVER}>",
        to_tag="callee",
        extra=(f"Route: <sip:{SERVER};lr>",),
        cseq=3,
    )
    out = only(send(proxy, request))
    bye = out.message
    assert isinstance(bye, Request)
    assert "Route" not in bye.headers
    assert out.address == CALLEE_UDP
    assert bye.max_forwards == 69
    assert bye.top_via.branch is not None and bye.top_via.branch.startswith(BRANCH_PREFIX)


def test_in_dialog_request_goes_to_the_next_route(proxy: Proxy) -> None:
    request = build(
        "BYE",
        "sip:2222@127.0.0.1:5090",
        to_tag="callee",
        extra=(
            f"Route: <sip:{SERVER};transport=tcp;lr>, <sip:{SERVER};lr>, <sip:192.0.2.9:5066;lr>",
        ),
    )
    out = only(send(proxy, request))
    assert out.address == ("192.0.2.9", 5066)
    assert out.message.headers.get_list("Route") == ["<sip:192.0.2.9:5066;lr>"]
    assert str(out.message.uri) == "sip:2222@127.0.0.1:5090"  # type: ignore[union-attr]


def test_in_dialog_requests_are_never_challenged(proxy: Proxy) -> None:
    request = build(
        "INVITE",
        "sip:2222@127.0.0.1:5090",
        to_tag="callee",
        extra=(f"Route: <sip:{SERVER};lr>",),
    )
    assert isinstance(only(send(proxy, request)).message, Request)


def test_in_dialog_request_not_routed_through_us_is_404(proxy: Proxy) -> None:
    request = build("BYE", "sip:2222@127.0.0.1:5090", to_tag="callee")
    out = send(proxy, request)
    assert status(out) == 404
    assert send(proxy, build("ACK", "sip:2222@127.0.0.1:5090", to_tag="callee")) == []


def test_ack_for_our_own_stateless_reply_is_absorbed(proxy: Proxy) -> None:
    challenge = only(send(proxy, build("INVITE", f"sip:2222@{SERVER}"))).message
    assert isinstance(challenge, Response) and challenge.status_code == 407
    ack = build("ACK", f"sip:2222@{SERVER}", to_tag=challenge.to.tag)
    assert send(proxy, ack) == []


# -- responses ---------------------------------------------------------------------------------


def _response_via(proxy: Proxy, code: int, vias: list[str]) -> Response:
    lines = [f"SIP/2.0 {code} X", *(f"Via: {v}" for v in vias)]
    lines += [
        f"From: <sip:1111@{SERVER}>;tag=a",
        f"To: <sip:2222@{SERVER}>;tag=b",
        "Call-ID: c",
        "CSeq: 1 INVITE",
        "Content-Length: 0",
    ]
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Response)
    return message


def test_response_pops_our_via_and_goes_to_received_rport(proxy: Proxy) -> None:
    register(proxy, "2222", "sip:2222@127.0.0.1:5090")
    invite = only(send(proxy, authorized(proxy, build("INVITE", f"sip:2222@{SERVER}"))))
    assert isinstance(invite.message, Request)
    ok = _response_via(proxy, 200, invite.message.headers.get_list("Via"))
    out = only(send(proxy, ok, source=CALLEE_UDP))
    assert out.message is ok
    assert ok.top_via.branch == "z9hG4bKcaller1"
    assert (out.transport, out.address) == ("UDP", CALLER)


def test_response_goes_back_over_the_transport_of_the_next_via(proxy: Proxy) -> None:
    ours = f"SIP/2.0/UDP {SERVER};branch={BRANCH_PREFIX}abc"
    theirs = "SIP/2.0/TCP 10.0.0.1:5099;branch=z9hG4bKx;rport=40123;received=192.0.2.1"
    out = only(send(proxy, _response_via(proxy, 180, [ours, theirs])))
    assert (out.transport, out.address) == ("TCP", ("192.0.2.1", 40123))
    plain = "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx"
    out = only(send(proxy, _response_via(proxy, 180, [ours, plain])))
    assert out.address == ("10.0.0.1", 5060)


@pytest.mark.parametrize(
    "vias",
    [
        ["SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnotours"],
        [f"SIP/2.0/UDP {SERVER};branch=z9hG4bKforeign", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx"],
        [f"SIP/2.0/UDP {SERVER};branch={BRANCH_PREFIX}abc"],  # nobody after us
        [
            f"SIP/2.0/UDP {SERVER};branch={BRANCH_PREFIX}abc",
            "SIP/2.0/SCTP 10.0.0.1;branch=z9hG4bKx",
        ],
    ],
)
def test_responses_that_are_not_ours_are_dropped(proxy: Proxy, vias: list[str]) -> None:
    assert send(proxy, _response_via(proxy, 200, vias)) == []


# -- malformed requests and the built-in UA ----------------------------------------------------


def test_malformed_request_gets_400(proxy: Proxy) -> None:
    request = build("MESSAGE", f"sip:2222@{SERVER}")
    request.headers["CSeq"] = "1 INVITE"  # does not match the method
    response = only(send(proxy, request)).message
    assert isinstance(response, Response) and response.status_code == 400
    assert "CSeq" in response.reason_phrase


def test_echo_extension_is_answered_by_the_built_in_ua(proxy: Proxy) -> None:
    sdp = (
        "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 6000 RTP/AVP 0\r\n"
    )
    request = authorized(proxy, build("INVITE", f"sip:100@{SERVER}", body=sdp))
    out = send(proxy, request)
    codes = [o.message.status_code for o in out if isinstance(o.message, Response)]
    assert codes == [100, 180, 200]
    assert all(o.address == CALLER and o.transport == "UDP" for o in out)
    ok = out[-1].message
    assert ok.headers["Contact"] == f"<sip:100@{SERVER}>"
    assert b"m=audio" in ok.content


def test_proxy_without_echo_treats_100_as_a_user() -> None:
    identity = ServerIdentity(HOST, PORT)
    auth = DigestAuthenticator(None, secret=SECRET)
    proxy = Proxy(identity, registrar=Registrar(), authenticator=auth, secret=SECRET)
    request = authorized(proxy, build("MESSAGE", f"sip:100@{SERVER}"))
    assert status(send(proxy, request)) == 404
    assert proxy.next_deadline() is None and proxy.handle_timers(0.0) == []


def test_tcp_binding_is_reached_over_its_open_connection() -> None:
    open_connections = {("127.0.0.1", 40999)}
    identity = ServerIdentity(HOST, PORT)
    proxy = Proxy(
        identity,
        registrar=Registrar(),
        authenticator=DigestAuthenticator(None, secret=SECRET),
        secret=SECRET,
        connected=lambda transport, address: transport == "TCP" and address in open_connections,
    )
    contact = "sip:2222@127.0.0.1:5092;transport=tcp"
    register(proxy, "2222", contact, transport="TCP", source=("127.0.0.1", 40999))
    request = authorized(proxy, build("MESSAGE", f"sip:2222@{SERVER}"))
    out = only(send(proxy, request))
    assert (out.transport, out.address) == ("TCP", ("127.0.0.1", 40999))
    assert str(out.message.uri) == contact  # type: ignore[union-attr]
    open_connections.clear()  # the connection closed: the Contact it is
    request = authorized(proxy, build("MESSAGE", f"sip:2222@{SERVER}", call_id="call-2"))
    assert only(send(proxy, request)).address == CALLEE_TCP


@pytest.mark.parametrize(
    ("uri", "ours"),
    [
        (f"sip:{SERVER}", True),
        (f"sip:2222@{SERVER};transport=tcp", True),
        (f"sip:localhost:{PORT}", True),
        (f"sip:{HOST}", False),  # port 5060
        (f"sip:{HOST}:5071", False),
        (f"sip:192.0.2.1:{PORT}", False),
        (f"sip:192.0.2.1:5071;maddr={HOST}", False),
        (f"sip:x@192.0.2.1;maddr={HOST}", False),
        (f"tel:+{PORT}", False),
    ],
)
def test_server_identity_knows_its_uris(uri: str, ours: bool) -> None:
    assert ServerIdentity(HOST, PORT).is_ours(URI.parse(uri)) is ours


def test_server_identity_ipv6_and_default_port() -> None:
    identity = ServerIdentity("[::1]", 5060, aliases=("sip.example",))
    assert identity.is_ours(URI.parse("sip:[::1]"))
    assert identity.is_ours(URI.parse("sip:100@127.0.0.1:5060"))
    assert identity.is_ours(URI.parse("sip:sip.example"))
    assert identity.is_our_address(("::1", 5060))
    assert not identity.is_our_address(("::1", 5061))
    assert identity.record_route("TCP") == "<sip:[::1]:5060;transport=tcp;lr>"
    assert identity.pick_transport("SCTP") == "UDP"
    assert ServerIdentity(HOST, PORT, transports=("TCP",)).pick_transport(None) == "TCP"
