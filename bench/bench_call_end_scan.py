"""CPU of ``Engine.cancel_retransmits`` (run by every call that ends) with N other calls'
2xx waiting for their ACK, in one process.

Run from the repository root::

    .venv/bin/python bench/bench_call_end_scan.py          # options: --pending N [N ...]

An :class:`~sipx._engine.Engine` (not running: no transport) gets N ``retransmit_2xx``
entries, one per dialog; then 2 000 calls whose 2xx was ACKed end (``cancel_retransmits``
of a dialog with nothing pending). The figure is ``time.process_time`` per ended call.
Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sipx._core.dialog import DialogId
from sipx._core.ids import IdSource
from sipx._core.message import Request
from sipx._core.parser import parse_message
from sipx._core.timers import TimerConfig
from sipx._core.transaction import make_response
from sipx._engine import Engine

_INVITE = (
    b"INVITE sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKx\r\n"
    b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: c\r\n"
    b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
)
_ENDS = 2000


async def _per_end(pending: int) -> float:
    engine = Engine(TimerConfig(), IdSource(lambda n: "ab" * n))
    engine.transport_of = lambda transaction: None  # type: ignore[assignment,method-assign,return-value]
    invite = parse_message(_INVITE)
    assert isinstance(invite, Request)
    response = make_response(invite, 200, to_tag="t")
    for i in range(pending):
        key = (DialogId(f"c{i}", "t", "f"), 1)
        engine.retransmit_2xx(key, None, response, lambda: None)  # type: ignore[arg-type]
    ended = [DialogId(f"x{i}", "t", "f") for i in range(_ENDS)]
    started = time.process_time()
    for dialog_id in ended:
        engine.cancel_retransmits(dialog_id)
    return (time.process_time() - started) / _ENDS * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pending", type=int, nargs="+", default=[50, 1000, 10000])
    args = parser.parse_args()
    for pending in args.pending:
        figure = trio.run(_per_end, pending)
        print(f"{pending} 2xx pending: {figure:.2f} µs per ended call")


if __name__ == "__main__":
    main()
