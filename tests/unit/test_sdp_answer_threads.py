"""``SDPBody.create_answer`` remembers recent answers in one dict for the process: clients
running in several threads (each blocking ``Client`` has its own) answer at once, and
dropping the oldest entry must never fail in one thread because another dropped it."""

from __future__ import annotations

import sys
import threading

import sipx


def _offer(port: int) -> sipx.SDPBody:
    return sipx.SDPBody.parse(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )


def test_answers_made_in_several_threads_at_once_never_fail() -> None:
    offers = [_offer(20000 + 2 * i) for i in range(200)]  # far more than are kept
    failures: list[BaseException] = []
    start = threading.Barrier(8)

    def answer_all() -> None:
        start.wait()
        try:
            for _ in range(5):
                for offer in offers:
                    answer = sipx.SDPBody.create_answer(
                        offer, "t", "127.0.0.1", "127.0.0.1", port=7000
                    )
                    assert answer.media[0].port == 7000
        except BaseException as exc:  # reported below
            failures.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter lets
    try:
        threads = [threading.Thread(target=answer_all) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == []
