"""edge/money.py: integer fen arithmetic — half-up rounding, tax-inclusive tax, exact allocation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.money import allocate, div_half_up, percent_of, share_of_units, tax_included, yuan


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [
        (0, 7, 0),
        (10, 5, 2),
        (5, 2, 3),  # exactly half rounds up
        (7, 2, 4),
        (4, 3, 1),
        (5, 3, 2),
        (-5, 2, -3),  # half away from zero
        (-4, 3, -1),
        (-5, 3, -2),
        (149, 100, 1),
        (150, 100, 2),
        (1, 1000, 0),
        (500, 1000, 1),
    ],
)
def test_div_half_up(numerator: int, denominator: int, expected: int) -> None:
    assert div_half_up(numerator, denominator) == expected


@pytest.mark.parametrize("denominator", [0, -1])
def test_div_half_up_refuses_a_non_positive_denominator(denominator: int) -> None:
    with pytest.raises(ValueError):
        div_half_up(10, denominator)


@pytest.mark.parametrize(
    ("amount", "rate_bp", "expected_tax"),
    [
        (113, 1300, 13),  # 100 + 13 % VAT
        (1130, 1300, 130),
        (100, 1300, 12),  # 100 / 1.13 = 88.50 -> 88 net of tax
        (1, 1300, 0),
        (0, 1300, 0),
        (1000, 900, 83),  # 1000 / 1.09 = 917.43 -> 917
        (109, 900, 9),
        (1598, 900, 132),  # 1598 / 1.09 = 1466.06
        (2397, 900, 198),  # 2397 / 1.09 = 2199.08
        (1000, 0, 0),
        (1000, 600, 57),  # 1000 / 1.06 = 943.40
    ],
)
def test_tax_included(amount: int, rate_bp: int, expected_tax: int) -> None:
    assert tax_included(amount, rate_bp) == expected_tax


@pytest.mark.parametrize(
    ("amount", "bp", "expected"),
    [(1000, 1000, 100), (1598, 1000, 160), (1595, 1000, 160), (1594, 1000, 159), (99, 500, 5), (0, 1000, 0)],
)
def test_percent_of(amount: int, bp: int, expected: int) -> None:
    assert percent_of(amount, bp) == expected


@pytest.mark.parametrize(
    ("total", "weights", "expected"),
    [
        (10, [1, 1, 1], [4, 3, 3]),  # remainder to the first of equals
        (10, [1, 2, 1], [2, 6, 2]),  # remainder to the largest
        (7, [2, 5, 5], [1, 4, 2]),
        (100, [300, 200, 500], [30, 20, 50]),
        (0, [5, 5], [0, 0]),
        (100, [0, 0], [100, 0]),  # no weight at all: the first line takes it
        (3, [1, 1, 1, 1], [1, 1, 1, 0]),  # no line gets more than its weight
        (5, [1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0]),
        (1, [0, 3, 0], [0, 1, 0]),
        (0, [], []),
    ],
)
def test_allocate(total: int, weights: list[int], expected: list[int]) -> None:
    parts = allocate(total, weights)
    assert parts == expected
    assert sum(parts) == total


def test_allocate_refuses_an_amount_over_no_lines() -> None:
    with pytest.raises(ValueError):
        allocate(1, [])


def test_allocate_refuses_negative_weights() -> None:
    with pytest.raises(ValueError):
        allocate(10, [5, -1])


@pytest.mark.parametrize(
    ("amount", "units", "done", "taking", "expected"),
    [
        (1000, 3, 0, 1, 333),
        (1000, 3, 1, 1, 334),  # round(2000/3)=667 - 333
        (1000, 3, 2, 1, 333),
        (1000, 3, 0, 3, 1000),
        (1598, 1500, 0, 500, 533),  # 500 g of a 1500 g weighed line
        (1598, 1500, 500, 1000, 1065),
        (7, 2, 0, 1, 4),
        (7, 2, 1, 1, 3),
        (0, 5, 2, 2, 0),
        (999, 4, 0, 0, 0),
    ],
)
def test_share_of_units(amount: int, units: int, done: int, taking: int, expected: int) -> None:
    assert share_of_units(amount, units, done, taking) == expected


@pytest.mark.parametrize(("units", "done", "taking"), [(0, 0, 0), (3, 2, 2), (3, -1, 1), (3, 0, -1)])
def test_share_of_units_refuses_units_out_of_range(units: int, done: int, taking: int) -> None:
    with pytest.raises(ValueError):
        share_of_units(100, units, done, taking)


@pytest.mark.parametrize(("fen", "text"), [(0, "0.00"), (5, "0.05"), (1234, "12.34"), (-1234, "-12.34"), (100, "1.00")])
def test_yuan(fen: int, text: str) -> None:
    assert yuan(fen) == text


# -- properties --------------------------------------------------------------------------------------


@given(st.lists(st.integers(min_value=0, max_value=10_000_000), min_size=1, max_size=40), st.data())
def test_allocate_sums_exactly_and_stays_within_each_weight(weights: list[int], data: st.DataObject) -> None:
    total = data.draw(st.integers(min_value=0, max_value=sum(weights)))
    parts = allocate(total, weights)
    assert sum(parts) == total
    assert len(parts) == len(weights)
    for part, weight in zip(parts, weights, strict=True):
        assert 0 <= part <= weight or (sum(weights) == 0 and part == total)


@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=40),
       st.integers(min_value=0, max_value=10_000_000))
def test_allocate_sums_exactly_for_any_total(weights: list[int], total: int) -> None:
    assert sum(allocate(total, weights)) == total


@given(st.integers(min_value=0, max_value=10_000_000), st.integers(min_value=1, max_value=200_000), st.data())
def test_share_of_units_over_any_split_sums_to_the_amount(amount: int, units: int, data: st.DataObject) -> None:
    cuts: list[int] = []
    if units > 1:
        cuts = data.draw(st.lists(st.integers(min_value=1, max_value=units - 1), max_size=20, unique=True))
    steps = [b - a for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), units], strict=True)]
    done = 0
    shares = []
    for taking in steps:
        shares.append(share_of_units(amount, units, done, taking))
        done += taking
    assert sum(shares) == amount
    assert all(0 <= s <= amount for s in shares)


@given(st.integers(min_value=0, max_value=100_000_000), st.sampled_from([0, 300, 600, 900, 1300]))
def test_tax_included_is_between_zero_and_the_amount(amount: int, rate_bp: int) -> None:
    tax = tax_included(amount, rate_bp)
    assert 0 <= tax <= amount
    # The net of tax times (1 + rate) is the amount, to within half a fen of rounding.
    assert abs((amount - tax) * (10_000 + rate_bp) - amount * 10_000) <= (10_000 + rate_bp) // 2
