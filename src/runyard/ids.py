"""Prefixed ULIDs: ``run_01JD9...`` sorts by creation time.

A ULID is 48 bits of Unix milliseconds and 80 random bits, written as 26 Crockford base32
characters. Encoding looks up two characters (10 bits) at a time, which makes an id a couple
of µs instead of python-ulid's 10: event batches mint a thousand of them per request. Ids
minted together share their millisecond and count up from one random value, so they also
sort in minting order.
"""

import os
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits -> 2 characters
_TIME_SHIFTS = range(40, -1, -10)  # 5 pairs: 50 bits, the top two of a 48-bit time are zero
_RANDOM_SHIFTS = range(70, -1, -10)  # 8 pairs: 80 bits


def _encode(value: int, shifts: range) -> str:
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in shifts])


def new_ids(prefix: str, count: int) -> list[str]:
    """``count`` ids that sort in the order returned."""
    head = f"{prefix}_{_encode(time.time_ns() // 1_000_000, _TIME_SHIFTS)}"
    randomness = int.from_bytes(os.urandom(8), "big")  # 64 random bits; 16 left to count in
    return [head + _encode(randomness + n, _RANDOM_SHIFTS) for n in range(count)]


def new_id(prefix: str) -> str:
    """A new id such as ``run_01JD9ZC4...`` for the given prefix (without the underscore)."""
    return new_ids(prefix, 1)[0]
