"""A readable ladder of SIP messages, printed from the clients' trace hooks.

``Ladder.hook(name)`` returns a trace callback for a client named ``name``; each message
becomes one line (``1111 ──INVITE sip:100@...──▶ 127.0.0.1:5070``), and with ``full=True``
the whole message follows.

:func:`wire_fields` is the structured data the ``sipx.wire`` and ``sipx.serve.wire`` log
records carry (``extra=``), from which the pytest plugin draws its ladder.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

Address = tuple[str, int]


def summary(data: bytes) -> str:
    """The start line of a message (and its CSeq for responses)."""
    head = data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
    if head.startswith("SIP/2.0 "):
        status = head[8:]
        for line in data.split(b"\r\n"):
            if line.lower().startswith(b"cseq:"):
                return f"{status} ({line[5:].decode('utf-8', 'replace').strip()})"
        return status
    method, _, rest = head.partition(" ")
    return f"{method} {rest.rsplit(' ', 1)[0]}"


def arrow(name: str, direction: str, data: bytes, peer: Address, transport: str) -> str:
    """One ladder line: ``name ──summary──▶ peer (transport)``, ``◀──`` when received."""
    text = summary(data)
    where = f"{peer[0]}:{peer[1]} ({transport})"
    if direction == "out":
        return f"{name} ──{text}──▶ {where}"
    return f"{name} ◀──{text}── {where}"


def wire_fields(
    direction: str, data: bytes, peer: Address, local: Address, transport: str
) -> dict[str, object]:
    """The ``extra=`` of a wire log record: attributes ``sip_direction`` ("in"/"out"),
    ``sip_data`` (the raw bytes), ``sip_peer`` and ``sip_local`` (host, port) and
    ``sip_transport`` ("UDP", "TCP", "TLS")."""
    return {
        "sip_direction": direction,
        "sip_data": data,
        "sip_peer": peer,
        "sip_local": local,
        "sip_transport": transport,
    }


class Ladder:
    def __init__(
        self,
        out: TextIO | None = None,
        *,
        full: bool = False,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.out = out or sys.stdout
        self.full = full
        self.clock = clock
        self.lines: list[str] = []

    def hook(self, name: str) -> Callable[[str, bytes, Address, str], None]:
        def trace(direction: str, data: bytes, address: Address, transport: str) -> None:
            if not data.strip():
                return
            line = arrow(f"{name:>6}", direction, data, address, transport)
            if self.clock is not None:
                line = f"[{self.clock():7.3f}] {line}"
            self.lines.append(line)
            print(line, file=self.out)
            if self.full:
                print(data.decode("utf-8", "replace").rstrip() + "\n", file=self.out)

        return trace
