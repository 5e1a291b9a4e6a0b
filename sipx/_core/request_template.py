"""Out-of-dialog requests sent again and again to the same target, made from a template.

A client sending OPTIONS (or MESSAGE, REGISTER...) to one Request-URI with the same From
and To builds the same header fields every time but for the From tag and the Call-ID
(RFC 3261 8.1.1: the CSeq of a new request out of dialog is 1 each time). A
:class:`RequestTemplate` is made once by :func:`~sipx._core.builder.build_request` itself,
with stand-in values for the tag and the Call-ID, so that a request made from it has the
very fields, in the same order, that the builder gives for the same inputs; making one is
a copy of the field list with two values filled in (no URI or name-addr parsing, no header
name or value checks: the builder checked them once). The requests share the template's
parsed Request-URI (a :class:`URI` is immutable), and their fields come marked as being in
the order ``to_bytes()`` writes them (the builder's order is that order), so neither the
Request-URI is parsed nor the fields sorted again for each request; the request itself is
made from these parts without ``Request.__init__`` (its checks were the builder's).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from .builder import build_request
from .header_types import NameAddr
from .headers import Headers
from .message import Request, in_conventional_order, request_of
from .uri import URI

# The typed view a template's requests come with: their From URI's user (read by the
# stamp of a Contact; dropped, like every view, when the fields change).
FROM_USER = "from_user"

# Stand-ins written where the tag and the Call-ID go; both are tokens, written as they are.
_TAG = "sipxTemplateTag9f3c"
_CALL_ID = "sipxTemplateCallId9f3c"


class RequestTemplate:
    """The fields of an out-of-dialog request with the From tag and Call-ID left open."""

    __slots__ = (
        "_call_id_at",
        "_fields",
        "_first",
        "_from_at",
        "_from_head",
        "_from_tail",
        "_from_user",
        "_in_order",
        "_index",
        "_uri",
        "method",
        "uri",
    )

    def __init__(
        self,
        method: str,
        uri: URI,
        *,
        from_addr: NameAddr,
        to_addr: str,
        user_agent: str | None,
    ) -> None:
        """Build the template with :func:`build_request` (ValueError if a value defeats
        the stand-ins, e.g. a From that already carries the stand-in text)."""
        from_addr.params["tag"] = _TAG
        sample = build_request(
            method,
            uri,
            from_addr=from_addr,
            to_addr=to_addr,
            call_id=_CALL_ID,
            cseq=1,
            user_agent=user_agent,
        )
        self.method = sample.method
        self._uri = sample.uri
        self.uri = str(sample.uri)
        fields = sample.headers.entries
        self._in_order = in_conventional_order(fields)
        self._fields = tuple(fields)
        self._index = dict(sample.headers.lookup())
        self._first = dict(sample.headers.first_values())
        keys = [key for key, _, _ in fields]
        self._from_at = keys.index("from")
        self._call_id_at = keys.index("call-id")
        head, tag, tail = fields[self._from_at][2].partition(_TAG)
        once = keys.count("from") == 1 and keys.count("call-id") == 1
        if not once or not tag or _TAG in tail or _TAG in self.uri:
            raise ValueError("the request's values cannot be templated")
        if fields[self._call_id_at][2] != _CALL_ID:
            raise ValueError("the request's values cannot be templated")
        self._from_head, self._from_tail = head, tail
        self._from_user = sample.from_.uri.user

    def request(self, call_id: str, tag: str) -> Request:
        """A new request from the template, with this Call-ID and From tag."""
        fields = list(self._fields)
        index = self._index.copy()
        key, name, _ = fields[self._from_at]
        value = f"{self._from_head}{tag}{self._from_tail}"
        fields[self._from_at] = (key, name, value)
        index[key] = (value,)
        key, name, _ = fields[self._call_id_at]
        fields[self._call_id_at] = (key, name, call_id)
        index[key] = (call_id,)
        first = self._first.copy()
        first["from"], first["call-id"] = value, call_id
        headers = Headers.from_parsed(fields, index, in_order=self._in_order)
        headers.first = first
        headers.typed[FROM_USER] = self._from_user
        return request_of(self.method, self._uri, self.uri, headers)


class RequestTemplates:
    """The templates of the last few distinct requests (by whatever key the caller gives)."""

    __slots__ = ("_limit", "_templates", "get")

    def __init__(self, limit: int = 64) -> None:
        self._limit = limit
        self._templates: dict[Hashable, RequestTemplate | None] = {}
        # The template kept for a key, or None: the dict's own method (no frame of ours).
        self.get: Callable[[Hashable], RequestTemplate | None] = self._templates.get

    def __contains__(self, key: Hashable) -> bool:
        return key in self._templates

    def put(self, key: Hashable, template: RequestTemplate | None) -> None:
        """Keep ``template`` (None: that request cannot be templated) for ``key``."""
        templates = self._templates
        templates[key] = template
        while len(templates) > self._limit:
            del templates[next(iter(templates))]

    def __len__(self) -> int:
        return len(self._templates)


__all__ = ["FROM_USER", "RequestTemplate", "RequestTemplates"]
