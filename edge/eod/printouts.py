"""The shift close report and the Z closing as plain text lines for the till's receipt printer (a `print`
command with `lines`). Pure: a frozen report in, lines out. 32 display columns, so they fit a 58 mm
printer as well as an 80 mm one; labels are Chinese and English, as on the receipt."""

from __future__ import annotations

import unicodedata

from devices.receipt import TENDER_NAMES, money, two_columns
from edge.eod.models import Cash, Figures, Totals, ZReport
from edge.eod.shift_models import Shift

COLUMNS = 32
RULE = "-" * COLUMNS


def clean(text: str) -> str:
    """Free text (a reason, a name) without control characters: an ESC in a pay-out's reason must not reach the
    printer as a command (ESC p would open the drawer)."""
    return "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)


def _row(label: str, value: str) -> str:
    return two_columns(clean(label), clean(value), COLUMNS)


def _hhmm(stamp: str | None) -> str:
    return "" if stamp is None else stamp[:16].replace("T", " ")


def _trade(f: Figures) -> list[str]:
    out = [_row("单数 Tickets", str(f.tickets)), _row("销售 Net sales", money(f.net)), _row("税 Tax", money(f.tax))]
    for method, amount in f.tenders.items():
        if amount:
            out.append(_row(TENDER_NAMES.get(method, method), money(amount)))
    if f.returns:
        out.append(_row(f"退货 Returns ({f.returns})", money(-f.refunded)))
    for method, amount in sorted(f.refunds.items()):
        out.append(_row(f" 退款 {TENDER_NAMES.get(method, method)}", money(-amount)))
    if f.topups:
        out.append(_row(f"充值 Top-ups ({f.topups})", money(f.topped_up)))
    return out


def _drawer(c: Cash) -> list[str]:
    return [_row("备用金 Float", money(c.opening_float)), _row("现金收入 Cash in", money(c.tendered)),
            _row("找零 Change", money(-c.change)), _row("现金退款 Cash refunds", money(-c.refunds)),
            _row("现金充值 Cash top-ups", money(c.topups)), _row("支出 Pay-outs", money(-c.payouts)),
            _row("投库 Safe drops", money(-c.drops)), _row("应有现金 Expected", money(c.expected))]


def shift_lines(shift: Shift, store_name: str, cashier: str = "") -> list[str]:
    out = [clean(store_name), "交接班 Shift report", _row(f"Till {shift.till_id}", cashier or shift.user_id),
           _row("开班 Opened", _hhmm(shift.opened_at)), _row("交班 Closed", _hhmm(shift.closed_at)), RULE,
           *_trade(shift.figures), RULE, *_drawer(shift.figures.cash)]
    for move in (*shift.payouts, *shift.drops):
        label = "支出" if move.kind == "payout" else "投库"
        out.append(_row(f" {label} {move.reason}", money(move.amount)))
    if shift.counted is not None and shift.variance is not None:
        out += [_row("实点 Counted", money(shift.counted)), _row("差额 Variance", money(shift.variance))]
    out += [RULE, f"Journal {shift.close_seq} {(shift.journal_hash or '')[:16]}"]
    return out


def _totals(t: Totals) -> list[str]:
    return [_row(" 单数 Tickets", str(t.tickets)), _row(" 销售 Net", money(t.net)), _row(" 税 Tax", money(t.tax)),
            _row(" 退款 Refunded", money(-t.refunded)), _row(" 净额 Balance", money(t.balance)),
            _row(" 绝对值 Absolute", money(t.absolute))]


def z_lines(z: ZReport, store_name: str, closed_by: str = "") -> list[str]:
    store = z.x.store
    out = [clean(store_name), f"日结 Z closing {z.z_no}", _row("营业日 Day", z.day),
           _row("结账 Closed", _hhmm(z.closed_at)), _row("操作员 By", closed_by or z.closed_by), RULE]
    if store is not None:
        out += [*_trade(store), RULE, *_drawer(store.cash)]
    if z.counts:
        latest = {c.till_id: c for c in z.counts}  # a till's latest count is the one that counts
        out += [_row("实点 Counted", money(sum(c.counted for c in latest.values()))),
                _row("差额 Variance", money(sum(c.variance for c in latest.values())))]
    if z.totals is not None:
        out += [RULE, "本期 Period", *_totals(z.totals.period), "总累计 Grand total (GT)", *_totals(z.totals.perpetual)]
    out += [_row("异常 Anomalies", str(len(z.anomalies))), RULE, f"Journal {z.journal_seq} {z.journal_hash[:16]}"]
    return out
