"""The header section: an ordered, case-insensitive, multi-valued mapping.

Names are matched case-insensitively and compact forms (``v`` for Via, ``f`` for From, ...)
are expanded. Values are kept as text; the typed views in :mod:`sipx._core.header_types` parse
them on first access and the parsed objects are cached here until the header changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from types import MappingProxyType
from typing import Any

# RFC 3261 section 7.3.3 and later RFCs' compact forms.
COMPACT_FORMS = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_CANONICAL_NAMES = [
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "From",
    "In-Reply-To",
    "Max-Forwards",
    "Min-Expires",
    "MIME-Version",
    "Organization",
    "Priority",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Reason",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Reject-Contact",
    "Reply-To",
    "Request-Disposition",
    "Require",
    "Retry-After",
    "Route",
    "RSeq",
    "Server",
    "Session-Expires",
    "Subject",
    "Subscription-State",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
    "Min-SE",
    "Identity",
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "Privacy",
    "Path",
    "Service-Route",
    "Replaces",
]

# lower-case name -> (key: lower-case long name, canonical spelling), for every known name
# and compact form.
_KNOWN: dict[str, tuple[str, str]] = {
    name.lower(): (name.lower(), name) for name in _CANONICAL_NAMES
}
_KNOWN.update({letter: (long.lower(), long) for letter, long in COMPACT_FORMS.items()})
# The same for the spellings seen in practice (canonical, lower, upper, compact letters in
# both cases), so that the parser and lookups can skip ``str.lower()``.
_EXACT: dict[str, tuple[str, str]] = dict(_KNOWN)
for _entry in list(_KNOWN.values()):
    _EXACT[_entry[1]] = _entry
    _EXACT[_entry[1].upper()] = _entry
    _EXACT["-".join(part.capitalize() for part in _entry[1].split("-"))] = _entry
for _letter, _long in COMPACT_FORMS.items():
    _EXACT[_letter.upper()] = _KNOWN[_letter]
del _entry, _letter, _long

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
# One item of a comma-separated list: runs of ordinary characters, quoted strings (with
# quoted-pairs) and <...> spans, which may hold commas. Each alternative starts with a
# different character, so matching is linear.
_LIST_ITEM_RE = re.compile(r'(?:[^,"<]|"(?:[^"\\]|\\[\s\S]?)*(?:"|\Z)|<[^>]*(?:>|\Z))+')

# Headers whose values may be comma-joined lists (RFC 3261 section 7.3.1). Others (Date,
# WWW-Authenticate, Authorization, ...) contain commas that are not separators.
LIST_HEADERS = frozenset(
    [
        "via",
        "route",
        "record-route",
        "contact",
        "allow",
        "supported",
        "require",
        "proxy-require",
        "unsupported",
        "accept",
        "accept-encoding",
        "accept-language",
        "allow-events",
        "content-encoding",
        "content-language",
        "alert-info",
        "call-info",
        "error-info",
        "in-reply-to",
        "warning",
        "path",
        "service-route",
        "reason",
        "accept-contact",
        "reject-contact",
        "request-disposition",
        "security-client",
        "security-server",
        "security-verify",
        "p-asserted-identity",
        "p-preferred-identity",
        "p-associated-uri",
        "history-info",
    ]
)


# ``Headers.first`` when it has to be rebuilt: empty (a read finds nothing and falls back to
# Headers.first_values()) and read-only.
STALE: Mapping[str, str] = MappingProxyType({})


def header_key(name: str) -> str:
    """The lookup key of a header name: lower-case long form."""
    known = _EXACT.get(name)
    if known is not None:
        return known[0]
    lowered = name.lower()
    known = _KNOWN.get(lowered)
    return known[0] if known is not None else lowered


def canonical_name(name: str) -> str:
    """The conventional spelling of a header name (``call-id`` -> ``Call-ID``, ``v`` -> ``Via``)."""
    known = _EXACT.get(name) or _KNOWN.get(name.lower())
    return known[1] if known is not None else name


def split_list(value: str) -> list[str]:
    """Split a comma-joined header value, respecting quotes, ``<...>`` and escapes.

    Empty items are dropped and items are stripped of surrounding whitespace.
    """
    if "," not in value:
        return [value]
    if '"' not in value and "<" not in value:
        items = value.split(",")
    else:
        items = _LIST_ITEM_RE.findall(value)
    return [item for item in (raw.strip(" \t") for raw in items) if item]


class Headers(MutableMapping[str, str]):
    """Ordered, case-insensitive, multi-valued header fields.

    ``headers["Via"]`` joins every value of that name with ``", "`` (equivalent in SIP);
    :meth:`get_list` returns the values one by one (comma-joined lists split);
    :meth:`add` appends another field; assignment replaces every field of that name.

    ``entries``, ``index``, ``first``, ``typed`` and :meth:`lookup` are the storage the
    parser and :class:`~sipx.Message` work on directly (the hottest paths of sipx); treat
    them as read-only and use the mapping methods.

    A parsed header section starts as its header lines, the first value of each name
    (``first``) and the names given more than once with all their values; ``entries``
    (the field list) and ``index`` are built from those on first use, as most received
    messages are only read by a few names.

    ``in_order`` is True while the fields are known to be in the order ``to_bytes()``
    writes them (a response made by ``make_response``): it then writes them without
    sorting. Any change but a new top Via makes it False.
    """

    __slots__ = ("_entries", "_lines", "first", "in_order", "index", "more", "typed")

    def __init__(
        self, fields: Mapping[str, str] | Iterable[tuple[str, str]] | Headers | None = None
    ) -> None:
        # Each field is (key, name as written or canonical, value).
        self._entries: list[tuple[str, str, str]] | None = []
        self._lines: list[str] | None = None
        # key -> its values, built on first lookup; None after a change.
        self.index: dict[str, tuple[str, ...]] | None = None
        # key -> its first value; STALE (empty, read-only) after a change, rebuilt by
        # first_values(). For a parsed section, ``more`` holds every value of the keys given
        # more than once (None when there are none).
        self.first: Mapping[str, str] = STALE
        self.more: dict[str, tuple[str, ...]] | None = None
        # Typed views (Via, CSeq, ...) parsed from these fields, by slot; cleared on change.
        self.typed: dict[str, Any] = {}
        self.in_order = False
        if fields is None:
            return
        if isinstance(fields, Headers):
            self._entries = list(fields.entries)
            return
        items = fields.items() if isinstance(fields, Mapping) else fields
        for name, value in items:
            self.add(name, value)

    @classmethod
    def from_parsed(
        cls,
        fields: list[tuple[str, str, str]],
        index: dict[str, tuple[str, ...]] | None = None,
        *,
        in_order: bool = False,
    ) -> Headers:
        """Wrap fields the parser produced (already clean), with their index if built;
        ``in_order``: they are in the order ``to_bytes()`` writes (see the class)."""
        headers = cls.__new__(cls)
        headers._entries = fields
        headers._lines = None
        headers.index = index
        headers.first = STALE
        headers.more = None
        headers.typed = {}
        headers.in_order = in_order
        return headers

    @classmethod
    def from_lines(
        cls,
        lines: list[str],
        first: dict[str, str],
        more: dict[str, tuple[str, ...]] | None = None,
    ) -> Headers:
        """Wrap what the parser found: the message's lines (the start line first, then
        header lines whose names it checked), the first value of each key and, for the
        keys given more than once, every value."""
        return headers_from_lines(lines, first, more)

    @property
    def entries(self) -> list[tuple[str, str, str]]:
        """Every field as ``(key, name, value)``, in order (built now for a parsed section)."""
        entries = self._entries
        if entries is None:
            entries = self._entries = _fields_of(self._lines or [], self.first, self.more)
            self._lines = None
        return entries

    def lookup(self) -> dict[str, tuple[str, ...]]:
        """Every key with its values (the index, built now if it was not)."""
        index = self.index
        if index is None:
            first = self.first
            if first is not STALE and self._lines is not None:
                index = dict(zip(first, zip(first.values(), strict=True), strict=True))
                if self.more:
                    index.update(self.more)
            else:
                index = {}
                for key, _, value in self.entries:
                    values = index.get(key)
                    index[key] = (value,) if values is None else (*values, value)
            self.index = index
        return index

    def repeated(self, keys: Iterable[str]) -> str | None:
        """The first of ``keys`` (lookup-form) given more than once, or None; a section
        still as parsed is answered from the keys it had more than once, without building
        the index."""
        if self.index is None and self.first is not STALE and self._lines is not None:
            more = self.more
            return None if not more else next((key for key in keys if key in more), None)
        index = self.lookup()
        for key in keys:
            values = index.get(key)
            if values is not None and len(values) > 1:
                return key
        return None

    def first_values(self) -> Mapping[str, str]:
        """Every key with its first value (built now if it was not)."""
        first = self.first
        if first is STALE:
            first = self.first = {key: values[0] for key, values in self.lookup().items()}
        return first

    def _changed(self) -> None:
        self.in_order = False
        self.index = None
        self.first = STALE
        self.more = None
        if self.typed:
            self.typed.clear()

    # -- Mapping -------------------------------------------------------------------------
    def __getitem__(self, name: str) -> str:
        values = self.lookup().get(header_key(name))
        if values is None:
            raise KeyError(name)
        return values[0] if len(values) == 1 else ", ".join(values)

    def get_first(self, name: str) -> str | None:
        """The first field's value as written (not comma-split), or None."""
        first = self.first
        if first is STALE:
            first = self.first_values()
        known = _EXACT.get(name)  # header_key inline: the hottest look-up in sipx
        return first.get(known[0] if known is not None else header_key(name))

    def first_of_key(self, key: str) -> str | None:
        """:meth:`get_first` for a key already in lookup form (lower-case long name)."""
        first = self.first
        if first is STALE:
            first = self.first_values()
        return first.get(key)

    def get_list(self, name: str) -> list[str]:
        """Every value of ``name`` in order; comma-joined list headers are split. (A section
        still as parsed answers from its first values and repeated keys, without building
        the index: a dialog's Contact, a 200's Record-Route copies.)"""
        key = header_key(name)
        values: tuple[str, ...] | None
        if self.index is None and self.first is not STALE and self._lines is not None:
            more = self.more
            values = more.get(key) if more else None
            if values is None:
                value = self.first.get(key)
                values = None if value is None else (value,)
        else:
            values = self.lookup().get(key)
        if not values:
            return []
        if key not in LIST_HEADERS:
            return list(values)
        if len(values) == 1:
            return split_list(values[0])
        return [part for value in values for part in split_list(value)]

    get_all = get_list

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and header_key(name) in self.lookup()

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for key, name, _ in self.entries:
            if key not in seen:
                seen.add(key)
                yield name

    def __len__(self) -> int:
        return len(self.lookup())

    def multi_items(self) -> list[tuple[str, str]]:
        """Every field as ``(name, value)``, in order, nothing joined."""
        return [(name, value) for _, name, value in self.entries]

    # -- mutation ------------------------------------------------------------------------
    def __setitem__(self, name: str, value: str) -> None:
        key = header_key(_clean_name(name))
        field = (key, canonical_name(name), _clean_value(value))
        entries = self.entries
        for entry in entries:
            if entry[0] == key:
                break
        else:
            entries.append(field)  # the usual case: a header not there yet
            self._changed()
            return
        fields: list[tuple[str, str, str]] = []
        placed = False
        for entry in entries:
            if entry[0] == key:
                if not placed:
                    fields.append(field)
                    placed = True
            else:
                fields.append(entry)
        self._entries = fields
        self._changed()

    def __delitem__(self, name: str) -> None:
        key = header_key(name)
        entries = self.entries
        fields = [field for field in entries if field[0] != key]
        if len(fields) == len(entries):
            raise KeyError(name)
        self._entries = fields
        self._changed()

    def add(self, name: str, value: str) -> None:
        """Append a field (keeps those of the same name)."""
        name = _clean_name(name)
        self.entries.append((header_key(name), canonical_name(name), _clean_value(value)))
        self._changed()

    def prepend(self, name: str, value: str) -> None:
        """Insert a field before every other (a new top Via)."""
        name = _clean_name(name)
        self.entries.insert(0, (header_key(name), canonical_name(name), _clean_value(value)))
        self._changed()

    def replace_single(self, key: str, value: str) -> bool:
        """Give the one field of ``key`` (a lookup-form key) the new one-item ``value`` (clean
        already), in place, when the section is still as parsed and that field holds a
        single item (a received request's top Via, stamped): the other fields and their
        typed views stay as they are. False, and nothing changed, in any other case."""
        first = self.first
        if self._lines is None or not isinstance(first, dict) or (self.more and key in self.more):
            return False
        old = first.get(key)
        if old is None or "," in old:
            return False
        first[key] = value
        if self.index is not None:
            self.index[key] = (value,)
        return True

    def prepend_via(self, via: str, contact: str | None = None, *, clean: bool = False) -> None:
        """A new top Via and, if given, a Contact appended (ValueError if there is one):
        what :meth:`prepend` and assignment do, but the index and first values are updated
        in place rather than dropped (the typed views are dropped). Fields in the order
        ``to_bytes()`` writes (``in_order``) stay so: the Contact goes where that order puts
        it, before the first field ranked after it, instead of last. ``clean``: the caller
        made both values with no CR or LF and nothing to strip (they are not checked)."""
        index = self.lookup()
        if contact is not None and "contact" in index:
            raise ValueError("the headers already have a Contact")
        first = self.first_values()
        entries = self.entries  # the index and first values stay right for these fields
        if not clean:
            via = _clean_value(via)
        entries.insert(0, ("via", "Via", via))
        index["via"] = (via, *index.get("via", ()))
        first = self.first = first if isinstance(first, dict) else dict(first)
        first["via"] = via
        if contact is not None:
            if not clean:
                contact = _clean_value(contact)
            field = ("contact", "Contact", contact)
            if self.in_order:
                entries.insert(_place_of_contact(entries), field)
            else:
                entries.append(field)
            index["contact"] = (contact,)
            first["contact"] = contact
        self._lines = None
        self.more = None
        if self.typed:
            self.typed.clear()

    def remove_first(self, name: str) -> str | None:
        """Remove the first value of ``name`` (splitting a comma-joined list); return it."""
        key = header_key(name)
        for position, (field_key, field_name, value) in enumerate(self.entries):
            if field_key == key:
                parts = split_list(value) if key in LIST_HEADERS else [value]
                if len(parts) > 1:
                    self.entries[position] = (field_key, field_name, ", ".join(parts[1:]))
                else:
                    del self.entries[position]
                self._changed()
                return parts[0]
        return None

    def copy(self) -> Headers:
        return Headers(self)

    # -- typed-view cache ------------------------------------------------------------------
    def cached(self, slot: str) -> Any:
        return self.typed.get(slot)

    def cache(self, slot: str, value: Any) -> None:
        self.typed[slot] = value

    # -- comparison ----------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping) and not isinstance(other, Headers):
            other = Headers(other)
        if not isinstance(other, Headers):
            return NotImplemented
        # RFC 3261 7.3.1: only the order of fields with the same name is significant.
        mine, theirs = self.lookup(), other.lookup()
        if mine.keys() != theirs.keys():
            return False
        return all(self.get_list(key) == other.get_list(key) for key in mine)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self.multi_items()!r})"


_new_object = object.__new__

# The keys ``to_bytes()`` writes before a Contact (message.py ranks them lower): a Contact
# added to fields in that order goes before the first field not among them.
_BEFORE_CONTACT = frozenset(
    ("via", "max-forwards", "route", "record-route", "from", "to", "call-id", "cseq")
)


def _place_of_contact(entries: list[tuple[str, str, str]]) -> int:
    """Where a Contact goes among ``entries`` kept in ``to_bytes()`` order: after the last
    field written before it (looked for from the end: few fields come after a Contact)."""
    position = len(entries)
    while position and entries[position - 1][0] not in _BEFORE_CONTACT:
        position -= 1
    return position


def headers_from_lines(
    lines: list[str], first: dict[str, str], more: dict[str, tuple[str, ...]] | None
) -> Headers:
    """:meth:`Headers.from_lines` as a plain function (the parser's hot path)."""
    headers = _new_object(Headers)
    headers._entries = None
    headers._lines = lines
    headers.index = None
    headers.first = first
    headers.more = more
    headers.typed = {}
    headers.in_order = False
    return headers


def _fields_of(
    lines: list[str], first: Mapping[str, str], more: dict[str, tuple[str, ...]] | None
) -> list[tuple[str, str, str]]:
    """The fields of header lines the parser has checked (``lines[0]`` is the start line).

    Values of names given once are taken from ``first`` (the same strings, not copies)."""
    fields: list[tuple[str, str, str]] = []
    append = fields.append
    exact = _EXACT
    for position in range(1, len(lines)):
        line = lines[position]
        name, _, value = line.partition(":")
        entry = exact.get(name)
        if entry is None:
            name = name.rstrip(" \t")
            entry = _KNOWN.get(name.lower()) or (name.lower(), name)
        key = entry[0]
        # A name given once: its value is in ``first`` (the same string, not a copy).
        value = first[key] if more is None or key not in more else value.strip(" \t")
        append((key, entry[1], value))
    return fields


def _clean_name(name: str) -> str:
    if _EXACT.get(name) is None and not _TOKEN_RE.fullmatch(name):
        raise ValueError(f"a header name must be a token: {name!r}")
    return name


def _clean_value(value: object) -> str:
    text = str(value)
    if "\r" in text or "\n" in text:
        raise ValueError(f"header value must not contain CR or LF: {text!r}")
    return text.strip(" \t")
