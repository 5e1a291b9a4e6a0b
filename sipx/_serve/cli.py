"""``sipx serve``: run the development server from the command line.

::

    python -m sipx._serve.cli --host 127.0.0.1 --port 5070 --transport both \\
        --user 1111:1111xxx --user 2222:2222xxx --realm sipx --algorithm MD5 \\
        --rtp-ports 10000-20000 --ws-port 8080 --mwi 1111=2/8 --max-transactions 10000 \\
        --max-connections 512 --max-connections-per-address 32 --first-message-timeout 10 \\
        --message-timeout 10 --verbose

Without ``--user`` the guide's users (1111, 2222, 3333 with passwords 1111xxx...) exist.
The bound address is printed on stdout (``--port 0`` picks a free port). Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio

from .._errors import TransportError
from .._limits import DEFAULT_LIMITS, Limits
from .._validate import count_argument, finite_seconds_argument, port_argument
from .auth import ALGORITHMS, DEFAULT_USERS
from .notifier import parse_mwi_counts
from .server import DEFAULT_RTP_PORTS, DevServer

if TYPE_CHECKING:
    from trio_typing import TaskStatus

_TRANSPORTS = {"udp": ("UDP",), "tcp": ("TCP",), "both": ("UDP", "TCP")}


def build_parser(prog: str = "sipx serve") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="A development SIP server: registrar with digest auth, record-routing "
        "stateless proxy, and an answering extension (100).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=port_argument, default=5060, help="UDP and TCP port (0: pick one)"
    )
    parser.add_argument(
        "--transport", "-t", choices=sorted(_TRANSPORTS), default="both", help="default: both"
    )
    parser.add_argument(
        "--user",
        action="append",
        default=None,
        metavar="USER:PASSWORD",
        help="a user (repeatable); default 1111:1111xxx, 2222:2222xxx, 3333:3333xxx",
    )
    parser.add_argument("--realm", default="sipx", help="digest realm (default sipx)")
    parser.add_argument(
        "--algorithm",
        type=str.upper,
        choices=ALGORITHMS,
        default="MD5",
        help="digest algorithm of the challenges (default MD5)",
    )
    parser.add_argument("--echo-extension", default="100", help="the answering extension")
    parser.add_argument(
        "--answer-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="how long the extension rings before it answers (default 0)",
    )
    parser.add_argument(
        "--early-media",
        action="store_true",
        help="while it rings (--answer-delay), the extension sends 183 with its SDP and echoes",
    )
    parser.add_argument(
        "--rtp-ports",
        type=parse_port_range,
        default=DEFAULT_RTP_PORTS,
        metavar="LOW-HIGH",
        help="UDP ports for the extension's RTP echo (default "
        f"{DEFAULT_RTP_PORTS[0]}-{DEFAULT_RTP_PORTS[1]})",
    )
    parser.add_argument(
        "--cert",
        metavar="PEM",
        help="certificate and key (one PEM file): also serve TLS, on --tls-port",
    )
    parser.add_argument(
        "--tls-port",
        type=port_argument,
        default=None,
        help="TLS port (default: --port + 1; 0: pick one)",
    )
    limits = parser.add_argument_group("limits (docs/SECURITY.md)")
    limits.add_argument(
        "--max-transactions",
        type=count_argument,
        default=DEFAULT_LIMITS.max_server_transactions,
        metavar="N",
        help="server transactions at once; beyond, 503 (default "
        f"{DEFAULT_LIMITS.max_server_transactions})",
    )
    limits.add_argument(
        "--max-connections",
        type=count_argument,
        default=DEFAULT_LIMITS.max_connections,
        metavar="N",
        help=f"TCP/TLS connections at once (default {DEFAULT_LIMITS.max_connections})",
    )
    limits.add_argument(
        "--max-connections-per-address",
        type=count_argument,
        default=DEFAULT_LIMITS.max_connections_per_address,
        metavar="N",
        help="TCP/TLS connections from one IP address (default "
        f"{DEFAULT_LIMITS.max_connections_per_address})",
    )
    limits.add_argument(
        "--first-message-timeout",
        type=finite_seconds_argument,
        default=DEFAULT_LIMITS.first_message_timeout,
        metavar="SECONDS",
        help="close a connection with no complete message by then (default "
        f"{DEFAULT_LIMITS.first_message_timeout:g})",
    )
    limits.add_argument(
        "--message-timeout",
        type=finite_seconds_argument,
        default=DEFAULT_LIMITS.message_timeout,
        metavar="SECONDS",
        help="close a connection whose begun message is not complete by then (default "
        f"{DEFAULT_LIMITS.message_timeout:g})",
    )
    limits.add_argument(
        "--max-message-size",
        type=count_argument,
        default=DEFAULT_LIMITS.max_message_size,
        metavar="BYTES",
        help=f"largest message accepted (default {DEFAULT_LIMITS.max_message_size})",
    )
    parser.add_argument(
        "--ws-port",
        type=port_argument,
        default=None,
        help="also serve SIP over WebSocket (RFC 7118) on this port (0: pick one)",
    )
    parser.add_argument(
        "--wss-port",
        type=port_argument,
        default=None,
        help="also serve SIP over secure WebSocket (WSS) on this port (0: pick one); needs --cert",
    )
    parser.add_argument(
        "--mwi",
        action="append",
        default=None,
        type=parse_mwi,
        metavar="USER=NEW/OLD",
        help="voicemail counts a message-summary subscription of USER reports, e.g. "
        "1111=2/8 (repeatable; default: none waiting)",
    )
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="print every message sent and received"
    )
    return parser


def parse_mwi(value: str) -> tuple[str, tuple[int, int]]:
    """``"1111=2/8"`` -> ``("1111", (2, 8))`` (for ``--mwi``)."""
    user, equals, counts = value.partition("=")
    try:
        if not equals or not user:
            raise ValueError
        parsed = parse_mwi_counts(counts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected USER=NEW/OLD (e.g. 1111=2/8), not {value!r}"
        ) from None
    return user, (parsed.new, parsed.old)


def limits_from(args: argparse.Namespace) -> Limits:
    """The :class:`~sipx.Limits` the ``--max-...`` options ask for."""
    return Limits(
        max_server_transactions=args.max_transactions,
        max_connections=args.max_connections,
        max_connections_per_address=args.max_connections_per_address,
        first_message_timeout=args.first_message_timeout,
        message_timeout=args.message_timeout,
        max_message_size=args.max_message_size,
    )


def parse_port_range(value: str) -> tuple[int, int]:
    """``"10000-20000"`` -> ``(10000, 20000)`` (for ``--rtp-ports``)."""
    low, dash, high = value.partition("-")
    try:
        ports = (int(low), int(high))
    except ValueError:
        ports = (0, 0)
    if not dash or not 0 < ports[0] <= ports[1] <= 65535:
        raise argparse.ArgumentTypeError(f"expected LOW-HIGH within 1-65535, not {value!r}")
    return ports


def parse_users(values: Sequence[str] | None) -> dict[str, str]:
    if not values:
        return dict(DEFAULT_USERS)
    users: dict[str, str] = {}
    for value in values:
        user, colon, password = value.partition(":")
        if not colon or not user or not password:
            raise ValueError(f"--user takes USER:PASSWORD, not {value!r}")
        users[user] = password
    return users


def _print_trace(direction: str, data: bytes, address: tuple[str, int], transport: str) -> None:
    arrow = "<<<" if direction == "in" else ">>>"
    where = "from" if direction == "in" else "to"
    text = data.decode("utf-8", "replace").replace("\r\n", "\n").rstrip("\n")
    print(f"{arrow} {transport} {where} {address[0]}:{address[1]}\n{text}\n", file=sys.stderr)


async def _stop_on_signal(
    scope: trio.CancelScope, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """SIGINT (Ctrl-C) or SIGTERM: stop serving and exit 0."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()  # installed before the banner tells anyone we are up
        async for signum in signals:
            logging.getLogger("sipx.serve").info("stopping on %s", signal.Signals(signum).name)
            scope.cancel()
            return


def main(argv: Sequence[str] | None = None, *, prog: str = "sipx serve") -> int:
    """Run the server until Ctrl-C; returns the process exit code."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        users = parse_users(args.user)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.verbose:  # the trace prints the messages; the wire logger would repeat them
        logging.getLogger("sipx.serve.wire").setLevel(logging.INFO)
    try:
        server = DevServer(
            args.host,
            args.port,
            transports=_TRANSPORTS[args.transport],
            users=users,
            realm=args.realm,
            algorithm=args.algorithm,
            echo_extension=args.echo_extension,
            echo_answer_delay=args.answer_delay,
            echo_early_media=args.early_media,
            trace=_print_trace if args.verbose else None,
            cert=args.cert,
            tls_port=args.tls_port,
            rtp_ports=args.rtp_ports,
            ws_port=args.ws_port,
            wss_port=args.wss_port,
            mwi=dict(args.mwi or ()),
            limits=limits_from(args),
        )
    except ValueError as exc:  # an unreadable --cert, --wss-port without --cert
        parser.error(str(exc))

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(server.serve)
            if threading.current_thread() is threading.main_thread():
                await nursery.start(_stop_on_signal, nursery.cancel_scope)
            shown = f"[{host}]" if ":" in host else host
            tls, ws, wss = server.tls_address, server.ws_address, server.wss_address
            print(
                f"sipx serve listening on {shown}:{port} ({args.transport})"
                + (f", TLS on port {tls[1]}" if tls is not None else "")
                + (f", WebSocket on port {ws[1]}" if ws is not None else "")
                + (f", secure WebSocket on port {wss[1]}" if wss is not None else "")
                + "; realm "
                f"{server.realm!r}, {server.algorithm}; users {', '.join(sorted(users))}; "
                f"extension {args.echo_extension} answers calls; message-summary and "
                "presence subscriptions served",
                flush=True,
            )

    try:
        trio.run(run)
    except KeyboardInterrupt:  # a second Ctrl-C, or one before the handler was installed
        return 130
    except TransportError as exc:
        print(f"sipx serve: {exc}", file=sys.stderr)
        return 1
    except BaseExceptionGroup as group:
        bind_errors, rest = group.split(TransportError)
        if bind_errors is None or rest is not None:
            raise
        for error in _leaves(bind_errors):
            print(f"sipx serve: {error}", file=sys.stderr)
        return 1
    return 0


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


if __name__ == "__main__":
    sys.exit(main())
