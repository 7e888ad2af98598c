"""Ids are prefixed ULIDs that sort by creation."""

import time

from ulid import ULID

from runyard.ids import new_id, new_ids


def test_ids_are_valid_ulids_carrying_the_current_millisecond() -> None:
    before = time.time()
    identifier = new_id("run")
    prefix, value = identifier.split("_")
    assert prefix == "run" and len(value) == 26
    parsed = ULID.from_str(value)
    assert str(parsed) == value
    assert before - 0.01 <= parsed.timestamp <= time.time() + 0.01


def test_a_batch_sorts_in_minting_order_and_is_unique() -> None:
    batch = new_ids("evt", 1000)
    assert batch == sorted(batch)
    assert len(set(batch)) == 1000
    later = new_id("evt")
    time.sleep(0.002)
    assert new_id("evt") > later
