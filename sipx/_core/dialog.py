"""Dialogs (RFC 3261 section 12): identity, route set, remote target and CSeq spaces.

A :class:`Dialog` is created by the UAC from a 1xx/2xx with a To tag (12.1.2) or by the
UAS from the request it answers (12.1.1). It builds in-dialog requests (12.2.1.1, loose and
strict routing) and checks incoming ones (12.2.2). The Via of a built request is left to the
transport layer, which knows the local address.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

from .._errors import ProtocolError
from .header_types import NameAddr
from .message import Request, Response
from .uri import URI


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class DialogId(NamedTuple):
    """Call-ID, local tag and remote tag (RFC 3261 12)."""

    call_id: str
    local_tag: str
    remote_tag: str

    def __str__(self) -> str:
        return f"{self.call_id};local-tag={self.local_tag};remote-tag={self.remote_tag}"


_new_id = tuple.__new__
"""``DialogId``'s own constructor is a Python function (a namedtuple's): the ids made on
every request within a dialog are built with the tuple's, the same object."""

# Methods whose requests and 2xx responses refresh the remote target (RFC 3261 12.2).
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})


@dataclass(eq=False, slots=True, weakref_slot=True)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr
    remote_uri: NameAddr
    remote_target: URI
    route_set: list[NameAddr] = field(default_factory=list)
    local_seq: int = 0
    remote_seq: int | None = None
    state: DialogState = DialogState.EARLY
    is_uac: bool = True
    secure: bool = False
    # The request that created the dialog; a call forgets it once established and idle.
    invite: Request | None = None
    _id: DialogId | None = field(default=None, init=False, repr=False)
    # Idle (its INVITE forgotten): the URIs are kept packed, packed again after a request.
    _packs: bool = field(default=False, init=False, repr=False)

    @property
    def id(self) -> DialogId:
        """The dialog's id (one tuple, made again only if a part of it changes)."""
        known = self._id
        if (
            known is None
            or known[0] is not self.call_id
            or known[1] is not self.local_tag
            or known[2] is not self.remote_tag
        ):
            known = self._id = _new_id(DialogId, (self.call_id, self.local_tag, self.remote_tag))
        return known

    # -- creation ------------------------------------------------------------------------
    @classmethod
    def from_uac_response(cls, request: Request, response: Response) -> Dialog:
        """The UAC side, from a 101-199 or 2xx response carrying a To tag (12.1.2)."""
        remote_tag = response.to.tag
        local_tag = request.from_.tag
        if not remote_tag or not local_tag:
            raise ProtocolError("a dialog needs a From tag and a To tag")
        contacts = response.contact
        target = contacts[0].uri if contacts else request.uri
        dialog = cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=request.from_,
            remote_uri=response.to,
            remote_target=target,
            route_set=list(reversed(response.record_route)),
            local_seq=request.cseq.seq,
            state=DialogState.CONFIRMED if response.is_success else DialogState.EARLY,
            is_uac=True,
            secure=request.uri.is_secure,
            invite=request,
        )
        return dialog

    @classmethod
    def from_uas_request(cls, request: Request, local_tag: str, *, confirmed: bool) -> Dialog:
        """The UAS side, from the dialog-creating request it answers (12.1.1)."""
        contacts = request.contact
        if not contacts:
            raise ProtocolError(f"{request.method} that creates a dialog has no Contact")
        remote = request.from_
        remote_tag = remote.tag
        if not remote_tag:
            raise ProtocolError("request that creates a dialog has no From tag")
        to = request.to
        local_uri = NameAddr(to.uri, to.display_name, {**to.params, "tag": local_tag})
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=local_uri,
            remote_uri=remote,
            remote_target=contacts[0].uri,
            route_set=(
                list(request.record_route)
                if request.headers.first_of_key("record-route") is not None
                else []
            ),
            local_seq=0,
            remote_seq=request.cseq.seq,
            state=DialogState.CONFIRMED if confirmed else DialogState.EARLY,
            is_uac=False,
            secure=request.uri.is_secure,
            invite=request,
        )

    def forget_invite(self) -> None:
        """The call is established and idle: drop the INVITE and keep the local and remote
        URIs and the remote target as text, each parsed again into the same object when
        read (later requests write the URIs as text)."""
        self.invite = None
        self._packs = True
        self._pack()

    def _pack(self) -> None:
        self.local_uri.pack()
        self.remote_uri.pack()
        self.remote_target.pack()

    def _refresh_target(self, target: URI) -> None:
        """A target refresh (12.2): an idle dialog keeps its packed target when the text is
        the same (the usual session refresh)."""
        if not self._packs:
            self.remote_target = target
        elif str(target) != str(self.remote_target):
            self.remote_target = target
            target.pack()

    # -- in-dialog requests ----------------------------------------------------------------
    def next_seq(self) -> int:
        self.local_seq += 1
        return self.local_seq

    def create_request(
        self,
        method: str,
        *,
        cseq: int | None = None,
        headers: dict[str, str] | None = None,
        content: bytes | str | None = None,
    ) -> Request:
        """Build a request within the dialog (RFC 3261 12.2.1.1), without a Via.

        ``cseq`` defaults to the next local sequence number (an ACK passes the INVITE's).
        """
        if self.state is DialogState.TERMINATED and method not in ("ACK", "BYE"):
            raise ProtocolError(f"cannot send {method}: the dialog has ended")
        seq = self.next_seq() if cseq is None else cseq
        routes = [str(route) for route in self.route_set]
        if self.route_set and "lr" not in self.route_set[0].uri.params:
            # Strict routing: the first route becomes the Request-URI, the remote target
            # goes last in Route.
            request_uri = self.route_set[0].uri.replace(headers={})
            routes = [*routes[1:], f"<{self.remote_target}>"]
        else:
            request_uri = self.remote_target
        request = Request(method, request_uri)
        fields = request.headers
        fields.add("Max-Forwards", "70")
        for route in routes:
            fields.add("Route", route)
        fields.add("From", str(self.local_uri))
        fields.add("To", str(self.remote_uri))
        fields.add("Call-ID", self.call_id)
        fields.add("CSeq", f"{seq} {method}")
        for name, value in (headers or {}).items():
            fields[name] = value
        if content is not None:
            request.content = content.encode() if isinstance(content, str) else content
        return request

    def next_hop(self) -> URI:
        """Where an in-dialog request goes first: the top route, else the remote target."""
        return self.route_set[0].uri if self.route_set else self.remote_target

    # -- incoming --------------------------------------------------------------------------
    def receive_request(self, request: Request) -> None:
        """Check and absorb an in-dialog request (12.2.2); ProtocolError if out of order."""
        seq = request.cseq.seq
        if request.method not in ("ACK", "CANCEL"):
            if self.remote_seq is not None and seq <= self.remote_seq:
                raise ProtocolError(f"CSeq {seq} is not above {self.remote_seq}")
            self.remote_seq = seq
        if request.method in TARGET_REFRESH_METHODS and request.contact:
            self._refresh_target(request.contact[0].uri)

    def receive_response(self, response: Response) -> None:
        """Absorb a response to an in-dialog request (target refresh, confirmation)."""
        if response.is_success:
            if response.cseq.method in TARGET_REFRESH_METHODS and response.contact:
                self._refresh_target(response.contact[0].uri)
            if response.cseq.method == "INVITE" and self.state is DialogState.EARLY:
                self.state = DialogState.CONFIRMED
                self.route_set = (
                    list(reversed(response.record_route)) if self.is_uac else self.route_set
                )
        if self._packs:  # our request read them (its next hop, its From and To)
            self._pack()

    def terminate(self) -> None:
        self.state = DialogState.TERMINATED


def dialog_id_of(message: Request | Response) -> DialogId | None:
    """The id (seen from our side) of the dialog a received message belongs to, or None.

    In a request we receive the peer is the From side; in a response we receive, we are.
    """
    from_tag = message.from_.tag
    to_tag = message.to.tag
    if not from_tag or not to_tag:
        return None
    if isinstance(message, Response):
        return _new_id(DialogId, (message.call_id, from_tag, to_tag))
    return _new_id(DialogId, (message.call_id, to_tag, from_tag))
