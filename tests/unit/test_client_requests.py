"""The requests AsyncClient builds, as they go on the wire (MemoryNetwork + ScriptedUAS).

Every check reads the bytes the client sent (``network.log``) or what the ScriptedUAS
parsed from them, on the autojump clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

import sipx
from sipx.testing import MemoryNetwork, ScriptedUAS

UAS = ("127.0.0.1", 5080)
PROXY = ("127.0.0.1", 5070)
OFFER = sipx.SDPBody.create_offer(
    "call",
    "alice",
    "127.0.0.1",
    "127.0.0.1",
    [
        {
            "media": "audio",
            "port": 8000,
            "codecs": [{"payload": "0", "name": "PCMU", "rate": "8000"}],
        }
    ],
)
SDP_TEXT = (
    "v=0\r\n"
    "o=alice 1 1 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "c=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\n"
    "m=audio 8000 RTP/AVP 0\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
)


@asynccontextmanager
async def client_on(network: MemoryNetwork, **kwargs: object) -> AsyncIterator[sipx.AsyncClient]:
    async with sipx.AsyncClient("127.0.0.1", 0, network=network, **kwargs) as client:  # type: ignore[arg-type]
        yield client


def wire(network: MemoryNetwork, method: str) -> list[bytes]:
    """The raw datagrams of ``method`` requests sent on the network, in send order."""
    start = f"{method} ".encode()
    return [entry.data for entry in network.log if entry.data.startswith(start)]


def only_wire(network: MemoryNetwork, method: str) -> bytes:
    [data] = wire(network, method)
    return data


def split(data: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    """Start line, header fields (name, value) in wire order, body."""
    head, separator, body = data.partition(b"\r\n\r\n")
    assert separator, "no blank line after the headers"
    start, *lines = head.decode("utf-8").split("\r\n")
    fields = []
    for line in lines:
        name, colon, value = line.partition(":")
        assert colon, f"not a header line: {line!r}"
        fields.append((name.strip(), value.strip()))
    return start, fields, body


def values(fields: list[tuple[str, str]], name: str) -> list[str]:
    return [value for field, value in fields if field.lower() == name.lower()]


def one(fields: list[tuple[str, str]], name: str) -> str:
    found = values(fields, name)
    assert len(found) == 1, f"{name}: {found}"
    return found[0]


# -- RFC 3265/6665, 3515, 6086, 3903: the methods with their own helpers ---------------------------
async def test_subscribe_out_of_dialog(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        sub = await client.subscribe(uas.uri, "dialog", 600, accept="application/dialog-info+xml")
        response = sub.response
        assert response is not None and response.status_code == 202
        assert response.request is not None and response.request.method == "SUBSCRIBE"
        [received] = uas.requests_for("SUBSCRIBE")
        host, port = client.local_address
    first, unsubscribe = wire(network, "SUBSCRIBE")  # closing the client unsubscribes
    start, fields, body = split(first)
    assert start == f"SUBSCRIBE {uas.uri} SIP/2.0"
    assert one(fields, "Event") == "dialog"
    assert one(fields, "Expires") == "600"
    assert one(fields, "Accept") == "application/dialog-info+xml"
    assert one(fields, "Contact") == f"<sip:sipx@{host}:{port}>"
    assert one(fields, "CSeq") == "1 SUBSCRIBE"
    assert body == b"" and one(fields, "Content-Length") == "0"
    assert received.headers["Event"] == "dialog"
    _, fields, _ = split(unsubscribe)
    assert (one(fields, "Expires"), one(fields, "CSeq")) == ("0", "2 SUBSCRIBE")


async def test_subscribe_headers_override_expires(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        sub = await client.subscribe(
            uas.uri, "x-custom", 600, headers={"expires": "0", "Accept": "text/plain"}
        )
        assert sub.response is not None and sub.response.status_code == 202
        # Expires: 0 is a fetch: the subscription waits for one NOTIFY (Timer N), no more
        assert await sub.wait_terminated() == "timeout"
        assert trio.current_time() == pytest.approx(64 * client.timers.t1, abs=0.01)
    _, fields, _ = split(only_wire(network, "SUBSCRIBE"))
    assert one(fields, "Expires") == "0"
    assert values(fields, "Accept") == ["text/plain"]


async def test_subscribe_to_an_unknown_package_sends_no_accept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        await client.subscribe(uas.uri, "x-custom", 600)
    _, fields, _ = split(wire(network, "SUBSCRIBE")[0])
    assert values(fields, "Accept") == []


async def test_notify_out_of_dialog(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    document = '<?xml version="1.0"?><presence entity="sip:alice@example.com"/>'
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        response = await client.notify(
            uas.uri,
            "presence",
            document,
            subscription_state="active;expires=600",
            content_type="application/pidf+xml",
        )
        assert response.status_code == 200
        [received] = uas.requests_for("NOTIFY")
    start, fields, body = split(only_wire(network, "NOTIFY"))
    assert start == f"NOTIFY {uas.uri} SIP/2.0"
    assert one(fields, "Event") == "presence"
    assert one(fields, "Subscription-State") == "active;expires=600"
    assert one(fields, "Content-Type") == "application/pidf+xml"
    assert body == document.encode()
    assert one(fields, "Content-Length") == str(len(document))
    assert received.content == document.encode()


async def test_refer_puts_refer_to_in_angle_brackets(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        response = await client.refer(uas.uri, refer_to="sip:carol@example.com;transport=tcp")
        assert response.status_code == 202
        again = await client.refer(uas.uri, refer_to="<sip:dave@example.com>")
        assert again.status_code == 202
    first, second = (split(data)[1] for data in wire(network, "REFER"))
    # The brackets keep ;transport=tcp a parameter of the URI, not of the header.
    assert one(first, "Refer-To") == "<sip:carol@example.com;transport=tcp>"
    assert one(second, "Refer-To") == "<sip:dave@example.com>"
    assert values(first, "Contact")


async def test_refer_without_refer_to_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        with pytest.raises(ValueError, match="refer_to"):
            await client.refer(uas.uri)
    assert wire(network, "REFER") == []


async def test_info_out_of_dialog(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    dtmf = "Signal=5\r\nDuration=160\r\n"
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        response = await client.info(uas.uri, dtmf, content_type="application/dtmf-relay")
        assert response.status_code == 200
        default = await client.info(uas.uri, "Signal=1\r\n")
        assert default.status_code == 200
    first, second = wire(network, "INFO")
    start, fields, body = split(first)
    assert start == f"INFO {uas.uri} SIP/2.0"
    assert one(fields, "Content-Type") == "application/dtmf-relay"
    assert body == dtmf.encode() and one(fields, "Content-Length") == str(len(dtmf))
    assert one(split(second)[1], "Content-Type") == "application/dtmf-relay"


async def test_generic_request_publish(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    document = "<presence/>"
    async with (
        ScriptedUAS(network, UAS, {"PUBLISH": [(200, {"SIP-ETag": "abc"})]}) as uas,
        client_on(network) as client,
    ):
        response = await client.request(
            "PUBLISH",
            uas.uri,
            headers={
                "Event": "presence",
                "Expires": "3600",
                "Content-Type": "application/pidf+xml",
            },
            body=document,
        )
        assert response.status_code == 200
        assert response.headers["SIP-ETag"] == "abc"
    start, fields, body = split(only_wire(network, "PUBLISH"))
    assert start == f"PUBLISH {uas.uri} SIP/2.0"
    assert one(fields, "CSeq") == "1 PUBLISH"
    assert one(fields, "Event") == "presence"
    assert one(fields, "Expires") == "3600"
    assert one(fields, "Content-Type") == "application/pidf+xml"
    assert body == document.encode()


async def test_generic_request_method_is_upper_cased(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        response = await client.request("options", uas.uri)
        assert response.status_code == 200
    start, fields, _ = split(only_wire(network, "OPTIONS"))
    assert start.startswith("OPTIONS ")
    assert one(fields, "CSeq") == "1 OPTIONS"


# -- the headers of an out-of-dialog request -------------------------------------------------------
async def test_mandatory_headers_in_conventional_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    text = "héllo wörld"  # Content-Length counts bytes, not characters
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        response = await client.message(uas.uri, text)
        assert response.status_code == 200
        host, port = client.local_address
    start, fields, body = split(only_wire(network, "MESSAGE"))
    assert start == f"MESSAGE {uas.uri} SIP/2.0"
    names = [name for name, _ in fields]
    assert names[:6] == ["Via", "Max-Forwards", "From", "To", "Call-ID", "CSeq"]
    assert names[-1] == "Content-Length"
    assert names.index("Content-Type") > names.index("CSeq")
    assert len({name.lower() for name in names}) == len(names)  # nothing twice
    via = one(fields, "Via")
    assert via.startswith(f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK")
    assert via.split(";")[1:][-1] == "rport"
    assert one(fields, "Max-Forwards") == "70"
    from_ = sipx.NameAddr.parse(one(fields, "From"))
    assert from_.tag and len(from_.tag) >= 8
    assert str(from_.uri) == "sip:sipx@127.0.0.1:5080"
    to = sipx.NameAddr.parse(one(fields, "To"))
    assert str(to.uri) == uas.uri and to.tag is None
    assert len(one(fields, "Call-ID")) >= 16
    assert one(fields, "CSeq") == "1 MESSAGE"
    assert one(fields, "User-Agent") == f"sipx/{sipx.__version__}"
    assert one(fields, "Content-Type") == "text/plain"
    assert body == text.encode("utf-8")
    assert one(fields, "Content-Length") == str(len(text.encode("utf-8"))) == "13"


async def test_each_request_gets_fresh_identifiers(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        await client.options(uas.uri)
        await client.options(uas.uri)
    first, second = (split(data)[1] for data in wire(network, "OPTIONS"))
    for name in ("Via", "Call-ID", "From"):
        assert one(first, name) != one(second, name), name


async def test_user_headers_win_and_appear_once(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    custom_from = '"Custom" <sip:custom@example.com>;tag=abc123'
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        response = await client.request(
            "OPTIONS",
            uas.uri,
            headers={
                "From": custom_from,
                "max-forwards": "10",  # any case
                "User-Agent": "custom-agent/1.0",
                "X-Extra": "yes",
            },
        )
        assert response.status_code == 200
        assert response.from_.tag == "abc123"
    _, fields, _ = split(only_wire(network, "OPTIONS"))
    assert one(fields, "From") == custom_from
    assert one(fields, "Max-Forwards") == "10"
    assert one(fields, "User-Agent") == "custom-agent/1.0"
    assert one(fields, "X-Extra") == "yes"
    assert [name for name, _ in fields][:3] == ["Via", "Max-Forwards", "From"]


async def test_custom_from_without_tag_gets_one(autojump_clock: trio.testing.MockClock) -> None:
    """RFC 3261 8.1.1.3: the From of a new request MUST carry a tag."""
    network = MemoryNetwork()
    custom = '"Doe, John" <sip:custom@example.com>;x=1'
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        response = await client.request("OPTIONS", uas.uri, headers={"From": custom})
        assert response.status_code == 200
    _, fields, _ = split(only_wire(network, "OPTIONS"))
    value = one(fields, "From")
    assert value.startswith(custom + ";tag=")  # the user's text kept, a tag added
    from_ = sipx.NameAddr.parse(value)
    assert str(from_.uri) == "sip:custom@example.com"
    assert from_.display_name == "Doe, John"
    assert from_.tag and len(from_.tag) >= 8
    assert response.from_.tag == from_.tag


async def test_user_contact_and_to_are_kept(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        await client.subscribe(
            uas.uri,
            "presence",
            headers={"Contact": "<sip:me@192.0.2.7:5070>", "To": "<sip:bob@example.com>"},
        )
    _, fields, _ = split(wire(network, "SUBSCRIBE")[0])
    assert one(fields, "Contact") == "<sip:me@192.0.2.7:5070>"
    assert one(fields, "To") == "<sip:bob@example.com>"


async def test_from_uri_and_to_uri_arguments(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        await client.request(
            "OPTIONS", uas.uri, from_uri="sip:alice@example.com", to_uri="sip:bob@example.com"
        )
    _, fields, _ = split(only_wire(network, "OPTIONS"))
    from_ = sipx.NameAddr.parse(one(fields, "From"))
    assert str(from_.uri) == "sip:alice@example.com" and from_.tag
    assert one(fields, "To") == "<sip:bob@example.com>"


# -- bodies and Content-Type ----------------------------------------------------------------------
async def test_sdp_body_object_sets_application_sdp(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        response = await client.invite(uas.uri, body=OFFER)
        assert response.status_code == 200
        await client.ack(response)
        await client.bye(response)
    _, fields, body = split(only_wire(network, "INVITE"))
    assert one(fields, "Content-Type") == "application/sdp"
    assert body == OFFER.to_bytes()
    assert one(fields, "Content-Length") == str(len(body))
    assert values(fields, "Contact")


async def test_sdp_text_body_sets_application_sdp(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        response = await client.invite(uas.uri, body=SDP_TEXT)
        assert response.status_code == 200
        await client.ack(response)
        await client.bye(response)
    _, fields, body = split(only_wire(network, "INVITE"))
    assert one(fields, "Content-Type") == "application/sdp"
    assert body == SDP_TEXT.encode()


async def test_request_with_sdp_body_and_explicit_type(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, UAS, {"UPDATE": [200]}) as uas,
        client_on(network) as client,
    ):
        await client.request("UPDATE", uas.uri, body=OFFER)
        await client.request("MESSAGE", uas.uri, body="v=0 is not sdp", content_type="text/x-a")
    _, update, _ = split(only_wire(network, "UPDATE"))
    assert one(update, "Content-Type") == "application/sdp"
    _, message, _ = split(only_wire(network, "MESSAGE"))
    assert one(message, "Content-Type") == "text/x-a"


async def test_message_with_json_content_type(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    payload = '{"text": "hi"}'
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        response = await client.message(uas.uri, payload, content_type="application/json")
        assert response.status_code == 200
        [received] = uas.requests_for("MESSAGE")
    _, fields, body = split(only_wire(network, "MESSAGE"))
    assert one(fields, "Content-Type") == "application/json"
    assert body == payload.encode()
    assert received.content == payload.encode()


# -- where requests go -----------------------------------------------------------------------------
async def test_host_and_port_override_the_destination(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        # The Request-URI names a host that does not exist on the network.
        first = await client.options("sip:bob@example.com", host="127.0.0.1", port=5080)
        second = await client.options("sip:bob@10.9.9.9:5080", host="127.0.0.1")
        third = await client.options("sip:bob@127.0.0.1:5999", port=5080)
        assert [r.status_code for r in (first, second, third)] == [200, 200, 200]
        assert [str(r.uri) for r in uas.requests_for("OPTIONS")] == [
            "sip:bob@example.com",
            "sip:bob@10.9.9.9:5080",
            "sip:bob@127.0.0.1:5999",
        ]
    assert {c.destination for c in network.requests("OPTIONS")} == {UAS}
    assert [split(data)[0] for data in wire(network, "OPTIONS")] == [
        "OPTIONS sip:bob@example.com SIP/2.0",
        "OPTIONS sip:bob@10.9.9.9:5080 SIP/2.0",
        "OPTIONS sip:bob@127.0.0.1:5999 SIP/2.0",
    ]


async def test_outbound_proxy_gets_the_request(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, PROXY) as proxy,
        client_on(network, outbound_proxy="sip:127.0.0.1:5070") as client,
    ):
        response = await client.options("sip:bob@example.com")
        assert response.status_code == 200
        message = await client.message("sip:carol@example.org:5099", "hi")
        assert message.status_code == 200
        assert len(proxy.requests) == 2
    assert [c.destination for c in network.requests()] == [PROXY, PROXY]
    assert split(only_wire(network, "OPTIONS"))[0] == "OPTIONS sip:bob@example.com SIP/2.0"
    assert split(only_wire(network, "MESSAGE"))[0] == "MESSAGE sip:carol@example.org:5099 SIP/2.0"


async def test_tel_uri_without_proxy_is_a_clear_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with client_on(network) as client:
        with pytest.raises(sipx.ProtocolError, match=r"tel: URI without a proxy"):
            await client.options("tel:+15551234567")
    assert network.log == []


async def test_tel_uri_goes_to_the_outbound_proxy(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, PROXY),
        client_on(network, outbound_proxy="sip:127.0.0.1:5070") as client,
    ):
        response = await client.message("tel:+15551234567", "hi", from_uri="sip:alice@example.com")
        assert response.status_code == 200
    [sent] = network.requests("MESSAGE")
    assert sent.destination == PROXY
    assert split(sent.message.to_bytes())[0] == "MESSAGE tel:+15551234567 SIP/2.0"


# -- misuse ----------------------------------------------------------------------------------------
async def test_request_on_a_client_never_opened(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    client = sipx.AsyncClient("127.0.0.1", 0, network=network)
    with pytest.raises(RuntimeError, match="not open"):
        await client.options("sip:bob@127.0.0.1:5080")
    with pytest.raises(RuntimeError, match="not open"):
        await client.request("MESSAGE", "sip:bob@127.0.0.1:5080", body="hi")
    assert network.log == []


async def test_request_on_a_closed_client(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with client_on(network) as client:
        pass
    with pytest.raises(sipx.SIPError, match="closed"):
        await client.options("sip:bob@127.0.0.1:5080")
    assert network.log == []


async def test_bye_needs_a_response_or_dialog_id(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with client_on(network) as client:
        with pytest.raises(ValueError) as caught:
            await client.bye()
    assert str(caught.value) == "Either response or dialog_id must be provided"
    assert network.log == []


async def test_retry_with_auth_refuses_a_200(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        response = await client.options(uas.uri)
        assert response.status_code == 200
        with pytest.raises(ValueError, match="401 or 407"):
            await client.retry_with_auth(response, auth=sipx.Auth.Digest("alice", "secret"))
    assert len(wire(network, "OPTIONS")) == 1
