"""The bodies of event packages, sans-I/O: message-summary (RFC 3842), PIDF (RFC 3863) and
dialog-info (RFC 4235), read from the RFCs' examples and from what real servers send, built
and read back, and refused when hostile (XML bombs, external entities, huge documents)."""

from __future__ import annotations

import pytest

from sipx import DialogEntry, DialogInfo, MessageCounts, MessageSummary, ParseError, Presence
from sipx._core.subscription import parse_event_body
from sipx._core.xmlbody import MAX_XML

# -- message-summary -----------------------------------------------------------------------------
# RFC 3842 section 6 (example message body), with the optional message headers after it.
RFC3842_EXAMPLE = (
    "Messages-Waiting: yes\r\n"
    "Message-Account: sip:alice@vmail.example.com\r\n"
    "Voice-Message: 4/8 (1/2)\r\n"
    "\r\n"
    "To: <alice@atlanta.example.com>\r\n"
    "From: <bob@biloxi.example.com>\r\n"
    "Subject: carpool tomorrow?\r\n"
)


def test_message_summary_of_rfc_3842() -> None:
    summary = MessageSummary.parse(RFC3842_EXAMPLE.encode())
    assert summary.waiting is True
    assert summary.account == "sip:alice@vmail.example.com"
    assert summary.counts == {"voice-message": MessageCounts(4, 8, 1, 2)}
    assert (summary.new, summary.old) == (4, 8)
    assert summary.headers[2] == ("Subject", "carpool tomorrow?")


@pytest.mark.parametrize(
    ("text", "waiting", "counts"),
    [
        ("Messages-Waiting: no\n", False, {}),  # LF only, nothing else
        ("messages-waiting:YES\r\nvoice-message: 0/3\r\n", True, {"voice-message": (0, 3)}),
        (  # several classes, odd spacing, Asterisk's "(0/0)"
            "Messages-Waiting: yes\r\nVoice-Message: 2/8 (0/0)\r\nFax-Message:1 / 0\r\n",
            True,
            {"voice-message": (2, 8), "fax-message": (1, 0)},
        ),
        (
            "\r\nMessages-Waiting: no\r\nX-Extra-Message: 5/6\r\n",
            False,
            {"x-extra-message": (5, 6)},
        ),
    ],
)
def test_message_summary_variants(
    text: str, waiting: bool, counts: dict[str, tuple[int, int]]
) -> None:
    summary = MessageSummary.parse(text)
    assert summary.waiting is waiting
    assert {k: (v.new, v.old) for k, v in summary.counts.items()} == counts


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "no Messages-Waiting"),
        ("Voice-Message: 1/2\r\n", "starts with Messages-Waiting"),
        ("Messages-Waiting: maybe\r\n", "yes or no"),
        ("Messages-Waiting: yes\r\nVoice-Message: lots\r\n", "bad counts"),
        ("Messages-Waiting: yes\r\nVoice-Message: -1/2\r\n", "bad counts"),
        ("Messages-Waiting: yes\r\nVoice-Message: 99999999999/2\r\n", "bad counts"),
        ("Messages-Waiting: yes\r\nthis is not a header\r\n", "bad line"),
        ("Messages-Waiting: yes\r\n" + "X" * 20000, "larger than"),
    ],
)
def test_malformed_message_summaries_are_parse_errors(text: str, why: str) -> None:
    with pytest.raises(ParseError, match=why):
        MessageSummary.parse(text)


def test_message_summary_round_trip() -> None:
    summary = MessageSummary.voice(2, 8, urgent_new=1, account="sip:1111@127.0.0.1")
    text = summary.to_text()
    assert text == (
        "Messages-Waiting: yes\r\n"
        "Message-Account: sip:1111@127.0.0.1\r\n"
        "Voice-Message: 2/8 (1/0)\r\n"
    )
    assert MessageSummary.parse(text) == summary
    assert MessageSummary.voice(0, 5).to_text() == "Messages-Waiting: no\r\nVoice-Message: 0/5\r\n"


@pytest.mark.parametrize("bad", [-1, True, 1.5, "2"])
def test_message_counts_are_checked(bad: object) -> None:
    with pytest.raises(ValueError, match="whole number"):
        MessageCounts(bad)  # type: ignore[arg-type]


# -- PIDF ----------------------------------------------------------------------------------------
# RFC 3863 section 3.4 (example), prefixed namespace
RFC3863_EXAMPLE = """<?xml version="1.0" encoding="UTF-8"?>
<impp:presence xmlns:impp="urn:ietf:params:xml:ns:pidf"
    entity="pres:someone@example.com">
  <impp:tuple id="sg89ae">
    <impp:status>
      <impp:basic>open</impp:basic>
    </impp:status>
    <impp:contact priority="0.8">tel:+09012345678</impp:contact>
  </impp:tuple>
</impp:presence>
"""
# what baresip's presence module sends (RFC 4479 data model + RPID activities)
BARESIP_PIDF = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>\r
<presence xmlns="urn:ietf:params:xml:ns:pidf"\r
    xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"\r
    xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"\r
    entity="sip:3333@127.0.0.1">\r
  <dm:person id="p4159"><rpid:activities><rpid:busy/></rpid:activities>\r
  <dm:note>In a meeting</dm:note></dm:person>\r
  <tuple id="t4109">\r
    <status>\r
      <basic>closed</basic>\r
    </status>\r
    <contact>sip:3333@127.0.0.1</contact>\r
  </tuple>\r
</presence>\r
"""


def test_pidf_of_rfc_3863() -> None:
    presence = Presence.parse(RFC3863_EXAMPLE)
    assert presence.entity == "pres:someone@example.com"
    assert presence.basic == "open" and presence.open
    [item] = presence.tuples
    assert (item.id, item.contact) == ("sg89ae", "tel:+09012345678")
    assert presence.note is None


def test_pidf_with_data_model_and_rpid() -> None:
    presence = Presence.parse(BARESIP_PIDF.encode())
    assert presence.basic == "closed" and not presence.open
    assert presence.note == "In a meeting"
    assert presence.activities == ("busy",)


def test_pidf_open_wins_over_closed_and_no_status_is_unknown() -> None:
    doc = (
        '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b">'
        '<tuple id="1"><status><basic>closed</basic></status></tuple>'
        '<tuple id="2"><status><basic>OPEN</basic></status><note>desk</note></tuple>'
        '<tuple id="3"><status/></tuple></presence>'
    )
    presence = Presence.parse(doc)
    assert [t.basic for t in presence.tuples] == ["closed", "open", None]
    assert presence.basic == "open" and presence.note == "desk"
    assert Presence.parse(doc.replace("OPEN", "closed")).basic == "closed"
    empty = '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"/>'
    assert Presence.parse(empty).basic is None


def test_pidf_basic_other_than_open_or_closed_is_unknown() -> None:
    """baresip 1.0 says ``<basic>?</basic>`` before its user set a status: not an error."""
    doc = (
        '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:3333@127.0.0.1">'
        '<tuple id="t1"><status><basic>?</basic></status></tuple></presence>'
    )
    presence = Presence.parse(doc)
    assert presence.tuples[0].basic is None and presence.basic is None and not presence.open


def test_pidf_round_trip_escapes_text() -> None:
    built = Presence.build("sip:2222@127.0.0.1", "closed", note='Out <for> "lunch" & back')
    text = built.to_xml()
    assert "&lt;for&gt;" in text and "&amp;" in text
    assert Presence.parse(text) == built


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"><note>&lol2;</note></presence>
"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE p [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"><note>&xxe;</note></presence>
"""


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (BILLION_LAUGHS, "DOCTYPE or entities"),
        (EXTERNAL_ENTITY, "DOCTYPE or entities"),
        ("<!doctype presence><presence entity='x'/>", "DOCTYPE"),
        ("<presence entity='x'>" + " " * MAX_XML + "</presence>", "larger than"),
        (b"<presence entity='\xff'/>", "not UTF-8"),
        ("<presence entity='x'>", "not well-formed"),
        ("<notpresence entity='x'/>", "root element"),
        ("<presence/>", "no entity"),
    ],
)
def test_hostile_or_broken_pidf_is_refused(body: str | bytes, why: str) -> None:
    with pytest.raises(ParseError, match=why):
        Presence.parse(body)


def test_pidf_build_checks_arguments() -> None:
    with pytest.raises(ValueError, match="open"):
        Presence.build("sip:a@b", "away")
    with pytest.raises(ValueError, match="entity"):
        Presence.build("", "open")


# -- dialog-info ---------------------------------------------------------------------------------
# RFC 4235 section 5 (the first example), and a partial one with a terminated dialog.
RFC4235_EXAMPLE = """<?xml version="1.0"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info"
             version="0" state="full"
             entity="sip:alice@example.com">
  <dialog id="as7d900as8" call-id="a84b4c76e66710"
          local-tag="1928301774" direction="initiator">
    <state>trying</state>
  </dialog>
</dialog-info>
"""
BLF_EXAMPLE = """<?xml version="1.0"?>
<d:dialog-info xmlns:d="urn:ietf:params:xml:ns:dialog-info" version="7" state="partial"
    entity="sip:2222@127.0.0.1">
  <d:dialog id="one" call-id="c1" local-tag="l1" remote-tag="r1" direction="recipient">
    <d:state>early</d:state>
    <d:remote><d:identity display="Alice">sip:1111@127.0.0.1</d:identity>
      <d:target uri="sip:1111@127.0.0.1:5061"/></d:remote>
  </d:dialog>
  <d:dialog id="two" direction="initiator">
    <d:state event="remote-bye" code="200">terminated</d:state>
    <d:duration>42</d:duration>
  </d:dialog>
</d:dialog-info>
"""


def test_dialog_info_of_rfc_4235() -> None:
    info = DialogInfo.parse(RFC4235_EXAMPLE)
    assert (info.entity, info.version, info.full) == ("sip:alice@example.com", 0, True)
    [dialog] = info.dialogs
    assert dialog == DialogEntry(
        "as7d900as8", "trying", "initiator", "a84b4c76e66710", "1928301774"
    )
    assert not info.busy and not info.ringing and not info.idle


def test_dialog_info_for_a_busy_lamp() -> None:
    info = DialogInfo.parse(BLF_EXAMPLE)
    assert (info.version, info.full) == (7, False)
    ringing, ended = info.dialogs
    assert ringing.ringing and info.ringing and not info.busy
    assert (ringing.remote_identity, ringing.remote_display) == ("sip:1111@127.0.0.1", "Alice")
    assert ringing.remote_target == "sip:1111@127.0.0.1:5061"
    assert (ended.state, ended.event, ended.code, ended.duration) == (
        "terminated",
        "remote-bye",
        200,
        42,
    )
    assert set(info.by_id()) == {"one", "two"}


def test_dialog_info_round_trip() -> None:
    built = DialogInfo.build(
        "sip:2222@127.0.0.1",
        3,
        [
            DialogEntry(
                "d1",
                "confirmed",
                "initiator",
                "cid",
                "lt",
                "rt",
                local_identity="sip:2222@127.0.0.1",
                remote_identity="sip:100@127.0.0.1",
                remote_display="Echo & co",
                remote_target="sip:100@127.0.0.1:5060",
            )
        ],
    )
    parsed = DialogInfo.parse(built.to_xml())
    assert parsed == built and parsed.busy and not parsed.idle


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (
            '<dialog-info version="1" state="full" entity="x"><dialog><state>early</state>'
            "</dialog></dialog-info>",
            "without an id",
        ),
        (
            '<dialog-info version="1" state="full" entity="x"><dialog id="a"><state>busy</state>'
            "</dialog></dialog-info>",
            "dialog state",
        ),
        ('<dialog-info state="full" entity="x"/>', "no version"),
        ('<dialog-info version="x" state="full" entity="x"/>', "version is a number"),
        ('<dialog-info version="1" state="some" entity="x"/>', "full or partial"),
        (
            '<dialog-info version="1" state="full" entity="x"><dialog id="a" direction="up">'
            "<state>early</state></dialog></dialog-info>",
            "direction",
        ),
        (BILLION_LAUGHS.replace("presence", "dialog-info"), "DOCTYPE"),
    ],
)
def test_broken_dialog_info_is_refused(body: str, why: str) -> None:
    with pytest.raises(ParseError, match=why):
        DialogInfo.parse(body)


# -- dispatch by content type --------------------------------------------------------------------
def test_parse_event_body_reports_instead_of_raising() -> None:
    summary, error = parse_event_body(
        "message-summary", "application/simple-message-summary", b"Messages-Waiting: yes\r\n"
    )
    assert isinstance(summary, MessageSummary) and error is None
    # no Content-Type: the package's own type is assumed
    assert isinstance(parse_event_body("presence", None, RFC3863_EXAMPLE.encode())[0], Presence)
    body, error = parse_event_body("presence", "application/pidf+xml", b"<presence")
    assert body is None and error is not None and "well-formed" in error
    assert parse_event_body("presence", "text/plain", b"hello") == (None, None)
    assert parse_event_body("presence", "application/pidf+xml", b"") == (None, None)
    body, error = parse_event_body("presence", "a b c", b"x")
    assert body is None and error is not None
    frag, error = parse_event_body("refer", "message/sipfrag;version=2.0", b"SIP/2.0 180 Ringing")
    assert error is None and frag is not None and str(frag) == "180 Ringing"
