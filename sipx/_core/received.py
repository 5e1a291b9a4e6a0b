"""Where a request really came from: Via ``received`` (RFC 3261 18.2.1) and ``rport``
(RFC 3581), written by whoever receives the request so that responses find the way back."""

from __future__ import annotations

from .header_types import render_params
from .message import Request


def stamp_received(request: Request, source: tuple[str, int], *, force_rport: bool = False) -> None:
    """Add ``received`` when the source differs from the top Via's sent-by, and fill in
    ``rport`` when the sender asked for it (always with ``force_rport``, as proxies often do)."""
    via = request.top_via
    params = via.params
    host = via.host
    if host[:1] == "[":
        host = host[1:-1]
    headers = request.headers
    if (
        not force_rport
        and len(params) == 2
        and "rport" in params
        and params["rport"] is None
        and "branch" in params
    ):
        # The usual Via with an empty rport last (SIPp's, most UAs'), written as sipx writes
        # it: the text gets "=PORT" (and received after it, where a rendering puts a new
        # parameter) in place of rendering every parameter again: the same bytes.
        port = via.port
        hostport = via.host if port is None else f"{via.host}:{port}"
        text = headers.first.get("via")
        if text is not None and text == (
            f"{via.protocol}/{via.transport} {hostport};branch={params['branch']};rport"
        ):
            rport = str(source[1])
            if host == source[0]:
                stamped = f"{text}={rport}"
            else:
                stamped = f"{text}={rport};received={source[0]}"
            if headers.replace_single("via", stamped):  # (one Via field of one item)
                params["rport"] = rport
                if host != source[0]:
                    params["received"] = source[0]
                typed = headers.typed
                typed.pop("via", None)
                typed["top_via"] = via
                return
    changed = False
    if host != source[0]:
        params["received"] = source[0]
        changed = True
    if force_rport or ("rport" in params and not params["rport"]):
        params["rport"] = str(source[1])
        changed = True
    if changed:
        port = via.port
        hostport = via.host if port is None else f"{via.host}:{port}"
        text = f"{via.protocol}/{via.transport} {hostport}{render_params(params)}"
        if headers.replace_single("via", text):  # one Via field of one item, as parsed
            headers.typed.pop("via", None)
            headers.typed["top_via"] = via
            return
        # Only the top Via changes: the typed views already parsed (From, To, CSeq, ...)
        # stay valid, so they are kept rather than parsed again by every later reader.
        kept = {slot: value for slot, value in headers.typed.items() if slot != "via"}
        headers.remove_first("Via")
        headers.prepend("Via", text)
        kept["top_via"] = via
        headers.typed.update(kept)
