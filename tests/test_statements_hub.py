"""Provider statements on a real hub: sales and returns made over the till API, bills written in each
provider's layout from what the tills did (plus the planted anomalies), imported over the API and
with `backroom statements import`; anomalies resolved by a manager and journaled.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
import pytest

from edge.payments import bills
from edge.payments.statements import StatementRow

if TYPE_CHECKING:
    from conftest import Hub

BLUEBERRIES = "6953686088258"  # 1990
TOMATOES = "SKU00011"  # 990
STATEMENT_TABLES = ("statement_imports", "statement_rows", "statement_matches", "statement_anomalies", "journal")


def sell(
    client: httpx.Client, tenders: list[dict[str, Any]], lines: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body = {
        "sale_id": str(uuid.uuid4()),
        "till_id": "T1",
        "lines": lines or [{"barcode": BLUEBERRIES, "qty": 1}],
        "tenders": tenders,
    }
    resp = client.post("/api/v1/sales", json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def give_back(client: httpx.Client, sale_id: str, **extra: Any) -> dict[str, Any]:
    body = {"return_id": str(uuid.uuid4()), "sale_id": sale_id, "lines": [{"line_no": 1, "qty": 1}], **extra}
    resp = client.post("/api/v1/returns", json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def later(at: str, seconds: int) -> str:
    return (datetime.fromisoformat(at) + timedelta(seconds=seconds)).isoformat(timespec="seconds")


def row(kind: str, txn: str, amount: int, at: str, order: str = "", refund_id: str = "", mrn: str = "") -> StatementRow:
    return StatementRow(
        row_no=0,
        kind=kind,  # type: ignore[arg-type]
        transaction_id=txn,
        merchant_order_no=order,
        refund_id=refund_id,
        merchant_refund_no=mrn,
        amount=amount,
        fee=amount * 6 // 1000 * (-1 if kind == "refund" else 1),
        time=at,
        store="demo-001",
    )


def numbered(rows: list[StatementRow]) -> list[StatementRow]:
    return [msgspec.structs.replace(r, row_no=n) for n, r in enumerate(rows, start=1)]


def kinds(answer: dict[str, Any]) -> set[tuple[Any, ...]]:
    return {(a["kind"], a.get("sale_id"), a.get("expected"), a.get("actual")) for a in answer["anomalies"]}


PREFIX = {"wechat": "42000", "alipay": "20261201220", "unionpay": "0001234"}


@pytest.fixture(scope="module")
def day(hub: Hub) -> dict[str, dict[str, Any]]:
    """The tills' day per wallet method: the same planted cases for WeChat Pay, Alipay and UnionPay."""
    till = hub.login("cashier")
    out: dict[str, dict[str, Any]] = {}
    for method, p in PREFIX.items():
        s: dict[str, Any] = {}
        s["a"] = sell(till, [{"method": method, "amount": 1990, "reference": f"{p}01"}])
        s["b"] = sell(till, [{"method": method, "amount": 1990, "reference": f"ORD-B-{p}"}])
        s["c"] = sell(till, [{"method": method, "amount": 990}], [{"sku": TOMATOES, "qty": 1}])  # no reference
        s["d"] = sell(till, [{"method": method, "amount": 1990, "reference": f"{p}04"}])
        s["e"] = sell(till, [{"method": method, "amount": 1990, "reference": f"ORD-E-{p}"}])
        s["f"] = sell(till, [{"method": method, "amount": 1990, "reference": f"{p}06"}])
        s["ra"] = give_back(till, s["a"]["sale_id"], refund_references=[{"tender_no": 1, "reference": f"RF-A-{p}"}])
        s["rb"] = give_back(till, s["b"]["sale_id"])
        out[method] = s
    return out


def bill_rows(day: dict[str, dict[str, Any]], method: str) -> list[StatementRow]:
    """What the provider reports for the method's day: clean rows and one of each anomaly kind."""
    p = PREFIX[method]
    a, b, c, d, e = (day[method][k] for k in "abcde")
    ra, rb = day[method]["ra"], day[method]["rb"]
    return numbered(
        [
            row("payment", f"{p}01", 1990, later(a["created_at"], 3)),
            row("payment", f"{p}02", 1990, later(b["created_at"], 2), order=f"ORD-B-{p}"),
            row("payment", f"{p}03", 990, later(c["created_at"], 4)),
            row("payment", f"{p}04", 1980, later(d["created_at"], 2)),
            row("payment", f"{p}05", 1990, later(e["created_at"], 2), order=f"ORD-E-{p}"),
            row("payment", f"{p}55", 1990, later(e["created_at"], 40), order=f"ORD-E-{p}"),
            row("payment", f"{p}07", 500, later(e["created_at"], 50)),
            row("refund", f"{p}01", 1990, later(ra["created_at"], 5), refund_id=f"{p}R1", mrn=f"RF-A-{p}"),
            row("refund", f"{p}02", 2000, later(rb["created_at"], 5), order=f"ORD-B-{p}", refund_id=f"{p}R2"),
        ]
    )


def planted(day: dict[str, dict[str, Any]], method: str) -> set[tuple[Any, ...]]:
    s = day[method]
    return {
        ("amount_mismatch", s["d"]["sale_id"], 1990, 1980),
        ("duplicate_payment", s["e"]["sale_id"], 1990, 1990),
        ("sale_no_payment", s["f"]["sale_id"], 1990, None),
        ("paid_no_sale", None, None, 500),
        ("refund_mismatch", s["b"]["sale_id"], 1990, 2000),
    }


def test_a_refund_names_its_tender_and_reference(day: dict[str, dict[str, Any]]) -> None:
    wx = day["wechat"]
    assert wx["ra"]["refunds"] == [{"method": "wechat", "amount": 1990}]
    assert wx["ra"]["refunds_by_tender"] == [
        {"method": "wechat", "amount": 1990, "tender_no": 1, "reference": "RF-A-42000"}
    ]
    assert wx["rb"]["refunds_by_tender"] == [
        {"method": "wechat", "amount": 1990, "tender_no": 1, "reference": "ORD-B-42000"}
    ]


def test_a_wechat_bill_over_the_api_finds_every_planted_anomaly(
    hub: Hub, day: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    manager = hub.login("manager")
    data = bills.wechat_bill(bill_rows(day, "wechat"))
    resp = manager.post("/api/v1/statements", params={"provider": "wechat", "name": "wx.csv"}, content=data)
    assert resp.status_code == 201, resp.text
    answer = resp.json()
    assert (answer["provider"], answer["rows"], answer["matched"]) == ("wechat", 9, 5)
    assert kinds(answer) == planted(day, "wechat")
    assert len(answer["anomalies"]) == 5
    assert answer["fees"]["fees"] == sum(r.fee for r in bill_rows(day, "wechat"))
    assert hub.query("SELECT count(*) FROM statement_matches WHERE clean = 1")[0][0] == 5

    before = hub.counts(STATEMENT_TABLES)
    again = manager.post("/api/v1/statements", params={"provider": "wechat", "name": "again.csv"}, content=data)
    assert again.status_code == 200, again.text
    assert again.json()["already_imported"] is True
    assert again.json()["import_id"] == answer["import_id"]
    assert hub.counts(STATEMENT_TABLES) == before

    # the same bill through the CLI: the same answer, nothing written
    path = tmp_path / "wx.csv"
    path.write_bytes(data)
    proc = hub.backroom("statements", "import", "--provider", "wechat", str(path))
    assert proc.returncode == 0, proc.stderr
    cli = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (cli["rows"], cli["matched"], kinds(cli)) == (9, 5, kinds(answer))
    assert hub.counts(STATEMENT_TABLES) == before


def test_a_manager_resolves_an_anomaly_with_a_note_and_the_journal_keeps_it(hub: Hub) -> None:
    manager = hub.login("manager")
    resp = manager.get("/api/v1/statements/anomalies")
    assert resp.status_code == 200, resp.text
    found = resp.json()
    assert found["open"] == found["total"] >= 5
    target = next(a for a in found["anomalies"] if a["kind"] == "paid_no_sale" and a["provider"] == "wechat")
    url = f"/api/v1/statements/anomalies/{target['anomaly_id']}/resolve"
    assert manager.post(url, json={"note": "  "}).json()["code"] == "note_required"
    done = manager.post(url, json={"note": "顾客重复扫码，已原路退回"})
    assert done.status_code == 200, done.text
    assert done.json()["note"] == "顾客重复扫码，已原路退回"
    assert manager.post(url, json={"note": "again"}).status_code == 409
    journal = hub.query("SELECT kind, ref, body FROM journal WHERE kind = 'statement_resolution'")
    assert [(k, r) for k, r, _b in journal] == [("statement_resolution", str(target["anomaly_id"]))]
    assert json.loads(journal[0][2])["data"]["note"] == "顾客重复扫码，已原路退回"
    assert manager.get("/api/v1/statements/anomalies").json()["open"] == found["open"] - 1
    resolved = manager.get("/api/v1/statements/anomalies", params={"status": "resolved"}).json()
    assert [a["anomaly_id"] for a in resolved["anomalies"]] == [target["anomaly_id"]]
    assert hub.backroom("journal", "verify").returncode == 0


@pytest.mark.parametrize("method", ["alipay", "unionpay"])
def test_an_alipay_zip_and_a_unionpay_csv_through_the_cli_find_every_planted_anomaly(
    hub: Hub, day: dict[str, dict[str, Any]], tmp_path: Path, method: str
) -> None:
    rows = bill_rows(day, method)
    if method == "alipay":
        path = tmp_path / "20881021234567890156_业务明细.zip"
        path.write_bytes(bills.alipay_detail(rows, zipped=True))
        args = ["--provider", "alipay", str(path)]
    else:
        path = tmp_path / "unionpay.csv"
        path.write_bytes(bills.unionpay_csv(rows))
        args = ["--provider", "csv", "--mapping", "unionpay", str(path)]
    proc = hub.backroom("statements", "import", *args)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (answer["provider"], answer["rows"], answer["matched"]) == (method, 9, 5)
    assert kinds(answer) == planted(day, method)
    assert len(answer["anomalies"]) == 5
    before = hub.counts(STATEMENT_TABLES)
    again = hub.backroom("statements", "import", *args)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.strip().splitlines()[-1])["already_imported"] is True
    assert hub.counts(STATEMENT_TABLES) == before
    fees = hub.login("manager").get("/api/v1/statements").json()["fees"]
    assert (method, method) in {(f["provider"], f["method"]) for f in fees}


def test_bad_files_are_refused_and_nothing_is_written(hub: Hub, day: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    before = hub.counts(STATEMENT_TABLES)
    good = bills.wechat_bill(bill_rows(day, "wechat"))
    cases = {
        "gbk.csv": ("wechat", good.decode().encode("gbk")),
        "cut.csv": ("wechat", good[: len(good) - 80]),
        "noise.csv": ("alipay", bytes(range(256)) * 8),
        "utf8.csv": (
            "alipay",
            bills.alipay_detail(numbered([row("payment", "1", 100, day["alipay"]["a"]["created_at"])]))
            .decode("gbk")
            .encode("utf-8"),
        ),
    }
    for name in ("gbk.csv", "utf8.csv"):  # the CLI (a subprocess each) for two; the API below for all
        provider, data = cases[name]
        path = tmp_path / name
        path.write_bytes(data)
        proc = hub.backroom("statements", "import", "--provider", provider, str(path))
        assert proc.returncode == 2, (name, proc.stdout, proc.stderr)
        assert "nothing imported" in proc.stderr
    manager = hub.login("manager")
    for name, (provider, data) in cases.items():
        resp = manager.post("/api/v1/statements", params={"provider": provider, "name": name}, content=data)
        assert resp.status_code == 422, (name, resp.text)
        assert resp.json()["code"] == "bad_statement"
    assert hub.counts(STATEMENT_TABLES) == before


def test_roles_and_bad_input_on_the_api(hub: Hub) -> None:
    till = hub.login("cashier")
    assert till.get("/api/v1/statements").status_code == 403
    assert till.post("/api/v1/statements", params={"provider": "wechat"}, content=b"x").status_code == 403
    manager = hub.login("manager")
    for params in (
        {"provider": "paypal"},
        {"provider": "csv"},
        {"provider": "csv", "mapping": "{not json"},
        {"provider": "csv", "mapping": "nosuchpreset"},
    ):
        resp = manager.post("/api/v1/statements", params=params, content=b"a,b\n")
        assert resp.status_code == 400, (params, resp.text)
        assert set(resp.json()) >= {"code", "message"}
    assert manager.post("/api/v1/statements", params={"provider": "wechat"}, content=b"").status_code == 400
    assert manager.get("/api/v1/statements", params={"limit": 10**30}).status_code == 400
    assert manager.get("/api/v1/statements/anomalies", params={"status": "lost"}).status_code == 400
    assert manager.post("/api/v1/statements/anomalies/999999/resolve", json={"note": "x"}).status_code == 404
    assert manager.post(f"/api/v1/statements/anomalies/{10**30}/resolve", json={"note": "x"}).status_code in (400, 404)
    assert manager.post("/api/v1/statements/anomalies/1/resolve", json={"note": 5}).status_code == 400
    paths = httpx.get(f"{hub.base_url}/schema/openapi.json").json()["paths"]
    assert {"/api/v1/statements", "/api/v1/statements/anomalies"} <= set(paths)


def test_a_split_sale_is_refunded_tender_by_tender_to_the_fen(hub: Hub) -> None:
    till = hub.login("cashier")
    topup = {"topup_id": str(uuid.uuid4()), "amount": 1000, "method": "cash"}
    assert till.post("/api/v1/members/M000001/topups", json=topup).status_code == 201
    balance = till.get("/api/v1/members/M000001").json()["balance"]
    body = {
        "sale_id": str(uuid.uuid4()),
        "till_id": "T1",
        "member_id": "M000001",
        "lines": [{"barcode": BLUEBERRIES, "qty": 3}],  # gold: 5373
        "tenders": [
            {"method": "stored_value", "amount": 1000},
            {"method": "wechat", "amount": 2000, "reference": "WX-S1"},
            {"method": "alipay", "amount": 2000, "reference": "ALI-S1"},
            {"method": "cash", "amount": 500},
        ],
    }
    sale = till.post("/api/v1/sales", json=body)
    assert sale.status_code == 201, sale.text
    sale_id = sale.json()["sale_id"]
    assert (sale.json()["total"], sale.json()["change"]) == (5373, 127)

    def back(qty: int, **extra: Any) -> httpx.Response:
        return till.post(
            "/api/v1/returns",
            json={"return_id": str(uuid.uuid4()), "sale_id": sale_id, "lines": [{"line_no": 1, "qty": qty}], **extra},
        )

    assert back(1, refund_references=[{"tender_no": 9, "reference": "X"}]).json()["code"] == "unknown_tender"
    dup = [{"tender_no": 2, "reference": "X"}, {"tender_no": 2, "reference": "Y"}]
    assert back(1, refund_references=dup).status_code == 400
    first = back(1)
    assert first.status_code == 201, first.text
    assert first.json()["refund_total"] == 1791
    assert first.json()["refunds_by_tender"] == [
        {"method": "stored_value", "amount": 1000, "tender_no": 1},
        {"method": "alipay", "amount": 791, "tender_no": 3, "reference": "ALI-S1"},
    ]
    assert till.get("/api/v1/members/M000001").json()["balance"] == balance - 1000 + 1000
    second = back(2, refund_references=[{"tender_no": 2, "reference": "WX-R2"}])
    assert second.status_code == 201, second.text
    assert second.json()["refund_total"] == 3582
    assert second.json()["refunds_by_tender"] == [
        {"method": "alipay", "amount": 1209, "tender_no": 3, "reference": "ALI-S1"},
        {"method": "wechat", "amount": 2000, "tender_no": 2, "reference": "WX-R2"},
        {"method": "cash", "amount": 373, "tender_no": 4},
    ]
    assert second.json()["refunds"] == [
        {"method": "alipay", "amount": 1209},
        {"method": "wechat", "amount": 2000},
        {"method": "cash", "amount": 373},
    ]
    stored = hub.query(
        """SELECT f.tender_no, sum(f.amount) FROM return_refunds f JOIN returns r ON r.return_id = f.return_id
           WHERE r.sale_id = ? GROUP BY f.tender_no ORDER BY f.tender_no""",
        (sale_id,),
    )
    assert stored == [(1, 1000), (2, 2000), (3, 2000), (4, 373)]  # every tender back in full; cash less change


def test_a_csv_without_a_mapping_is_read_by_its_header_and_matched_against_the_method_it_names(
    hub: Hub, day: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    # CONTRACT.md's `statements import --provider csv FILE` names no mapping: the UnionPay day's bill with
    # plain English column names, no method column (the references name UnionPay's tenders)
    english = "time,merchant_id,store,reference,original_reference,order_no,type,amount,fee,net"
    data = bills.unionpay_csv(bill_rows(day, "unionpay")).replace(bills.UNIONPAY_HEADER.encode(), english.encode(), 1)
    path = tmp_path / "acquirer.csv"
    path.write_bytes(data)
    proc = hub.backroom("statements", "import", "--provider", "csv", str(path))
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (answer["provider"], answer["method"], answer["rows"], answer["matched"]) == ("csv", "unionpay", 9, 5)
    assert kinds(answer) == planted(day, "unionpay")
    path.write_bytes(b"when,how much\n2026-12-01 10:00:00,1.00\n")
    refused = hub.backroom("statements", "import", "--provider", "csv", str(path))
    assert refused.returncode == 2 and "needs a mapping" in refused.stderr and "reference" in refused.stderr
