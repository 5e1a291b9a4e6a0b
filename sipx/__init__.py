"""sipx: a SIP (RFC 3261) user agent library for Python, built on trio.

Public names live here; everything else is private. ``AsyncClient`` is the trio user agent,
``Client`` its blocking façade; ``parse_message`` and the message types are the sans-I/O core.
"""

from . import media
from ._async_client import AsyncClient, LocalAddress
from ._auth import Auth
from ._call import Call, CallState
from ._core.dialog import Dialog, DialogId, DialogState
from ._core.dialog_info import DialogEntry, DialogInfo
from ._core.digest import Challenge
from ._core.event import EventHeader, SubscriptionState
from ._core.framer import StreamFramer
from ._core.header_types import CSeq, MediaType, NameAddr, Via
from ._core.headers import Headers
from ._core.message import Message, Request, Response
from ._core.mwi import MessageCounts, MessageSummary
from ._core.parser import ParserLimits, parse_message
from ._core.pidf import Presence, PresenceTuple
from ._core.sdp import Codec, MediaDescription, SDPBody
from ._core.sipfrag import SipFrag
from ._core.timers import TimerConfig
from ._core.uri import URI
from ._errors import (
    AuthError,
    ClientClosedError,
    ParseError,
    ProtocolError,
    SIPError,
    TimeoutError,
    TransportError,
)
from ._events import Events, RequestContext, event_handler
from ._limits import Limits, LimitStats
from ._media_stream import MediaStats
from ._notifier import IncomingSubscription, ServerSubscription
from ._publication import Publication
from ._subscription import Notification, Subscription
from ._sync_call import BlockingCall
from ._sync_client import Client
from ._sync_publication import BlockingPublication
from ._sync_subscription import (
    BlockingIncomingSubscription,
    BlockingServerSubscription,
    BlockingSubscription,
    BlockingWatch,
)
from ._transfer import TransferResult
from ._uas import IncomingRequest
from ._watch import Watch

__version__ = "0.1.0"

__all__ = [
    "URI",
    "AsyncClient",
    "Auth",
    "AuthError",
    "BlockingCall",
    "BlockingIncomingSubscription",
    "BlockingPublication",
    "BlockingServerSubscription",
    "BlockingSubscription",
    "BlockingWatch",
    "CSeq",
    "Call",
    "CallState",
    "Challenge",
    "Client",
    "ClientClosedError",
    "Codec",
    "Dialog",
    "DialogEntry",
    "DialogId",
    "DialogInfo",
    "DialogState",
    "EventHeader",
    "Events",
    "Headers",
    "IncomingRequest",
    "IncomingSubscription",
    "LimitStats",
    "Limits",
    "LocalAddress",
    "MediaDescription",
    "MediaStats",
    "MediaType",
    "Message",
    "MessageCounts",
    "MessageSummary",
    "NameAddr",
    "Notification",
    "ParseError",
    "ParserLimits",
    "Presence",
    "PresenceTuple",
    "ProtocolError",
    "Publication",
    "Request",
    "RequestContext",
    "Response",
    "SDPBody",
    "SIPError",
    "ServerSubscription",
    "SipFrag",
    "StreamFramer",
    "Subscription",
    "SubscriptionState",
    "TimeoutError",
    "TimerConfig",
    "TransferResult",
    "TransportError",
    "Via",
    "Watch",
    "__version__",
    "event_handler",
    "media",
    "parse_message",
]
