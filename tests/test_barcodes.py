"""edge/catalog/barcodes.py: GS1 check digits, symbologies and variable-measure in-store labels."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.catalog.barcodes import (
    VariableMeasure,
    VariableMeasureLayout,
    VariableMeasureRule,
    classify,
    gs1_check_digit,
    gs1_valid,
    make_variable_measure,
    parse_variable_measure,
)

DEFAULT = VariableMeasureLayout()


@pytest.mark.parametrize(
    ("code", "symbology"),
    [
        ("4006381333931", "ean13"),
        ("6901234567892", "ean13"),  # GS1 China prefix 690
        ("5012345678900", "ean13"),
        ("2112345015002", "ean13"),  # an in-store weight label is still an EAN-13
        ("96385074", "ean8"),
        ("73513537", "ean8"),
        ("036000291452", "upca"),
        ("012345678905", "upca"),
    ],
)
def test_real_codes_classify(code: str, symbology: str) -> None:
    assert classify(code) == symbology
    assert gs1_valid(code)


@pytest.mark.parametrize(
    ("body", "check"),
    [("400638133393", 1), ("690123456789", 2), ("9638507", 4), ("03600029145", 2), ("01234567890", 5),
     ("211234501500", 2), ("000000000000", 0)],
)
def test_gs1_check_digit(body: str, check: int) -> None:
    assert gs1_check_digit(body) == check


@pytest.mark.parametrize(
    "code",
    ["4006381333932", "4006381333930", "6901234567893", "96385075", "036000291453", "2112345015001"],
)
def test_wrong_check_digit_is_rejected(code: str) -> None:
    assert not gs1_valid(code)
    assert classify(code) is None


@pytest.mark.parametrize(
    "code",
    ["", "1", "12345", "40063813339310", "０１２３４５６７８９０５", "4006381333931 ", "abc def", "-A1", "A_1", "苹果",
     "A" * 33],
)
def test_other_text_is_not_a_barcode(code: str) -> None:
    assert classify(code) is None


@pytest.mark.parametrize("code", ["A1", "SKU-00001", "INT-2024-0001", "x", "B" * 32])
def test_internal_codes(code: str) -> None:
    assert classify(code) == "internal"


def test_weight_label_decodes_plu_and_grams() -> None:
    assert parse_variable_measure("2112345015002", DEFAULT) == VariableMeasure(plu="12345", embeds="weight_g",
                                                                               value=1500)


def test_price_label_decodes_plu_and_fen() -> None:
    code = make_variable_measure("23", "12345", 1234)
    assert code == "2312345012340"
    assert classify(code) == "ean13"
    assert parse_variable_measure(code, DEFAULT) == VariableMeasure(plu="12345", embeds="price", value=1234)


@pytest.mark.parametrize(
    "code",
    [
        "2112345015001",  # wrong check digit
        "4006381333931",  # not an in-store prefix
        "2012345015005",  # in-store prefix 20, but the default layout does not use it
        "211234501500",  # twelve digits
        "21123450150022",
        "21123A5015002",
    ],
)
def test_not_a_variable_measure_label(code: str) -> None:
    assert parse_variable_measure(code, DEFAULT) is None


def test_custom_layout() -> None:
    layout = msgspec.convert(
        {"rules": [{"prefix": "22", "embeds": "price", "item_digits": 4, "value_digits": 6},
                   {"prefix": "28", "embeds": "weight_g"}]},
        VariableMeasureLayout,
    )
    price_label = make_variable_measure("22", "1234", 12345, value_digits=6)
    assert price_label == "2212340123457"
    assert parse_variable_measure(price_label, layout) == VariableMeasure(plu="1234", embeds="price", value=12345)
    weight_label = make_variable_measure("28", "00042", 750)
    assert parse_variable_measure(weight_label, layout) == VariableMeasure(plu="00042", embeds="weight_g", value=750)
    # The default prefixes mean nothing under this layout.
    assert parse_variable_measure("2112345015002", layout) is None


def test_a_rule_that_does_not_make_twelve_digits_is_ignored() -> None:
    layout = VariableMeasureLayout(rules=(VariableMeasureRule(prefix="21", embeds="weight_g", item_digits=5,
                                                              value_digits=4),))
    assert parse_variable_measure("2112345015002", layout) is None


def test_layout_is_strict_about_unknown_fields() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"rules": [{"prefix": "21", "embeds": "weight_g", "digits": 5}]}, VariableMeasureLayout)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"rules": [{"prefix": "21", "embeds": "volume_ml"}]}, VariableMeasureLayout)


def test_make_variable_measure_refuses_a_layout_that_is_not_twelve_digits() -> None:
    with pytest.raises(ValueError):
        make_variable_measure("21", "123", 1500)
    with pytest.raises(ValueError):
        make_variable_measure("21", "12345", 123456)


@given(st.text(max_size=40))
def test_classify_never_raises(text: str) -> None:
    assert classify(text) in (None, "ean13", "ean8", "upca", "internal")
    assert parse_variable_measure(text, DEFAULT) is None or classify(text) == "ean13"


@given(st.from_regex(r"[0-9]{1,31}", fullmatch=True))
def test_a_check_digit_makes_any_digit_string_valid(body: str) -> None:
    code = body + str(gs1_check_digit(body))
    assert gs1_valid(code)
    wrong = body + str((gs1_check_digit(body) + 1) % 10)
    assert not gs1_valid(wrong)


@given(st.sampled_from(["21", "23"]), st.from_regex(r"[0-9]{5}", fullmatch=True),
       st.integers(min_value=0, max_value=99_999))
def test_variable_measure_round_trips(prefix: str, plu: str, value: int) -> None:
    code = make_variable_measure(prefix, plu, value)
    assert classify(code) == "ean13"
    parsed = parse_variable_measure(code, DEFAULT)
    assert parsed == VariableMeasure(plu=plu, embeds="weight_g" if prefix == "21" else "price", value=value)
