"""The Sync page: has HQ got everything? Pairing, the outbox queue and its oldest unsent change, HQ's
acknowledgement, the feed cursor and how far behind HQ's head it is, alerts (quarantined changes,
digest mismatches, refused feed entries), escrow held for members, and the hub's database backups
(a job with a progress bar, and the files on disk).

The figures are the same reading as `GET /api/v1/sync` (`read_sync_status`); the page only adds what
the tables already hold (the oldest unsent row, escrow totals). Nothing is estimated: the sync agent
does not report a catch-up figure of its own, so a catch-up shows the feed cursor against the head
HQ last reported.
"""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.response import ServerSentEvent

from edge.api.sync_routes import SyncAlert, SyncStatus, read_sync_status
from edge.hub import Hub
from edge.ui.i18n import dates
from edge.ui.jobs import Job, JobBoard, Progress
from edge.ui.live import live_fragments
from edge.ui.nav import N_
from edge.ui.session import page
from edge.ui.view import UiView

POLL_S = 2.0
ALERTS_SHOWN = 100

ALERT_KINDS = {
    "quarantined": N_("HQ quarantined a change"),
    "digest_mismatch": N_("Daily totals differ from HQ's"),
    "grant_unknown_member": N_("Escrow grant for an unknown member"),
    "feed": N_("Change from HQ refused"),
}
ESCROW_KINDS = {
    "grant": N_("Granted by HQ"),
    "release": N_("Given back to HQ"),
    "pairing": N_("Handed to HQ at pairing"),
}


class EscrowLine(msgspec.Struct):
    kind: str
    ledger: str  # value (fen) | points
    entries: int
    amount: int


class BackupFile(msgspec.Struct):
    name: str
    size: int
    modified: str


class SyncView(msgspec.Struct):
    status: SyncStatus
    oldest_unsent_at: str | None
    agent: str  # "none" (no HQ configured) | "online" | "offline"
    escrow: list[EscrowLine]
    alerts: list[SyncAlert]  # newest first, at most ALERTS_SHOWN
    quarantined: int
    digest_alerts: int


def _backups_dir(hub: Hub) -> Path:
    return hub.config.data_dir / "backups"


def backup_files(hub: Hub) -> list[BackupFile]:
    """The finished backups (a `.part` file is one still being written), newest first: the tablet's
    database copies and the verified archives of `backroom backup` and its timer (docs/appliance-care.md)."""
    found = []
    archives = {*_backups_dir(hub).glob("backroom-*.tar"), *hub.config.backups_dir.glob("backroom-*.tar")}
    for path in [*_backups_dir(hub).glob("backroom-*.db"), *archives]:
        try:
            stat = path.stat()
        except FileNotFoundError:  # pruned while we looked
            continue
        found.append(BackupFile(path.name, stat.st_size,
                                datetime.datetime.fromtimestamp(stat.st_mtime, hub.clock.tz).isoformat()))
    return sorted(found, key=lambda f: (f.modified, f.name), reverse=True)


def read_view(request: Request[Any, Any, Any], hub: Hub) -> SyncView:
    conn = hub.db.reader()
    status = read_sync_status(conn, hub.store_id)
    row = conn.execute("SELECT created_at FROM outbox WHERE seq > ? ORDER BY seq LIMIT 1",
                       (status.acked_seq,)).fetchone()
    escrow = [EscrowLine(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in conn.execute(
        "SELECT kind, ledger, count(*), coalesce(sum(amount), 0) FROM sync_escrow GROUP BY kind, ledger "
        "ORDER BY kind, ledger")]
    agent = getattr(request.app.state, "sync", None)
    return SyncView(
        status=status, oldest_unsent_at=str(row[0]) if row else None,
        agent="none" if agent is None else ("online" if agent.online else "offline"),
        escrow=escrow, alerts=list(reversed(status.alerts[-ALERTS_SHOWN:])),
        quarantined=sum(1 for a in status.alerts if a.kind == "quarantined"),
        digest_alerts=sum(1 for a in status.alerts if a.kind == "digest_mismatch"))


def _age(ui: UiView, stamp: str | None) -> str:
    if not stamp:
        return ""
    then = datetime.datetime.fromisoformat(stamp)
    delta = datetime.datetime.now(datetime.UTC) - then
    return dates.format_timedelta(max(delta, datetime.timedelta(0)), threshold=1.5, locale=ui.fmt.locale)


def _alert_kind(kind: str) -> str:
    return ALERT_KINDS.get(kind) or (ALERT_KINDS["feed"] if kind.startswith("feed_") else kind)


def _own_backup(request: Request[Any, Any, Any], ui: UiView) -> Job | None:
    board: JobBoard = request.app.state.jobs
    mine = [job for job in board.jobs.values()
            if job.kind == "backup" and ui.claims is not None and job.owner == ui.claims.user_id]
    return max(mine, key=lambda j: j.started_at) if mine else None


def _context(request: Request[Any, Any, Any], ui: UiView) -> dict[str, Any]:
    view = read_view(request, ui.hub)
    return {"view": view, "age": _age(ui, view.oldest_unsent_at), "alert_kind": _alert_kind,
            "escrow_kinds": ESCROW_KINDS, "backups": backup_files(ui.hub)}


@get("/ui/sync", opt=page("sync.read"), sync_to_thread=False)
def sync_page(request: Request[Any, Any, Any]) -> Response[str]:
    ui = UiView(request)
    return ui.render("sync/index.html", title=ui._("Sync"), job=_own_backup(request, ui), **_context(request, ui))


def _signature(request: Request[Any, Any, Any], hub: Hub) -> tuple[Any, ...]:
    conn = hub.db.reader()
    head = conn.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]
    state = conn.execute("SELECT acked_seq, feed_cursor, feed_head, last_push_at, last_pull_at, last_digest_at "
                         "FROM sync_state WHERE id = 1").fetchone()
    alerts = conn.execute("SELECT max(alert_id), count(*), max(cleared_at) FROM sync_alerts").fetchone()
    escrow = conn.execute("SELECT count(*) FROM sync_escrow").fetchone()[0]
    agent = getattr(request.app.state, "sync", None)
    files = tuple((f.name, f.size) for f in backup_files(hub))
    return head, tuple(state) if state else None, tuple(alerts), escrow, agent.online if agent else None, files


@get("/ui/sync/events", opt=page("sync.read"))
async def sync_events(request: Request[Any, Any, Any]) -> ServerSentEvent:
    """The figures, alerts and backup list again whenever the sync tables or the backups changed."""
    ui = UiView(request)

    def render(_before: tuple[Any, ...] | None, _now: tuple[Any, ...]) -> dict[str, str]:
        context = _context(request, ui)
        return {"sync-live": ui.fragment("sync/live.html", **context),
                "backup-files": ui.fragment("sync/backups.html", **context)}

    return live_fragments(ui, lambda: _signature(request, ui.hub), render, poll_s=POLL_S)


@post("/ui/sync/backup", opt=page("backup.run"))
async def start_backup(request: Request[Any, Any, Any]) -> Response[Any]:
    ui = UiView(request)
    _ = ui._
    await ui.form()
    board: JobBoard = request.app.state.jobs
    if any(job.kind == "backup" and job.state == "running" for job in board.jobs.values()):
        return ui.redirect("/ui/sync", error=_("A backup is already running; wait for it to finish."))
    hub = ui.hub
    stamp = hub.clock.now().strftime("%Y%m%d-%H%M%S")
    assert ui.claims is not None  # the guard let a session in

    async def work(progress: Progress) -> str:
        from edge.storage.backup import backup  # on the first backup, not at the hub's start

        path = await asyncio.to_thread(backup, hub.config.db_path, _backups_dir(hub), stamp, progress)
        return _("%(file)s, %(size)s KB") % {"file": path.name, "size": ui.fmt.number(path.stat().st_size // 1024)}

    job = board.start("backup", _("Backup of the hub database"), owner=ui.claims.user_id, work=work, link="/ui/sync")
    return ui.redirect("/ui/sync", notice=_("Backup started (job %(job)s).") % {"job": job.job_id[:8]})


ROUTES: list[Any] = [sync_page, sync_events, start_backup]
