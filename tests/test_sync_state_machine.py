"""Random schedules of sales, member spends, top-ups, grants, reclaims, escrow policy turns and a lossy
network between two hubs and HQ (hypothesis state machine, in process: real hub SQLite files, a real HQ SQLite file).

Invariants after every step: HQ never holds a member's balance below zero nor allocates more escrow
than the balance; no delta is ever quarantined (a hub never spends beyond what HQ counts as its
escrow); HQ holds no sale the hubs did not make. After healing: HQ holds every sale exactly once, the
balance is the opening balance plus top-ups minus spends, and each store's escrow at HQ equals what
the hub holds.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sync_support import cli

from edge.members import ledger as member_ledger
from edge.outbox import queue as outbox
from edge.storage.db import Database
from hq_sync import hub_state
from hq_sync.protocol import DeltaTender, SaleDelta, TopupDelta
from hq_sync.server.api.resources import Hq
from hq_sync.server.service import feed, members, stores
from hq_sync.server.service.access import system_principal
from hq_sync.server.service.errors import HqError
from hq_sync.server.service.escrow import EscrowPolicy, run_policy
from hq_sync.server.service.ingest import ingest
from hq_sync.wire import AuthorizeRequest, Batch, PairRequest, b64, new_key

AT = "2026-05-01T10:00:00.000+08:00"
ADMIN = system_principal()
STORES = ("demo-001", "demo-002")
MEMBER = "M000001"
OPENING = 20000
ACTOR = hub_state.SYNC_ACTOR


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("template")
    for store in STORES:
        assert cli("seed", "--demo", "--store", store, "--data", str(root / store)).returncode == 0
    return root


class SyncMachine(RuleBasedStateMachine):
    template: Path

    @initialize()
    def start(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sync-sm-"))
        self.hq = Hq(str(self.root / "hq.sqlite3"), demo=True)
        self.hubs: dict[str, Database] = {}
        self.sales: dict[str, set[str]] = {s: set() for s in STORES}
        self.spent = 0
        self.topped = 0
        self.stale: list[tuple[str, Batch]] = []
        for store in STORES:
            shutil.copytree(self.template / store, self.root / store)
            db = Database(self.root / store / "hub.sqlite3")
            private, public = new_key()
            held, members = db.write_sync(hub_state.holdings)
            head = db.reader().execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]
            result = stores.pair(self.hq.db, PairRequest(store, b64(public), head, demo=True, holdings=held,
                                                          members=members),
                                  self.hq.private_key, self.hq.public_key, True, AT)
            db.write_sync(lambda c, r=result, k=private, p=public: hub_state.store_paired(
                c, r, hq_url="x", private_key=k, public_key=p, hq_public_key=self.hq.public_key, at=AT))
            self.hubs[store] = db

    def teardown(self) -> None:
        if not hasattr(self, "hubs"):
            return
        try:
            for _ in range(20):  # heal: push and pull until nothing moves
                for store in STORES:
                    while self._push(store, "ok"):
                        pass
                    self._pull(store)
            for store in STORES:
                assert all(not self._push(store, "ok") for _ in range(1))
            with self.hq.db.read() as tx:
                for store in STORES:
                    held = {r[0] for r in tx.all("SELECT sale_id FROM hq_sales WHERE store_id = ?", (store,))}
                    assert held == self.sales[store]
                row = tx.one("SELECT balance FROM hq_members WHERE member_id = ?", (MEMBER,))
                assert row is not None and int(row[0]) == OPENING + self.topped - self.spent
                for store in STORES:
                    out = tx.one("SELECT coalesce(sum(outstanding), 0) FROM hq_escrow WHERE member_id = ? "
                                 "AND store_id = ? AND ledger = 'value'", (MEMBER, store))
                    assert out is not None and int(out[0]) == self._local(store)
        finally:
            for db in self.hubs.values():
                db.close()
            self.hq.close()
            shutil.rmtree(self.root, ignore_errors=True)

    # -- the hubs' side
    def _local(self, store: str) -> int:
        return member_ledger.balances(self.hubs[store].reader(), MEMBER)[1]

    def _sale_delta(self, value_spent: int, total: int) -> SaleDelta:
        return SaleDelta(sale_id=str(uuid.uuid4()), receipt_no="R", till_id="T1", user_id="U", at=AT, lines=[],
                         tenders=[DeltaTender("stored_value" if value_spent else "cash", total)], subtotal=total,
                         discount=0, total=total, tax=0, change=0, journal_seq=0,
                         member_id=MEMBER if value_spent else None, value_spent=value_spent)

    @rule(store=st.sampled_from(STORES), total=st.integers(1, 5000))
    def cash_sale(self, store: str, total: int) -> None:
        delta = self._sale_delta(0, total)
        self.hubs[store].write_sync(lambda c: outbox.append(c, delta, delta.sale_id, AT))
        self.sales[store].add(delta.sale_id)

    @rule(store=st.sampled_from(STORES), amount=st.integers(1, 4000))
    def member_spend(self, store: str, amount: int) -> None:
        """A stored-value sale as commit_sale does it: the local (escrow) ledger refuses to go below zero."""
        delta = self._sale_delta(amount, amount)

        def commit(c: object) -> None:
            member_ledger.post(c, "value", MEMBER, -amount, "spend", delta.sale_id, ACTOR, AT)  # type: ignore[arg-type]
            outbox.append(c, delta, delta.sale_id, AT)  # type: ignore[arg-type]

        try:
            self.hubs[store].write_sync(commit)
        except member_ledger.Insufficient:
            return
        self.sales[store].add(delta.sale_id)
        self.spent += amount

    @rule(store=st.sampled_from(STORES), amount=st.integers(1, 3000))
    def topup(self, store: str, amount: int) -> None:
        topup_id = str(uuid.uuid4())
        delta = TopupDelta(topup_id=topup_id, member_id=MEMBER, amount=amount, method="cash", user_id="U", at=AT,
                           journal_seq=0)

        def commit(c: object) -> None:
            member_ledger.post(c, "value", MEMBER, amount, "topup", topup_id, ACTOR, AT)  # type: ignore[arg-type]
            outbox.append(c, delta, topup_id, AT)  # type: ignore[arg-type]

        self.hubs[store].write_sync(commit)
        self.topped += amount

    @rule(store=st.sampled_from(STORES), fault=st.sampled_from(["ok", "lost_request", "lost_response", "duplicate",
                                                                  "stale_later"]))
    def push(self, store: str, fault: str) -> None:
        self._push(store, fault)

    def _push(self, store: str, fault: str) -> bool:
        db = self.hubs[store]
        state = hub_state.load_state(db.reader())
        assert state is not None
        batch = hub_state.next_batch(db.reader(), store, state.acked_seq, max_rows=4)
        batch = msgspec.msgpack.decode(msgspec.msgpack.encode(batch), type=Batch)  # as it travels
        if not batch.rows:
            return False
        if fault == "lost_request":
            return True
        if fault == "stale_later":
            self.stale.append((store, batch))
        ack = ingest(self.hq.db, batch, AT)
        if fault == "duplicate":
            ack = ingest(self.hq.db, batch, AT)
        if fault != "lost_response":
            db.write_sync(lambda c: hub_state.record_ack(c, ack, AT))
        return True

    @rule()
    def stale_batch_arrives(self) -> None:
        if self.stale:
            store, batch = self.stale.pop(0)
            ack = ingest(self.hq.db, batch, AT)
            assert ack.applied == 0

    @rule(store=st.sampled_from(STORES))
    def pull(self, store: str) -> None:
        self._pull(store)

    def _pull(self, store: str) -> None:
        db = self.hubs[store]
        state = hub_state.load_state(db.reader())
        assert state is not None
        page = feed.read_feed(self.hq.db, store, state.feed_cursor, 50)
        if page.entries:
            db.write_sync(lambda c: hub_state.apply_feed(c, page.entries, page.head, AT))

    # -- HQ's side
    @rule(store=st.sampled_from(STORES), amount=st.integers(1, 6000), answered=st.booleans())
    def authorize(self, store: str, amount: int, answered: bool) -> None:
        try:
            g = members.authorize(self.hq.db, self.hq.private_key, store,
                                  AuthorizeRequest(str(uuid.uuid4()), MEMBER, "value", amount), AT)
        except HqError:
            return
        if answered:  # else the grant arrives later through the feed
            self.hubs[store].write_sync(lambda c: hub_state.apply_grant(c, g, AT))

    @rule(store=st.sampled_from(STORES), amount=st.integers(1, 8000))
    def admin_grant(self, store: str, amount: int) -> None:
        try:
            members.grant(self.hq.db, ADMIN, self.hq.private_key, MEMBER, store, "value", amount, AT)
        except HqError:
            pass

    @rule(shopped=st.sets(st.sampled_from(STORES)), sweep=st.booleans(), home=st.integers(0, 100),
          share=st.integers(0, 100), later=st.integers(0, 2))
    def escrow_policy(self, shopped: set[str], sweep: bool, home: int, share: int, later: int) -> None:
        """The policy timer's turn: standing home escrow, shop-share grants, idle reclaims (`later` days on)."""
        policy = EscrowPolicy(home_share_pct=home, shop_share_pct=share, min_grant=1, idle_reclaim_s=86400)
        run_policy(self.hq.db, self.hq.private_key, policy, {(MEMBER, s) for s in shopped}, sweep, set(), AT,
                   now_s=int(time.time()) + later * 86400)

    @rule(amount=st.one_of(st.none(), st.integers(1, 5000)))
    def reclaim(self, amount: int | None) -> None:
        members.reclaim(self.hq.db, ADMIN, self.hq.private_key, MEMBER, "value", amount, AT)

    @invariant()
    def hq_never_overspends_nor_overallocates(self) -> None:
        if not hasattr(self, "hq"):
            return
        view = members.member_view(self.hq.db, ADMIN, MEMBER)
        assert view["balance"] >= 0
        assert view["unallocated_balance"] >= 0
        assert stores.quarantine(self.hq.db, ADMIN, STORES[0]) == []
        assert stores.quarantine(self.hq.db, ADMIN, STORES[1]) == []
        with self.hq.db.read() as tx:
            for store in STORES:
                held = {r[0] for r in tx.all("SELECT sale_id FROM hq_sales WHERE store_id = ?", (store,))}
                assert held <= self.sales[store]


def test_random_schedules_never_lose_duplicate_or_overspend(template: Path) -> None:
    from hypothesis.stateful import run_state_machine_as_test

    SyncMachine.template = template
    run_state_machine_as_test(SyncMachine, settings=settings(
        max_examples=25, stateful_step_count=30, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
