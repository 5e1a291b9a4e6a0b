"""Record a call: play a tone, record what comes back to a WAV file, print its dominant
frequency.

Runs on the AsyncClient (trio): ``call.recording(path)`` is an ``async with`` block that
writes what the peer sends, decoded to 8 kHz 16-bit mono PCM, when the block ends.
``sipx serve``'s extension 100 echoes RTP, so the recording holds the tone played
(``--frequency``, ``--seconds``) and its dominant frequency is that of the tone. Against a
peer that is not an echo, ``--no-check`` prints what was heard without checking it.
"""

from __future__ import annotations

import argparse
import wave

import trio
from _common import check, make_parser, parse_args, run, sip_uri

from sipx import AsyncClient, Auth
from sipx.media import dominant_frequency, rms, tone


async def main(args: argparse.Namespace) -> None:
    auth = Auth.Digest(username=args.user, password=args.password, realm=args.realm)

    async with AsyncClient(
        local_host=args.local_host,
        local_port=args.local_port,
        transport=args.transport,
        auth=auth,
    ) as client:
        call = await client.call(sip_uri(args, args.to), timeout=30)
        check(call.established, f"the call to {args.to} was answered")
        try:
            # Everything the peer sends during the block goes to the file
            async with call.recording(args.output):
                await call.play(tone(args.frequency, args.seconds))
                print(f"Played {args.seconds:g} s of {args.frequency:g} Hz")
                await trio.sleep(args.tail)  # what is still on its way back
        finally:
            bye = await call.bye()
        check(bye.status_code == 200, f"BYE answered {bye.status_code} {bye.reason_phrase}")

    # A standard WAV file: 8000 Hz, one channel, 16-bit samples
    with wave.open(args.output) as wav:
        pcm = wav.readframes(wav.getnframes())
        seconds = wav.getnframes() / wav.getframerate()
    heard = dominant_frequency(pcm)
    print(f"Recorded {seconds:.2f} s to {args.output} (RMS level {rms(pcm):.0f})")
    print(f"Dominant frequency: {heard:g} Hz")
    if not args.no_check:
        check(seconds >= args.seconds / 2, "the recording holds audio")
        check(abs(heard - args.frequency) <= 20, f"the recording holds {args.frequency:g} Hz")


if __name__ == "__main__":
    parser = make_parser(__doc__)
    parser.add_argument("--to", default="100", help="who to call (default 100)")
    parser.add_argument(
        "--output", default="recording.wav", help="WAV file to write (default recording.wav)"
    )
    parser.add_argument(
        "--frequency", type=float, default=1000, help="tone to play, Hz (default 1000)"
    )
    parser.add_argument("--seconds", type=float, default=1, help="tone length, s (default 1)")
    parser.add_argument(
        "--tail", type=float, default=0.2, help="keep recording after the tone, s (default 0.2)"
    )
    parser.add_argument("--no-check", action="store_true", help="do not check the frequency")
    run(main, parse_args(parser))
