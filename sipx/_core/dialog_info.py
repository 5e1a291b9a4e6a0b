"""Dialog state documents (RFC 4235): the body of ``dialog`` NOTIFYs, for busy-lamp fields.

``application/dialog-info+xml`` lists the dialogs of the watched user: per ``<dialog>`` its
id, Call-ID and tags, direction (``initiator``: the user called; ``recipient``: the user is
called), ``<state>`` (trying, proceeding, early, confirmed, terminated, with the ``event``
and ``code`` that ended it) and the ``<local>``/``<remote>`` parties (identity and target).
``state="full"`` documents list every dialog, ``partial`` ones only those that changed;
``version`` counts the documents of one subscription. Reading only, plus a small builder
(for tests and simple notifiers). The XML goes through
:func:`~sipx._core.xmlbody.parse_xml` first (size limit, no DOCTYPE or entities).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass

from .._errors import ParseError
from .header_types import is_digits
from .xmlbody import child, children, local, parse_xml, text_of, xml_attr, xml_text

DIALOG_INFO_TYPE = "application/dialog-info+xml"
DIALOG_INFO_NS = "urn:ietf:params:xml:ns:dialog-info"
DIALOG_STATES = ("trying", "proceeding", "early", "confirmed", "terminated")
#: at most this many dialogs are read from one document
MAX_DIALOGS = 256


@dataclass(frozen=True)
class DialogEntry:
    """One ``<dialog>`` of a dialog-info document."""

    id: str
    state: str
    direction: str | None = None
    call_id: str | None = None
    local_tag: str | None = None
    remote_tag: str | None = None
    event: str | None = None  # why it ended: cancelled, rejected, replaced, local-bye...
    code: int | None = None
    local_identity: str | None = None
    local_target: str | None = None
    remote_identity: str | None = None
    remote_display: str | None = None
    remote_target: str | None = None
    duration: int | None = None

    @property
    def ringing(self) -> bool:
        """An early dialog in which the watched user is called."""
        return self.state in ("early", "proceeding") and self.direction == "recipient"


@dataclass(frozen=True)
class DialogInfo:
    """A dialog-info document: ``entity`` watched, ``version``, ``full`` (else partial)."""

    entity: str
    version: int
    full: bool = True
    dialogs: tuple[DialogEntry, ...] = ()

    @property
    def busy(self) -> bool:
        """Some dialog is confirmed (the busy lamp is on)."""
        return any(d.state == "confirmed" for d in self.dialogs)

    @property
    def ringing(self) -> bool:
        """Some dialog rings at the watched user."""
        return any(d.ringing for d in self.dialogs)

    @property
    def idle(self) -> bool:
        """No dialog is in progress (all terminated, or none)."""
        return all(d.state == "terminated" for d in self.dialogs)

    def by_id(self) -> dict[str, DialogEntry]:
        return {d.id: d for d in self.dialogs}

    @classmethod
    def parse(cls, body: bytes | str) -> DialogInfo:
        """Parse a dialog-info document; ParseError when it is not one."""
        root = parse_xml(body, "dialog-info")
        if local(root.tag) != "dialog-info":
            raise ParseError(f"dialog-info root element is <{local(root.tag)}>")
        entity = root.get("entity") or ""
        version = _number(root.get("version"), "version")
        if version is None:
            raise ParseError("dialog-info has no version")
        state = (root.get("state") or "").lower()
        if state not in ("full", "partial"):
            raise ParseError(f"dialog-info state is full or partial, not {state[:20]!r}")
        dialogs: list[DialogEntry] = []
        for element in children(root, "dialog"):
            if len(dialogs) >= MAX_DIALOGS:
                break
            dialogs.append(_dialog(element))
        return cls(entity, version, state == "full", tuple(dialogs))

    @classmethod
    def build(
        cls, entity: str, version: int, dialogs: Iterable[DialogEntry] = (), *, full: bool = True
    ) -> DialogInfo:
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValueError(f"version is a whole number >= 0, not {version!r}")
        entries = tuple(dialogs)
        for entry in entries:
            if entry.state not in DIALOG_STATES:
                raise ValueError(f"dialog state is one of {DIALOG_STATES}, not {entry.state!r}")
        return cls(entity, version, full, entries)

    def to_xml(self) -> str:
        lines = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f'<dialog-info xmlns="{DIALOG_INFO_NS}" version="{self.version}"'
            f' state="{"full" if self.full else "partial"}" entity={xml_attr(self.entity)}>',
        ]
        for d in self.dialogs:
            attrs = f"id={xml_attr(d.id)}"
            for name, value in (
                ("call-id", d.call_id),
                ("local-tag", d.local_tag),
                ("remote-tag", d.remote_tag),
                ("direction", d.direction),
            ):
                if value is not None:
                    attrs += f" {name}={xml_attr(value)}"
            lines.append(f"  <dialog {attrs}>")
            state_attrs = ""
            if d.event is not None:
                state_attrs += f" event={xml_attr(d.event)}"
            if d.code is not None:
                state_attrs += f' code="{d.code}"'
            lines.append(f"    <state{state_attrs}>{d.state}</state>")
            if d.duration is not None:
                lines.append(f"    <duration>{d.duration}</duration>")
            for side, identity, target, display in (
                ("local", d.local_identity, d.local_target, None),
                ("remote", d.remote_identity, d.remote_target, d.remote_display),
            ):
                if identity is None and target is None:
                    continue
                lines.append(f"    <{side}>")
                if identity is not None:
                    shown = f" display={xml_attr(display)}" if display else ""
                    lines.append(f"      <identity{shown}>{xml_text(identity)}</identity>")
                if target is not None:
                    lines.append(f"      <target uri={xml_attr(target)}/>")
                lines.append(f"    </{side}>")
            lines.append("  </dialog>")
        lines.append("</dialog-info>")
        return "\r\n".join(lines) + "\r\n"


def _dialog(element: ET.Element) -> DialogEntry:
    dialog_id = element.get("id")
    if not dialog_id:
        raise ParseError("a <dialog> without an id")
    state_element = child(element, "state")
    state = (text_of(state_element) or "").lower()
    if state not in DIALOG_STATES:
        raise ParseError(f"dialog state is one of {', '.join(DIALOG_STATES)}, not {state[:20]!r}")
    direction = element.get("direction")
    if direction is not None and direction not in ("initiator", "recipient"):
        raise ParseError(f"dialog direction is initiator or recipient, not {direction[:20]!r}")
    assert state_element is not None  # a state was read from it
    sides: dict[str, tuple[str | None, str | None, str | None]] = {}
    for side in ("local", "remote"):
        party = child(element, side)
        if party is None:
            sides[side] = (None, None, None)
            continue
        identity = child(party, "identity")
        target = child(party, "target")
        sides[side] = (
            text_of(identity),
            target.get("uri") if target is not None else None,
            identity.get("display") if identity is not None else None,
        )
    return DialogEntry(
        id=dialog_id,
        state=state,
        direction=direction,
        call_id=element.get("call-id"),
        local_tag=element.get("local-tag"),
        remote_tag=element.get("remote-tag"),
        event=state_element.get("event"),
        code=_number(state_element.get("code"), "code"),
        local_identity=sides["local"][0],
        local_target=sides["local"][1],
        remote_identity=sides["remote"][0],
        remote_display=sides["remote"][2],
        remote_target=sides["remote"][1],
        duration=_number(text_of(child(element, "duration")), "duration"),
    )


def _number(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    text = text.strip()
    if not is_digits(text) or len(text) > 10:
        raise ParseError(f"dialog-info {what} is a number, not {text[:20]!r}")
    return int(text)


__all__ = [
    "DIALOG_INFO_NS",
    "DIALOG_INFO_TYPE",
    "DIALOG_STATES",
    "DialogEntry",
    "DialogInfo",
]
