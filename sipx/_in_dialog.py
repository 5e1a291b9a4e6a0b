"""A request inside an existing dialog, offered to that dialog (RFC 3261 12.2.2)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._core.dialog import Dialog
from ._errors import ParseError, ProtocolError

if TYPE_CHECKING:
    from ._uas import IncomingRequest


def receive_in_dialog(dialog: Dialog, incoming: IncomingRequest) -> bool:
    """Let ``dialog`` take ``incoming.request`` (CSeq order, remote target); when it
    refuses, answer 500 with the reason and return False."""
    try:
        dialog.receive_request(incoming.request)
    except (ProtocolError, ParseError) as exc:
        incoming.respond(500, str(exc)[:60])
        return False
    return True
