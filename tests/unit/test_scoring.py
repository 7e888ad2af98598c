"""Extraction metrics (DESIGN §10, §15) on hand-computed cases, and their laws by hypothesis."""

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runyard.extraction.scoring import flatten, normal, score

INVOICE = {"vendor": "ACME GmbH", "total": 120, "currency": "EUR", "paid": False}


def counts(output: Any, truth: Any) -> tuple[int, int, int, int]:
    s = score(output, truth)
    return s.extracted, s.expected, s.correct, s.paths


def test_a_perfect_extraction() -> None:
    s = score(dict(INVOICE), INVOICE)
    assert (s.precision, s.recall, s.f1, s.accuracy) == (1.0, 1.0, 1.0, 1.0)


def test_precision_and_recall_below_one_give_their_harmonic_mean() -> None:
    # 2 of 4 extracted are right, 2 of 5 expected were found: p = 0.5, r = 0.4 (p + r < 1)
    truth = {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}
    output = {"a": 1, "b": 2, "c": 30, "x": 9}
    s = score(output, truth)
    assert counts(output, truth) == (4, 5, 2, 6)
    assert (s.precision, s.recall) == (0.5, 0.4)
    assert s.f1 == pytest.approx(2 * 0.5 * 0.4 / 0.9)  # 0.4444..., not p * r or (p + r) / 2
    assert s.accuracy == pytest.approx(2 / 6)


def test_an_empty_output_scores_zero_without_dividing_by_zero() -> None:
    for empty in (None, {}, [], {"vendor": None, "lines": []}):
        s = score(empty, INVOICE)
        assert (s.extracted, s.precision, s.recall, s.f1, s.accuracy) == (0, 0.0, 0.0, 0.0, 0.0)
    nothing = score({}, {})
    assert (nothing.precision, nothing.recall, nothing.f1, nothing.accuracy) == (0, 0, 0, 0)


def test_nested_objects_and_lists_of_objects_compare_leaf_by_leaf() -> None:
    truth = {
        "vendor": {"name": "ACME", "address": {"city": "Berlin", "zip": "10115"}},
        "lines": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}],
    }
    output = {
        "vendor": {"name": "acme", "address": {"city": "Berlin"}},
        "lines": [{"sku": "A-1", "qty": "2"}, {"sku": "B-8", "qty": 1}, {"sku": "C-1"}],
    }
    assert dict(flatten(truth)).keys() == {
        "/vendor/name",
        "/vendor/address/city",
        "/vendor/address/zip",
        "/lines/0/sku",
        "/lines/0/qty",
        "/lines/1/sku",
        "/lines/1/qty",
    }
    # right: name (case), city, lines/0/sku, lines/0/qty ("2" = 2), lines/1/qty
    assert counts(output, truth) == (7, 7, 5, 8)
    s = score(output, truth)
    assert (s.precision, s.recall) == (5 / 7, 5 / 7)


def test_a_list_of_scalars_is_one_leaf_compared_as_a_multiset() -> None:
    truth = {"tags": ["urgent", "tax", "tax"]}
    assert counts({"tags": ["TAX", " urgent ", "tax"]}, truth) == (1, 1, 1, 1)
    assert counts({"tags": ["urgent", "tax"]}, truth) == (1, 1, 0, 1)  # repeats count
    assert counts({"tags": [1, "2.0"]}, {"tags": [2, "1"]}) == (1, 1, 1, 1)


def test_values_are_normalised_before_comparing() -> None:
    assert normal("  ACME   GmbH\n") == normal("acme gmbh")
    assert normal("120") == normal(120) == normal(120.0) == normal(" 1.2e2 ")
    assert normal(-0.0) == normal(0)
    assert normal(True) != normal(1) and normal("true") != normal(True)
    assert normal("1_000") != normal(1000) and normal("inf") == ("text", "inf")
    assert normal("Straße") == normal("STRASSE")  # case-folded, not just lowered


def test_nulls_are_not_extracted_fields_but_missing_ones_count_against_recall() -> None:
    truth = {"vendor": "ACME", "vat": None, "total": 10}
    assert counts({"vendor": "ACME", "vat": "DE1", "total": None}, truth) == (2, 2, 1, 3)


def test_keys_with_slashes_and_tildes_are_escaped_paths() -> None:
    assert list(flatten({"a/b": {"~c": 1}})) == [("/a~1b/~0c", ("number", 1.0))]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["a", "B", " a ", "1"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from("xyz"), inner),
    max_leaves=12,
)


@given(JSON, JSON)
def test_f1_is_the_harmonic_mean_and_every_metric_within_0_and_1(output: Any, truth: Any) -> None:
    s = score(output, truth)
    for value in (s.precision, s.recall, s.f1, s.accuracy):
        assert 0.0 <= value <= 1.0
    if s.precision + s.recall == 0:
        assert s.f1 == 0.0
    else:
        assert s.f1 == pytest.approx(2 / (1 / s.precision + 1 / s.recall))
        assert min(s.precision, s.recall) <= s.f1 + 1e-12 <= max(s.precision, s.recall) + 2e-12
    assert s.correct <= min(s.extracted, s.expected) and s.paths >= max(s.extracted, s.expected)


@given(JSON, JSON)
def test_swapping_output_and_truth_swaps_precision_and_recall(output: Any, truth: Any) -> None:
    there, back = score(output, truth), score(truth, output)
    assert (there.precision, there.recall) == (back.recall, back.precision)
    assert there.f1 == pytest.approx(back.f1) and there.accuracy == back.accuracy


@given(JSON)
def test_an_output_scores_perfectly_against_itself_when_it_has_fields(value: Any) -> None:
    s = score(value, value)
    assert s.f1 == (1.0 if s.extracted else 0.0)
