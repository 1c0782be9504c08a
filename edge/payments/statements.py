"""Parsers of payment providers' bills: bytes in, a `Statement` of `StatementRow`s out.

Three layouts (docs/payments.md names where each comes from):
- WeChat Pay trade bill (微信支付 商户平台 / API 下载交易账单, bill_type=ALL): UTF-8 CSV, a header
  row, every field of a data row prefixed with a back-quote, then a totals block
  (总交易单数,应结订单总金额,…) and its back-quoted figures;
- Alipay business detail (支付宝 开放平台 账单下载, 业务明细): GBK CSV, zipped or not, `#` header
  lines (账号, 起始日期…), the column header 支付宝交易号,商户订单号,业务类型,…, data rows, then `#`
  footer lines (业务明细列表结束, 交易合计…);
- a mapped CSV (`CsvMapping`, TOML or JSON) for UnionPay and the rest.

Amounts are read as `decimal.Decimal` and turned into exact fen; a value with a fraction of a fen,
a missing totals block or footer, a row count that disagrees with the file's own totals, or bytes
in the wrong encoding raise `StatementError` with a message a manager can act on. Nothing here
touches a database: the hub (edge/payments/store.py) and HQ's chain bill both call `parse`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import tomllib
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Literal

import msgspec

RowKind = Literal["payment", "refund", "revoked"]
PROVIDERS = ("wechat", "alipay", "csv")
MAX_FEN = 10**14  # a trillion yuan: anything larger is a broken file, not a payment
MAX_FILE_BYTES = 200 * 1024 * 1024


class StatementError(ValueError):
    """The file is not a readable bill of the named layout; the message says why."""


class StatementRow(msgspec.Struct, frozen=True, kw_only=True):
    """One payment, refund or revoked payment as the provider reports it.

    `amount` is positive fen: what was paid for a payment, what was refunded for a refund.
    `fee` is the provider's fee in fen, positive when charged to the merchant, negative when a
    refund gives it back. `time` is RFC 3339 with the provider's offset (+08:00).
    """

    row_no: int
    kind: RowKind
    transaction_id: str
    merchant_order_no: str = ""
    refund_id: str = ""
    merchant_refund_no: str = ""
    amount: int
    fee: int = 0
    time: str
    store: str = ""
    merchant_id: str = ""
    status: str = ""


class Statement(msgspec.Struct, frozen=True, kw_only=True):
    """A parsed bill: which provider, the hub tender method it settles, its period and rows."""

    provider: str
    method: str
    account: str = ""
    period_start: str | None = None
    period_end: str | None = None
    rows: list[StatementRow]


class FeeSummary(msgspec.Struct, frozen=True, kw_only=True):
    """Money a bill reports for one provider: payments in, refunds out, fees, and what is left."""

    provider: str
    method: str
    payments: int
    refunds: int
    paid: int
    refunded: int
    fees: int
    net: int


class CsvColumns(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Column names of a mapped CSV; `reference`, `amount` and `time` are required."""

    reference: str
    amount: str
    time: str
    order: str | None = None
    kind: str | None = None
    fee: str | None = None
    store: str | None = None
    refund_reference: str | None = None
    original_reference: str | None = None
    merchant: str | None = None


class CsvMapping(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """How to read another provider's CSV (docs/payments.md has an example for UnionPay).

    `reference` is the row's own provider reference. On a refund row, `original_reference` (when
    mapped and filled) names the payment it refunds: the row's `transaction_id` becomes that one and
    its own reference its `refund_id`; `refund_reference` maps a separate refund number instead.
    Without a `kind` column a negative amount is a refund. With one, every value must be listed
    in `payment_kinds`, `refund_kinds` or `revoked_kinds`; an unknown value is an error, not a guess.
    """

    columns: CsvColumns
    provider: str = "unionpay"
    method: Literal["card", "unionpay", "alipay", "wechat", ""] = "unionpay"  # "": the import picks (guess_mapping)
    encoding: str = "utf-8"
    delimiter: str = ","
    skip_lines: int = 0
    comment_prefix: str | None = None
    time_format: str = "%Y-%m-%d %H:%M:%S"
    utc_offset: str = "+08:00"
    amount_unit: Literal["yuan", "fen"] = "yuan"
    payment_kinds: list[str] = []
    refund_kinds: list[str] = []
    revoked_kinds: list[str] = []


CHINA = timezone(timedelta(hours=8))


def content_hash(data: bytes) -> str:
    """The file's identity: importing the same bytes twice is the same import."""
    return hashlib.sha256(data).hexdigest()


def to_fen(text: str, *, field: str = "amount", row: int | None = None) -> int:
    """Exact fen from a yuan amount as written in a bill ("12.30", "-0.06", "￥1,200.00")."""
    clean = text.strip().lstrip("`").replace("￥", "").replace("¥", "").replace(",", "").strip()
    where = f" (row {row}, {field})" if row is not None else f" ({field})"
    if clean == "":
        return 0
    try:
        value = Decimal(clean)
    except InvalidOperation:
        raise StatementError(f"not an amount: {text!r}{where}") from None
    if not value.is_finite():
        raise StatementError(f"not an amount: {text!r}{where}")
    fen = value * 100
    if fen != fen.to_integral_value():
        raise StatementError(f"amount {text!r} has a fraction of a fen{where}")
    out = int(fen)
    if abs(out) >= MAX_FEN:
        raise StatementError(f"amount {text!r} is out of range{where}")
    return out


def fees(statement: Statement) -> FeeSummary:
    """Fees and money moved, for the per-provider report."""
    paid = refunded = fee = payments = refunds = 0
    for row in statement.rows:
        fee += row.fee
        if row.kind == "payment":
            payments += 1
            paid += row.amount
        elif row.kind == "refund":
            refunds += 1
            refunded += row.amount
    return FeeSummary(
        provider=statement.provider,
        method=statement.method,
        payments=payments,
        refunds=refunds,
        paid=paid,
        refunded=refunded,
        fees=fee,
        net=paid - refunded - fee,
    )


def row_keys(provider: str, rows: Sequence[StatementRow]) -> list[str]:
    """A stable identity per row: the same row in a re-downloaded bill gets the same key.

    Built from what the provider uses to name the money (transaction and refund numbers); a row
    repeated verbatim within one bill gets an occurrence suffix so that both are kept.
    """
    seen: dict[str, int] = {}
    out = []
    for row in rows:
        base = "|".join(
            (
                provider,
                row.kind,
                row.transaction_id or row.merchant_order_no,
                row.refund_id or row.merchant_refund_no,
            )
        )
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.append(base if n == 0 else f"{base}#{n}")
    return out


def parse(provider: str, data: bytes, mapping: CsvMapping | None = None) -> Statement:
    """Parse a bill of `provider` ("wechat", "alipay" or "csv" with its mapping)."""
    if len(data) > MAX_FILE_BYTES:
        raise StatementError(f"file too large ({len(data)} bytes; at most {MAX_FILE_BYTES})")
    if provider == "wechat":
        return parse_wechat(data)
    if provider == "alipay":
        return parse_alipay(data)
    if provider == "csv":
        return parse_mapped(data, mapping if mapping is not None else guess_mapping(data))
    raise StatementError(f"unknown provider {provider!r}; one of {', '.join(PROVIDERS)}")


# A mapped CSV given without a mapping (`backroom statements import --provider csv FILE`, CONTRACT.md): the
# UnionPay preset when its header is the preset's, else the columns found by their names in the header, in
# English or Chinese (case, spaces and underscores aside). Without a `method` column its `method` is left
# empty, and the import takes the hub tender method whose references the bill names (store.prepare).
_HEADER_NAMES: dict[str, tuple[str, ...]] = {
    "reference": ("reference", "transaction_id", "transaction_no", "trade_no", "txn_id", "provider_reference",
                  "交易流水号", "流水号", "交易号", "检索参考号", "参考号"),
    "amount": ("amount", "amount_fen", "交易金额", "金额"),
    "time": ("time", "trade_time", "transaction_time", "paid_at", "created_at", "交易时间", "交易日期时间", "时间"),
    "order": ("order", "order_no", "merchant_order_no", "out_trade_no", "商户订单号", "订单号"),
    "kind": ("kind", "type", "trade_type", "transaction_type", "交易类型", "类型"),
    "fee": ("fee", "手续费"),
    "store": ("store", "store_id", "门店", "门店编号"),
    "original_reference": ("original_reference", "original_transaction_id", "原交易流水号", "原交易号",
                           "原交易检索参考号"),
    "refund_reference": ("refund_reference", "refund_id", "refund_no", "退款单号", "退款流水号"),
    "merchant": ("merchant", "merchant_id", "商户号", "商户编号"),
}


def _spellings(*kinds: str) -> list[str]:
    return [k for kind in kinds for k in dict.fromkeys((kind, kind.upper(), kind.capitalize()))]


_PAYMENT_KINDS = _spellings("payment", "pay", "sale", "消费", "支付")
_REFUND_KINDS = _spellings("refund", "退款", "退货")
_REVOKED_KINDS = _spellings("revoked", "void", "消费撤销", "撤销")
_METHOD_NAMES = ("method", "支付方式")
_METHODS: tuple[Literal["card", "unionpay", "alipay", "wechat"], ...] = ("card", "unionpay", "alipay", "wechat")


def _key(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def guess_mapping(data: bytes) -> CsvMapping:
    """The mapping of a CSV whose header names its columns (the comment above); a StatementError when it
    does not name at least its reference, amount and time."""
    from edge.payments.bills import UNIONPAY_MAPPING

    encoding = "utf-8"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        encoding, text = "gbk", data.decode("gbk", errors="replace")
    first = next((line for line in text.splitlines() if line.strip()), "")
    header = [_clean(f) for f in next(csv.reader([first]), [])]
    preset = load_mapping(UNIONPAY_MAPPING.encode(), "unionpay.toml")
    if {preset.columns.reference, preset.columns.amount, preset.columns.time} <= set(header):
        return preset
    by_key = {_key(h): h for h in header}
    found = {field: next((by_key[n] for n in (_key(x) for x in names) if n in by_key), None)
             for field, names in _HEADER_NAMES.items()}
    missing = [field for field in ("reference", "amount", "time") if found[field] is None]
    if missing:
        raise StatementError(f"a csv statement needs a mapping (--mapping FILE, or the preset unionpay) unless its "
                             f"header names its columns: no {', '.join(missing)} column in {header[:12]}")
    columns = {field: name for field, name in found.items() if name is not None}
    return CsvMapping(columns=CsvColumns(**columns), provider="csv", method=_uniform_method(text, header),
                      encoding=encoding, amount_unit="fen" if _key(columns["amount"]).endswith("fen") else "yuan",
                      payment_kinds=_PAYMENT_KINDS, refund_kinds=_REFUND_KINDS, revoked_kinds=_REVOKED_KINDS)


def _uniform_method(text: str, header: list[str]) -> Literal["card", "unionpay", "alipay", "wechat", ""]:
    """The hub tender method a `method` column names on every row; "" (unknown) otherwise."""
    at = next((i for i, h in enumerate(header) if _key(h) in _METHOD_NAMES), None)
    if at is None:
        return ""
    values = {_key(row[at]) for row in csv.reader(line for line in text.splitlines()[1:] if line.strip())
              if len(row) > at}
    for method in _METHODS:
        if values == {method}:
            return method
    return ""


def load_mapping(data: bytes, name: str = "mapping.toml") -> CsvMapping:
    """A `CsvMapping` from TOML (by default) or JSON (`*.json`); unknown keys are an error."""
    try:
        text = data.decode("utf-8-sig")
        if name.endswith(".json") or text.lstrip().startswith("{"):
            raw = json.loads(text)
        else:
            raw = tomllib.loads(text)
        return msgspec.convert(raw, CsvMapping)
    except (UnicodeDecodeError, ValueError, msgspec.ValidationError) as exc:
        raise StatementError(f"bad mapping {name}: {exc}") from None


# ---------------------------------------------------------------- WeChat Pay trade bill


def _an(layout: str) -> str:
    return ("an " if layout[0].lower() in "aeiou" else "a ") + layout


def _decode(data: bytes, encoding: str, layout: str) -> str:
    try:
        return data.decode("utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding)
    except UnicodeDecodeError as exc:
        raise StatementError(f"not {_an(layout)}: the file is not {encoding} text (byte {exc.start})") from None
    except LookupError:
        raise StatementError(f"unknown encoding {encoding!r}") from None


_PLAIN_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


def _clean(field: str) -> str:
    return field.strip().lstrip("`").strip()


def _cn_time(text: str, row: int, fmt: str = "%Y-%m-%d %H:%M:%S", tz: timezone = CHINA) -> str:
    try:
        if fmt == "%Y-%m-%d %H:%M:%S" and _PLAIN_TIME.fullmatch(text):  # the bills' own form; strptime is slow
            return datetime.fromisoformat(text).replace(tzinfo=tz).isoformat()
        return datetime.strptime(text.strip(), fmt).replace(tzinfo=tz).isoformat()
    except ValueError:
        raise StatementError(f"not a time: {text!r} (row {row})") from None


def _period_of(rows: Sequence[StatementRow]) -> tuple[str | None, str | None]:
    """Whole local days the rows fall in: the period a daily bill covers."""
    if not rows:
        return None, None
    times = [datetime.fromisoformat(r.time) for r in rows]
    first, last = min(times), max(times)
    start = first.replace(hour=0, minute=0, second=0, microsecond=0)
    end = last.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return start.isoformat(), end.isoformat()


def _col(header: list[str], *names: str) -> int | None:
    for name in names:
        if name in header:
            return header.index(name)
    return None


def _need(header: list[str], layout: str, *names: str) -> int:
    at = _col(header, *names)
    if at is None:
        raise StatementError(f"not {_an(layout)}: no column {' / '.join(names)} in the header")
    return at


_WECHAT = "WeChat Pay trade bill"


class _Picked:
    """A row's fields cleaned of the back-quote on first use: a bill has two dozen columns, we read ten."""

    __slots__ = ("line",)

    def __init__(self, line: list[str]) -> None:
        self.line = line

    def __getitem__(self, at: int) -> str:
        return self.line[at].strip().lstrip("`").strip()


def parse_wechat(data: bytes) -> Statement:
    """The WeChat Pay trade bill (交易账单, bill_type=ALL)."""
    text = _decode(data, "utf-8", _WECHAT)
    lines = list(csv.reader(io.StringIO(text)))
    lines = [line for line in lines if any(f.strip() for f in line)]
    if not lines:
        raise StatementError(f"not {_an(_WECHAT)}: the file is empty")
    header = [_clean(f) for f in lines[0]]
    if "交易时间" not in header or "微信订单号" not in header:
        raise StatementError(f"not {_an(_WECHAT)}: the first line is not its header (交易时间,…,微信订单号,…)")
    c_time = _need(header, _WECHAT, "交易时间")
    c_mch = _need(header, _WECHAT, "商户号")
    c_sub = _col(header, "特约商户号", "子商户号")
    c_dev = _col(header, "设备号")
    c_txn = _need(header, _WECHAT, "微信订单号")
    c_order = _need(header, _WECHAT, "商户订单号")
    c_state = _need(header, _WECHAT, "交易状态")
    c_total = _need(header, _WECHAT, "总金额", "订单金额", "应结订单金额")
    c_refund = _need(header, _WECHAT, "退款金额", "申请退款金额")
    c_refund_id = _need(header, _WECHAT, "微信退款单号")
    c_mch_refund = _need(header, _WECHAT, "商户退款单号")
    c_fee = _need(header, _WECHAT, "手续费")
    totals_at = next((i for i, line in enumerate(lines) if line and _clean(line[0]) == "总交易单数"), None)
    if totals_at is None or totals_at + 1 >= len(lines):
        raise StatementError(f"truncated {_WECHAT}: no totals block (总交易单数,…) at its end")
    body = lines[1:totals_at]
    totals_head = [_clean(f) for f in lines[totals_at]]
    totals = dict(zip(totals_head, (_clean(f) for f in lines[totals_at + 1]), strict=False))
    rows: list[StatementRow] = []
    for n, line in enumerate(body, start=1):
        if len(line) != len(header):
            raise StatementError(f"{_WECHAT} row {n} has {len(line)} fields, the header {len(header)} (truncated?)")
        f = _Picked(line)
        state = f[c_state]
        if state == "SUCCESS":
            kind: RowKind = "payment"
            amount = to_fen(f[c_total], field="总金额", row=n)
        elif state == "REFUND":
            kind = "refund"
            amount = to_fen(f[c_refund], field="退款金额", row=n)
        elif state == "REVOKED":
            kind = "revoked"
            amount = to_fen(f[c_total], field="总金额", row=n)
        else:
            raise StatementError(f"{_WECHAT} row {n}: unknown 交易状态 {state!r} (SUCCESS, REFUND or REVOKED)")
        if not f[c_txn]:
            raise StatementError(f"{_WECHAT} row {n}: no 微信订单号")
        sub = f[c_sub] if c_sub is not None else ""
        rows.append(
            StatementRow(
                row_no=n,
                kind=kind,
                transaction_id=f[c_txn],
                merchant_order_no=f[c_order],
                refund_id=f[c_refund_id] if kind == "refund" else "",
                merchant_refund_no=f[c_mch_refund] if kind == "refund" else "",
                amount=abs(amount),
                fee=to_fen(f[c_fee], field="手续费", row=n),
                time=_cn_time(f[c_time], n),
                store=f[c_dev] if c_dev is not None else "",
                merchant_id=sub or f[c_mch],
                status=state,
            )
        )
    count = totals.get("总交易单数", "")
    if not count.isdigit() or int(count) != len(rows):
        raise StatementError(
            f"{_WECHAT} disagrees with its own totals: 总交易单数 {count!r}, {len(rows)} rows read (truncated?)"
        )
    if "手续费总金额" in totals:
        declared = to_fen(totals["手续费总金额"], field="手续费总金额")
        summed = sum(r.fee for r in rows)
        if declared != summed:
            raise StatementError(f"{_WECHAT} disagrees with its own totals: 手续费总金额 {declared} fen, rows {summed}")
    start, end = _period_of(rows)
    account = rows[0].merchant_id if rows else ""
    return Statement(provider="wechat", method="wechat", account=account, period_start=start, period_end=end, rows=rows)


# ---------------------------------------------------------------- Alipay business detail

_ALIPAY = "Alipay business detail (业务明细)"
_ALIPAY_DATE = re.compile(r"(\d{4})年(\d{2})月(\d{2})日\s*(\d{2}):(\d{2}):(\d{2})")
_ALIPAY_COUNT = re.compile(r"#(交易|退款)合计[：:]\s*(\d+)\s*笔")


def _unzip_alipay(data: bytes) -> bytes:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [m for m in archive.infolist() if not m.is_dir() and m.filename.lower().endswith(".csv")]
        for member in members:
            if member.file_size > MAX_FILE_BYTES:
                raise StatementError(f"{member.filename} in the zip is too large")
            content = archive.read(member)
            # The 汇总 (summary) file of the same zip has no 支付宝交易号 column.
            if "支付宝交易号".encode("gbk") in content or "支付宝交易号".encode() in content:
                return content
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise StatementError(f"not a readable zip: {exc}") from None
    raise StatementError(f"the zip holds no {_ALIPAY} CSV (a file with the 支付宝交易号 column)")


def _alipay_time(text: str) -> str | None:
    m = _ALIPAY_DATE.search(text)
    if m is None:
        return None
    y, mo, d, h, mi, s = (int(x) for x in m.groups())
    return datetime(y, mo, d, h, mi, s, tzinfo=CHINA).isoformat()


def parse_alipay(data: bytes) -> Statement:
    """The Alipay business detail (业务明细), GBK, zipped or not."""
    if data[:4] == b"PK\x03\x04":
        data = _unzip_alipay(data)
    try:
        text = data.decode("gbk")
    except UnicodeDecodeError as exc:
        raise StatementError(f"not {_an(_ALIPAY)}: the file is not GBK text (byte {exc.start})") from None
    account = ""
    period_start = period_end = None
    header: list[str] | None = None
    body: list[tuple[int, list[str]]] = []
    footer: list[str] = []
    ended = False
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            if header is None:
                if "账号" in stripped:
                    m = re.search(r"\[(.*?)\]", stripped)
                    account = m.group(1) if m else stripped.split("：", 1)[-1].strip()
                if "起始日期" in stripped:
                    parts = stripped.split("终止日期")
                    period_start = _alipay_time(parts[0])
                    period_end = _alipay_time(parts[1]) if len(parts) > 1 else None
            else:
                footer.append(stripped)
                if "业务明细列表结束" in stripped:
                    ended = True
            continue
        fields = [f.strip() for f in next(csv.reader([line]))]
        if header is None:
            if "支付宝交易号" not in fields:
                raise StatementError(f"not {_an(_ALIPAY)}: no 支付宝交易号 column header (is it GBK?)")
            header = fields
            continue
        if ended:
            raise StatementError(f"{_ALIPAY}: data after the 业务明细列表结束 line")
        body.append((len(body) + 1, fields))
    if header is None:
        raise StatementError(f"not {_an(_ALIPAY)}: no 支付宝交易号 column header (is it GBK?)")
    if not ended:
        raise StatementError(f"truncated {_ALIPAY}: no #…业务明细列表结束 footer")
    c_txn = _need(header, _ALIPAY, "支付宝交易号")
    c_order = _need(header, _ALIPAY, "商户订单号")
    c_type = _need(header, _ALIPAY, "业务类型")
    c_done = _need(header, _ALIPAY, "完成时间", "创建时间")
    c_store = _col(header, "门店编号")
    c_amount = _need(header, _ALIPAY, "订单金额（元）", "订单金额(元)")
    c_fee = _col(header, "服务费（元）", "服务费(元)")
    c_batch = _col(header, "退款批次号/请求号")
    rows: list[StatementRow] = []
    for n, f in body:
        if len(f) < len(header) - 1 or len(f) > len(header) + 1:
            # Alipay ends rows with a trailing comma at times; more or fewer is a cut file.
            raise StatementError(f"{_ALIPAY} row {n} has {len(f)} fields, the header {len(header)} (truncated?)")
        f = f + [""] * (len(header) - len(f))
        typ = f[c_type]
        if typ == "交易":
            kind: RowKind = "payment"
        elif typ == "退款":
            kind = "refund"
        else:
            raise StatementError(f"{_ALIPAY} row {n}: unknown 业务类型 {typ!r} (交易 or 退款)")
        if not f[c_txn]:
            raise StatementError(f"{_ALIPAY} row {n}: no 支付宝交易号")
        fee = -to_fen(f[c_fee], field="服务费", row=n) if c_fee is not None else 0
        batch = f[c_batch] if c_batch is not None and kind == "refund" else ""
        rows.append(
            StatementRow(
                row_no=n,
                kind=kind,
                transaction_id=f[c_txn],
                merchant_order_no=f[c_order],
                merchant_refund_no=batch,
                amount=abs(to_fen(f[c_amount], field="订单金额", row=n)),
                fee=fee,
                time=_cn_time(f[c_done], n),
                store=f[c_store] if c_store is not None else "",
                merchant_id=account,
                status=typ,
            )
        )
    declared = {m.group(1): int(m.group(2)) for line in footer if (m := _ALIPAY_COUNT.search(line))}
    counted = {"交易": sum(r.kind == "payment" for r in rows), "退款": sum(r.kind == "refund" for r in rows)}
    for typ, n in declared.items():
        if counted[typ] != n:
            raise StatementError(f"{_ALIPAY} disagrees with its own footer: {typ}合计 {n}笔, {counted[typ]} rows read")
    if period_start is None:
        period_start, period_end = _period_of(rows)
    return Statement(
        provider="alipay",
        method="alipay",
        account=account,
        period_start=period_start,
        period_end=period_end,
        rows=rows,
    )


# ---------------------------------------------------------------- mapped CSV


def _offset(text: str) -> timezone:
    m = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", text.strip())
    if m is None:
        raise StatementError(f"bad utc_offset {text!r} in the mapping (like +08:00)")
    delta = timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
    return timezone(-delta if m.group(1) == "-" else delta) if delta else UTC


def parse_mapped(data: bytes, mapping: CsvMapping) -> Statement:
    """Another provider's CSV read through its `CsvMapping`."""
    layout = f"{mapping.provider} CSV"
    text = _decode(data, mapping.encoding, layout)
    tz = _offset(mapping.utc_offset)
    lines = text.splitlines()[mapping.skip_lines :]
    if mapping.comment_prefix:
        lines = [line for line in lines if not line.lstrip().startswith(mapping.comment_prefix)]
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise StatementError(f"not {_an(layout)}: the file is empty")
    reader = csv.reader(lines, delimiter=mapping.delimiter)
    header = [_clean(f) for f in next(reader)]
    cols = mapping.columns

    def need(name: str) -> int:
        if name not in header:
            raise StatementError(f"not {_an(layout)}: no column {name!r} (the mapping names it) in the header")
        return header.index(name)

    def opt(name: str | None) -> int | None:
        return None if name is None else need(name)

    c_ref, c_amount, c_time = need(cols.reference), need(cols.amount), need(cols.time)
    c_order, c_kind, c_fee = opt(cols.order), opt(cols.kind), opt(cols.fee)
    c_store, c_refund, c_merchant = opt(cols.store), opt(cols.refund_reference), opt(cols.merchant)
    c_original = opt(cols.original_reference)
    rows: list[StatementRow] = []
    for n, line in enumerate(reader, start=1):
        if len(line) != len(header):
            raise StatementError(f"{layout} row {n} has {len(line)} fields, the header {len(header)} (truncated?)")
        f = [_clean(x) for x in line]

        def money(at: int, field: str, n: int = n, f: list[str] = f) -> int:
            if mapping.amount_unit == "fen":
                raw = f[at].replace(",", "")
                if not re.fullmatch(r"-?\d{1,15}", raw):
                    raise StatementError(f"not an amount in fen: {f[at]!r} (row {n}, {field})")
                return int(raw)
            return to_fen(f[at], field=field, row=n)

        amount = money(c_amount, cols.amount)
        kind: RowKind
        if c_kind is None:
            kind = "refund" if amount < 0 else "payment"
        else:
            value = f[c_kind]
            if value in mapping.payment_kinds:
                kind = "payment"
            elif value in mapping.refund_kinds:
                kind = "refund"
            elif value in mapping.revoked_kinds:
                kind = "revoked"
            else:
                raise StatementError(f"{layout} row {n}: {cols.kind} {value!r} is not in the mapping's kinds")
        if not f[c_ref]:
            raise StatementError(f"{layout} row {n}: no {cols.reference}")
        reference = f[c_ref]
        refund_ref = f[c_refund] if c_refund is not None and kind == "refund" else ""
        if kind == "refund" and c_original is not None and f[c_original]:
            reference, refund_ref = f[c_original], refund_ref or f[c_ref]
        rows.append(
            StatementRow(
                row_no=n,
                kind=kind,
                transaction_id=reference,
                merchant_order_no=f[c_order] if c_order is not None else "",
                refund_id=refund_ref,
                amount=abs(amount),
                fee=money(c_fee, cols.fee or "fee") if c_fee is not None else 0,
                time=_cn_time(f[c_time], n, mapping.time_format, tz),
                store=f[c_store] if c_store is not None else "",
                merchant_id=f[c_merchant] if c_merchant is not None else "",
                status=f[c_kind] if c_kind is not None else "",
            )
        )
    start, end = _period_of(rows)
    return Statement(provider=mapping.provider, method=mapping.method, period_start=start, period_end=end, rows=rows)
