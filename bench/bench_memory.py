"""Memory per pending transaction and per dialog, measured with tracemalloc.

Run from the repository root::

    .venv/bin/python bench/bench_memory.py            # options: --count N

Everything is sans-I/O: a :class:`sipx._core.transaction.TransactionLayer` driven with
explicit ``now`` values, messages parsed from bytes as a transport would hand them over.
``--count`` (default 10 000) transactions or dialogs exist at once; each figure is the
growth of ``tracemalloc``'s traced memory (after ``gc.collect()``) divided by the count,
and the growth of ``len(gc.get_objects())`` (objects the cyclic GC walks on every full
collection) divided by the count.

* **client, OPTIONS**: requests built as ``AsyncClient`` builds them (``build_request`` plus
  a Via), handed to ``send_request`` at ``now=0`` (Trying: Timers E and F armed), then a
  200 parsed from bytes for each at ``now=0.1`` (Completed: Timer K = T4 = 5 s), then
  ``handle_timers`` at 5.2 s (Timer K fired: every transaction terminated) and at 33 s (past
  Timer F's 32 s).
* **server, OPTIONS**: OPTIONS parsed from bytes (as SIPp sends them), ``receive_request``
  (Trying), a 200 from ``make_response`` (Completed: Timer J = 64*T1 = 32 s), then
  ``handle_timers`` at 32.2 s.
* **dialogs**: ``Dialog.from_uas_request`` for INVITEs with an SDP offer, parsed from bytes;
  a dialog keeps the INVITE that created it (``Dialog.invite``), so the INVITE is counted.

"Back to baseline" compares with the memory taken before the part started, less the tables
of the layer's emptied dicts (a dict keeps its table when emptied: about 30 bytes per
transaction it once held, reused by the next ones), within 1 KiB per 1 000 transactions
plus 16 KiB (interpreter free lists, e.g. the deque blocks of the layer's event queue).
Each transaction part then runs the same cycle again on the same layer and checks the
baseline once more, which shows that nothing accumulates from cycle to cycle.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sipx._core.builder import build_request
from sipx._core.dialog import Dialog
from sipx._core.parser import parse_message
from sipx._core.timers import TimerConfig
from sipx._core.transaction import Send, TransactionLayer, make_response

_SDP = (
    "v=0\r\n"
    "o=alice 3724394400 3724394401 IN IP4 192.0.2.10\r\n"
    "s=Talk\r\n"
    "c=IN IP4 192.0.2.10\r\n"
    "t=0 0\r\n"
    "m=audio 7078 RTP/AVP 96 0 8 101\r\n"
    "a=rtpmap:96 opus/48000/2\r\n"
    "a=rtpmap:101 telephone-event/48000\r\n"
)


def _options_from_sipp(i: int) -> bytes:
    """An OPTIONS shaped like SIPp's uac_options.xml."""
    return (
        "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{i}-1-0;rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:ping@127.0.0.1:5061>;tag=4242SIPpTag00{i}\r\n"
        "To: <sip:127.0.0.1:5060>\r\n"
        f"Call-ID: {i}-4242@127.0.0.1\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Accept: application/sdp\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def _invite(i: int) -> bytes:
    return (
        "INVITE sip:bob@192.0.2.20 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK.{i:08x};rport\r\n"
        "Max-Forwards: 70\r\n"
        f'From: "Alice" <sip:alice@example.com>;tag=a{i:08x}\r\n'
        "To: <sip:bob@example.com>\r\n"
        f"Call-ID: {i:08x}@192.0.2.10\r\n"
        "CSeq: 20 INVITE\r\n"
        "Contact: <sip:alice@192.0.2.10:5060;transport=udp>\r\n"
        "Record-Route: <sip:192.0.2.1;lr>\r\n"
        "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, INFO, UPDATE\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(_SDP)}\r\n\r\n{_SDP}"
    ).encode()


def _traced() -> tuple[int, int]:
    gc.collect()
    gc.collect()  # a tuple is untracked once what it holds is: nested ones take two passes
    return tracemalloc.get_traced_memory()[0], len(gc.get_objects())


class Report:
    def __init__(self, title: str, count: int) -> None:
        self.count = count
        self.base = _traced()
        print(f"\n{title} ({count:,} at once)")
        print(f"  {'state':<66} {'bytes each':>10} {'GC objects each':>16}")

    def line(self, label: str) -> None:
        memory, objects = _traced()
        per = (memory - self.base[0]) / self.count
        objs = (objects - self.base[1]) / self.count
        print(f"  {label:<66} {per:>10,.0f} {objs:>16.1f}")

    def back_to_baseline(self, capacity: int = 0) -> None:
        """``capacity``: bytes of empty tables the layer keeps (a dict never shrinks)."""
        memory, objects = _traced()
        extra = memory - self.base[0]
        # Allowed: 1 KiB per 1 000 items and 16 KiB of free lists (deque blocks, small dicts).
        ok = extra - capacity <= self.count + 16 * 1024
        kept = f", of which {capacity:,} are the layer's emptied dict tables" if capacity else ""
        print(
            f"  back to baseline: {'yes' if ok else 'NO'} ({extra:+,} bytes{kept}; "
            f"{objects - self.base[1]:+,} GC objects)"
        )


def _client_cycle(layer: TransactionLayer, count: int, start: float, report: Report | None) -> None:
    timers = layer.config

    def line(label: str) -> None:
        if report is not None:
            report.line(label)

    requests = []
    for i in range(count):
        request = build_request(
            "OPTIONS",
            "sip:127.0.0.1:5090",
            from_addr=f"<sip:alice@127.0.0.1>;tag=t{i:08x}",
            to_addr="<sip:127.0.0.1:5090>",
            call_id=f"c{start:g}-{i:016x}",
            cseq=1,
            user_agent="sipx/0.1",
        )
        branch = f"z9hG4bK{start:g}-{i:016x}"
        request.headers.prepend("Via", f"SIP/2.0/UDP 127.0.0.1:5060;rport;branch={branch}")
        requests.append(request)
    line("requests built (held by the caller, not yet sent)")
    for request in requests:
        layer.send_request(request, start, reliable=False, destination=("127.0.0.1", 5090))
    layer.pop_events()
    line("+ send_request: Trying, Timers E and F armed")
    wire = [
        make_response(request, 200, to_tag=f"r{i}").to_bytes() for i, request in enumerate(requests)
    ]
    del requests
    for data in wire:
        layer.receive_response(parse_message(data), start + 0.1)  # type: ignore[arg-type]
    del wire
    layer.pop_events()  # the TU takes each response from its ResponseReceived
    line("200 parsed and received: Completed, Timer K armed (caller let go)")
    timer_k = timers.timer_k(False)
    layer.handle_timers(start + 0.1 + timer_k + 0.1)
    layer.pop_events()
    if report is not None:
        print(f"  (transactions left in the layer: {len(layer)}; heap entries: {len(layer._heap)})")
    line(f"Timer K fired ({0.1 + timer_k:.1f} s): all terminated")
    layer.handle_timers(start + timers.timer_f + 1)
    layer.pop_events()
    line(f"past the first Timer F deadline ({timers.timer_f:g} s)")


def client_transactions(count: int, timers: TimerConfig) -> None:
    report = Report("Client transactions: OPTIONS sent, 200 received", count)
    layer = TransactionLayer(timers)
    _client_cycle(layer, count, 0.0, report)
    report.back_to_baseline(_client_tables(layer))
    _client_cycle(layer, count, 100.0, None)
    report.back_to_baseline(_client_tables(layer))
    print("  (the second line: after the same cycle ran a second time on the same layer)")


def _server_cycle(layer: TransactionLayer, count: int, start: float, report: Report | None) -> None:
    timers = layer.config

    def line(label: str) -> None:
        if report is not None:
            report.line(label)

    wire = [_options_from_sipp(i + int(start) * count) for i in range(count)]
    line("OPTIONS as bytes")
    transactions = []
    for i, data in enumerate(wire):
        request = parse_message(data)
        # What AsyncClient._on_message reads before handing the request over.
        request.to, request.from_, request.call_id, request.cseq  # noqa: B018
        transaction = layer.receive_request(
            request,  # type: ignore[arg-type]
            start,
            reliable=False,
            destination=("127.0.0.1", 5061 + i % 2),
        )
        transactions.append(transaction)
    del wire
    layer.pop_events()
    line("+ parsed and received: Trying (bytes gone)")
    for i, transaction in enumerate(transactions):
        assert transaction is not None
        response = make_response(transaction.request, 200, to_tag=f"s{i:08x}")
        response.headers.add("Allow", "INVITE, ACK, CANCEL, OPTIONS, BYE, MESSAGE")
        transaction.respond(response, start + 0.001)
    for event in layer.pop_events():
        if isinstance(event, Send):
            event.to_bytes()  # what the transport sends
    del transactions
    line(f"+ 200 sent: Completed, Timer J ({timers.timer_j(False):g} s) armed")
    layer.handle_timers(start + timers.timer_j(False) + 0.2)
    layer.pop_events()
    if report is not None:
        print(f"  (transactions left in the layer: {len(layer)}; heap entries: {len(layer._heap)})")
    line("Timer J fired: all terminated")


def server_transactions(count: int, timers: TimerConfig) -> None:
    report = Report("Server transactions: OPTIONS received, 200 sent (the UAS under SIPp)", count)
    layer = TransactionLayer(timers)
    _server_cycle(layer, count, 0.0, report)
    report.back_to_baseline(_server_tables(layer))
    _server_cycle(layer, count, 100.0, None)
    report.back_to_baseline(_server_tables(layer))
    print("  (the second line: after the same cycle ran a second time on the same layer)")


def _client_tables(layer: TransactionLayer) -> int:
    """Bytes of the layer's client-side dict tables (kept when emptied)."""
    return sum(sys.getsizeof(t) for t in (layer._clients, getattr(layer, "_client_records", {})))


def _server_tables(layer: TransactionLayer) -> int:
    """Bytes of the layer's server-side dict tables (kept when emptied)."""
    tables = [layer._servers, getattr(layer, "_records", {}), layer._recent]
    return sum(sys.getsizeof(table) for table in tables)


def gc_pause(count: int, repeat: int) -> None:
    """Time full collections with ``count`` Completed server OPTIONS waiting for Timer J."""
    layer = TransactionLayer(TimerConfig())
    for i in range(count):
        request = parse_message(_options_from_sipp(i))
        request.to, request.from_, request.call_id, request.cseq  # noqa: B018
        transaction = layer.receive_request(
            request,  # type: ignore[arg-type]
            i / 12_000,
            reliable=False,
            destination=("127.0.0.1", 5061),
        )
        assert transaction is not None
        response = make_response(transaction.request, 200, to_tag=f"s{i:08x}")
        response.headers.add("Allow", "INVITE, ACK, CANCEL, OPTIONS, BYE, MESSAGE")
        transaction.respond(response, i / 12_000)
        for event in layer.pop_events():
            if isinstance(event, Send):
                event.to_bytes()
    del request, transaction, response, event
    gc.collect()
    gc.collect()
    print(
        f"\nFull collections with {len(layer):,} Completed server OPTIONS waiting for Timer J "
        f"({len(gc.get_objects()):,} GC-tracked objects in the process)"
    )
    pauses = []
    for _ in range(repeat):
        start = time.perf_counter()
        gc.collect()
        pauses.append(time.perf_counter() - start)
    pauses.sort()
    print(
        "  gc.collect(): "
        + ", ".join(f"{p * 1000:.1f}" for p in pauses)
        + f" ms (median {pauses[len(pauses) // 2] * 1000:.1f} ms)"
    )


def dialogs(count: int) -> None:
    report = Report("Dialogs: UAS dialogs from INVITEs with SDP (Dialog keeps its INVITE)", count)
    wire = [_invite(i) for i in range(count)]
    report.line("INVITEs as bytes")
    invites = [parse_message(data) for data in wire]
    del wire
    for invite in invites:
        invite.to, invite.from_, invite.call_id, invite.cseq, invite.top_via  # noqa: B018
    report.line("parsed INVITEs (bytes gone), headers read")
    held = {}
    for i, invite in enumerate(invites):
        dialog = Dialog.from_uas_request(invite, f"b{i:08x}", confirmed=True)  # type: ignore[arg-type]
        held[dialog.id] = dialog
    del invites
    report.line("dialogs, in a dict by DialogId, each with its INVITE")
    for dialog in held.values():
        dialog.invite = None
    report.line("the same dialogs with Dialog.invite = None")
    held.clear()
    report.back_to_baseline()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument(
        "--gc-pause",
        type=int,
        metavar="N",
        help="only time full gc.collect() with N Completed server OPTIONS alive "
        "(32 s x 12 000/s = 384 000), without tracemalloc",
    )
    parser.add_argument("--repeat", type=int, default=5, help="collections timed (--gc-pause)")
    args = parser.parse_args()
    if args.gc_pause:
        gc_pause(args.gc_pause, args.repeat)
        return
    timers = TimerConfig()
    tracemalloc.start()
    print(
        f"Python {sys.version.split()[0]}; T1={timers.t1:g} s T4={timers.t4:g} s; "
        "figures are tracemalloc bytes and gc.get_objects() counts per item"
    )
    client_transactions(args.count, timers)
    server_transactions(args.count, timers)
    dialogs(args.count)


if __name__ == "__main__":
    main()
