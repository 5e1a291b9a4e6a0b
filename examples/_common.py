"""Command-line handling shared by the examples (a helper for the examples, not part of sipx).

Every example accepts:

``--server HOST:PORT``
    the registrar / proxy / PBX (env ``SIPX_SERVER``, default ``127.0.0.1:5060``, which is
    where ``sipx serve`` listens by default). ``[::1]:5060`` for IPv6; the port defaults to 5060.
``--transport udp|tcp``
    (env ``SIPX_TRANSPORT``, default ``udp``)
``--local-host`` / ``--local-port``
    where the client binds (default ``0.0.0.0`` and ``0``, i.e. any free port; the guide
    uses 5061, which clashes with a second example or a softphone running on the same machine)

and, in the examples that act as a user, ``--user`` / ``--password`` (env ``SIPX_USER`` /
``SIPX_PASSWORD``, default ``1111`` / ``1111xxx``: the guide's user, known to ``sipx serve``
and to the Asterisk and Kamailio setups) and ``--realm`` (env ``SIPX_REALM``; by default the
credentials answer whatever realm the server names).
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import trio

import sipx

DEFAULT_SERVER = "127.0.0.1:5060"


def make_parser(
    doc: str | None,
    *,
    user: bool = True,
    default_user: str = "1111",
    default_password: str = "1111xxx",
) -> argparse.ArgumentParser:
    """The common flags; an example adds its own before calling :func:`parse_args`."""
    description, _, epilog = (doc or "").strip().partition("\n\n")
    parser = argparse.ArgumentParser(
        description=description,
        epilog=epilog or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--server",
        default=os.environ.get("SIPX_SERVER") or DEFAULT_SERVER,
        metavar="HOST:PORT",
        help=f"SIP server (env SIPX_SERVER, default {DEFAULT_SERVER})",
    )
    parser.add_argument(
        "--transport",
        type=str.lower,
        choices=("udp", "tcp"),
        default=(os.environ.get("SIPX_TRANSPORT") or "udp").lower(),
        help="transport (env SIPX_TRANSPORT, default udp)",
    )
    parser.add_argument("--local-host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    parser.add_argument(
        "--local-port", type=int, default=0, help="port to bind (default 0: any free port)"
    )
    if user:
        parser.add_argument(
            "--user",
            default=os.environ.get("SIPX_USER") or default_user,
            help=f"SIP user (env SIPX_USER, default {default_user})",
        )
        parser.add_argument(
            "--password",
            default=os.environ.get("SIPX_PASSWORD") or default_password,
            help=f"password (env SIPX_PASSWORD, default {default_password})",
        )
        parser.add_argument(
            "--realm",
            default=os.environ.get("SIPX_REALM") or None,
            help="digest realm (env SIPX_REALM; default: the one the server sends)",
        )
    return parser


def parse_args(
    parser: argparse.ArgumentParser, argv: list[str] | None = None
) -> argparse.Namespace:
    """Parse the command line; adds ``host``, ``port`` and ``domain`` (``host:port``)."""
    args = parser.parse_args(argv)
    try:
        args.host, args.port = split_hostport(args.server)
    except ValueError as exc:
        parser.error(str(exc))
    host = f"[{args.host}]" if ":" in args.host else args.host
    args.domain = f"{host}:{args.port}"
    args.transport = args.transport.upper()  # sipx wants "UDP" or "TCP"
    return args


def split_hostport(text: str, default_port: int = 5060) -> tuple[str, int]:
    """``"host:port"``, ``"host"`` or ``"[v6]:port"`` -> ``(host, port)``."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:  # a bare host name, IPv4 address or IPv6 address
        host, port_text = text, ""
    if not host:
        raise ValueError(f"--server needs HOST:PORT, not {text!r}")
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise ValueError(f"bad port in --server {text!r}") from None
    return host, port


def sip_uri(args: argparse.Namespace, user: str | None = None) -> str:
    """``sip:user@host:port`` on the server (``sip:host:port`` without a user)."""
    return f"sip:{user}@{args.domain}" if user else f"sip:{args.domain}"


class ExampleFailed(Exception):
    """An outcome the example expected did not happen."""


def check(condition: bool, what: str) -> None:
    """Print ``ok: what``, or raise :class:`ExampleFailed` (the example exits with 1)."""
    if not condition:
        fail(what)
    print(f"ok: {what}")


def fail(what: str) -> NoReturn:
    raise ExampleFailed(what)


def run(main: Callable[..., Any], *args: Any) -> None:
    """Run ``main(*args)`` (under ``trio.run`` when it is async); exit 1 if a check failed.

    A failed check inside trio tasks arrives wrapped in an exception group: every failure
    in it is printed. A request that got no answer or could not be sent is reported with a
    hint; any other exception propagates with its traceback (exit status 1).
    """
    try:
        if inspect.iscoroutinefunction(main):
            trio.run(main, *args)
        else:
            main(*args)
    except* ExampleFailed as group:
        for failure in _leaves(group):
            print(f"FAILED: {failure}", file=sys.stderr)
        sys.exit(1)
    except* (sipx.TimeoutError, sipx.TransportError) as group:
        for error in _leaves(group):
            print(f"FAILED: {type(error).__name__}: {error}", file=sys.stderr)
        print(
            "Is a SIP server running at --server? (`sipx serve` starts one on 127.0.0.1:5060)",
            file=sys.stderr,
        )
        sys.exit(1)


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]
