"""tradingsite.ids.uuid7: RFC 9562 version 7 ids, ordered by the time they were made."""

from __future__ import annotations

import time
import uuid

from orders.models import Fill, Order
from tradingsite.ids import uuid7


def test_an_id_is_a_version_7_uuid_of_the_current_millisecond():
    before = time.time_ns() // 1_000_000
    made = uuid7()
    after = time.time_ns() // 1_000_000
    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    assert before <= made.int >> 80 <= after  # the first 48 bits: Unix time in milliseconds


def test_ids_sort_by_the_time_they_were_made():
    made = []
    for _ in range(200):
        made.append(uuid7())
        time.sleep(0.0001)
    assert made == sorted(made)  # as PostgreSQL's uuid ordering compares them: bytewise
    assert [str(u) for u in made] == sorted(str(u) for u in made)


def test_the_random_bits_differ_within_one_millisecond():
    made = {uuid7() for _ in range(10_000)}
    assert len(made) == 10_000
    tails = {u.int & ((1 << 62) - 1) for u in made}
    assert len(tails) == 10_000


def test_orders_and_fills_get_them():
    assert Order().id.version == 7
    assert Fill().id.version == 7
