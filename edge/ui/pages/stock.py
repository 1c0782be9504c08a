"""The stock page (库存) and its tabs: levels against thresholds, batches near expiry with the
suggested markdown, replenishment suggestions, receiving goods, stock-takes (盘点) and transfers
between stores (调拨).

Every form calls the same domain functions as the till API (`service.receive`, `stocktake.*`,
`transfers.*`). Receipts, stock-takes and transfer requests carry a client UUID drawn into the form,
so a double tap or a re-sent form books once. A stock-take's CSV import runs as a job that writes
one chunk of lines per writer call, so the till's sales are not kept waiting behind it.
"""

from __future__ import annotations

import datetime
import sqlite3
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile

from edge.api.support import actor_of
from edge.errors import ApiError
from edge.hub import Hub
from edge.sales.checkout import Replay, request_hash
from edge.stock import insights, service, stocktake
from edge.stock.insights import AlertFilter
from edge.stock.models import MovementResult, ReceiveRequest
from edge.stock.stocktake import ApproveRequest, CountIn, CsvError, OpenRequest, StocktakeView
from edge.ui.jobs import Progress
from edge.ui.nav import N_
from edge.ui.session import page
from edge.ui.view import UiView, page_offset
from hq_sync import transfers
from hq_sync.transfers import TransferCreate, TransferStep

PAGE_SIZE = 50
COUNT_PAGE_SIZE = 50
LIST_SIZE = 20
VARIANCE_ROWS = 100  # the biggest variances shown; the totals cover every line
CSV_CHUNK = 200  # lines per writer call in a CSV import
CSV_ERRORS_SHOWN = 20
MAX_QTY = 10_000_000  # as ReceiveLine and TransferLineIn allow
MAX_COUNT = 100_000_000  # as stocktake.Counted allows
RECENT_MOVEMENTS = 100_000  # "recently received" looks this far back in the ledger (no index on kind)

TABS = (
    ("levels", "/ui/stock", N_("Levels"), "stock.read"),
    ("expiring", "/ui/stock/expiring", N_("Expiring"), "stock.read"),
    ("replenishment", "/ui/stock/replenishment", N_("Replenishment"), "stock.read"),
    ("receive", "/ui/stock/receive", N_("Receive goods"), "stock.receive"),
    ("counts", "/ui/stock/counts", N_("Stock-takes"), "stock.read"),
    ("transfers", "/ui/stock/transfers", N_("Transfers"), "stock.read"),
)

ALERT_FILTERS: dict[str, AlertFilter | None] = {"": None, "low": "low", "high": "high", "any": "any"}

STOCKTAKE_STATES = {
    "open": N_("Counting"),
    "submitted": N_("Submitted, waiting for approval"),
    "approved": N_("Approved"),
    "cancelled": N_("Cancelled"),
}

TRANSFER_STATES = {
    "requested": N_("Requested"),
    "in_transit": N_("In transit"),
    "received": N_("Received"),
}


# -- small readers of form and query text --------------------------------------------------------------

def _whole(text: str, low: int, high: int) -> int | None:
    """A whole number written with ASCII digits only, within [low, high]; None for anything else."""
    cleaned = text.strip()
    if not (cleaned.isascii() and cleaned.isdigit()) or len(cleaned) > 12:
        return None
    value = int(cleaned)
    return value if low <= value <= high else None


def _days(text: str, default: int) -> int:
    value = _whole(text, 0, 365) if text.strip() else None
    return default if value is None else value


def _stocktake_path(sid: str, **query: str | int) -> str:
    kept = {k: v for k, v in query.items() if v not in ("", 0)}
    return f"/ui/stock/counts/{quote(sid, safe='')}" + (f"?{urlencode(kept)}" if kept else "")


def _resolve_item(hub: Hub, code: str) -> tuple[str, str, str, str] | None:
    """(sku, name_zh, name_en, unit) of the item a sku, shelf barcode or PLU names."""
    row = hub.db.reader().execute(
        """SELECT sku, name_zh, name_en, unit FROM items WHERE sku = ?1
           UNION ALL SELECT i.sku, i.name_zh, i.name_en, i.unit FROM barcodes b JOIN items i ON i.sku = b.sku
                     WHERE b.code = ?1
           UNION ALL SELECT sku, name_zh, name_en, unit FROM items WHERE plu = ?1 LIMIT 1""", (code,)).fetchone()
    return (str(row[0]), str(row[1]), str(row[2]), str(row[3])) if row else None


def _form_item(hub: Hub, ui: UiView, form: dict[str, str]) -> tuple[str, str, str, str] | str:
    """The item the form's `item` field names, or the notice that says why there is none."""
    _ = ui._
    code = form.get("item", "").strip()
    item = _resolve_item(hub, code) if code else None
    if item is not None:
        return item
    if not code:
        return _("Enter or scan the item's SKU, barcode or PLU.")
    return _("No item has this SKU, barcode or PLU: %(code)s") % {"code": code[:64]}


class StockView:
    """A page view with the stock page's helpers: its tabs, item names in the reader's language,
    and quantities as the ledger keeps them (units, or grams shown as kg)."""

    def __init__(self, request: Request[Any, Any, Any], tab: str) -> None:
        self.ui = UiView(request)
        self.tab = tab

    def name(self, name_zh: str, name_en: str) -> str:
        return name_zh if self.ui.lang == "zh_CN" else (name_en or name_zh)

    def qty(self, value: int | None, unit: str) -> str:
        return self.ui.fmt.grams(value) if unit == "kg" else self.ui.fmt.number(value)

    def tabs(self) -> list[dict[str, Any]]:
        return [{"key": key, "path": path, "label": self.ui._(label), "current": key == self.tab}
                for key, path, label, permission in TABS if self.ui.may(permission)]

    def render(self, template: str, status: int = 200, **context: Any) -> Response[str]:
        return self.ui.render(template, status=status, sv=self, **context)


# -- levels ----------------------------------------------------------------------------------------------

@get("/ui/stock", opt=page("stock.read"), sync_to_thread=False)
def stock_levels(request: Request[Any, Any, Any], hub: Hub, q: str = "", alert: str = "", alerts: str = "",
                 offset: str = "0") -> Response[str]:
    sv = StockView(request, "levels")
    _ = sv.ui._
    query = q.strip()[:100]
    chosen = "any" if alerts == "1" and not alert else (alert if alert in ALERT_FILTERS else "")
    start = page_offset(offset)
    found = insights.levels(hub.db.reader(), query, PAGE_SIZE, start, ALERT_FILTERS[chosen])
    kept = urlencode({k: v for k, v in (("q", query), ("alert", chosen)) if v})
    base = f"/ui/stock?{kept}&" if kept else "/ui/stock?"
    return sv.render("stock/levels.html", title=_("Stock levels"), query=query, alert=chosen, rows=found.items,
                     total=found.total, offset=start, limit=PAGE_SIZE, base=base)


# -- expiring --------------------------------------------------------------------------------------------

@get("/ui/stock/expiring", opt=page("stock.read"), sync_to_thread=False)
def stock_expiring(request: Request[Any, Any, Any], hub: Hub, days: str = "7") -> Response[str]:
    sv = StockView(request, "expiring")
    _ = sv.ui._
    within = _days(days, 7)
    found = insights.expiring(hub.db.reader(), hub.clock.today(), within, store_id=hub.store_id, at=hub.clock.now())
    return sv.render("stock/expiring.html", title=_("Expiring batches"), days=within, batches=found.batches)


# -- replenishment ---------------------------------------------------------------------------------------

@get("/ui/stock/replenishment", opt=page("stock.read"), sync_to_thread=False)
def stock_replenishment(request: Request[Any, Any, Any], hub: Hub, lead: str = "", cover: str = "") -> Response[str]:
    sv = StockView(request, "replenishment")
    _ = sv.ui._
    lead_days = _days(lead, hub.config.replenish_lead_days)
    cover_days = _days(cover, hub.config.replenish_cover_days)
    found = insights.replenishment(hub.db.reader(), hub.clock.today(), lead_days, cover_days, store_id=hub.store_id)
    return sv.render("stock/replenishment.html", title=_("Replenishment suggestions"), found=found)


# -- receiving -------------------------------------------------------------------------------------------

@get("/ui/stock/receive", opt=page("stock.receive"), sync_to_thread=False)
def stock_receive_form(request: Request[Any, Any, Any], hub: Hub) -> Response[str]:
    sv = StockView(request, "receive")
    recent = hub.db.reader().execute(
        """SELECT m.at, m.sku, i.name_zh, i.name_en, i.unit, m.qty, b.lot, b.expiry, m.user_id
           FROM stock_movements m JOIN items i ON i.sku = m.sku LEFT JOIN batches b ON b.batch_id = m.batch_id
           WHERE m.kind = 'receive' AND m.movement_id > (SELECT max(movement_id) FROM stock_movements) - ?
           ORDER BY m.movement_id DESC LIMIT 10""", (RECENT_MOVEMENTS,)).fetchall()
    return sv.render("stock/receive.html", title=sv.ui._("Receive goods"), receipt_id=uuid.uuid4(), recent=recent)


@post("/ui/stock/receive", opt=page("stock.receive"))
async def stock_receive(request: Request[Any, Any, Any], hub: Hub) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    form = await ui.form()
    back = "/ui/stock/receive"
    item = _form_item(hub, ui, form)
    if isinstance(item, str):
        return ui.redirect(back, error=item)
    sku, name_zh, name_en, unit = item
    qty = _whole(form.get("qty", ""), 1, MAX_QTY)
    if qty is None:
        return ui.redirect(back, error=_("Enter the quantity as a whole number from 1 to 10,000,000 "
                                         "(grams for weighed items: 1.5 kg is 1500)."))
    expiry_text = form.get("expiry", "").strip()
    try:
        expiry = datetime.date.fromisoformat(expiry_text) if expiry_text else None
    except ValueError:
        return ui.redirect(back, error=_("Enter the expiry date as a date, for example 2025-06-30."))
    line: dict[str, Any] = {"sku": sku, "qty": qty}
    if form.get("lot", "").strip():
        line["lot"] = form["lot"].strip()
    if expiry is not None:
        line["expiry"] = expiry.isoformat()
    try:
        req = msgspec.convert({"receipt_id": form.get("receipt_id", ""), "lines": [line],
                               "supplier": form.get("supplier", "").strip()}, ReceiveRequest)
    except msgspec.ValidationError:
        return ui.redirect(back, error=_("A lot has at most 64 characters and a supplier at most 100; "
                                         "reload the page if this repeats."))
    digest, actor, at = request_hash(req), actor_of(request), hub.clock.stamp()
    try:
        result = await hub.db.write(lambda conn: service.receive(conn, req, digest, actor, at))
    except ApiError as exc:
        return ui.redirect(back, error=ui.problem(exc))
    done = msgspec.json.decode(result.body if isinstance(result, Replay) else result, type=MovementResult)
    quantity = ui.fmt.grams(qty) if unit == "kg" else ui.fmt.number(qty)
    level = done.on_hand[sku]
    return ui.redirect(back, notice=_("Received %(qty)s of %(item)s. On hand now: %(on_hand)s.") % {
        "qty": quantity, "item": name_zh if ui.lang == "zh_CN" else name_en,
        "on_hand": ui.fmt.grams(level) if unit == "kg" else ui.fmt.number(level)})


# -- stock-takes -----------------------------------------------------------------------------------------

def _categories(hub: Hub, lang: str) -> list[tuple[str, str, bool]]:
    """(category id, name, is a subcategory), each subcategory after its parent."""
    rows = hub.db.reader().execute(
        "SELECT category_id, parent_id, name_zh, name_en FROM categories ORDER BY category_id").fetchall()
    name = {r[0]: (r[2] if lang == "zh_CN" else r[3]) for r in rows}
    out: list[tuple[str, str, bool]] = []
    for top in (r for r in rows if r[1] is None):
        out.append((top[0], name[top[0]], False))
        out += [(r[0], name[r[0]], True) for r in rows if r[1] == top[0]]
    return out


@get("/ui/stock/counts", opt=page("stock.read"), sync_to_thread=False)
def stocktakes_page(request: Request[Any, Any, Any], hub: Hub, offset: str = "0") -> Response[str]:
    sv = StockView(request, "counts")
    _ = sv.ui._
    conn = hub.db.reader()
    start = page_offset(offset)
    rows = stocktake.listing(conn, None, LIST_SIZE, start)
    total = int(conn.execute("SELECT count(*) FROM stocktakes").fetchone()[0])
    categories = _categories(hub, sv.ui.lang)
    return sv.render("stock/counts.html", title=_("Stock-takes"), rows=rows, total=total, offset=start,
                     limit=LIST_SIZE, categories=categories, category_names={c[0]: c[1] for c in categories},
                     states={k: _(v) for k, v in STOCKTAKE_STATES.items()}, stocktake_id=uuid.uuid4())


@post("/ui/stock/counts", opt=page("stock.adjust"))
async def stocktake_open(request: Request[Any, Any, Any], hub: Hub) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    form = await ui.form()
    body: dict[str, Any] = {"stocktake_id": form.get("stocktake_id", ""), "note": form.get("note", "").strip()}
    if form.get("scope", "").strip():
        body["category"] = form["scope"].strip()
    try:
        req = msgspec.convert(body, OpenRequest)
    except msgspec.ValidationError:
        return ui.redirect("/ui/stock/counts", error=_("A note has at most 200 characters; reload the page if "
                                                       "this repeats."))
    digest, actor, at = request_hash(req), actor_of(request), hub.clock.stamp()
    try:
        opened = await hub.db.write(lambda conn: stocktake.open_stocktake(conn, req, digest, actor, at))
    except ApiError as exc:
        return ui.redirect("/ui/stock/counts", error=ui.problem(exc))
    return ui.redirect(_stocktake_path(opened.stocktake_id),
                       notice=_("Stock-take opened: %(n)s items to count.") % {"n": opened.items})


class Entry(msgspec.Struct, frozen=True):
    """One row of the count sheet."""

    sku: str
    name: str
    unit: str
    counted: int | None


def _entries(hub: Hub, found: StocktakeView, sv: StockView, query: str) -> list[Entry]:
    rows = [Entry(ln.sku, sv.name(ln.name_zh, ln.name_en), ln.unit, ln.counted) for ln in found.lines]
    rows += [Entry(u.sku, sv.name(u.name_zh, u.name_en), u.unit, None) for u in found.uncounted]
    rows.sort(key=lambda e: e.sku)
    if not query:
        return rows
    scanned = _resolve_item(hub, query)
    if scanned is not None:
        return [e for e in rows if e.sku == scanned[0]]
    needle = query.casefold()
    return [e for e in rows if needle in e.sku.casefold() or needle in e.name.casefold()]


def _import_job_for(request: Request[Any, Any, Any], ui: UiView, sid: str) -> Any:
    job = request.app.state.jobs.latest(f"stocktake-import:{sid}")
    return job if job is not None and ui.claims is not None and job.owner == ui.claims.user_id else None


@get("/ui/stock/counts/{stocktake_id:uuid}", opt=page("stock.read"), sync_to_thread=False)
def stocktake_page(request: Request[Any, Any, Any], hub: Hub, stocktake_id: uuid.UUID, q: str = "",
                   offset: str = "0") -> Response[str]:
    sv = StockView(request, "counts")
    ui = sv.ui
    _ = ui._
    sid = str(stocktake_id)
    found = stocktake.view(hub.db.reader(), sid, hub.store_id, hub.clock.stamp())
    if found is None:
        return ui.render("error.html", status=404, title=_("Not found"),
                         message=_("There is no stock-take %(id)s.") % {"id": sid})
    query = q.strip()[:64]
    entries = _entries(hub, found, sv, query)
    start = page_offset(offset)
    if start >= len(entries):
        start = 0
    variances = sorted((ln for ln in found.lines if ln.variance), key=lambda ln: (ln.value, ln.sku))
    category_names = {c[0]: c[1] for c in _categories(hub, ui.lang)}
    base = _stocktake_path(sid, q=query)
    return sv.render(
        "stock/stocktake.html", title=_("Stock-take %(id)s") % {"id": sid[:8]}, st=found.stocktake, found=found,
        entries=entries[start:start + COUNT_PAGE_SIZE], entries_total=len(entries), offset=start,
        limit=COUNT_PAGE_SIZE, query=query, base=base + ("&" if "?" in base else "?"),
        variances=variances[:VARIANCE_ROWS], variances_total=len(variances),
        scope=category_names.get(found.stocktake.category or "", found.stocktake.category) if found.stocktake.category
        else _("All items"), state_name=_(STOCKTAKE_STATES[found.stocktake.state]),
        import_job=_import_job_for(request, ui, sid))


@post("/ui/stock/counts/{stocktake_id:uuid}/counts", opt=page("stock.count"))
async def stocktake_counts(request: Request[Any, Any, Any], hub: Hub, stocktake_id: uuid.UUID) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    form = await ui.form_lists()
    sid = str(stocktake_id)
    last = {key: (values[-1].strip() if values else "") for key, values in form.items()}
    back = _stocktake_path(sid, q=last.get("q", "")[:64], offset=page_offset(last.get("offset", "0")))
    counts: list[CountIn] = []
    for key, text in last.items():
        if not key.startswith("count-") or not text or text == last.get(f"prev-{key[6:]}", ""):
            continue
        sku = key[6:]
        value = _whole(text, 0, MAX_COUNT)
        if value is None or not sku or len(sku) > 64:
            return ui.redirect(back, error=_("The count for %(sku)s is not a whole number from 0 to 100,000,000 "
                                             "(units, or grams for weighed items). Nothing was saved.")
                               % {"sku": sku[:64]})
        counts.append(CountIn(counted=value, sku=sku))
    if not counts:
        return ui.redirect(back, notice=_("Nothing to save: no count was entered or changed."))
    actor, at = actor_of(request), hub.clock.stamp()
    try:
        done = await hub.db.write(lambda conn: stocktake.enter_counts(conn, sid, counts, actor, at))
    except ApiError as exc:
        return ui.redirect(back, error=ui.problem(exc))
    return ui.redirect(back, notice=_("Saved %(n)s counts. %(counted)s of %(items)s items are counted.")
                       % {"n": done.applied, "counted": done.counted, "items": done.items})


@post("/ui/stock/counts/{stocktake_id:uuid}/submit", opt=page("stock.count"))
async def stocktake_submit(request: Request[Any, Any, Any], hub: Hub, stocktake_id: uuid.UUID) -> Response[Any]:
    ui = UiView(request)
    await ui.form()
    sid, actor, at = str(stocktake_id), actor_of(request), hub.clock.stamp()
    try:
        await hub.db.write(lambda conn: stocktake.submit(conn, sid, actor, at))
    except ApiError as exc:
        return ui.redirect(_stocktake_path(sid), error=ui.problem(exc))
    return ui.redirect(_stocktake_path(sid), notice=ui._("Stock-take submitted for approval."))


@post("/ui/stock/counts/{stocktake_id:uuid}/approve", opt=page("stock.adjust"))
async def stocktake_approve(request: Request[Any, Any, Any], hub: Hub, stocktake_id: uuid.UUID) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    form = await ui.form()
    req = ApproveRequest(zero_uncounted=form.get("zero_uncounted") == "1")
    sid, actor, at = str(stocktake_id), actor_of(request), hub.clock.stamp()
    try:
        result = await hub.db.write(lambda conn: stocktake.approve(conn, sid, req, hub.store_id, actor, at))
    except ApiError as exc:
        return ui.redirect(_stocktake_path(sid), error=ui.problem(exc))
    return ui.redirect(_stocktake_path(sid), notice=_("Stock-take approved: %(n)s items adjusted, variance "
                                                      "%(value)s.") % {"n": result.adjusted,
                                                                       "value": ui.fmt.money(result.variance_value)})


@post("/ui/stock/counts/{stocktake_id:uuid}/cancel", opt=page("stock.adjust"))
async def stocktake_cancel(request: Request[Any, Any, Any], hub: Hub, stocktake_id: uuid.UUID) -> Response[Any]:
    ui = UiView(request)
    await ui.form()
    sid, actor, at = str(stocktake_id), actor_of(request), hub.clock.stamp()
    try:
        await hub.db.write(lambda conn: stocktake.cancel(conn, sid, actor, at))
    except ApiError as exc:
        return ui.redirect(_stocktake_path(sid), error=ui.problem(exc))
    return ui.redirect(_stocktake_path(sid), notice=ui._("Stock-take cancelled; stock is unchanged."))


def _chunks(text: str, size: int) -> list[tuple[int, str]]:
    """(lines before the chunk, chunk text). Later chunks start with a blank line, so the import's
    header check (line 1 only) cannot skip a real line; line L of such a chunk is line L − 1 + before."""
    lines = text.splitlines()
    return [(start, ("\n" if start else "") + "\n".join(lines[start:start + size]))
            for start in range(0, len(lines), size)]


def _import_work(hub: Hub, ui: UiView, request: Request[Any, Any, Any], sid: str,
                 text: str) -> Callable[[Progress], Any]:
    _ = ui._
    actor = actor_of(request)
    chunks = _chunks(text, CSV_CHUNK)
    total = len(text.splitlines())

    async def work(progress: Progress) -> str:
        applied, errors = 0, []
        progress(0, total)
        for before, chunk in chunks:
            at = hub.clock.stamp()

            def apply(conn: sqlite3.Connection, lines: str = chunk, at: str = at) -> stocktake.CsvImport:
                return stocktake.import_counts_csv(conn, sid, lines, actor, at, chunk=CSV_CHUNK)

            try:
                done = await hub.db.write(apply)
            except ApiError as exc:
                raise RuntimeError(_("Stopped after %(applied)s counts: %(reason)s")
                                   % {"applied": applied, "reason": ui.problem(exc)}) from exc
            shift = before - 1 if before else 0
            applied += done.applied
            errors += [CsvError(e.line + shift, e.message) for e in done.errors]
            progress(min(before + CSV_CHUNK, total), total)
        return _import_message(ui, applied, errors)

    return work


def _import_message(ui: UiView, applied: int, errors: list[CsvError]) -> str:
    _ = ui._
    done = _("%(n)s counts applied.") % {"n": applied}
    if not errors:
        return done
    shown = "; ".join(_("line %(line)s: %(message)s") % {"line": e.line, "message": e.message}
                      for e in errors[:CSV_ERRORS_SHOWN])
    more = len(errors) - CSV_ERRORS_SHOWN
    tail = (" " + _("and %(n)s more lines.") % {"n": more}) if more > 0 else ""
    return " ".join([done, _("%(n)s lines not read:") % {"n": len(errors)}, shown]) + tail


@post("/ui/stock/counts/{stocktake_id:uuid}/import", opt=page("stock.count"))
async def stocktake_import(request: Request[Any, Any, Any], hub: Hub, stocktake_id: uuid.UUID) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    form = await ui.form()
    sid = str(stocktake_id)
    back = _stocktake_path(sid)
    text = form.get("csv", "")
    upload = (await request.form()).get("file")
    if isinstance(upload, UploadFile) and upload.filename:
        raw = await upload.read()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            return ui.redirect(back, error=_("The file is not UTF-8 text; save it as CSV (UTF-8) and try again."))
    if not text.strip():
        return ui.redirect(back, error=_("Paste lines of sku,counted or choose a CSV file."))
    found = stocktake.summary(hub.db.reader(), sid)
    if found is None or found.state != "open":
        return ui.redirect(back, error=_("Counts can be imported only while the stock-take is counting."))
    job = request.app.state.jobs.start(
        f"stocktake-import:{sid}", _("Importing counts into stock-take %(id)s") % {"id": sid[:8]},
        owner=ui.claims.user_id if ui.claims else "", work=_import_work(hub, ui, request, sid, text), link=back)
    return ui.redirect(f"/ui/jobs/{job.job_id}")


# -- transfers -------------------------------------------------------------------------------------------

def _transfer_rows(hub: Hub, sv: StockView) -> dict[str, list[dict[str, Any]]]:
    """Open transfers both ways, and the last ones received, each with item names on its lines."""
    conn = hub.db.reader()
    ids = [r[0] for r in conn.execute(
        """SELECT transfer_id FROM transfers WHERE state IN ('requested', 'in_transit')
           UNION ALL SELECT transfer_id FROM (SELECT transfer_id FROM transfers WHERE state = 'received'
                                              ORDER BY received_at DESC LIMIT ?)""", (LIST_SIZE,))]
    found = [v for tid in ids if (v := transfers.view(conn, tid, hub.store_id)) is not None]
    skus = sorted({ln["sku"] for t in found for ln in t["lines"]})
    names = {r[0]: (sv.name(r[1], r[2]), r[3]) for r in conn.execute(
        "SELECT sku, name_zh, name_en, unit FROM items WHERE sku IN (SELECT value FROM json_each(?))",
        (msgspec.json.encode(skus).decode(),))}
    for t in found:
        for ln in t["lines"]:
            ln["name"], ln["unit"] = names.get(ln["sku"], (ln["sku"], "each"))
    found.sort(key=lambda t: t["requested_at"], reverse=True)
    return {"open": [t for t in found if t["state"] != "received"],
            "received": [t for t in found if t["state"] == "received"]}


@get("/ui/stock/transfers", opt=page("stock.read"), sync_to_thread=False)
def transfers_page(request: Request[Any, Any, Any], hub: Hub) -> Response[str]:
    sv = StockView(request, "transfers")
    _ = sv.ui._
    return sv.render("stock/transfers.html", title=_("Transfers"), transfers=_transfer_rows(hub, sv),
                     store_id=hub.store_id, states={k: _(v) for k, v in TRANSFER_STATES.items()},
                     transfer_id=uuid.uuid4())


@post("/ui/stock/transfers", opt=page("transfers.manage"))
async def transfer_request(request: Request[Any, Any, Any], hub: Hub) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    form = await ui.form()
    back = "/ui/stock/transfers"
    item = _form_item(hub, ui, form)
    if isinstance(item, str):
        return ui.redirect(back, error=item)
    qty = _whole(form.get("qty", ""), 1, MAX_QTY)
    if qty is None:
        return ui.redirect(back, error=_("Enter the quantity as a whole number from 1 to 10,000,000 "
                                         "(grams for weighed items: 1.5 kg is 1500)."))
    try:
        req = msgspec.convert({"transfer_id": form.get("transfer_id", ""),
                               "from_store": form.get("from_store", "").strip(),
                               "lines": [{"sku": item[0], "qty": qty}], "note": form.get("note", "").strip()},
                              TransferCreate)
    except msgspec.ValidationError:
        return ui.redirect(back, error=_("Enter the store to ask (its store ID); a note has at most 200 characters."))
    digest, actor, at = request_hash(req), actor_of(request), hub.clock.stamp()
    try:
        await hub.db.write(lambda conn: transfers.request(conn, req, digest, hub.store_id, actor, at))
    except ApiError as exc:
        return ui.redirect(back, error=ui.problem(exc))
    return ui.redirect(back, notice=_("Transfer requested from %(store)s; HQ passes it on.")
                       % {"store": req.from_store})


async def _step_form(ui: UiView, tid: str) -> TransferStep | str:
    form = await ui.form_lists()
    lines = []
    for key, values in form.items():
        if not key.startswith("qty-"):
            continue
        value = _whole(values[-1] if values else "", 0, MAX_QTY)
        if value is None:
            return ui._("The quantity for %(sku)s is not a whole number from 0 to 10,000,000. Nothing was "
                        "booked.") % {"sku": key[4:][:64]}
        lines.append({"sku": key[4:], "qty": value})
    try:
        return msgspec.convert({"lines": lines}, TransferStep)
    except msgspec.ValidationError:
        return ui._("The form does not match transfer %(id)s; reload the page.") % {"id": tid[:8]}


@post("/ui/stock/transfers/{transfer_id:uuid}/ship", opt=page("transfers.manage"))
async def transfer_ship(request: Request[Any, Any, Any], hub: Hub, transfer_id: uuid.UUID) -> Response[Any]:
    ui = UiView(request)
    back, tid = "/ui/stock/transfers", str(transfer_id)
    req = await _step_form(ui, tid)
    if isinstance(req, str):
        return ui.redirect(back, error=req)
    digest, actor, at, today = request_hash(req), actor_of(request), hub.clock.stamp(), hub.clock.today()
    try:
        await hub.db.write(lambda conn: transfers.ship(conn, tid, req, digest, hub.store_id, actor, at, today))
    except ApiError as exc:
        return ui.redirect(back, error=ui.problem(exc))
    return ui.redirect(back, notice=ui._("Transfer %(id)s shipped; it is in transit.") % {"id": tid[:8]})


@post("/ui/stock/transfers/{transfer_id:uuid}/receive", opt=page("transfers.manage"))
async def transfer_receive(request: Request[Any, Any, Any], hub: Hub, transfer_id: uuid.UUID) -> Response[Any]:
    ui = UiView(request)
    back, tid = "/ui/stock/transfers", str(transfer_id)
    req = await _step_form(ui, tid)
    if isinstance(req, str):
        return ui.redirect(back, error=req)
    digest, actor, at = request_hash(req), actor_of(request), hub.clock.stamp()
    try:
        await hub.db.write(lambda conn: transfers.receive(conn, tid, req, digest, hub.store_id, actor, at))
    except ApiError as exc:
        return ui.redirect(back, error=ui.problem(exc))
    return ui.redirect(back, notice=ui._("Transfer %(id)s received into stock.") % {"id": tid[:8]})


ROUTES: list[Any] = [stock_levels, stock_expiring, stock_replenishment, stock_receive_form, stock_receive,
                     stocktakes_page, stocktake_open, stocktake_page, stocktake_counts, stocktake_submit,
                     stocktake_approve, stocktake_cancel, stocktake_import, transfers_page, transfer_request,
                     transfer_ship, transfer_receive]
