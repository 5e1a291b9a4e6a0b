"""Message summaries (RFC 3842): the body of ``message-summary`` NOTIFYs.

``application/simple-message-summary`` is a few text lines::

    Messages-Waiting: yes
    Message-Account: sip:1111@vm.example.com
    Voice-Message: 2/8 (1/0)

the status line first, then the account, then one line per message class (RFC 3458:
voice, fax, pager, multimedia, text, none) with new/old counts and, in parentheses, the
urgent new/old ones. A blank line may be followed by message headers, kept as they are.
Parsing is lenient about case, spacing and line ends, strict about the counts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .._errors import ParseError

MWI_TYPE = "application/simple-message-summary"
#: the message classes of RFC 3458 (others are kept as they come)
MESSAGE_CLASSES = (
    "voice-message",
    "fax-message",
    "pager-message",
    "multimedia-message",
    "text-message",
    "none",
)
#: the largest body parsed (a summary is a few lines)
MAX_SUMMARY = 16 * 1024
_MAX_COUNT = 2**31 - 1
_COUNTS = re.compile(r"^(\d{1,10})\s*/\s*(\d{1,10})(?:\s*\(\s*(\d{1,10})\s*/\s*(\d{1,10})\s*\))?$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.!%*_+`'~-]*$")


@dataclass(frozen=True)
class MessageCounts:
    """New and old messages of one class, and how many of each are urgent."""

    new: int = 0
    old: int = 0
    urgent_new: int = 0
    urgent_old: int = 0

    def __post_init__(self) -> None:
        for name in ("new", "old", "urgent_new", "urgent_old"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} is a whole number >= 0, not {value!r}")
            if not 0 <= value <= _MAX_COUNT:
                raise ValueError(f"{name} is a whole number >= 0, not {value!r}")

    def __str__(self) -> str:
        text = f"{self.new}/{self.old}"
        if self.urgent_new or self.urgent_old:
            text += f" ({self.urgent_new}/{self.urgent_old})"
        return text


_NONE = MessageCounts()


@dataclass(frozen=True)
class MessageSummary:
    """A parsed (or to be sent) message summary.

    ``waiting`` is the Messages-Waiting status, ``account`` the Message-Account URI (or
    None), ``counts`` the counts per message class (lower-case names), ``headers`` the
    optional message headers after the blank line. ``new``/``old`` are the voice counts.
    """

    waiting: bool
    account: str | None = None
    counts: Mapping[str, MessageCounts] = field(default_factory=dict)
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def voice(
        cls,
        new: int,
        old: int = 0,
        *,
        urgent_new: int = 0,
        urgent_old: int = 0,
        account: str | None = None,
    ) -> MessageSummary:
        """A summary of voice messages; Messages-Waiting is yes when some are new."""
        counts = MessageCounts(new, old, urgent_new, urgent_old)
        return cls(new > 0, account, {"voice-message": counts})

    @property
    def voice_counts(self) -> MessageCounts:
        return self.counts.get("voice-message", _NONE)

    @property
    def new(self) -> int:
        """New voice messages."""
        return self.voice_counts.new

    @property
    def old(self) -> int:
        """Old voice messages."""
        return self.voice_counts.old

    def to_text(self) -> str:
        """The body, CRLF line ends."""
        if self.account is not None and ("\r" in self.account or "\n" in self.account):
            raise ValueError("the account URI cannot contain a line break")
        lines = [f"Messages-Waiting: {'yes' if self.waiting else 'no'}"]
        if self.account:
            lines.append(f"Message-Account: {self.account}")
        for name, counts in self.counts.items():
            if not _NAME.match(name):
                raise ValueError(f"bad message class {name!r}")
            lines.append(f"{_title(name)}: {counts}")
        text = "\r\n".join(lines) + "\r\n"
        if self.headers:
            text += "\r\n" + "".join(f"{name}: {value}\r\n" for name, value in self.headers)
        return text

    def __str__(self) -> str:
        return self.to_text()

    @classmethod
    def parse(cls, body: bytes | str) -> MessageSummary:
        """Parse a message-summary body; ParseError when it is not one."""
        if len(body) > MAX_SUMMARY:
            raise ParseError(f"message summary larger than {MAX_SUMMARY} bytes")
        if isinstance(body, bytes):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise ParseError("message summary is not UTF-8") from None
        else:
            text = body
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        waiting: bool | None = None
        account: str | None = None
        counts: dict[str, MessageCounts] = {}
        headers: list[tuple[str, str]] = []
        in_headers = False
        for line in lines:
            if not line.strip():
                if waiting is not None:
                    in_headers = True  # the optional message headers follow
                continue
            name, colon, value = line.partition(":")
            name, value = name.strip(), value.strip()
            if not colon or not _NAME.match(name):
                if in_headers:
                    continue  # a folded or odd header line: not ours to judge
                raise ParseError(f"bad line in message summary: {line[:60]!r}")
            if in_headers:
                headers.append((name, value))
                continue
            key = name.lower()
            if key == "messages-waiting":
                if value.lower() not in ("yes", "no"):
                    raise ParseError(f"Messages-Waiting is yes or no, not {value[:20]!r}")
                waiting = value.lower() == "yes"
            elif waiting is None:
                raise ParseError("a message summary starts with Messages-Waiting")
            elif key == "message-account":
                account = value or None
            else:
                match = _COUNTS.match(value)
                if match is None:
                    raise ParseError(f"bad counts for {name}: {value[:40]!r}")
                numbers = [int(n) if n is not None else 0 for n in match.groups()]
                if any(n > _MAX_COUNT for n in numbers):
                    raise ParseError(f"count too large for {name}")
                counts[key] = MessageCounts(*numbers)
        if waiting is None:
            raise ParseError("no Messages-Waiting line in the message summary")
        return cls(waiting, account, counts, tuple(headers))


def _title(name: str) -> str:
    return "-".join(part[:1].upper() + part[1:] for part in name.split("-"))


__all__ = ["MESSAGE_CLASSES", "MWI_TYPE", "MessageCounts", "MessageSummary"]
