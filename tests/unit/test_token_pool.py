"""TokenPool: identifiers drawn from a pool of random bytes, each byte handed out once."""

from __future__ import annotations

import os

from sipx._core.ids import IdSource, TokenPool


def test_each_byte_is_handed_out_once_and_the_pool_refills() -> None:
    draws: list[bytes] = []

    def random_bytes(n: int) -> bytes:
        chunk = bytes((len(draws) * 7 + i) % 256 for i in range(n))
        draws.append(chunk)
        return chunk

    token = TokenPool(random_bytes, pool_size=16)
    values = [token(5) for _ in range(6)]  # 30 bytes: the pool of 16 is drawn again
    assert all(len(value) == 10 for value in values)
    assert len(draws) == 2  # three tokens from each pool of 16 (one byte left unused)
    assert values[0] == draws[0][:5].hex() and values[2] == draws[0][10:15].hex()
    assert values[3] == draws[1][:5].hex()
    assert token(40) == draws[2].hex()  # larger than the pool: a draw of its own size
    assert len(draws[2]) == 40


def test_identifiers_from_os_urandom_are_distinct() -> None:
    ids = IdSource(TokenPool(os.urandom))
    branches = {ids.branch() for _ in range(5000)}
    tags = {ids.tag() for _ in range(5000)}
    assert len(branches) == 5000 and len(tags) == 5000
    assert all(branch.startswith("z9hG4bK") and len(branch) == 27 for branch in branches)
