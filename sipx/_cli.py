"""The ``sipx`` command line: options, register, message, call, subscribe, serve, demo.

Each client command runs one AsyncClient under ``trio.run``; provisional responses are
shown as they come (``Ringing (180)...``), ``--ladder`` prints a line per message and
``--verbose`` every message whole.

Exit status: 0 a 2xx; 1 another final response; 2 a bad argument; 3 no usable answer (a
timeout, a transport failure); 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import math
import os
import sys
from collections.abc import Sequence

import trio

from . import __version__
from ._async_client import AsyncClient
from ._auth import Auth
from ._call import Call
from ._call_media import read_wav_file
from ._core.dtmf import digit_to_event
from ._core.message import Response
from ._errors import SIPError
from ._events import Events, RequestContext
from ._ladder import Ladder
from ._subscription import Notification
from ._validate import duration_argument, port_argument, seconds_argument

EXIT_OK = 0
EXIT_REJECTED = 1  # a final response other than 2xx
EXIT_USAGE = 2  # a bad argument (argparse uses 2 too)
EXIT_NO_ANSWER = 3  # a timeout or a transport failure: nothing usable came back
EXIT_INTERRUPTED = 130  # Ctrl-C


def _progress(response: Response, context: RequestContext) -> None:
    """A provisional response, as one line while the request waits (``Ringing (180)...``)."""
    if response.status_code < 200:
        print(f"{response.reason_phrase or 'Progress'} ({response.status_code})...", flush=True)


def _client(args: argparse.Namespace) -> AsyncClient:
    auth = Auth.Digest(args.user, args.password) if args.user and args.password else None
    ladder = Ladder(full=args.verbose) if args.verbose or args.ladder else None
    verify: str | bool = False if args.insecure else (args.ca or True)
    events = None
    if ladder is None:  # the ladder shows the 1xx already
        events = Events()
        events.on("response", _progress)
    return AsyncClient(
        local_host=args.local_host,
        local_port=args.local_port,
        transport=args.transport.upper(),
        auth=auth,
        timeout=args.timeout,
        trace=ladder.hook("me") if ladder else None,
        verify=verify,
        cert=args.cert,
        events=events,
    )


def _print_response(label: str, response: object, args: argparse.Namespace | None = None) -> None:
    status = getattr(response, "status_code", "?")
    reason = getattr(response, "reason_phrase", "")
    print(f"{label}: {status} {reason}")
    if status in (401, 407) and args is not None:
        _explain_auth_failure(status, reason, response, args)


def _explain_auth_failure(
    status: object, reason: str, response: object, args: argparse.Namespace
) -> None:
    """A challenge as the final answer: say on stderr why, in words a user can act on."""
    request = getattr(response, "request", None)
    headers = getattr(request, "headers", {})
    answered = "Authorization" in headers or "Proxy-Authorization" in headers
    why = getattr(response, "challenge_unanswered", None)
    if why is not None and not answered and args.user and args.password:
        message = f"authentication failed: the client did not answer the challenge: {why}"
    elif answered:
        message = (
            f"authentication failed: the server rejected the credentials of user"
            f" {args.user!r} ({status} {reason} again after answering its challenge);"
            " check --user and --password"
        )
    elif args.user and args.password:
        message = (
            f"authentication failed: the client could not answer the {status} challenge"
            " with these credentials (realm or algorithm not supported?)"
        )
    else:
        message = (
            f"the server requires authentication ({status} {reason}): pass --user and --password"
        )
    print(f"error: {message}", file=sys.stderr)


async def _options(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        response = await client.options(args.uri, host=args.host, port=args.port)
        _print_response("OPTIONS", response, args)
        if "Allow" in response.headers:
            print(f"Allow: {response.headers['Allow']}")
        return EXIT_OK if response.is_success else EXIT_REJECTED


async def _register(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        response = await client.register(
            args.aor, expires=args.expires, host=args.host, port=args.port
        )
        _print_response("REGISTER", response, args)
        for contact in response.contact:
            print(f"Contact: {contact}")
        if not response.is_success:
            return EXIT_REJECTED
        if args.expires == 0:
            return EXIT_OK
        host, port = client.local_address.host, client.local_address.port
        if not args.keep:
            print(
                f"note: the binding points at {host}:{port}, which closes when sipx exits;"
                " requests to it fail until it expires. --keep stays registered (until"
                " Ctrl-C), --expires 0 removes it.",
                file=sys.stderr,
            )
            return EXIT_OK
        return await _keep_registered(client, args)


async def _keep_registered(client: AsyncClient, args: argparse.Namespace) -> int:
    """--keep: refresh the binding until Ctrl-C, then remove it."""
    await client.enable_auto_reregister(args.aor)
    print("Registered; refreshing until Ctrl-C", flush=True)
    try:
        await trio.sleep_forever()
    except KeyboardInterrupt:
        with trio.CancelScope(shield=True):
            response = await client.unregister(args.aor, host=args.host, port=args.port)
            _print_response("REGISTER (expires 0)", response)
    return EXIT_INTERRUPTED


async def _message(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        response = await client.message(args.uri, args.text, host=args.host, port=args.port)
        _print_response("MESSAGE", response, args)
        return EXIT_OK if response.is_success else EXIT_REJECTED


async def _call(args: argparse.Namespace) -> int:
    async with _client(args) as client, contextlib.AsyncExitStack() as recording:
        call = await client.call(
            args.uri,
            "" if args.late_offer else None,
            host=args.host,
            port=args.port,
            early_media=args.early_media,
        )
        if args.record and not call.ended:  # from early media on, when it came first
            await recording.enter_async_context(call.recording(args.record))
        if call.final_response is None:
            print("INVITE: early media (the call is not answered yet)", flush=True)
        final = await call.wait_answered()
        _print_response("INVITE", final, args)
        if not call.established:
            return EXIT_REJECTED
        if call.remote_sdp is not None:
            print(f"Codecs: {', '.join(call.remote_sdp.get_codecs_summary())}")
        interrupted = False
        try:
            # A negative --duration holds the call until the peer hangs up (or Ctrl-C).
            with trio.move_on_after(math.inf if args.duration < 0 else args.duration):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_act, call, args)
                    ended_by = await call.wait_ended()
                    nursery.cancel_scope.cancel()
                    print(f"Call ended by the {ended_by} side")
                    return EXIT_OK
        except* KeyboardInterrupt:  # Ctrl-C (inside the nursery, it comes in a group)
            interrupted = True
        if not call.ended:
            with trio.CancelScope(shield=True):
                _print_response("BYE", await call.bye())
        return EXIT_INTERRUPTED if interrupted else EXIT_OK


async def _subscribe(args: argparse.Namespace) -> int:
    """Print each NOTIFY until the subscription ends, --count NOTIFYs, --duration or
    Ctrl-C; then unsubscribe."""
    async with _client(args) as client:
        sub = await client.subscribe(
            args.uri, args.event, expires=args.expires, host=args.host, port=args.port
        )
        _print_response("SUBSCRIBE", sub.response, args)
        if sub.response is None or not sub.response.is_success:
            return EXIT_REJECTED
        seen = 0
        try:
            with trio.move_on_after(math.inf if args.duration < 0 else args.duration):
                async for notification in sub:
                    seen += 1
                    print(describe_notification(notification), flush=True)
                    if 0 < args.count <= seen:
                        break
        except KeyboardInterrupt:
            with trio.CancelScope(shield=True):
                await sub.unsubscribe()
            return EXIT_INTERRUPTED
        if not sub.terminated:
            await sub.unsubscribe()
        print(f"Subscription {sub.state} ({sub.reason or 'no reason given'})")
        return EXIT_OK


def describe_notification(notification: Notification) -> str:
    """One line for a NOTIFY: its state and what its body says."""
    head = f"NOTIFY {notification.state}"
    if notification.expires is not None:
        head += f" (expires {notification.expires})"
    if notification.error is not None:
        return f"{head}: unreadable {notification.event} body: {notification.error}"
    summary, presence, dialogs = notification.summary, notification.presence, notification.dialogs
    if summary is not None:
        counts = summary.voice_counts
        waiting = "yes" if summary.waiting else "no"
        return f"{head}: messages waiting {waiting}, {counts.new} new, {counts.old} old"
    if presence is not None:
        note = f" ({presence.note})" if presence.note else ""
        return f"{head}: {presence.entity} is {presence.basic or 'unknown'}{note}"
    if dialogs is not None:
        state = "busy" if dialogs.busy else ("idle" if dialogs.idle else "ringing")
        return f"{head}: {dialogs.entity} {state}, {len(dialogs.dialogs)} dialog(s)"
    text = notification.text.strip()
    return f"{head}: {text.splitlines()[0][:120]}" if text else head


async def _act(call: Call, args: argparse.Namespace) -> None:
    """What --play and --dtmf ask of an answered call, in that order."""
    if args.play:
        await call.play(args.audio)
        print(f"Played {args.play}")
    if args.dtmf:
        await call.send_dtmf(args.dtmf)
        print(f"Sent DTMF {args.dtmf}")


def _check_call_arguments(args: argparse.Namespace) -> None:
    """Read --play and check --dtmf before the call is placed (ValueError if they are bad)."""
    args.audio = read_wav_file(args.play) if args.play else None
    for digit in args.dtmf or "":
        digit_to_event(digit)


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--transport",
        choices=["udp", "tcp", "tls", "ws", "wss", "UDP", "TCP", "TLS", "WS", "WSS"],
        default="udp",
        help="ws/wss: to a WebSocket server (RFC 7118), the URI's or --host/--port",
    )
    parser.add_argument("--user", help="digest username")
    parser.add_argument(
        "--password",
        default=os.environ.get("SIPX_PASSWORD"),
        help="digest password (default: $SIPX_PASSWORD; with --user and neither, it is asked)",
    )
    parser.add_argument("--local-host", default="0.0.0.0")
    parser.add_argument("--local-port", type=port_argument, default=0, help="0 picks a free port")
    parser.add_argument("--host", help="send to this host instead of the URI's")
    parser.add_argument("--port", type=port_argument, help="send to this port instead of the URI's")
    parser.add_argument(
        "--timeout",
        type=seconds_argument,
        default=10.0,
        help="seconds to wait for each request's final response (default 10)",
    )
    parser.add_argument(
        "--ladder", "-l", action="store_true", help="print a line per message sent or received"
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="print every message whole")
    tls = parser.add_argument_group("TLS (with --transport tls or wss)")
    tls.add_argument("--ca", help="CA bundle (PEM) to check the server's certificate with")
    tls.add_argument("--insecure", action="store_true", help="do not check the certificate")
    tls.add_argument("--cert", help="our certificate and key (one PEM file)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sipx", description="A SIP user agent on trio.")
    parser.add_argument("--version", action="version", version=f"sipx {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    options = commands.add_parser("options", help="send OPTIONS and print the answer")
    options.add_argument("uri")
    _add_client_options(options)

    register = commands.add_parser("register", help="REGISTER an address of record")
    register.add_argument("aor")
    register.add_argument("--expires", type=int, default=3600)
    register.add_argument(
        "--keep",
        action="store_true",
        help="stay registered, refreshing the binding, until Ctrl-C; then remove it",
    )
    _add_client_options(register)

    message = commands.add_parser("message", help="send an instant message")
    message.add_argument("uri")
    message.add_argument("text")
    _add_client_options(message)

    call = commands.add_parser("call", help="call, wait for the answer, hang up")
    call.add_argument("uri")
    call.add_argument(
        "--duration",
        type=duration_argument,
        default=5.0,
        help="hang up after N seconds (negative: when the peer does, or on Ctrl-C)",
    )
    call.add_argument("--play", metavar="FILE", help="play a WAV file once answered")
    call.add_argument("--record", metavar="FILE", help="record what the peer sends to a WAV")
    call.add_argument("--dtmf", metavar="DIGITS", help="send DTMF digits (after --play)")
    offer = call.add_mutually_exclusive_group()
    offer.add_argument(
        "--early-media",
        action="store_true",
        help="go on at a 183 with SDP: --record hears announcements before any answer",
    )
    offer.add_argument(
        "--late-offer",
        action="store_true",
        help="INVITE without SDP: the callee offers in its 200, the ACK answers",
    )
    _add_client_options(call)

    subscribe = commands.add_parser(
        "subscribe", help="subscribe to an event package and print its NOTIFYs"
    )
    subscribe.add_argument("uri")
    subscribe.add_argument(
        "event", help="the package: message-summary, presence, dialog, or another"
    )
    subscribe.add_argument("--expires", type=int, default=600)
    subscribe.add_argument(
        "--count", type=int, default=0, help="stop after N NOTIFYs (default: no limit)"
    )
    subscribe.add_argument(
        "--duration",
        type=duration_argument,
        default=-1.0,
        help="stop after N seconds (default: when the subscription ends, or on Ctrl-C)",
    )
    _add_client_options(subscribe)

    serve = commands.add_parser("serve", help="run the development SIP server", add_help=False)
    serve.add_argument("rest", nargs=argparse.REMAINDER)

    demo = commands.add_parser("demo", help="run the guide's flows against an in-process server")
    demo.add_argument("--transport", choices=["udp", "tcp", "UDP", "TCP"], default="udp")
    demo.add_argument("--verbose", "-v", action="store_true", help="print whole messages")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve":
        from ._serve.cli import main as serve_main

        return serve_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from ._demo import run_demo

        return run_demo(transport=args.transport.upper(), full=args.verbose)
    if getattr(args, "user", None) and not args.password and sys.stdin.isatty():
        args.password = getpass.getpass(f"Password for {args.user}: ")
    if args.command == "call":
        try:
            _check_call_arguments(args)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    runner = {
        "options": _options,
        "register": _register,
        "message": _message,
        "call": _call,
        "subscribe": _subscribe,
    }[args.command]
    try:
        return trio.run(runner, args)
    except ValueError as exc:  # a bad URI, file or option value
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SIPError as exc:  # a timeout, a transport failure
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NO_ANSWER
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
