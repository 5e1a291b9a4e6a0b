"""Reading the XML bodies of event packages (PIDF, dialog-info) without trusting them.

A NOTIFY body comes from the network, so before ``xml.etree`` sees it: a size limit, UTF-8
only (what RFC 3863 and RFC 4235 bodies are), and no document type declaration at all,
which rules out entity expansion ("billion laughs") and external entities. What is left is
plain elements, attributes and text, compared by local name (namespaces vary in practice:
prefixes, default namespaces, the data-model and RPID extensions).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from xml.sax.saxutils import escape, quoteattr

from .._errors import ParseError

#: the largest XML body parsed
MAX_XML = 64 * 1024
_DECLARATIONS = re.compile(rb"<!\s*(?:doctype|entity|element|attlist|notation)", re.I)


def parse_xml(body: bytes | str, what: str, *, limit: int = MAX_XML) -> ET.Element:
    """The root element of ``body``; ParseError when it is too large, not UTF-8, declares
    a document type or entities, or is not well-formed XML."""
    data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    if len(data) > limit:
        raise ParseError(f"{what} document larger than {limit} bytes")
    if _DECLARATIONS.search(data):
        raise ParseError(f"{what} document declares a DOCTYPE or entities (refused)")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError(f"{what} document is not UTF-8") from None
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise ParseError(f"{what} document is not well-formed XML: {exc}") from None


def local(tag: str) -> str:
    """``{urn:...}basic`` -> ``basic``."""
    return tag.rsplit("}", 1)[-1]


def children(element: ET.Element, name: str) -> Iterator[ET.Element]:
    """Direct children with local name ``name``, whatever their namespace."""
    return (child for child in element if isinstance(child.tag, str) and local(child.tag) == name)


def child(element: ET.Element, name: str) -> ET.Element | None:
    return next(children(element, name), None)


def text_of(element: ET.Element | None) -> str | None:
    """The stripped text of ``element`` (None when absent or empty)."""
    if element is None:
        return None
    text = "".join(element.itertext()).strip()
    return text or None


def xml_text(text: str) -> str:
    return escape(text)


def xml_attr(text: str) -> str:
    return quoteattr(text)


__all__ = ["MAX_XML", "child", "children", "local", "parse_xml", "text_of", "xml_attr", "xml_text"]
