"""SDP session descriptions (RFC 8866) and the offer/answer model (RFC 3264), sans-I/O.

:class:`SDPBody` parses real-world SDP tolerantly (LF-only line endings, trailing
whitespace, blank lines, unknown line types) and serialises it back in RFC 8866 order
with CRLF line endings. Lines it does not model are kept as :class:`SDPLine` objects and
written back in place, so ``SDPBody.parse(text).to_string()`` reproduces well-ordered
input. Malformed input raises :class:`sipx.ParseError` naming the offending line.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from .._errors import ParseError

__all__ = [
    "DIRECTIONS",
    "STATIC_PAYLOAD_TYPES",
    "Codec",
    "Connection",
    "MediaDescription",
    "Origin",
    "SDPBody",
    "SDPLine",
]

#: The four RFC 3264 direction attributes.
DIRECTIONS: Final[tuple[str, ...]] = ("sendrecv", "sendonly", "recvonly", "inactive")

#: Static RTP payload types (RFC 3551): payload -> (encoding name, clock rate, channels).
STATIC_PAYLOAD_TYPES: Final[Mapping[str, tuple[str, int, int | None]]] = {
    "0": ("PCMU", 8000, None),
    "3": ("GSM", 8000, None),
    "4": ("G723", 8000, None),
    "5": ("DVI4", 8000, None),
    "6": ("DVI4", 16000, None),
    "7": ("LPC", 8000, None),
    "8": ("PCMA", 8000, None),
    "9": ("G722", 8000, None),
    "10": ("L16", 44100, 2),
    "11": ("L16", 44100, None),
    "12": ("QCELP", 8000, None),
    "13": ("CN", 8000, None),
    "14": ("MPA", 90000, None),
    "15": ("G728", 8000, None),
    "16": ("DVI4", 11025, None),
    "17": ("DVI4", 22050, None),
    "18": ("G729", 8000, None),
    "25": ("CelB", 90000, None),
    "26": ("JPEG", 90000, None),
    "28": ("nv", 90000, None),
    "31": ("H261", 90000, None),
    "32": ("MPV", 90000, None),
    "33": ("MP2T", 90000, None),
    "34": ("H263", 90000, None),
}

#: Codecs offered/accepted by :meth:`SDPBody.create_answer` when none are given.
DEFAULT_SUPPORTED_CODECS: Final[tuple[Mapping[str, Any], ...]] = (
    {"name": "PCMU", "rate": 8000},
    {"name": "PCMA", "rate": 8000},
    {"name": "G722", "rate": 8000},
    {"name": "telephone-event", "rate": 8000, "fmtp": "0-16"},
)

#: Formats that never make a stream usable on their own (comfort noise, DTMF, FEC, ...).
_AUXILIARY_CODECS: Final = frozenset({"telephone-event", "cn", "red", "ulpfec", "flexfec", "rtx"})

_DIRECTION_BITS: Final[Mapping[str, tuple[bool, bool]]] = {
    "sendrecv": (True, True),
    "sendonly": (True, False),
    "recvonly": (False, True),
    "inactive": (False, False),
}
_BITS_DIRECTION: Final = {bits: name for name, bits in _DIRECTION_BITS.items()}

_SESSION_ORDER: Final = "vosiuepcbtzka"
_MEDIA_ORDER: Final = "micbka"
# Unmodelled line types that have a fixed place; anything else stays after its predecessor.
_SESSION_SLOTS: Final = {
    **{letter: letter for letter in "iuepctzk"},
    "r": "t",
}
_MEDIA_SLOTS: Final = {letter: letter for letter in "ick"}

_DIGITS: Final = re.compile(r"[0-9]{1,18}")  # bounded: int() of a huge digit run is a ValueError
_FIELD_SEP: Final = re.compile(r"[ \t]+")


# ---------------------------------------------------------------------------------------
# Value objects
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Origin:
    """The ``o=`` line. ``sess_id``/``sess_version`` are kept as the digit strings sent."""

    username: str = "-"
    sess_id: str = "0"
    sess_version: str = "0"
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "127.0.0.1"

    def __str__(self) -> str:
        return (
            f"{self.username} {self.sess_id} {self.sess_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )

    def bumped(self) -> Origin:
        """A copy with ``sess_version`` incremented (RFC 3264 section 8)."""
        if _DIGITS.fullmatch(self.sess_version):
            return replace(self, sess_version=str(int(self.sess_version) + 1))
        return replace(self, sess_version="1")


@dataclass(frozen=True)
class Connection:
    """A ``c=`` line: network type, address type and address (possibly ``addr/ttl``)."""

    nettype: str
    addrtype: str
    address: str

    @classmethod
    def of(cls, address: str) -> Connection:
        """``IN IP6`` when ``address`` contains ``:``, else ``IN IP4``."""
        return cls("IN", _addrtype(address), address)

    @property
    def host(self) -> str:
        """The address without a multicast ``/ttl/count`` suffix."""
        return self.address.split("/", 1)[0]

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True)
class Codec:
    """One RTP payload format of a media description."""

    payload: str
    name: str
    rate: int
    channels: int | None = None
    fmtp: str | None = None

    @property
    def encoding(self) -> str:
        """The ``rtpmap`` encoding: ``name/rate[/channels]``."""
        if self.channels is None:
            return f"{self.name}/{self.rate}"
        return f"{self.name}/{self.rate}/{self.channels}"

    def matches(self, other: Codec) -> bool:
        """Same encoding: name (case-insensitive), clock rate and channel count (default 1)."""
        return _codec_key(self) == _codec_key(other)

    def __str__(self) -> str:
        return self.encoding


@dataclass(frozen=True)
class SDPLine:
    """A line :class:`SDPBody` does not model, kept verbatim.

    ``slot`` is the RFC 8866 line type after whose lines it is written back
    (e.g. ``r=`` lines live in the ``t`` slot; unknown types stay after their predecessor).
    """

    letter: str
    value: str
    slot: str

    def __str__(self) -> str:
        return f"{self.letter}={self.value}"


# ---------------------------------------------------------------------------------------
# Media descriptions
# ---------------------------------------------------------------------------------------


@dataclass
class MediaDescription:
    """An ``m=`` section and the ``i= c= b= k= a=`` lines that follow it."""

    media: str = "audio"
    port: int = 0
    protocol: str = "RTP/AVP"
    formats: list[str] = field(default_factory=list)
    port_count: int | None = None
    connection: Connection | None = None
    bandwidths: list[tuple[str, str]] = field(default_factory=list)
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    other_lines: list[SDPLine] = field(default_factory=list)

    def get_attribute(self, name: str) -> str | None:
        """Value of the first ``a=name[:value]`` (``None`` if absent or a flag)."""
        return _first_attribute(self.attributes, name)

    def get_attributes(self, name: str) -> list[str | None]:
        """Values of every ``a=name[:value]``, in order."""
        return [value for key, value in self.attributes if key == name]

    def has_attribute(self, name: str) -> bool:
        """Whether an ``a=name`` line is present."""
        return any(key == name for key, _ in self.attributes)

    def fmtp(self, payload: str | int) -> str | None:
        """The ``a=fmtp`` parameters of ``payload``, if any."""
        return _payload_attribute(self.attributes, "fmtp", str(payload))

    def rtpmap(self, payload: str | int) -> Codec | None:
        """The codec declared by ``a=rtpmap`` for ``payload`` (``None`` if absent or malformed)."""
        payload = str(payload)
        value = _payload_attribute(self.attributes, "rtpmap", payload)
        if value is None:
            return None
        parts = value.strip(" \t").split("/")
        if len(parts) not in (2, 3) or not parts[0] or not _DIGITS.fullmatch(parts[1]):
            return None
        channels: int | None = None
        if len(parts) == 3:
            if not _DIGITS.fullmatch(parts[2]):
                return None
            channels = int(parts[2])
        return Codec(payload, parts[0], int(parts[1]), channels, self.fmtp(payload))

    @property
    def codecs(self) -> list[Codec]:
        """Codecs in ``formats`` order: from ``a=rtpmap``, else the static table (RFC 3551).

        Formats with neither (or non-RTP formats) are skipped. The lines of the last few
        sections read are remembered: the same formats and attributes (a load generator's
        offer, our answers) give a new list of the same frozen codecs without parsing the
        rtpmap lines again.
        """
        key = (tuple(self.formats), tuple(self.attributes))
        try:
            known = _CODECS_READ.get(key)
        except TypeError:  # a list where a pair belongs (made by hand): read, not kept
            return self._read_codecs()
        if known is not None:
            return list(known)
        result = self._read_codecs()
        if len(_CODECS_READ) >= _CODECS_KEPT:
            del _CODECS_READ[next(iter(_CODECS_READ))]  # the oldest
        _CODECS_READ[key] = tuple(result)
        return result

    def _read_codecs(self) -> list[Codec]:
        result: list[Codec] = []
        for payload in self.formats:
            codec = self.rtpmap(payload)
            if codec is None and payload in STATIC_PAYLOAD_TYPES:
                name, rate, channels = STATIC_PAYLOAD_TYPES[payload]
                codec = Codec(payload, name, rate, channels, self.fmtp(payload))
            if codec is not None:
                result.append(codec)
        return result

    @property
    def direction(self) -> str:
        """This section's direction attribute; ``"sendrecv"`` when it has none.

        (Session-level defaults are applied by :meth:`SDPBody.media_direction`.)
        """
        return _direction_of(self.attributes) or "sendrecv"

    def set_direction(self, direction: str) -> None:
        """Replace any direction attribute by ``direction`` (in place)."""
        _check_direction(direction)
        self.attributes = _with_direction(self.attributes, direction)

    @property
    def ptime(self) -> int | None:
        """``a=ptime`` in milliseconds (``None`` if absent or not an integer)."""
        value = self.get_attribute("ptime")
        if value is None:
            return None
        value = value.strip(" \t")
        return int(value) if _DIGITS.fullmatch(value) else None

    def to_lines(self) -> list[str]:
        """The section's lines, in RFC 8866 order, without line terminators."""
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        m_line = " ".join([self.media, port, self.protocol, *self.formats])
        if not self.other_lines:  # the usual case: the modeled lines in _MEDIA_ORDER
            lines = [f"m={m_line}"]
            if self.connection is not None:
                lines.append(f"c={self.connection}")
            if self.bandwidths:
                lines.extend(f"b={kind}:{value}" for kind, value in self.bandwidths)
            lines.extend(_attribute_lines(self.attributes))
            return lines
        modeled: dict[str, list[str]] = {
            "m": [f"m={m_line}"],
            "c": [] if self.connection is None else [f"c={self.connection}"],
            "b": [f"b={kind}:{value}" for kind, value in self.bandwidths],
            "a": _attribute_lines(self.attributes),
        }
        return _ordered_lines(_MEDIA_ORDER, modeled, self.other_lines)


# ---------------------------------------------------------------------------------------
# Session descriptions
# ---------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class SDPBody:
    """A session description. Build one with :meth:`parse`, :meth:`create_offer`,
    :meth:`create_answer`, or keyword arguments. Equality compares content."""

    version: int = 0
    origin: Origin = field(default_factory=Origin)
    session_name: str = "-"
    connection: Connection | None = None
    bandwidths: list[tuple[str, str]] = field(default_factory=list)
    timing: str = "0 0"
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)
    other_lines: list[SDPLine] = field(default_factory=list)

    # -- parsing ---------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str | bytes) -> SDPBody:
        """Parse an SDP body (``bytes`` are decoded as UTF-8, falling back to Latin-1).

        Raises :class:`~sipx.ParseError` naming the line when the input is not SDP.

        Bytes seen again among the last few bodies parsed (the same offer in every call
        of a load test) are not parsed again: the result is a copy of the earlier one.
        """
        if type(text) is bytes and cls is SDPBody:
            known = _RECENT.get(text, _UNSEEN)
            if known is not None and known is not _UNSEEN:
                return _copy_body(known)
            body = cls._parse(text)
            if len(_RECENT) >= _RECENT_BODIES:
                try:
                    del _RECENT[next(iter(_RECENT))]
                except (KeyError, RuntimeError, StopIteration):  # another thread's parse
                    pass
            # Seen once: remembered as seen; seen twice: a copy kept, handed out as copies.
            _RECENT[text] = _copy_body(body) if known is None else None
            return body
        return cls._parse(text)

    @classmethod
    def _parse(cls, text: str | bytes) -> SDPBody:
        if isinstance(text, bytes):
            raw_bytes = text
            try:
                text = raw_bytes.decode("utf-8")
            except UnicodeDecodeError:
                text = raw_bytes.decode("latin-1")
        body = cls()
        seen: set[str] = set()
        current: MediaDescription | None = None
        slot = ""
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        for lineno, raw in enumerate(lines, 1):
            line = raw.rstrip()
            if not line:
                continue
            letter, sep, value = line.partition("=")
            if not sep:
                raise _line_error(lineno, "expected '<type>=<value>'", line)
            if len(letter) != 1 or not (letter.isascii() and letter.isalpha()):
                raise _line_error(lineno, "type must be a single letter", line)
            if not seen and letter != "v":
                raise _line_error(lineno, "an SDP body must start with a v= line", line)
            if letter == "m":
                current = _parse_media(lineno, line, value)
                body.media.append(current)
                slot = "m"
            elif current is None:
                slot = body._parse_session_line(lineno, line, letter, value, seen, slot)
            else:
                slot = _parse_media_line(current, lineno, line, letter, value, slot)
            seen.add(letter)
        if not seen:
            raise ParseError("SDP line 1: empty body, expected a v= line")
        if "o" not in seen:
            raise ParseError("SDP: missing the o= line")
        # Keep other_lines in output order so that equality survives a round trip.
        body.other_lines.sort(key=lambda line: _SESSION_ORDER.find(line.slot))
        for media in body.media:
            media.other_lines.sort(key=lambda line: _MEDIA_ORDER.find(line.slot))
        return body

    def _parse_session_line(
        self, lineno: int, line: str, letter: str, value: str, seen: set[str], slot: str
    ) -> str:
        if letter in "vos" and letter in seen:
            raise _line_error(lineno, f"duplicate {letter}= line", line)
        if letter == "v":
            if not _DIGITS.fullmatch(value.strip(" \t")):
                raise _line_error(lineno, "v= must be a number", line)
            self.version = int(value.strip(" \t"))
        elif letter == "o":
            fields = _fields(value)
            if len(fields) != 6:
                raise _line_error(lineno, "o= needs 6 fields", line)
            self.origin = Origin(*fields)
        elif letter == "s":
            self.session_name = value
        elif letter == "c" and self.connection is None:
            self.connection = _parse_connection(lineno, line, value)
        elif letter == "b":
            self.bandwidths.append(_parse_bandwidth(lineno, line, value))
        elif letter == "t" and "t" not in seen:
            fields = _fields(value)
            if len(fields) != 2:
                raise _line_error(lineno, "t= needs start and stop times", line)
            self.timing = " ".join(fields)
        elif letter == "a":
            self.attributes.append(_parse_attribute(lineno, line, value))
        else:
            slot = _SESSION_SLOTS.get(letter, slot)
            self.other_lines.append(SDPLine(letter, value, slot))
            return slot
        return letter

    # -- serialisation ---------------------------------------------------------------

    def to_lines(self) -> list[str]:
        """All lines in RFC 8866 order, without line terminators."""
        if not self.other_lines:  # the usual case: the modeled lines in _SESSION_ORDER
            lines = [f"v={self.version}", f"o={self.origin}", f"s={self.session_name}"]
            if self.connection is not None:
                lines.append(f"c={self.connection}")
            if self.bandwidths:
                lines.extend(f"b={kind}:{value}" for kind, value in self.bandwidths)
            lines.append(f"t={self.timing}")
            lines.extend(_attribute_lines(self.attributes))
            for media in self.media:
                lines.extend(media.to_lines())
            return lines
        modeled: dict[str, list[str]] = {
            "v": [f"v={self.version}"],
            "o": [f"o={self.origin}"],
            "s": [f"s={self.session_name}"],
            "c": [] if self.connection is None else [f"c={self.connection}"],
            "b": [f"b={kind}:{value}" for kind, value in self.bandwidths],
            "t": [f"t={self.timing}"],
            "a": _attribute_lines(self.attributes),
        }
        lines = _ordered_lines(_SESSION_ORDER, modeled, self.other_lines)
        for media in self.media:
            lines.extend(media.to_lines())
        return lines

    def to_string(self) -> str:
        """The body as text with CRLF line endings."""
        return "\r\n".join(self.to_lines()) + "\r\n"

    def to_bytes(self) -> bytes:
        """The body encoded as UTF-8."""
        return self.to_string().encode("utf-8")

    def __str__(self) -> str:
        return self.to_string()

    # -- convenience -----------------------------------------------------------------

    @property
    def connection_address(self) -> str | None:
        """The session ``c=`` address, else the first media-level one (without ``/ttl``)."""
        if self.connection is not None:
            return self.connection.host
        for media in self.media:
            if media.connection is not None:
                return media.connection.host
        return None

    def media_address(self, media: MediaDescription) -> str | None:
        """Where ``media`` is received: its own ``c=``, else the session's."""
        connection = media.connection or self.connection
        return None if connection is None else connection.host

    def media_direction(self, media: MediaDescription) -> str:
        """Direction of ``media``: its attribute, else the session-level one, else sendrecv."""
        return _direction_of(media.attributes) or _direction_of(self.attributes) or "sendrecv"

    @property
    def direction(self) -> str:
        """Direction of the first media section (session-level default applied)."""
        if self.media:
            return self.media_direction(self.media[0])
        return _direction_of(self.attributes) or "sendrecv"

    def get_attribute(self, name: str) -> str | None:
        """Value of the first session-level ``a=name[:value]``."""
        return _first_attribute(self.attributes, name)

    def get_codecs_summary(self) -> list[str]:
        """``["PCMU/8000", ...]``: distinct codecs of the enabled (port != 0) audio streams."""
        summary: list[str] = []
        for media in self.media:
            if media.media.lower() != "audio" or media.port == 0:
                continue
            for codec in media.codecs:
                if codec.encoding not in summary:
                    summary.append(codec.encoding)
        return summary

    def with_direction(self, direction: str) -> SDPBody:
        """A copy for a re-offer (hold/unhold): every enabled stream set to ``direction``,
        session-level direction attributes dropped, and the origin's sess-version bumped."""
        _check_direction(direction)
        new = copy.deepcopy(self)
        new.attributes = [(k, v) for k, v in new.attributes if k not in DIRECTIONS]
        for media in new.media:
            if media.port != 0:
                media.set_direction(direction)
        new.origin = new.origin.bumped()
        return new

    # -- offer / answer (RFC 3264) ---------------------------------------------------

    @classmethod
    def create_offer(
        cls,
        session_name: str,
        origin_username: str,
        origin_address: str,
        connection_address: str,
        media_specs: Sequence[Mapping[str, Any]],
        session_id: int | None = None,
        *,
        session_version: int | None = None,
    ) -> SDPBody:
        """Build an offer.

        Each media spec: ``media``, ``port``, ``codecs`` (dicts with ``payload``, ``name``,
        ``rate`` and optional ``channels``/``fmtp``; a static payload alone is enough), and
        optionally ``protocol`` (``"RTP/AVP"``), ``direction`` (``"sendrecv"``), ``ptime``
        and ``attributes`` (extra ``(name, value)`` pairs). Every codec gets an ``a=rtpmap``.

        ``session_id`` defaults to a stable hash of the origin and session name, so pass
        one (from your random source) when ids must differ between calls;
        ``session_version`` defaults to the session id.
        """
        sess_id = (
            session_id
            if session_id is not None
            else _derive_session_id(origin_username, origin_address, session_name)
        )
        version = sess_id if session_version is None else session_version
        body = cls(
            origin=Origin(
                origin_username,
                str(sess_id),
                str(version),
                "IN",
                _addrtype(origin_address),
                origin_address,
            ),
            session_name=session_name,
            connection=Connection.of(connection_address),
        )
        for index, spec in enumerate(media_specs):
            body.media.append(_offer_media(index, spec))
        return body

    @classmethod
    def create_answer(
        cls,
        offer: SDPBody | str | bytes,
        origin_username: str,
        origin_address: str,
        connection_address: str,
        supported_codecs: Sequence[Mapping[str, Any]] | None = None,
        port: int | None = None,
        direction: str | None = None,
        session_id: int | None = None,
        *,
        ports: Sequence[int] | None = None,
        session_name: str = "-",
        supported_protocols: Iterable[str] = ("RTP/AVP", "RTP/AVPF"),
    ) -> SDPBody:
        """Answer ``offer`` (RFC 3264 section 6): one m-line per offered m-line, same order.

        Each stream keeps the offered codecs (offer order and payload numbers, offered fmtp)
        that match ``supported_codecs`` (same dict form as offers, plus ``media``, default
        ``"audio"``; defaults to PCMU, PCMA, G722, telephone-event). A stream is refused with
        port 0 when it was offered with port 0, uses an unsupported media type or protocol,
        or has no common codec besides telephone-event/CN. Accepted streams mirror the
        offered direction, narrowed by ``direction``, and echo ``a=ptime``.

        Stream ``i`` uses ``ports[i]`` if given, else ``(port or 8000) + 2 * i``.
        ``session_id`` defaults to a stable hash of our origin and the offer's origin.

        The answers to the last few offers are remembered by what they depend on (the
        offer's streams and session attributes, the arguments but the origin's): the same
        offer answered again (a load generator's, every call) gets a copy of the earlier
        answer with its own o= line, without working it out again.
        """
        if not isinstance(offer, SDPBody):
            offer = cls.parse(offer)
        if direction is not None:
            _check_direction(direction)
        if port is not None and ports is not None:
            raise ValueError("give either port or ports, not both")
        if ports is not None and len(ports) != len(offer.media):
            raise ValueError(f"ports has {len(ports)} entries for {len(offer.media)} m-lines")
        specs = DEFAULT_SUPPORTED_CODECS if supported_codecs is None else supported_codecs
        supported = _supported(specs)
        origin = _answer_origin(
            origin_username, origin_address, session_name, offer.origin, session_id
        )
        key = _answer_key(
            offer, specs, supported, connection_address, direction, session_name,
            supported_protocols,
        )  # fmt: skip
        base = 8000 if port is None else port
        known = None
        if key is not None and cls is SDPBody:
            try:
                known = _ANSWERS.get(key)
            except TypeError:  # a list where a pair belongs (made by hand): not kept
                key = None
            if known is not None and known[0] is supported:
                answer = _copy_body(known[1])
                answer.origin = origin
                streams = answer.media
                for index in known[2]:  # the accepted streams get this answer's ports
                    streams[index].port = ports[index] if ports is not None else base + 2 * index
                return answer
        protocols = {p.upper() for p in supported_protocols}
        answer = cls(
            origin=origin,
            session_name=session_name,
            connection=_connection_of(connection_address),
        )
        accepted: list[int] = []
        for index, offered in enumerate(offer.media):
            common: Sequence[Codec] = ()
            lines: Sequence[tuple[str, str | None]] = ()
            if offered.port != 0 and offered.protocol.upper() in protocols:
                common, lines = _answer_codecs(offered, supported)
            if all(codec.name.lower() in _AUXILIARY_CODECS for codec in common):
                answer.media.append(
                    MediaDescription(offered.media, 0, offered.protocol, list(offered.formats))
                )
                continue
            our_port = ports[index] if ports is not None else base + 2 * index
            media = MediaDescription(
                offered.media, our_port, offered.protocol, [c.payload for c in common]
            )
            media.attributes.extend(lines)
            if offered.ptime is not None:
                media.attributes.append(("ptime", str(offered.ptime)))
            send, recv = _DIRECTION_BITS[offer.media_direction(offered)]
            mirrored = (recv, send)
            if direction is not None:
                ours = _DIRECTION_BITS[direction]
                mirrored = (mirrored[0] and ours[0], mirrored[1] and ours[1])
            media.attributes.append((_BITS_DIRECTION[mirrored], None))
            answer.media.append(media)
            accepted.append(index)
        if key is not None and cls is SDPBody:
            if len(_ANSWERS) >= _ANSWERS_KEPT:
                try:
                    del _ANSWERS[next(iter(_ANSWERS))]  # the oldest
                except (KeyError, RuntimeError, StopIteration):  # another thread's answer
                    pass
            # A copy never handed out, with the streams whose port is the answer's own.
            _ANSWERS[key] = (supported, _copy_body(answer), tuple(accepted))
        return answer


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


_CODECS_KEPT: Final = 32
# ``MediaDescription.codecs`` by formats and attributes (first in, first out).
_CODECS_READ: dict[
    tuple[tuple[str, ...], tuple[tuple[str, str | None], ...]], tuple[Codec, ...]
] = {}

_RECENT_BODIES: Final = 32
_UNSEEN: Final = SDPBody()  # a marker: bytes not among the recent ones
# The last bodies parsed, by their bytes: None when seen once, else a parsed copy kept
# apart (never handed out, so never changed).
_RECENT: dict[bytes, SDPBody | None] = {}


_ANSWERS_KEPT: Final = 32
# Recent answers by what they depend on (see ``_answer_key``), with the supported codecs
# they were made with (compared by identity: the entry holds them, so their id is not
# reused while it lives) and the indexes of the accepted streams (their port is each
# answer's own: ``port``/``ports`` are not in the key); each a copy never handed out, so
# never changed.
_ANSWERS: dict[tuple[object, ...], tuple[_SupportedCodecs, SDPBody, tuple[int, ...]]] = {}


def _answer_key(
    offer: SDPBody,
    specs: Sequence[Mapping[str, Any]],
    supported: _SupportedCodecs,
    connection_address: str,
    direction: str | None,
    session_name: str,
    protocols: Iterable[str],
) -> tuple[object, ...] | None:
    """What :meth:`SDPBody.create_answer` reads but for the o= line and our ports: the
    offer's session attributes and each stream's type, whether its port is 0, protocol,
    formats and attributes, and the arguments. (Our ports only fill the accepted streams'
    m= lines, and the offer's ports only refuse a stream when 0: calls with sipx media,
    each on its own port, to callers each on theirs, get the same answer.) None when
    the answer is not to be remembered: supported codecs given as a list (read again each
    time), protocols not given as a tuple. (An unhashable value in it, a list made by hand
    where a pair belongs, shows when it is looked up.)"""
    if not isinstance(specs, tuple) or type(protocols) is not tuple:
        return None
    return (
        id(supported),
        protocols,
        connection_address,
        direction,
        session_name,
        tuple(offer.attributes),
        *[
            (m.media, m.port == 0, m.protocol, tuple(m.formats), tuple(m.attributes))
            for m in offer.media
        ],
    )


def _copy_body(body: SDPBody) -> SDPBody:
    """A copy sharing only the immutable parts (strings, tuples, frozen value objects)."""
    return SDPBody(
        version=body.version,
        origin=body.origin,
        session_name=body.session_name,
        connection=body.connection,
        bandwidths=list(body.bandwidths),
        timing=body.timing,
        attributes=list(body.attributes),
        media=[
            MediaDescription(
                media.media,
                media.port,
                media.protocol,
                list(media.formats),
                media.port_count,
                media.connection,
                list(media.bandwidths),
                list(media.attributes),
                list(media.other_lines),
            )
            for media in body.media
        ],
        other_lines=list(body.other_lines),
    )


def _line_error(lineno: int, message: str, line: str) -> ParseError:
    shown = line if len(line) <= 80 else line[:77] + "..."
    return ParseError(f"SDP line {lineno}: {message}: {shown!r}")


def _fields(value: str) -> list[str]:
    value = value.strip(" \t")
    return _FIELD_SEP.split(value) if value else []


_VALUES_KEPT: Final = 32
# Frozen values of our answers, shared: the o= line derived from an offer's (same offer
# origin, same answer origin: a load generator's calls) and the c= line by address.
_DERIVED_ORIGINS: dict[tuple[str, str, str, Origin], Origin] = {}
_CONNECTIONS: dict[str, Connection] = {}


def _answer_origin(
    username: str, address: str, session_name: str, offered: Origin, session_id: int | None
) -> Origin:
    """The o= line of an answer: ``session_id``, else one derived from the offer's."""
    if session_id is not None:
        sess_id = str(session_id)
        return Origin(username, sess_id, sess_id, "IN", _addrtype(address), address)
    key = (username, address, session_name, offered)
    origin = _DERIVED_ORIGINS.get(key)
    if origin is None:
        sess_id = str(_derive_session_id(username, address, session_name, str(offered)))
        origin = Origin(username, sess_id, sess_id, "IN", _addrtype(address), address)
        if len(_DERIVED_ORIGINS) >= _VALUES_KEPT:
            del _DERIVED_ORIGINS[next(iter(_DERIVED_ORIGINS))]  # the oldest
        _DERIVED_ORIGINS[key] = origin
    return origin


def _connection_of(address: str) -> Connection:
    """``Connection.of(address)``, one object per address (the last few kept)."""
    connection = _CONNECTIONS.get(address)
    if connection is None:
        connection = Connection.of(address)
        if len(_CONNECTIONS) >= _VALUES_KEPT:
            del _CONNECTIONS[next(iter(_CONNECTIONS))]  # the oldest
        _CONNECTIONS[address] = connection
    return connection


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _parse_connection(lineno: int, line: str, value: str) -> Connection:
    fields = _fields(value)
    if len(fields) != 3:
        raise _line_error(lineno, "c= needs network type, address type and address", line)
    return Connection(*fields)


def _parse_bandwidth(lineno: int, line: str, value: str) -> tuple[str, str]:
    kind, sep, amount = value.partition(":")
    if not sep or not kind:
        raise _line_error(lineno, "b= must be '<type>:<bandwidth>'", line)
    return kind, amount


def _parse_attribute(lineno: int, line: str, value: str) -> tuple[str, str | None]:
    name, sep, attr_value = value.partition(":")
    if not name:
        raise _line_error(lineno, "empty attribute name", line)
    return name, (attr_value if sep else None)


def _parse_media(lineno: int, line: str, value: str) -> MediaDescription:
    fields = _fields(value)
    if len(fields) < 3:
        raise _line_error(lineno, "m= needs media, port, protocol and formats", line)
    port_text, sep, count_text = fields[1].partition("/")
    if not _DIGITS.fullmatch(port_text) or int(port_text) > 65535:
        raise _line_error(lineno, "invalid port", line)
    if sep and not _DIGITS.fullmatch(count_text):
        raise _line_error(lineno, "invalid port count", line)
    return MediaDescription(
        media=fields[0],
        port=int(port_text),
        protocol=fields[2],
        formats=fields[3:],
        port_count=int(count_text) if sep else None,
    )


def _parse_media_line(
    media: MediaDescription, lineno: int, line: str, letter: str, value: str, slot: str
) -> str:
    if letter in "vos":
        raise _line_error(lineno, f"{letter}= is not allowed inside a media section", line)
    if letter == "c" and media.connection is None:
        media.connection = _parse_connection(lineno, line, value)
    elif letter == "b":
        media.bandwidths.append(_parse_bandwidth(lineno, line, value))
    elif letter == "a":
        media.attributes.append(_parse_attribute(lineno, line, value))
    else:
        slot = _MEDIA_SLOTS.get(letter, slot)
        media.other_lines.append(SDPLine(letter, value, slot))
        return slot
    return letter


def _attribute_lines(attributes: Iterable[tuple[str, str | None]]) -> list[str]:
    return [f"a={name}" if value is None else f"a={name}:{value}" for name, value in attributes]


def _ordered_lines(order: str, modeled: Mapping[str, list[str]], extra: list[SDPLine]) -> list[str]:
    lines: list[str] = []
    if not extra:  # the usual case: only the modeled lines, in the order's slots
        for slot in order:
            modeled_lines = modeled.get(slot)
            if modeled_lines:
                lines.extend(modeled_lines)
        return lines
    for slot in order:
        lines.extend(modeled.get(slot, ()))
        lines.extend(str(line) for line in extra if line.slot == slot)
    lines.extend(str(line) for line in extra if line.slot not in order or not line.slot)
    return lines


def _first_attribute(attributes: Iterable[tuple[str, str | None]], name: str) -> str | None:
    for key, value in attributes:
        if key == name:
            return value
    return None


def _payload_attribute(
    attributes: Iterable[tuple[str, str | None]], name: str, payload: str
) -> str | None:
    for key, value in attributes:
        if key == name and value is not None:
            head, _, rest = value.strip(" \t").partition(" ")
            if head == payload:
                return rest.strip(" \t")
    return None


def _direction_of(attributes: Iterable[tuple[str, str | None]]) -> str | None:
    for key, _ in attributes:
        if key in DIRECTIONS:
            return key
    return None


def _with_direction(
    attributes: list[tuple[str, str | None]], direction: str
) -> list[tuple[str, str | None]]:
    result: list[tuple[str, str | None]] = []
    placed = False
    for key, value in attributes:
        if key in DIRECTIONS:
            if not placed:
                result.append((direction, None))
                placed = True
        else:
            result.append((key, value))
    if not placed:
        result.append((direction, None))
    return result


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")


def _derive_session_id(*parts: str) -> int:
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:5], "big")


def _codec_key(codec: Codec) -> tuple[str, int, int]:
    return codec.name.lower(), codec.rate, codec.channels or 1


def _codec_from_spec(spec: Mapping[str, Any], *, payload_required: bool) -> Codec:
    raw_payload = spec.get("payload")
    payload = "" if raw_payload is None else str(raw_payload)
    if payload_required and not payload:
        raise ValueError(f"codec {dict(spec)!r} has no payload type")
    name, rate, channels = spec.get("name"), spec.get("rate"), spec.get("channels")
    if name is None or rate is None:
        static = STATIC_PAYLOAD_TYPES.get(payload)
        if static is None:
            raise ValueError(f"codec {dict(spec)!r} needs 'name' and 'rate'")
        name = static[0] if name is None else name
        rate = static[1] if rate is None else rate
        channels = static[2] if channels is None else channels
    try:
        fmtp = spec.get("fmtp")
        return Codec(
            payload,
            str(name),
            int(rate),
            None if channels is None else int(channels),
            None if fmtp is None else str(fmtp),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid codec {dict(spec)!r}: {exc}") from None


def _codec_attributes(codecs: Iterable[Codec]) -> list[tuple[str, str | None]]:
    attributes: list[tuple[str, str | None]] = []
    for codec in codecs:
        attributes.append(("rtpmap", f"{codec.payload} {codec.encoding}"))
        if codec.fmtp is not None:
            attributes.append(("fmtp", f"{codec.payload} {codec.fmtp}"))
    return attributes


def _offer_media(index: int, spec: Mapping[str, Any]) -> MediaDescription:
    try:
        media_type, port, codec_specs = spec["media"], spec["port"], spec["codecs"]
    except KeyError as exc:
        raise ValueError(f"media spec {index} lacks {exc.args[0]!r}") from None
    codecs = [_codec_from_spec(c, payload_required=True) for c in codec_specs]
    direction = str(spec.get("direction", "sendrecv"))
    _check_direction(direction)
    media = MediaDescription(
        str(media_type),
        int(port),
        str(spec.get("protocol", "RTP/AVP")),
        [codec.payload for codec in codecs],
    )
    media.attributes.extend(_codec_attributes(codecs))
    if spec.get("ptime") is not None:
        media.attributes.append(("ptime", str(int(spec["ptime"]))))
    for name, value in spec.get("attributes", ()):
        media.attributes.append((str(name), None if value is None else str(value)))
    media.attributes.append((direction, None))
    return media


_SupportedCodecs = list[tuple[str, Codec, tuple[str, int, int]]]  # media type, codec, key
_SUPPORTED_MADE: dict[int, tuple[tuple[Mapping[str, Any], ...], _SupportedCodecs]] = {}


def _supported(specs: Sequence[Mapping[str, Any]]) -> _SupportedCodecs:
    """The codecs of ``specs`` with their media type and matching key. A tuple of specs
    (the default, the client's) is read once and its result reused; a list every time."""
    if isinstance(specs, tuple):
        made = _SUPPORTED_MADE.get(id(specs))
        if made is not None and made[0] is specs:
            return made[1]
    supported = []
    for spec in specs:
        codec = _codec_from_spec(spec, payload_required=False)
        supported.append((str(spec.get("media", "audio")).lower(), codec, _codec_key(codec)))
    if isinstance(specs, tuple) and len(_SUPPORTED_MADE) < 64:
        _SUPPORTED_MADE[id(specs)] = (specs, supported)
    return supported


_ANSWER_CODECS_KEPT: Final = 32
_AnswerCodecs = tuple[tuple[Codec, ...], tuple[tuple[str, str | None], ...]]
# The codecs of recent answers (and their rtpmap/fmtp lines), by what they depend on: the
# offered media type, formats and attributes and our supported codecs (by identity; the
# entry holds them, so their id is not reused while it lives).
_ANSWER_CODECS: dict[tuple[object, ...], tuple[_SupportedCodecs, _AnswerCodecs]] = {}


def _answer_codecs(offered: MediaDescription, supported: _SupportedCodecs) -> _AnswerCodecs:
    """The codecs an answer keeps for ``offered`` and their attributes, worked out once for
    offers seen again (load generators offer the same stream in every call)."""
    key = (offered.media, tuple(offered.formats), tuple(offered.attributes), id(supported))
    known = _ANSWER_CODECS.get(key)
    if known is not None and known[0] is supported:
        return known[1]
    common = tuple(_common_codecs(offered, supported))
    made = (common, tuple(_codec_attributes(common)))
    if len(_ANSWER_CODECS) >= _ANSWER_CODECS_KEPT:
        del _ANSWER_CODECS[next(iter(_ANSWER_CODECS))]
    _ANSWER_CODECS[key] = (supported, made)
    return made


def _common_codecs(offered: MediaDescription, supported: _SupportedCodecs) -> list[Codec]:
    media_type = offered.media.lower()
    common: list[Codec] = []
    for codec in offered.codecs:
        key = _codec_key(codec)
        for kind, ours, our_key in supported:
            if kind == media_type and key == our_key:
                if codec.fmtp is None and ours.fmtp is not None:
                    codec = replace(codec, fmtp=ours.fmtp)
                common.append(codec)
                break
    return common
