"""Refer-To (RFC 3515 2.1) and Replaces (RFC 3891): what a transfer names.

A blind transfer's Refer-To is the target's URI; an attended transfer's carries a
``Replaces`` header inside the URI (``<sip:carol@host?Replaces=id%3Bto-tag%3D..%3Bfrom-tag%3D..>``),
escaped as RFC 3261 19.1.1 wants, which the transferee copies into its INVITE. The UA that
receives that INVITE matches ``to-tag`` with its own (local) tag and ``from-tag`` with its
peer's (remote) tag (RFC 3891 3).
"""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import ParseError
from .header_types import NameAddr, is_token, parse_params
from .uri import URI


@dataclass(frozen=True)
class Replaces:
    """``Replaces: call-id;to-tag=...;from-tag=...[;early-only]`` (RFC 3891 6.1)."""

    call_id: str
    to_tag: str
    from_tag: str
    early_only: bool = False

    @classmethod
    def for_peer_of(cls, call_id: str, local_tag: str, remote_tag: str) -> Replaces:
        """The Replaces that the *peer* of our dialog matches: its local tag is our remote
        tag (``to-tag``), its remote tag is ours (``from-tag``)."""
        return cls(call_id, to_tag=remote_tag, from_tag=local_tag)

    @classmethod
    def parse(cls, text: str) -> Replaces:
        call_id, semi, rest = text.strip(" \t").partition(";")
        call_id = call_id.strip(" \t")
        if not call_id or any(c in call_id for c in " \t\r\n;"):
            raise ParseError(f"bad Call-ID in Replaces {text[:80]!r}")
        params = parse_params(semi + rest, "Replaces") if semi else {}
        to_tag, from_tag = params.get("to-tag"), params.get("from-tag")
        if not to_tag or not from_tag or not is_token(to_tag) or not is_token(from_tag):
            raise ParseError("Replaces needs one to-tag and one from-tag")
        return cls(call_id, to_tag, from_tag, "early-only" in params)

    def matches(self, call_id: str, local_tag: str, remote_tag: str) -> bool:
        """True for the dialog (as seen by the UA that received the Replaces) it names."""
        return (call_id, local_tag, remote_tag) == (self.call_id, self.to_tag, self.from_tag)

    def __str__(self) -> str:
        text = f"{self.call_id};to-tag={self.to_tag};from-tag={self.from_tag}"
        return text + (";early-only" if self.early_only else "")


def build_refer_to(target: URI | str, replaces: Replaces | None = None) -> str:
    """A Refer-To value, ``<uri>``, with ``replaces`` escaped into the URI's headers."""
    uri = target if isinstance(target, URI) else URI.parse(target)
    if uri.scheme not in ("sip", "sips", "tel"):
        raise ValueError(f"a transfer target is a sip, sips or tel URI, not {uri}")
    if replaces is not None:
        if uri.scheme == "tel":
            raise ValueError("a tel URI cannot carry Replaces")
        uri = uri.replace(headers={**uri.headers, "Replaces": str(replaces)})
    return f"<{uri}>"


@dataclass(frozen=True)
class ReferTarget:
    """What a received Refer-To asks for: the URI to INVITE (its headers removed), the
    Replaces to send with it and the other headers the URI carried."""

    uri: URI
    replaces: Replaces | None
    headers: dict[str, str]


def parse_refer_to(text: str) -> ReferTarget:
    """Split a Refer-To value; ParseError for a malformed one or a bad embedded Replaces."""
    address = NameAddr.parse(text.strip(" \t"))
    uri = address.uri
    headers = dict(uri.headers)
    replaces_text = next((v for k, v in headers.items() if k.lower() == "replaces"), None)
    headers = {k: v for k, v in headers.items() if k.lower() != "replaces"}
    replaces = Replaces.parse(replaces_text) if replaces_text is not None else None
    return ReferTarget(uri.replace(headers={}), replaces, headers)


__all__ = ["ReferTarget", "Replaces", "build_refer_to", "parse_refer_to"]
