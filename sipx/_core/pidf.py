"""A minimal PIDF (RFC 3863): the body of ``presence`` NOTIFYs (RFC 3856).

What is read: the presentity (``entity``), each ``<tuple>`` with its ``<basic>`` status
(open/closed), ``<contact>`` and ``<note>``s, the notes of the document and of its
``<person>`` (RFC 4479 data model), and the RPID activities of the person (``away``,
``busy``, ``on-the-phone``..., RFC 4480). Everything else is ignored. The XML goes through
:func:`~sipx._core.xmlbody.parse_xml` first (size limit, no DOCTYPE or entities).
"""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import ParseError
from .xmlbody import child, children, local, parse_xml, text_of, xml_attr, xml_text

PIDF_TYPE = "application/pidf+xml"
PIDF_NS = "urn:ietf:params:xml:ns:pidf"
BASIC_STATES = ("open", "closed")


@dataclass(frozen=True)
class PresenceTuple:
    """One ``<tuple>``: ``basic`` is "open", "closed" or None (no status, or a value RFC 3863
    does not define, such as the "?" of a softphone that does not know yet)."""

    id: str
    basic: str | None = None
    contact: str | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Presence:
    """A PIDF document: the presentity, its tuples, notes and activities."""

    entity: str
    tuples: tuple[PresenceTuple, ...] = ()
    notes: tuple[str, ...] = ()
    activities: tuple[str, ...] = ()

    @property
    def basic(self) -> str | None:
        """ "open" when a tuple is open, else "closed" when one is closed, else None."""
        states = {t.basic for t in self.tuples}
        if "open" in states:
            return "open"
        return "closed" if "closed" in states else None

    @property
    def open(self) -> bool:
        return self.basic == "open"

    @property
    def note(self) -> str | None:
        """The first note: of the document or person, else of a tuple."""
        for note in (*self.notes, *(n for t in self.tuples for n in t.notes)):
            return note
        return None

    @classmethod
    def parse(cls, body: bytes | str) -> Presence:
        """Parse a PIDF document; ParseError when it is not one."""
        root = parse_xml(body, "PIDF")
        if local(root.tag) != "presence":
            raise ParseError(f"PIDF root element is <{local(root.tag)}>, not <presence>")
        entity = root.get("entity")
        if not entity:
            raise ParseError("PIDF <presence> has no entity")
        tuples = []
        for element in children(root, "tuple"):
            status = child(element, "status")
            basic = text_of(child(status, "basic")) if status is not None else None
            if basic is not None:
                basic = basic.lower()
                if basic not in BASIC_STATES:
                    basic = None  # not open/closed (baresip says "?"): unknown

            tuple_notes = tuple(n for n in map(text_of, children(element, "note")) if n)
            contact = text_of(child(element, "contact"))
            tuples.append(PresenceTuple(element.get("id") or "", basic, contact, tuple_notes))
        notes = [n for n in map(text_of, children(root, "note")) if n]
        activities: list[str] = []
        for person in children(root, "person"):
            notes += [n for n in map(text_of, children(person, "note")) if n]
            for group in children(person, "activities"):
                activities += [local(a.tag) for a in group if isinstance(a.tag, str)]
        return cls(entity, tuple(tuples), tuple(notes), tuple(activities))

    @classmethod
    def build(
        cls,
        entity: str,
        basic: str = "open",
        *,
        note: str | None = None,
        contact: str | None = None,
        tuple_id: str = "sipx",
    ) -> Presence:
        """One tuple with ``basic`` status (open/closed), and optionally a note/contact."""
        if basic not in BASIC_STATES:
            raise ValueError(f"basic is 'open' or 'closed', not {basic!r}")
        if not entity:
            raise ValueError("a PIDF document needs the presentity's URI (entity)")
        notes = (note,) if note else ()
        return cls(entity, (PresenceTuple(tuple_id, basic, contact, notes),))

    def to_xml(self) -> str:
        """The document (UTF-8 XML, default namespace PIDF)."""
        lines = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f'<presence xmlns="{PIDF_NS}" entity={xml_attr(self.entity)}>',
        ]
        for item in self.tuples:
            lines.append(f"  <tuple id={xml_attr(item.id or 'sipx')}>")
            if item.basic is not None:
                lines.append(f"    <status><basic>{item.basic}</basic></status>")
            else:
                lines.append("    <status/>")
            if item.contact:
                lines.append(f"    <contact>{xml_text(item.contact)}</contact>")
            lines += [f"    <note>{xml_text(note)}</note>" for note in item.notes]
            lines.append("  </tuple>")
        lines += [f"  <note>{xml_text(note)}</note>" for note in self.notes]
        lines.append("</presence>")
        return "\r\n".join(lines) + "\r\n"


__all__ = ["BASIC_STATES", "PIDF_NS", "PIDF_TYPE", "Presence", "PresenceTuple"]
