"""How many objects the garbage collector tracks per parsed message (fewer: shorter pauses).

Run: .venv/bin/python bench/bench_gc_objects.py
"""

import gc
from pathlib import Path

import sipx

DATA = (Path(__file__).resolve().parents[1] / "tests/data/rfc4475/wsinv.dat").read_bytes()
COUNT = 2000


def main() -> None:
    gc.collect()
    base = len(gc.get_objects())
    messages = [sipx.parse_message(DATA) for _ in range(COUNT)]
    for message in messages:
        _ = (message.call_id, message.cseq, message.top_via, message.from_.tag)
    gc.collect()
    print(f"GC-tracked objects per parsed message: {(len(gc.get_objects()) - base) / COUNT:.1f}")


if __name__ == "__main__":
    main()
