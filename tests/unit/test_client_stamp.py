"""The client's Via and Contact stamp, pinned by behaviour (issue 14, third pass, continued).

* :meth:`Headers.prepend_via` gives exactly the fields, values and look-ups that
  :meth:`Headers.prepend` plus an assigned Contact give, for built and parsed sections,
  but keeps the index it had rather than dropping it;
* :meth:`NextHop.stamp` writes the Contact user of the From URI, learned from one full
  parse of a From and then known for the same From with another tag.
"""

from __future__ import annotations

import pytest

import sipx
from sipx._core import message as message_module
from sipx._core.builder import build_request
from sipx._core.header_types import NameAddr, parse_via
from sipx._core.headers import Headers
from sipx._core.message import Request
from sipx._core.parser import parse_message
from sipx._core.request_template import RequestTemplate
from sipx._core.uri import URI
from sipx.testing import MemoryNetwork

UAS = ("127.0.0.1", 5080)

PARSED = (
    b"OPTIONS sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKold\r\n"
    b"v: SIP/2.0/UDP far.example.com;branch=z9hG4bKfar\r\n"
    b"From: <sip:alice@example.com>;tag=1\r\n"
    b"To: <sip:bob@example.com>\r\n"
    b"Call-ID: abc\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def sections() -> list[Headers]:
    built = Headers([("From", "<sip:a@b>;tag=x"), ("Call-ID", "c"), ("CSeq", "1 OPTIONS")])
    indexed = Headers([("Via", "SIP/2.0/TCP h;branch=z9hG4bK1"), ("To", "<sip:b@c>")])
    indexed.lookup()
    parsed = parse_message(PARSED).headers
    parsed_read = parse_message(PARSED).headers
    parsed_read.get_first("Call-ID")  # its first values read, not its field list
    return [built, indexed, parsed, parsed_read]


def view(headers: Headers) -> tuple[object, ...]:
    names = ["Via", "Contact", "From", "Call-ID", "CSeq", "To"]
    return (
        list(headers.entries),
        dict(headers.lookup()),
        dict(headers.first_values()),
        [headers.get_first(name) for name in names],
        [headers.get_list(name) for name in names],
        [name in headers for name in names],
        list(headers),
        len(headers),
    )


@pytest.mark.parametrize("contact", [None, "<sip:alice@10.0.0.1:5060>"])
@pytest.mark.parametrize("case", range(4))
def test_prepend_via_is_prepend_and_assignment(case: int, contact: str | None) -> None:
    via = "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnew;rport"
    fast, general = sections()[case], sections()[case]
    fast.prepend_via(via, contact)
    general.prepend("Via", via)
    if contact is not None:
        general["Contact"] = contact
    assert view(fast) == view(general)
    assert fast.get_list("Via")[0] == via


def test_prepend_via_keeps_the_index_and_drops_the_typed_views() -> None:
    request = parse_message(PARSED)
    assert isinstance(request, Request)
    assert request.top_via.branch == "z9hG4bKold"
    index = request.headers.lookup()
    request.headers.prepend_via("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnew")
    assert request.headers.index is index  # updated in place, not rebuilt on next read
    assert request.headers.index["via"][0].endswith("z9hG4bKnew")
    assert request.top_via.branch == "z9hG4bKnew"  # the parsed view followed
    assert [v.branch for v in request.via] == ["z9hG4bKnew", "z9hG4bKold", "z9hG4bKfar"]


def test_prepend_via_refuses_a_second_contact() -> None:
    headers = Headers([("Contact", "<sip:x@y>")])
    with pytest.raises(ValueError, match="Contact"):
        headers.prepend_via("SIP/2.0/UDP h;branch=z9hG4bK1", "<sip:z@y>")
    assert headers.get_list("Contact") == ["<sip:x@y>"]
    assert "Via" not in headers


def options(from_text: str, call_id: str) -> Request:
    return build_request(
        "OPTIONS",
        URI.parse("sip:bob@127.0.0.1:5080"),
        from_addr=NameAddr.parse(from_text),
        to_addr="<sip:bob@127.0.0.1:5080>",
        call_id=call_id,
        cseq=1,
    )


FROMS = [
    ("<sip:alice@h>;tag=1a", "alice", False),
    ("<sip:alice@h>;tag=2b", "alice", True),  # the same From but its tag: not parsed
    ('"Al" <sip:alice@h>;tag=3c', "alice", False),
    ("<sip:carol@h>;tag=4d", "carol", False),
    ("<sip:alice@h>;tag=5e", "alice", True),
    ("<sip:h>;tag=6f", "sipx", False),  # no user: the default one
    ("<sip:h>;tag=7a", "sipx", True),
    ("<sip:erin@h>;tag=a-b", "erin", False),  # a tag not alphanumeric: parsed each time
    ("<sip:erin@h>;tag=c-d", "erin", False),
    ("<sip:frank@h>;x=1;tag=ab", "frank", False),
    ("<sip:frank@h>;tag=ab;x=1", "frank", False),  # the tag not last: parsed each time
    ("<sip:frank@h>;tag=cd;x=1", "frank", False),
]


async def test_the_contact_user_is_the_from_user(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []
    parse = message_module.parse_name_addr

    def counting_parse(text: str) -> NameAddr:
        parsed.append(text)
        return parse(text)

    monkeypatch.setattr(message_module, "parse_name_addr", counting_parse)
    async with sipx.AsyncClient("127.0.0.1", 5060, network=MemoryNetwork()) as client:
        next_hop = client._next_hop
        for number, (from_text, user, known) in enumerate(FROMS):
            request = options(from_text, f"call-{number}")
            written = request.headers.get_first("From")
            parsed.clear()
            next_hop.stamp(request, UAS)
            assert parsed == ([] if known else [written])
            contact = request.headers.get_first("Contact")
            assert contact == f"<sip:{user}@127.0.0.1:5060>"
            assert request.from_.tag == from_text.split(";tag=")[1].split(";")[0]
            assert request.top_via.branch.startswith("z9hG4bK")


@pytest.mark.parametrize(
    ("from_text", "to_text"),
    [("<sip:sipx@h>", "<sip:bob@h>"), ('"A" <sip:a@h>;x=1', "Bob <sip:bob@h>")],
)
def test_a_template_request_comes_with_its_first_values(from_text: str, to_text: str) -> None:
    uri = "sip:bob@127.0.0.1:5080"
    template = RequestTemplate(
        "OPTIONS", URI.parse(uri), from_addr=NameAddr.parse(from_text), to_addr=to_text,
        user_agent="sipx",
    )  # fmt: skip
    one, two = template.request("c1", "t1"), template.request("c2", "t2")
    from_addr = NameAddr.parse(from_text)
    from_addr.params["tag"] = "t1"
    built = build_request(
        "OPTIONS", URI.parse(uri), from_addr=from_addr, to_addr=to_text, call_id="c1", cseq=1,
        user_agent="sipx",
    )  # fmt: skip
    assert isinstance(one.headers.first, dict)  # not rebuilt on the first read
    assert one.headers.first == dict(built.headers.first_values())
    assert two.headers.first["call-id"] == "c2" and one.headers.first["call-id"] == "c1"
    assert two.headers.first["from"].endswith(";tag=t2")
    one.headers["X-A"] = "1"  # a change still drops them
    assert "x-a" in one.headers.first_values() and "x-a" not in two.headers.first_values()


@pytest.mark.parametrize("method", ["OPTIONS", "MESSAGE"])  # with a Contact, without
async def test_the_stamp_gives_the_branch_of_the_via_it_writes(method: str) -> None:
    """The stamp returns the branch it wrote (the transaction takes it from there) and
    makes no view of the Via (it seeded one until the thirteenth pass): the view is what
    parsing the Via written gives, when something reads it."""
    async with sipx.AsyncClient("127.0.0.1", 5060, network=MemoryNetwork()) as client:
        next_hop = client._next_hop
        branches = set()
        for number in range(3):
            request = build_request(
                method,
                URI.parse("sip:bob@127.0.0.1:5080"),
                from_addr=NameAddr.parse(f"<sip:alice@h>;tag={number}"),
                to_addr="<sip:bob@127.0.0.1:5080>",
                call_id=f"call-{number}",
                cseq=1,
            )
            transport, branch = next_hop.stamp(request, UAS)
            assert transport.name == "UDP"
            assert request.headers.typed.get("top_via") is None
            written = request.headers.get_first("Via")
            assert written is not None
            view = request.top_via
            assert view == parse_via(written)
            assert str(view) == written
            assert view.branch == branch and view.has_rport and view.transport == "UDP"
            branches.add(branch)
            assert ("Contact" in request.headers) is (method == "OPTIONS")
        assert len(branches) == 3  # each its own branch, from one cached stamp
