"""Call an IVR: play a prompt, send DTMF, collect the digits that come back.

The call carries audio (G.711) and DTMF. The prompt is a WAV file (``--prompt``) or, by
default, half a second of 440 Hz made with ``sipx.media.tone``; the digits (``--digits``)
go as RFC 4733 telephone-events when the answer lists telephone-event, else as SIP INFO
(``--method`` forces one). ``sipx serve``'s extension 100 echoes RTP, so the
telephone-events come back and the digits collected are the digits sent (Asterisk's
``Echo()`` too, but ``#`` ends it). Against a real IVR pass ``--expect`` with the digits it
should send (``--expect ""``: print what arrives within ``--timeout`` seconds, check
nothing).
"""

from __future__ import annotations

from _common import check, fail, make_parser, parse_args, run, sip_uri

from sipx import Auth, Client
from sipx.media import tone


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--to", default="100", help="who to call (default 100)")
    parser.add_argument("--prompt", metavar="WAV", help="prompt to play (default: a tone)")
    parser.add_argument("--digits", default="1234", help="DTMF to send (default 1234)")
    parser.add_argument(
        "--method",
        choices=("auto", "rfc4733", "info"),
        default="auto",
        help="how DTMF is sent (default auto: RFC 4733 if negotiated, else INFO)",
    )
    parser.add_argument(
        "--expect",
        metavar="DIGITS",
        help="digits to collect (default: --digits, as an echo returns them)",
    )
    parser.add_argument(
        "--timeout", type=float, default=5, help="seconds to wait for digits (default 5)"
    )
    args = parse_args(parser)
    expect = args.digits if args.expect is None else args.expect

    auth = Auth.Digest(username=args.user, password=args.password, realm=args.realm)

    with Client(
        local_host=args.local_host,
        local_port=args.local_port,
        transport=args.transport,
        auth=auth,
    ) as client:
        # The default SDP offer: sipx carries the media, on a port of rtp_ports
        call = client.call(sip_uri(args, args.to), timeout=30)
        check(call.established, f"the call to {args.to} was answered")
        try:
            stats = call.media_stats
            assert stats is not None and stats.local_address is not None
            print(f"Media: {stats.codec}, RTP on port {stats.local_address[1]}")

            # The prompt: returns once its last packet is sent (paced in real time)
            try:
                call.play(args.prompt or tone(440, 0.5))
            except ValueError as exc:  # unreadable, not a WAV, or not integer PCM
                fail(f"cannot play the prompt: {exc}")
            print(f"Played {args.prompt or 'a 440 Hz tone'}")

            # DTMF: RFC 4733 when the answer lists telephone-event, else SIP INFO
            method = args.method
            if method == "auto":
                answer = call.remote_sdp.get_codecs_summary() if call.remote_sdp else []
                method = "rfc4733" if "telephone-event/8000" in answer else "info"
            call.send_dtmf(args.digits, method=method)
            print(f"Sent DTMF {args.digits} ({'RFC 4733' if method == 'rfc4733' else 'SIP INFO'})")

            # Digits received (RFC 4733 or INFO) wait in a buffer until collected
            if expect:
                digits = call.collect_dtmf(len(expect), timeout=args.timeout)
            else:  # whatever arrives until --timeout seconds pass without a digit
                digits = "".join(call.dtmf(timeout=args.timeout))
            print(f"Collected: {digits or '(nothing)'}")
            print(f"RTP: {stats.packets_sent} packets sent, {stats.packets_received} received")
        finally:
            bye = call.bye()
        check(bye.status_code == 200, f"BYE answered {bye.status_code} {bye.reason_phrase}")

    if expect:
        check(digits == expect, f"collected {expect}")
    check(stats.packets_received > 0, "RTP arrived from the peer")


if __name__ == "__main__":
    run(main)
