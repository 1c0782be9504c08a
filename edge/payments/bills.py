"""Write bills in the providers' layouts, from `StatementRow`s: the inverse of statements.py.

The tests, `backroom bench statements` and the HQ chain bill's tests use it to make files that look
as the providers' downloads do (docs/payments.md names the sources of each layout); a parser that
reads these files and the providers' own is what the tests check.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from datetime import datetime, timedelta

from edge.payments.statements import CHINA, StatementRow

WECHAT_HEADER = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,"
    "总金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率"
)
ALIPAY_HEADER = (
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,"
    "订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,"
    "商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注"
)
UNIONPAY_HEADER = (
    "交易日期时间,商户编号,终端编号,检索参考号,原交易检索参考号,商户订单号,交易类型,交易金额,手续费,清算金额"
)
UNIONPAY_MAPPING = """\
# A UnionPay merchant settlement detail (商户交易明细) read through the mapped-CSV importer.
provider = "unionpay"
method = "unionpay"
encoding = "utf-8"
time_format = "%Y-%m-%d %H:%M:%S"
payment_kinds = ["消费"]
refund_kinds = ["退货"]
revoked_kinds = ["消费撤销"]

[columns]
reference = "检索参考号"
original_reference = "原交易检索参考号"
order = "商户订单号"
amount = "交易金额"
time = "交易日期时间"
kind = "交易类型"
fee = "手续费"
merchant = "商户编号"
store = "终端编号"
"""


def yuan(fen: int) -> str:
    """Fen as the bills write yuan: "12.30", "-0.06"."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def _local(time: str, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return datetime.fromisoformat(time).astimezone(CHINA).strftime(fmt)


def wechat_bill(
    rows: Sequence[StatementRow], *, mch_id: str = "1900000109", appid: str = "wx2421b1c4370ec43b"
) -> bytes:
    """A 交易账单 (bill_type=ALL): header, back-quoted rows, the totals block."""
    out = [WECHAT_HEADER]
    payments = refunds = fees = 0
    for r in rows:
        state = {"payment": "SUCCESS", "refund": "REFUND", "revoked": "REVOKED"}[r.kind]
        total = r.amount if r.kind != "refund" else 0
        refund = r.amount if r.kind == "refund" else 0
        payments += total if r.kind == "payment" else 0
        refunds += refund
        fees += r.fee
        fields = [
            _local(r.time),
            appid,
            mch_id,
            r.merchant_id if r.merchant_id != mch_id else "0",
            r.store,
            r.transaction_id,
            r.merchant_order_no,
            "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
            "MICROPAY",
            state,
            "CMB_DEBIT",
            "CNY",
            yuan(total),
            "0.00",
            r.refund_id if r.kind == "refund" else "0",
            r.merchant_refund_no if r.kind == "refund" else "0",
            yuan(refund),
            "0.00",
            "ORIGINAL" if r.kind == "refund" else "",
            "SUCCESS" if r.kind == "refund" else "",
            "门店消费",
            "",
            yuan(r.fee),
            "0.60%",
        ]
        out.append(",".join("`" + f for f in fields))
    out.append("总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额")
    out.append(",".join("`" + f for f in (str(len(rows)), yuan(payments), yuan(refunds), "0.00", yuan(fees))))
    return ("\r\n".join(out) + "\r\n").encode("utf-8")


def alipay_detail(
    rows: Sequence[StatementRow],
    *,
    account: str = "20881021234567890156",
    start: str = "",
    end: str = "",
    zipped: bool = False,
) -> bytes:
    """A 业务明细 CSV in GBK with its `#` header and footer; `zipped` wraps it as Alipay's download
    does (with the 汇总 summary file beside it)."""
    if rows and not start:
        day = datetime.fromisoformat(min(r.time for r in rows)).astimezone(CHINA)
        start = day.replace(hour=0, minute=0, second=0, microsecond=0).isoformat()
    if rows and not end:
        day = datetime.fromisoformat(max(r.time for r in rows)).astimezone(CHINA)
        end = (day.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)).isoformat()
    fmt = "%Y年%m月%d日 %H:%M:%S"
    out = [
        "#支付宝业务明细查询",
        f"#账号：[{account}]",
        f"#起始日期：[{_local(start, fmt) if start else ''}]   终止日期：[{_local(end, fmt) if end else ''}]",
        "#-----------------------------------------业务明细列表----------------------------------------",
        ALIPAY_HEADER,
    ]
    trades = refunds = 0
    trade_sum = refund_sum = 0
    for r in rows:
        sign = -1 if r.kind == "refund" else 1
        if r.kind == "refund":
            refunds += 1
            refund_sum += r.amount
        else:
            trades += 1
            trade_sum += r.amount
        fields = [
            r.transaction_id,
            r.merchant_order_no,
            "退款" if r.kind == "refund" else "交易",
            "门店消费",
            _local(r.time),
            _local(r.time),
            r.store,
            "门店" + r.store if r.store else "",
            "",
            "",
            "",
            yuan(sign * r.amount),
            yuan(sign * r.amount),
            "0.00",
            "0.00",
            "0.00",
            "0.00",
            "0.00",
            "",
            "0.00",
            "0.00",
            r.merchant_refund_no if r.kind == "refund" else "",
            yuan(-r.fee),
            "0.00",
            "",
        ]
        out.append("\t,".join(fields) + "\t")
    out += [
        "#-----------------------------------------业务明细列表结束------------------------------------",
        f"#交易合计：{trades}笔，商家实收：{yuan(trade_sum)}元，商家优惠：0.00元",
        f"#退款合计：{refunds}笔，商家实收：{yuan(-refund_sum)}元，商家优惠：0.00元",
        "#导出时间：[2026年12月02日 09:00:00]",
    ]
    data = ("\r\n".join(out) + "\r\n").encode("gbk")
    if not zipped:
        return data
    summary = "#支付宝业务汇总查询\r\n门店编号,门店名称,交易订单总笔数,退款订单总笔数\r\n".encode("gbk")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{account}_业务明细(汇总).csv", summary)
        archive.writestr(f"{account}_业务明细.csv", data)
    return buf.getvalue()


def unionpay_csv(rows: Sequence[StatementRow], *, merchant: str = "898310048990001") -> bytes:
    """A UnionPay merchant transaction detail, for the mapping in UNIONPAY_MAPPING. A refund row
    (退货) has its own 检索参考号 (the row's `refund_id`) and names the payment's in 原交易检索参考号."""
    out = [UNIONPAY_HEADER]
    for r in rows:
        kind = {"payment": "消费", "refund": "退货", "revoked": "消费撤销"}[r.kind]
        sign = -1 if r.kind == "refund" else 1
        out.append(
            ",".join(
                (
                    _local(r.time),
                    r.merchant_id or merchant,
                    r.store,
                    r.refund_id if r.kind == "refund" else r.transaction_id,
                    r.transaction_id if r.kind == "refund" else "",
                    r.merchant_order_no,
                    kind,
                    yuan(sign * r.amount),
                    yuan(r.fee),
                    yuan(sign * r.amount - r.fee),
                )
            )
        )
    return ("\n".join(out) + "\n").encode("utf-8")
