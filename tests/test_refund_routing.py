"""Refund routing (edge/sales/refund_routing.py): a refund shared out over a sale's tenders, exactly."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge.sales.models import Refund, TenderRefund
from edge.sales.refund_routing import REFUND_ORDER, PaidTender, allocate, allocate_to_method, by_method

SPLIT = [
    PaidTender(1, "cash", 500),
    PaidTender(2, "wechat", 2000, "WX1"),
    PaidTender(3, "wechat", 1000, "WX2"),
    PaidTender(4, "stored_value", 700),
    PaidTender(5, "alipay", 300, "ALI"),
]


def test_the_order_is_member_value_then_wallets_then_cash_and_tender_order_within_a_method() -> None:
    assert allocate(3500, SPLIT) == [
        TenderRefund("stored_value", 700, 4),
        TenderRefund("alipay", 300, 5, "ALI"),
        TenderRefund("wechat", 2000, 2, "WX1"),
        TenderRefund("wechat", 500, 3, "WX2"),
    ]
    assert by_method(allocate(3500, SPLIT)) == [
        Refund("stored_value", 700),
        Refund("alipay", 300),
        Refund("wechat", 2500),
    ]


def test_a_till_reference_replaces_the_payment_reference_of_its_tender_only() -> None:
    parts = allocate(3200, SPLIT, {3: "WX-REFUND"})
    assert [(p.tender_no, p.reference) for p in parts] == [(4, None), (5, "ALI"), (2, "WX1"), (3, "WX-REFUND")]


def test_what_no_tender_can_take_goes_back_as_cash_without_a_tender() -> None:
    assert allocate(4500, SPLIT)[-1] == TenderRefund("cash", 500, 1)
    assert allocate(4501, SPLIT)[-1] == TenderRefund("cash", 1)
    assert allocate(100, [PaidTender(1, "exchange", 100)]) == [TenderRefund("cash", 100)]


def test_an_explicit_method_uses_its_tenders_then_the_rest_unnamed() -> None:
    assert allocate_to_method(3500, "wechat", SPLIT) == [
        TenderRefund("wechat", 2000, 2, "WX1"),
        TenderRefund("wechat", 1000, 3, "WX2"),
        TenderRefund("wechat", 500),
    ]
    assert allocate_to_method(100, "card", SPLIT) == [TenderRefund("card", 100)]


@given(
    amount=st.integers(min_value=1, max_value=10**9),
    tenders=st.lists(
        st.tuples(st.sampled_from(REFUND_ORDER), st.integers(min_value=0, max_value=10**8)), min_size=1, max_size=10
    ),
)
def test_parts_add_up_to_the_refund_and_no_tender_gets_more_than_its_room(
    amount: int, tenders: list[tuple[str, int]]
) -> None:
    paid = [PaidTender(n, method, room) for n, (method, room) in enumerate(tenders, start=1)]
    parts = allocate(amount, paid)
    assert sum(p.amount for p in parts) == amount
    assert all(p.amount > 0 for p in parts)
    room = {t.tender_no: t.room for t in paid}
    for p in parts:
        if p.tender_no is not None:
            assert p.amount <= room[p.tender_no]
    named = [p for p in parts if p.tender_no is not None]
    assert len({p.tender_no for p in named}) == len(named)
    ranks = [REFUND_ORDER.index(p.method) for p in named]
    assert ranks == sorted(ranks)
    assert sum(p.amount for p in named) == min(amount, sum(t.room for t in paid))
