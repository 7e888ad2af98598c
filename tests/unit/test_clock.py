"""Milliseconds between two timestamps are exact, whatever the float product would say."""

from datetime import UTC, datetime, timedelta

from runyard.clock import ms_between

START = datetime(2026, 1, 1, tzinfo=UTC)


def test_whole_milliseconds_are_exact_where_a_float_product_is_not() -> None:
    # (1.001 s).total_seconds() * 1000 == 1000.9999999999999: truncated, it read 1000
    for micros in (1_001_000, 1_003_000, 4_999_000, 86_400_001_000):
        assert ms_between(START, START + timedelta(microseconds=micros)) == micros // 1000


def test_partial_milliseconds_are_truncated_toward_zero() -> None:
    assert ms_between(START, START + timedelta(microseconds=1_999)) == 1
    assert ms_between(START + timedelta(microseconds=1_999), START) == -1


def test_rfc3339_text_and_missing_ends() -> None:
    assert ms_between("2026-01-01T00:00:00Z", "2026-01-01T00:00:01.001Z") == 1001
    assert ms_between(None, START) is None and ms_between(START, None) is None
