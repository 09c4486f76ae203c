"""Primary keys that grow with time: UUID version 7 (RFC 9562, section 5.7).

An order's id used to be a random UUID (version 4). Each new order then went to a random
leaf of the primary key's index: on a loaded database nearly every insert touched another
index page and, the first time after each checkpoint, wrote the whole page to the WAL: 11.9
KB of WAL per submit against 3.1 KB with these ids, 2.9 KB on an empty database
(tests/bench/growth.py, docs/performance.md, Growth). A version 7 id starts with the time in
milliseconds, so new orders go to the index's right edge, as a sequence would, and stay
unguessable: 74 of its bits are random or sub-millisecond time, and every order is reached
through its account's token anyway.

Layout (big-endian): 48 bits of Unix time in milliseconds, the version (7), 12 bits of the
sub-millisecond fraction (the RFC's "increased clock precision", method 3, so that ids made
in one process within a millisecond still sort by time), the variant (binary 10) and 62
random bits.
"""

from __future__ import annotations

import os
import time
import uuid

_MS_MASK = (1 << 48) - 1
_RAND_B_MASK = (1 << 62) - 1


def uuid7() -> uuid.UUID:
    ns = time.time_ns()
    ms, rest = divmod(ns, 1_000_000)
    fraction = rest * 4096 // 1_000_000  # 12 bits: 0 .. 4095
    rand_b = int.from_bytes(os.urandom(8), "big") & _RAND_B_MASK
    return uuid.UUID(
        int=((ms & _MS_MASK) << 80) | (0x7 << 76) | (fraction << 64) | (0b10 << 62) | rand_b
    )
