"""Types users annotate their handlers with (the guide imports them from here)."""

from ._core.message import Request, Response
from ._events import RequestContext

__all__ = ["Request", "RequestContext", "Response"]
