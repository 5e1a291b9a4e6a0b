"""Building the requests a user agent client sends (RFC 3261 8.1.1, 9.1, 13.2.2.4, 22.2).

Requests are built without a Via: the transport layer adds the top Via (with a fresh
branch) when it knows which local address the request leaves from.
"""

from __future__ import annotations

from collections.abc import Mapping

from .dialog import Dialog
from .header_types import NameAddr
from .message import Message, Request, Response
from .sdp import SDPBody
from .uri import URI

DEFAULT_MAX_FORWARDS = "70"


def build_request(
    method: str,
    uri: URI | str,
    *,
    from_addr: NameAddr | str,
    to_addr: NameAddr | str,
    call_id: str,
    cseq: int,
    contact: str | None = None,
    headers: Mapping[str, str] | None = None,
    content: bytes | str | None = None,
    user_agent: str | None = None,
) -> Request:
    """A new out-of-dialog request (RFC 3261 8.1.1); ``headers`` given by the user win."""
    request = Request(method.upper(), uri)
    fields = request.headers
    fields.add("Max-Forwards", DEFAULT_MAX_FORWARDS)
    fields.add("From", str(from_addr))
    fields.add("To", str(to_addr))
    fields.add("Call-ID", call_id)
    fields.add("CSeq", f"{cseq} {method.upper()}")
    if contact is not None:
        fields.add("Contact", contact)
    if user_agent:
        fields.add("User-Agent", user_agent)
    apply_user_headers(request, headers)
    if content is not None:
        request.content = content.encode() if isinstance(content, str) else bytes(content)
    return request


def apply_user_headers(request: Request, headers: Mapping[str, str] | None) -> None:
    for name, value in (headers or {}).items():
        request.headers[name] = value


def build_cancel(invite: Request) -> Request:
    """CANCEL for a pending INVITE (RFC 3261 9.1): same branch, R-URI, Call-ID, From, To."""
    cancel = Request("CANCEL", invite.uri)
    fields = cancel.headers
    fields.add("Via", str(invite.top_via))
    fields.add("Max-Forwards", DEFAULT_MAX_FORWARDS)
    for route in invite.headers.get_list("Route"):
        fields.add("Route", route)
    fields.add("From", invite.headers["From"])
    fields.add("To", invite.headers["To"])
    fields.add("Call-ID", invite.call_id)
    fields.add("CSeq", f"{invite.cseq.seq} CANCEL")
    return cancel


def build_ack_for_2xx(
    invite: Request, dialog: Dialog, content: bytes | str | None = None
) -> Request:
    """ACK for a 2xx to INVITE (RFC 3261 13.2.2.4): in-dialog, the INVITE's CSeq number."""
    ack = dialog.create_request("ACK", cseq=invite.cseq.seq, content=content)
    for name in ("Authorization", "Proxy-Authorization"):
        for value in invite.headers.get_list(name):
            ack.headers.add(name, value)
    if content:
        content_type = invite.headers.get_first("Content-Type") or "application/sdp"
        ack.headers["Content-Type"] = content_type
    return ack


def build_auth_retry(request: Request, header_name: str, credentials: str) -> Request:
    """A copy of ``request`` for a new transaction: no Via, CSeq + 1, credentials set (22.2)."""
    retry = Request(request.method, request.uri, request.headers.copy(), request.content)
    fields = retry.headers
    if "Via" in fields:
        del fields["Via"]
    fields["CSeq"] = f"{request.cseq.seq + 1} {request.method}"
    fields[header_name] = credentials
    return retry


Body = str | bytes | SDPBody


def body_bytes(body: Body | None) -> bytes:
    """The wire form of a body given as text, bytes or an SDPBody."""
    if body is None:
        return b""
    if isinstance(body, SDPBody):
        return body.to_bytes()
    return body.encode() if isinstance(body, str) else bytes(body)


def guess_content_type(body: object, content: bytes) -> str:
    """``application/sdp`` for an SDPBody or text that starts like SDP, else text/plain."""
    if isinstance(body, SDPBody) or content.lstrip().startswith(b"v=0"):
        return "application/sdp"
    return "text/plain"


def attach_body(message: Message, body: Body | None, content_type: str | None = None) -> None:
    """Set the content and, unless the message has one, a Content-Type for it."""
    content = body_bytes(body)
    message.content = content
    if content and "Content-Type" not in message.headers:
        message.headers["Content-Type"] = content_type or guess_content_type(body, content)


def copy_record_route(request: Request, response: Response) -> None:
    """A UAS copies Record-Route into its dialog-creating responses (RFC 3261 12.1.1)."""
    if "Record-Route" in response.headers:
        return
    for value in request.headers.get_list("Record-Route"):
        response.headers.add("Record-Route", value)
