"""The store-side sync agent: pushes the outbox up, pulls the signed feed down, checks digests.

It runs inside the hub's process (started by `sync_lifespan` when an HQ URL is configured) as three
asyncio tasks that only move bytes: what to send and what an answer means is decided by
`hub_state` over the hub's own SQLite. The store always opens the connection (stores sit behind
NAT). Every failure — refused connection, timeout, a cut body, HQ restarting — ends in a backoff
and a fresh start from HQ's acknowledgement; sending something twice is harmless because HQ applies
each (store, seq) once.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import msgspec

from edge.errors import ApiError
from edge.members import ledger as member_ledger
from hq_sync import hub_state
from hq_sync.wire import (
    Ack,
    AuthorizeRequest,
    DigestReport,
    DigestVerdict,
    EscrowGrant,
    FeedPage,
    PairRequest,
    PairResult,
    StockReport,
    batch_encoder,
    compress,
    feed_page_decoder,
    new_key,
    sign_request,
    unb64,
)

if TYPE_CHECKING:
    import httpx
else:
    from edge.lazy_import import httpx  # imported on first use (docs/performance.md)

if TYPE_CHECKING:
    from litestar import Litestar

    from edge.hub import Hub

log = logging.getLogger(__name__)


class SyncSettings(msgspec.Struct, frozen=True):
    batch_rows: int = 4000
    batch_bytes: int = 2 * 1024 * 1024
    idle_s: float = 0.2  # how often an idle agent looks for new outbox rows
    long_poll_s: float = 20.0
    request_timeout_s: float = 30.0
    authorize_timeout_s: float = 1.5
    digest_interval_s: float = 300.0
    backoff_max_s: float = 5.0
    stock_report_s: float = 15.0  # how often moved stock levels go to HQ (the cross-store lookup's snapshot)
    lookup_timeout_s: float = 1.5
    member_refresh_timeout_s: float = 0.5  # a member found here refreshes its chain-wide balance from HQ

    @classmethod
    def from_env(cls) -> SyncSettings:
        """Defaults, overridden by BACKROOM_SYNC_<FIELD> (e.g. BACKROOM_SYNC_DIGEST_INTERVAL_S=2)."""
        raw = {name: os.environ[f"BACKROOM_SYNC_{name.upper()}"] for name in cls.__struct_fields__
               if os.environ.get(f"BACKROOM_SYNC_{name.upper()}")}
        return msgspec.convert(raw, cls, strict=False)


class PairingError(Exception):
    pass


# -- pairing (also used by `backroom pair`) ----------------------------------------------------------------

def _pending_key(conn: Any) -> tuple[bytes, bytes]:
    """The key this hub offers HQ, kept across attempts so a retried pairing offers the same key."""
    row = conn.execute("SELECT value FROM settings WHERE key = 'sync_pending_key'").fetchone()
    if row is not None:
        private = bytes.fromhex(row[0])
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return private, Ed25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()
    private, public = new_key()
    conn.execute("INSERT INTO settings (key, value) VALUES ('sync_pending_key', ?)", (private.hex(),))
    return private, public


def pair_with_hq(conn: Any, hq_url: str, code: str | None, demo: bool, at: str,
                 timeout_s: float = 15.0) -> PairResult:
    """Pair this hub with HQ, inside the hub's writer transaction: nothing commits between reading
    the outbox head and recording the pairing. Raises PairingError with HQ's message."""
    if hub_state.is_paired(conn):
        state = hub_state.load_state(conn)
        assert state is not None
        raise PairingError(f"already paired as {state.store_id} with {state.hq_url}")
    private, public = _pending_key(conn)
    store_row = conn.execute("SELECT value FROM settings WHERE key = 'store_id'").fetchone()
    if store_row is None:
        raise PairingError("this hub has no store id; seed it first")
    held, members = hub_state.holdings(conn)
    from hq_sync.wire import b64

    req = PairRequest(store_id=str(store_row[0]), public_key=b64(public), outbox_head=hub_state.outbox_head(conn),
                      code=code, demo=demo, holdings=held, members=members)
    try:
        resp = httpx.post(hq_url.rstrip("/") + "/hq/v1/sync/pair", content=msgspec.json.encode(req),
                          headers={"Content-Type": "application/json"}, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise PairingError(f"HQ at {hq_url} did not answer: {exc}") from None
    if resp.status_code != 200:
        try:
            message = resp.json().get("message", resp.text)
        except ValueError:
            message = resp.text
        raise PairingError(f"HQ refused the pairing ({resp.status_code}): {message}")
    result = msgspec.json.decode(resp.content, type=PairResult)
    hub_state.store_paired(conn, result, hq_url=hq_url.rstrip("/"), private_key=private, public_key=public,
                           hq_public_key=unb64(result.hq_public_key), at=at)
    conn.execute("DELETE FROM settings WHERE key = 'sync_pending_key'")
    return result


def pair_data_dir(data_dir: Path, hq_url: str, code: str | None, demo: bool = False) -> PairResult:
    from edge.clock import StoreClock
    from edge.storage.db import Database

    db = Database(data_dir / "hub.sqlite3")
    try:
        return db.write_sync(lambda conn: pair_with_hq(conn, hq_url, code, demo, StoreClock("Asia/Shanghai").stamp()))
    finally:
        db.close()


# The writes the loops hand the hub's writer (functions, not lambdas in loops: each binds its own values).

def _record_ack(ack: Ack, at: str) -> Callable[[sqlite3.Connection], None]:
    return lambda conn: hub_state.record_ack(conn, ack, at)


def _apply_feed(page: FeedPage, at: str) -> Callable[[sqlite3.Connection], hub_state.FeedOutcome]:
    return lambda conn: hub_state.apply_feed(conn, page.entries, page.head, at)


def _due_prices(at: str) -> Callable[[sqlite3.Connection], int]:
    return lambda conn: hub_state.apply_due_prices(conn, at)


# -- the agent ---------------------------------------------------------------------------------------------

def recheck_delay(interval_s: float, streak: int) -> float:
    """Seconds until the digests are compared again after a resend: soon at first (a lost batch is
    mended at once), then 4x longer each time the same days still differ (a row HQ keeps quarantining
    must not have a whole day resent every two seconds), never longer than the normal interval."""
    return min(interval_s, 2.0 * float(4 ** min(streak, 8)))


class SyncAgent:
    def __init__(self, hub: Hub, hq_url: str, settings: SyncSettings | None = None) -> None:
        self.hub = hub
        self.hq_url = hq_url.rstrip("/")
        self.settings = settings or SyncSettings()
        self.online = False
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None
        self._resend: list[tuple[int, int]] = []
        self._next_digest = 0.0
        self._mismatch: tuple[list[str], int] = ([], 0)  # the days that last differed, and for how many checks
        self._stopping = False
        self._pairing = asyncio.Lock()
        self._push_now = asyncio.Event()  # set when a release waits in the outbox: push without idling

    # -- lifecycle
    async def start(self) -> None:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise in the hub's log
        limits = httpx.Limits(max_connections=8, max_keepalive_connections=4)
        self._client = httpx.AsyncClient(timeout=self.settings.request_timeout_s, limits=limits)
        self._next_digest = time.monotonic() + min(self.settings.digest_interval_s, 5.0)
        for name, loop in (("push", self._push_loop), ("feed", self._feed_loop), ("prices", self._prices_loop),
                           ("stock", self._stock_loop)):
            self._tasks.append(asyncio.create_task(self._guard(name, loop), name=f"sync-{name}"))

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self._client is not None:
            await self._client.aclose()

    async def _guard(self, name: str, loop: Any) -> None:
        """Run a loop forever: an unexpected error is logged and the loop starts again after a pause."""
        while not self._stopping:
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 -- the agent must outlive any one failure
                log.exception("sync %s loop failed; restarting it", name)
                await asyncio.sleep(1.0)

    # -- helpers
    def _stamp(self) -> str:
        return self.hub.clock.stamp()

    async def _read(self, fn: Any, *args: Any) -> Any:
        """Run a read on a worker thread's own read connection (never on the event loop's)."""
        return await asyncio.to_thread(lambda: fn(self.hub.db.reader(), *args))

    async def _state(self) -> hub_state.SyncState | None:
        return await self._read(hub_state.load_state)  # type: ignore[no-any-return]

    async def _request(self, state: hub_state.SyncState, method: str, path: str, params: dict[str, Any] | None = None,
                       body: bytes = b"", headers: dict[str, str] | None = None,
                       timeout: float | None = None) -> httpx.Response:
        assert self._client is not None
        target = path + (f"?{urlencode(params)}" if params else "")
        signed = sign_request(state.private_key, state.store_id, method, target, int(time.time()), body)
        return await self._client.request(method, self.hq_url + target, content=body,
                                          headers={**signed, **(headers or {})},
                                          timeout=timeout or self.settings.request_timeout_s)

    async def call_hq(self, method: str, path: str, *, body: bytes = b"", timeout: float | None = None,
                      params: dict[str, str] | None = None) -> httpx.Response | None:
        """One signed request to HQ (`hq_sync.caller.HqCaller`): None when this hub is not paired."""
        state = await self._state()
        if state is None:
            return None
        headers = {"Content-Type": "application/json"} if body else None
        return await self._request(state, method, path, params=params, body=body, headers=headers,
                                   timeout=timeout or self.settings.authorize_timeout_s)

    async def _paired_state(self) -> hub_state.SyncState | None:
        state = await self._state()
        if state is not None:
            return state
        async with self._pairing:  # the push and feed loops both get here at start; one pairs
            return await self._pair_demo()

    async def _pair_demo(self) -> hub_state.SyncState | None:
        state = await self._state()
        if state is not None:
            return state
        demo = await self._read(lambda c: c.execute("SELECT 1 FROM settings WHERE key = 'demo'").fetchone())
        if demo is None:
            log.warning("not paired with HQ; run `backroom pair --hq %s --code CODE`", self.hq_url)
            return None
        at = self._stamp()
        try:
            await self.hub.db.write(lambda conn: pair_with_hq(conn, self.hq_url, None, True, at))
            log.info("demo store paired with the demo HQ at %s", self.hq_url)
        except PairingError as exc:
            log.warning("demo pairing failed: %s", exc)
            return None
        return await self._state()

    async def _backoff(self, failures: int) -> None:
        delay = min(self.settings.backoff_max_s, 0.1 * (2 ** min(failures, 8)))
        await asyncio.sleep(delay * (0.5 + random.random() / 2))

    # -- up
    async def _push_loop(self) -> None:
        failures = 0
        synced = False  # asked HQ for its ack since the last failure?
        while True:
            state = await self._paired_state()
            if state is None:
                await asyncio.sleep(2.0)
                continue
            try:
                if not synced:
                    resp = await self._request(state, "GET", "/hq/v1/sync/state")
                    resp.raise_for_status()
                    acked = int(resp.json()["acked"])
                    if acked != state.acked_seq:
                        at = self._stamp()
                        await self.hub.db.write(_record_ack(Ack(acked=acked), at))
                        state = msgspec.structs.replace(state, acked_seq=acked)
                    synced = True
                sent = await self._push_once(state)
                self.online = True
                failures = 0
                if not sent:
                    if time.monotonic() >= self._next_digest:
                        await self._check_digests(state)
                    await self._idle()
            except (httpx.HTTPError, ValueError, KeyError, msgspec.DecodeError) as exc:
                self.online = False
                synced = False
                failures += 1
                log.info("sync push failed (%s: %s); retrying", type(exc).__name__, exc)
                await self._backoff(failures)

    async def _idle(self) -> None:
        """Sleep `idle_s`, or less when something must go up at once (a release HQ is waiting for)."""
        try:
            await asyncio.wait_for(self._push_now.wait(), self.settings.idle_s)
        except TimeoutError:
            pass
        self._push_now.clear()

    async def _push_once(self, state: hub_state.SyncState) -> bool:
        """Send one batch; False if there was nothing to send."""
        s = self.settings
        if self._resend:
            lo, hi = self._resend[0]
            batch = await self._read(lambda c: hub_state.next_batch(c, state.store_id, lo - 1, upto=hi,
                                                                    max_rows=s.batch_rows, max_bytes=s.batch_bytes))
            if not batch.rows or batch.rows[-1].seq >= hi:
                self._resend.pop(0)
            elif batch.rows:
                self._resend[0] = (batch.rows[-1].seq + 1, hi)
        else:
            batch = await self._read(lambda c: hub_state.next_batch(c, state.store_id, state.acked_seq,
                                                                    max_rows=s.batch_rows, max_bytes=s.batch_bytes))
        if not batch.rows:
            return False
        body, encoding = await asyncio.to_thread(lambda: compress(batch_encoder.encode(batch)))
        resp = await self._request(state, "POST", "/hq/v1/sync/batches", body=body,
                                   headers={"Content-Type": "application/msgpack", "Content-Encoding": encoding})
        if resp.status_code != 200:
            raise httpx.HTTPStatusError(f"HQ answered {resp.status_code}: {resp.text[:200]}", request=resp.request,
                                        response=resp)
        ack = msgspec.json.decode(resp.content, type=Ack)
        at = self._stamp()
        await self.hub.db.write(lambda conn: hub_state.record_ack(conn, ack, at))
        if ack.acked < batch.rows[-1].seq and not self._resend:
            # HQ holds less than we sent (it lost rows, or deferred them past a gap): the next batch
            # starts at its ack; pause so a persistent disagreement does not spin.
            await asyncio.sleep(self.settings.idle_s)
        return True

    async def _check_digests(self, state: hub_state.SyncState) -> None:
        self._next_digest = time.monotonic() + self.settings.digest_interval_s
        since = (datetime.date.today() - datetime.timedelta(days=7)).isoformat()
        rows = await self._read(hub_state.digests, state.acked_seq, since)
        body = msgspec.json.encode(DigestReport(rows=rows, upto=state.acked_seq))
        resp = await self._request(state, "POST", "/hq/v1/sync/digests", body=body,
                                   headers={"Content-Type": "application/json"})
        resp.raise_for_status()
        verdict = msgspec.json.decode(resp.content, type=DigestVerdict)
        at = self._stamp()

        def record(conn: Any) -> None:
            conn.execute("UPDATE sync_state SET last_digest_at = ? WHERE id = 1", (at,))
            if verdict.mismatched:
                for day in verdict.mismatched:
                    hub_state.add_alert(conn, "digest_mismatch", day, f"HQ's digest for {day} differs; resending", at)
            else:
                hub_state.clear_alerts(conn, "digest_mismatch", at)

        await self.hub.db.write(record)
        days, streak = self._mismatch
        streak = streak + 1 if verdict.mismatched and verdict.mismatched == days else 0
        self._mismatch = (verdict.mismatched, streak)
        if verdict.resend:
            self._resend.extend(verdict.resend)
            self._next_digest = time.monotonic() + recheck_delay(self.settings.digest_interval_s, streak)

    # -- down
    async def _feed_loop(self) -> None:
        failures = 0
        while True:
            state = await self._paired_state()
            if state is None:
                await asyncio.sleep(2.0)
                continue
            try:
                params = {"after": state.feed_cursor, "wait": self.settings.long_poll_s, "limit": 500}
                resp = await self._request(state, "GET", "/hq/v1/sync/feed", params=params,
                                           timeout=self.settings.long_poll_s + self.settings.request_timeout_s)
                resp.raise_for_status()
                page = feed_page_decoder.decode(resp.content)
                failures = 0
                self.online = True
                if not page.entries:
                    continue
                at = self._stamp()
                outcome = await self.hub.db.write(_apply_feed(page, at))
                if outcome.reclaimed:
                    self._push_now.set()  # an authorisation at another store waits for this release
                if any(problem != "replayed" for _, problem in outcome.refused):
                    await asyncio.sleep(self.settings.backoff_max_s)  # refused entries: alerted; do not spin
            except (httpx.HTTPError, ValueError, msgspec.DecodeError) as exc:
                self.online = False
                failures += 1
                log.info("sync feed failed (%s: %s); retrying", type(exc).__name__, exc)
                await self._backoff(failures)

    async def _prices_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if await self._read(lambda c: c.execute("SELECT 1 FROM sync_pending_prices LIMIT 1").fetchone()):
                at = self._stamp()
                await self.hub.db.write(_due_prices(at))

    async def _stock_loop(self) -> None:
        """Send HQ the on-hand of every sku that moved since the last report (everything at first)."""
        from hq_sync import transfers

        reported = 0
        while True:
            await asyncio.sleep(self.settings.stock_report_s)
            state = await self._state()
            if state is None:
                continue
            marker, levels = await self._read(transfers.levels_since, reported)
            if marker == reported and reported:
                continue
            body = msgspec.json.encode(StockReport(at=self._stamp(), levels=levels))
            try:
                resp = await self._request(state, "POST", "/hq/v1/sync/stock", body=body,
                                           headers={"Content-Type": "application/json"})
            except httpx.HTTPError as exc:
                log.info("stock report failed (%s); retrying later", exc)
                continue
            if resp.status_code == 200:
                reported = marker

    async def stock_elsewhere(self, sku: str) -> Any:
        """Other stores' on-hand of `sku` from HQ's snapshot (short timeout); None when HQ does not answer."""
        state = await self._state()
        if state is None:
            return None
        try:
            resp = await self._request(state, "GET", f"/hq/v1/sync/stock/{sku}",
                                       timeout=self.settings.lookup_timeout_s)
        except httpx.HTTPError:
            return None
        if resp.status_code != 200:
            return None
        return resp.json()

    # -- online spends
    async def authorize(self, member_id: str, ledger: str, needed: int, request_id: str) -> SpendCheck:
        """Ask HQ for the escrow a spend lacks (short timeout); apply the grant before the sale commits.
        The answer says what a refusal at the till must be called: HQ unreachable → `offline`;
        HQ's `held_elsewhere` → `held_elsewhere`; otherwise the plain local refusal."""
        if needed <= 0:
            return SpendCheck(ledger)
        state = await self._state()
        if state is None:
            return SpendCheck(ledger)
        points, balance = await self._read(member_ledger.balances, member_id)
        short = needed - (balance if ledger == "value" else points)
        if short <= 0:
            return SpendCheck(ledger)
        if not self.online:
            return SpendCheck(ledger, "offline")
        timeout = self.settings.authorize_timeout_s
        body = msgspec.json.encode(AuthorizeRequest(
            request_id=f"{request_id}:{ledger}", member_id=member_id, ledger=ledger,  # type: ignore[arg-type]
            amount=short, wait_ms=max(0, int((timeout - AUTHORIZE_MARGIN_S) * 1000))))
        try:
            resp = await self._request(state, "POST", "/hq/v1/sync/authorize", body=body,
                                       headers={"Content-Type": "application/json"}, timeout=timeout)
        except httpx.HTTPError as exc:
            log.info("HQ authorisation for %s failed (%s); spending from escrow only", member_id, exc)
            return SpendCheck(ledger, "offline")
        if resp.status_code == 200:
            grant = msgspec.json.decode(resp.content, type=EscrowGrant)
            at = self._stamp()
            await self.hub.db.write(lambda conn: hub_state.apply_grant(conn, grant, at))
            return SpendCheck(ledger, "granted")
        if resp.status_code >= 500:
            return SpendCheck(ledger, "offline")  # HQ did not really answer
        try:
            answer = msgspec.json.decode(resp.content, type=_Refusal)
        except msgspec.DecodeError:
            return SpendCheck(ledger)
        if answer.code == "held_elsewhere":
            return SpendCheck(ledger, "held_elsewhere", hq_available=answer.available)
        return SpendCheck(ledger)


AUTHORIZE_MARGIN_S = 0.3  # HQ stops waiting for releases this long before the store stops waiting for HQ


class _Refusal(msgspec.Struct):
    code: str = ""
    available: int = 0


class SpendCheck(msgspec.Struct):
    """What asking HQ for a spend's missing escrow came to, per ledger: `local` (nothing to ask, or HQ
    refused because the chain-wide holdings are short), `granted`, `offline` (HQ unreachable or not
    answering in time) or `held_elsewhere` (HQ has `hq_available` unallocated; the rest sits at a
    store that did not release it in time)."""

    ledger: str
    outcome: str = "local"
    hq_available: int = 0


async def authorize_tenders(app_state: Any, member_id: str | None, tenders: list[Any],
                            request_id: str) -> list[SpendCheck]:
    """Called by the sale and exchange routes before they commit: online, get HQ's grant for what the
    hub's escrow lacks. A no-op without an HQ (the local ledger is the truth)."""
    agent: SyncAgent | None = getattr(app_state, "sync", None)
    if agent is None or member_id is None:
        return []
    value = sum(t.amount for t in tenders if t.method == "stored_value")
    points = sum(t.amount for t in tenders if t.method == "points")
    return [await agent.authorize(member_id, ledger, amount, request_id)
            for ledger, amount in (("value", value), ("points", points)) if amount]


def spend_refusal(checks: list[SpendCheck], exc: ApiError) -> ApiError:
    """The refusal a till sees when the local escrow could not cover a spend (`exc`, the checkout's
    402 `insufficient_*` with `available`): `offline_limit` with `available_here` when HQ could not be
    asked, `held_elsewhere` when HQ says the money sits at a store that did not release it in time;
    otherwise `exc` itself (HQ agreed the chain-wide holdings are short, or the hub is standalone)."""
    if exc.status != 402 or exc.code not in ("insufficient_balance", "insufficient_points"):
        return exc
    ledger = "value" if exc.code == "insufficient_balance" else "points"
    check = next((c for c in checks if c.ledger == ledger), None)
    here = int(exc.extra.get("available", 0))
    unit = "fen" if ledger == "value" else "points"
    if check is not None and check.outcome == "offline":
        return ApiError(402, "offline_limit", f"HQ cannot be reached and this store may spend only {here} {unit} "
                        "of the member's holdings", available_here=here, available=here, ledger=ledger)
    if check is not None and check.outcome == "held_elsewhere":
        return ApiError(402, "held_elsewhere", "the member's money is held by another store that did not release "
                        f"it in time; {here + check.hq_available} {unit} can be spent now", available_here=here,
                        available=here + check.hq_available, ledger=ledger)
    return exc


async def start_agent(app_state: Any, hub: Hub, hq_url: str) -> SyncAgent:
    """Start the sync agent and make it the hub's (`app.state.sync`); sync_lifespan stops it. Also how the
    tablet's pairing page starts syncing at once after a pairing, without a restart."""
    agent = SyncAgent(hub, hq_url, SyncSettings.from_env())
    await agent.start()
    app_state.sync = agent
    return agent


def _paired_url(hub: Hub) -> str | None:
    state = hub_state.load_state(hub.db.reader())
    return state.hq_url if state is not None else None


@asynccontextmanager
async def sync_lifespan(app: Litestar) -> AsyncIterator[None]:
    """The hub's lifespan hook: run the agent while the hub runs, when an HQ URL is configured (or, with
    `hq_from_pairing`, when the hub is paired); stop whichever agent runs at the end (one may have been started
    by a pairing from the tablet)."""
    hub: Hub = app.state.hub
    app.state.sync = None
    url = hub.config.hq_url or (_paired_url(hub) if hub.config.hq_from_pairing else None)
    if url:
        await start_agent(app.state, hub, url)
    try:
        yield
    finally:
        agent: SyncAgent | None = app.state.sync
        app.state.sync = None
        if agent is not None:
            await agent.stop()
