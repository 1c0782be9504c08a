"""Backups of a hub's data directory, and restoring one (docs/appliance-care.md).

Two kinds live here:

- `backup()`: the tablet's quick copy of the hub database alone (`<data>/backups/backroom-*.db`).
- `backup_box()`: what `backroom backup` and the backup timer take. One tar file
  `backroom-<stamp>.tar` (mode 0600) holding `manifest.json` first, then every SQLite database of the
  data directory copied with SQLite's online backup API (consistent while tills keep selling), the
  members' key file (`pii.key`: the sealed personal data cannot be read without it), the token key
  (`secret.key`) and the broker's registry and credentials (`mqtt/`). The manifest records each
  file's sha256 and size, the journal's count and head hash, the store and the time. Each copied
  database is checked (`PRAGMA integrity_check` and a journal walk) and then stored in the archive as
  one zstd frame (`stored: "zstd"` in its manifest entry; a busy store's database shrinks about
  sevenfold, and on an SD card the nightly backup is the box's biggest writer). The archive is read back
  and every member's sha256 (of the decompressed content) checked against the manifest before it gets
  its final name, so a `backroom-*.tar` is a verified backup; retention keeps the newest N.

`restore()` verifies an archive the same way, then (unless a dry run) moves the files it replaces
into `<data>/replaced-<stamp>/` and puts the backup's in their place. It refuses while a hub holds
the data directory's lock (`edge/storage/care.py`).
"""

from __future__ import annotations

import datetime
import hashlib
import io
import os
import shutil
import sqlite3
import tarfile
import tempfile
import typing
from collections.abc import Callable
from pathlib import Path

import msgspec
import zstandard

from edge import __version__
from edge.journal.chain import verify as verify_journal
from edge.storage.durable import fsync_dir

PAGES_PER_STEP = 512
FORMAT = 2  # 2: databases stored as zstd frames (entries with `stored`); format 1 archives still restore
ZSTD_LEVEL = 3
MANIFEST = "manifest.json"
ARCHIVE_GLOB = "backroom-*.tar"
# The broker's files a restore needs (the rest, pid file and persistence, are the running broker's).
MQTT_FILES = ("broker.json", "registry.json", "secrets.json", "mosquitto.conf", "passwd.lan", "acl.lan",
              "passwd.local", "acl.local")
KEY_FILES = ("pii.key", "secret.key")
HUB_DB = "hub.sqlite3"


class BackupError(RuntimeError):
    pass


class FileEntry(msgspec.Struct, frozen=True):
    path: str  # relative to the data directory, '/'-separated
    sha256: str
    bytes: int
    kind: str  # "database", "key", "config"
    stored: str = ""  # how the member holds the file: "" as is, "zstd" one zstd frame of it


class JournalHead(msgspec.Struct, frozen=True):
    count: int
    head: str


class Manifest(msgspec.Struct, frozen=True):
    format: int
    created_at: str  # UTC, RFC 3339
    store_id: str | None
    version: str
    files: list[FileEntry]
    journal: JournalHead | None
    verified: bool = True


class Verified(msgspec.Struct, frozen=True):
    path: str
    manifest: Manifest
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


# -- the tablet's database copy ------------------------------------------------------------------------------

def backup(source: Path, dest_dir: Path, stamp: str, progress: Callable[[int, int], None] | None = None,
           keep: int = 7) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / f"backroom-{stamp}.db"
    partial = final.with_suffix(".db.part")
    _copy_database(source, partial, progress, PAGES_PER_STEP)
    partial.replace(final)  # a backup file exists only once it is whole
    for old in sorted(dest_dir.glob("backroom-*.db"))[:-keep]:
        old.unlink()
    return final


def _copy_database(source: Path, target: Path, progress: Callable[[int, int], None] | None = None,
                   pages: int = -1) -> None:
    """Copy a live database. In one step by default: one read transaction, which in WAL mode does not block
    the writer and cannot be restarted by it (a stepped copy starts over whenever a sale commits between
    two steps, and on a busy till may never finish)."""
    src = sqlite3.connect(source)
    dst = sqlite3.connect(target)
    try:
        def step(_status: int, remaining: int, total: int) -> None:
            if progress is not None:
                progress(total - remaining, total)

        src.backup(dst, pages=pages, progress=step)
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        dst.close()
        src.close()


# -- what a box backup holds ---------------------------------------------------------------------------------

def databases(data_dir: Path) -> list[Path]:
    """The SQLite databases of a data directory (its top level; WAL and shm files are not databases)."""
    found = [p for p in sorted(data_dir.iterdir()) if p.is_file() and p.suffix in (".sqlite3", ".db")]
    return found


def _extra_files(data_dir: Path) -> list[tuple[str, str]]:
    """(relative path, kind) of the keys and configuration beside the databases."""
    out: list[tuple[str, str]] = [(name, "key") for name in KEY_FILES if (data_dir / name).is_file()]
    out += [(p.name, "config") for p in sorted(data_dir.glob("*.toml")) if p.is_file()]
    out += [(f"mqtt/{name}", "config") for name in MQTT_FILES if (data_dir / "mqtt" / name).is_file()]
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_database(path: Path) -> tuple[list[str], JournalHead | None]:
    """`PRAGMA integrity_check` and, for a hub database, a walk of the journal: (problems, journal head)."""
    problems: list[str] = []
    head: JournalHead | None = None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return [f"{path.name}: cannot open: {exc}"], None
    try:
        rows = [r[0] for r in conn.execute("PRAGMA integrity_check")]
        if rows != ["ok"]:
            problems.append(f"{path.name}: integrity_check: {'; '.join(rows[:3])}")
        elif conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'journal'").fetchone():
            verdict = verify_journal(conn)
            if verdict.ok:
                head = JournalHead(count=verdict.count, head=verdict.head)
            else:
                problems.append(f"{path.name}: journal broken at seq {verdict.broken_seq}: {verdict.reason}")
    except sqlite3.Error as exc:
        problems.append(f"{path.name}: {exc}")
    finally:
        conn.close()
    return problems, head


def _store_id(db: Path) -> str | None:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM settings WHERE key = 'store_id'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return str(row[0]) if row else None


def _stamp(now: datetime.datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%S") + f".{now.microsecond:06d}Z"


# -- taking one ---------------------------------------------------------------------------------------------

STALE_S = 6 * 3600  # a `.part` or staging directory this old belongs to a backup that was killed


def _clear_stale(dest_dir: Path) -> None:
    cutoff = datetime.datetime.now().timestamp() - STALE_S
    for leftover in [*dest_dir.glob("backroom-*.tar.part"), *dest_dir.glob(".backup-*")]:
        try:
            if leftover.stat().st_mtime >= cutoff:
                continue
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
        except OSError:
            pass


def _room_check(data_dir: Path, dest_dir: Path, reserve_bytes: int) -> None:
    """Refuse a backup that would fill the disk: a staging copy and the archive of each database need room,
    and on the data directory's own file system `reserve_bytes` must stay free, or the nightly backup
    would be what turns sales into 507 storage_full."""
    size = sum(p.stat().st_size for p in data_dir.iterdir()
               if p.is_file() and (p.suffix in (".sqlite3", ".db") or p.name.endswith("-wal")))
    needed = size + size // 2 + (16 << 20)  # the staging copy, and its compressed archive (smaller)
    same_disk = dest_dir.stat().st_dev == data_dir.stat().st_dev
    free = shutil.disk_usage(dest_dir).free
    if free - needed < (reserve_bytes if same_disk else 0):
        where = " on the data disk, which must keep its reserve" if same_disk else ""
        raise BackupError(f"not enough space in {dest_dir}: {needed >> 20} MB needed, {free >> 20} MB free{where}")


def backup_box(data_dir: Path, dest_dir: Path, keep: int = 7, now: datetime.datetime | None = None,
               reserve_bytes: int = 0) -> Verified:
    """Back up `data_dir` into a new verified archive in `dest_dir`; keep the newest `keep` archives."""
    if not (data_dir / HUB_DB).is_file():
        raise BackupError(f"no hub database at {data_dir / HUB_DB}")
    now = now or datetime.datetime.now(datetime.UTC)
    dest_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _clear_stale(dest_dir)
    _room_check(data_dir, dest_dir, reserve_bytes)
    final = dest_dir / f"backroom-{_stamp(now)}.tar"
    partial = final.with_name(final.name + ".part")
    with tempfile.TemporaryDirectory(prefix=".backup-", dir=dest_dir) as tmp:
        staging = Path(tmp)
        entries: list[FileEntry] = []
        journal: JournalHead | None = None
        store_id: str | None = None
        for db in databases(data_dir):
            copy = staging / db.name
            _copy_database(db, copy)
            problems, head = check_database(copy)
            if problems:
                raise BackupError("the copy does not verify (is the database damaged?): " + "; ".join(problems))
            if db.name == HUB_DB:
                journal, store_id = head, _store_id(copy)
            entries.append(FileEntry(db.name, _sha256(copy), copy.stat().st_size, "database", stored="zstd"))
            _compress(copy, staging / (db.name + ".zst"))
            copy.unlink()  # the compressed copy is what goes into the archive
        for rel, kind in _extra_files(data_dir):
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(data_dir / rel, target)
            entries.append(FileEntry(rel, _sha256(target), target.stat().st_size, kind))
        manifest = Manifest(format=FORMAT, created_at=now.isoformat(timespec="seconds").replace("+00:00", "Z"),
                            store_id=store_id, version=__version__, files=entries,
                            journal=journal)
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as raw:
                with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    body = msgspec.json.encode(manifest)
                    info = tarfile.TarInfo(MANIFEST)
                    info.size, info.mode, info.mtime = len(body), 0o600, int(now.timestamp())
                    tar.addfile(info, io.BytesIO(body))
                    for entry in entries:
                        member = staging / (entry.path + ".zst" if entry.stored == "zstd" else entry.path)
                        tar.add(member, arcname=entry.path, recursive=False, filter=_private)
                raw.flush()
                os.fsync(raw.fileno())
            verdict = verify_archive(partial, deep=False)  # the databases were checked before they were packed
            if not verdict.ok:
                raise BackupError("the written backup does not verify: " + "; ".join(verdict.problems))
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    partial.replace(final)  # a backroom-*.tar exists only once it is whole and verified
    fsync_dir(dest_dir)
    prune(dest_dir, keep)
    return Verified(path=str(final), manifest=manifest, problems=[])


def _compress(source: Path, target: Path) -> None:
    with source.open("rb") as src, target.open("wb") as dst:
        zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).copy_stream(src, dst,
                                                                                    size=source.stat().st_size)


def _private(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mode, info.uid, info.gid, info.uname, info.gname = 0o600, 0, 0, "", ""
    return info


def prune(dest_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` archives (their names sort by time)."""
    removed = sorted(dest_dir.glob(ARCHIVE_GLOB))[:-keep] if keep > 0 else []
    for old in removed:
        old.unlink()
    return removed


# -- reading one ---------------------------------------------------------------------------------------------

def read_manifest(archive: Path) -> Manifest:
    """The manifest of an archive (the first member), without reading the rest."""
    try:
        with tarfile.open(archive, mode="r:") as tar:
            member = tar.next()
            if member is None or member.name != MANIFEST:
                raise BackupError(f"{archive.name}: no manifest (not a backroom backup)")
            fh = tar.extractfile(member)
            assert fh is not None
            return msgspec.json.decode(fh.read(), type=Manifest)
    except (tarfile.TarError, OSError, msgspec.DecodeError) as exc:
        raise BackupError(f"{archive.name}: not a readable backup: {exc}") from exc


def verify_archive(archive: Path, extract_to: Path | None = None, *, deep: bool = True) -> Verified:
    """Check every file against the manifest and the databases' integrity and journal; `extract_to`
    receives the files (a staging directory for a restore). `deep=False` (the check right after writing,
    of databases checked before they were packed) compares the checksums only and writes nothing."""
    manifest = read_manifest(archive)
    problems: list[str] = []
    expected = {e.path: e for e in manifest.files}
    seen: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="backroom-verify-") as tmp:
        out = extract_to or Path(tmp)
        try:
            with tarfile.open(archive, mode="r:") as tar:
                for info in tar:
                    name = info.name
                    if name == MANIFEST:
                        continue
                    entry = expected.get(name)
                    if entry is None or not info.isfile() or name.startswith("/") or ".." in name.split("/"):
                        problems.append(f"unexpected member {name!r}")
                        continue
                    fh = tar.extractfile(info)
                    assert fh is not None
                    digest = hashlib.sha256()
                    try:
                        _read_member(fh, entry, digest, out / name if deep or extract_to else None)
                    except zstandard.ZstdError as exc:
                        problems.append(f"{name}: the compressed copy is damaged ({exc})")
                        seen.add(name)
                        continue
                    if digest.hexdigest() != entry.sha256:
                        problems.append(f"{name}: sha256 differs from the manifest")
                    seen.add(name)
        except (tarfile.TarError, OSError) as exc:
            problems.append(f"archive unreadable: {exc}")
        for missing in sorted(set(expected) - seen):
            problems.append(f"{missing}: missing from the archive")
        for entry in manifest.files:
            if not deep or entry.kind != "database" or entry.path not in seen:
                continue
            db_problems, head = check_database(out / entry.path)
            problems += db_problems
            if entry.path == HUB_DB and not db_problems and head != manifest.journal:
                problems.append(f"journal head {head} differs from the manifest's {manifest.journal}")
    return Verified(path=str(archive), manifest=manifest, problems=problems)


def _read_member(fh: io.BufferedReader | typing.IO[bytes], entry: FileEntry, digest: typing.Any,
                 target: Path | None) -> None:
    """Stream one member (decompressed when it is stored as zstd) into `digest`, and into `target` if given."""
    source: typing.IO[bytes] = (zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=False)
                                if entry.stored == "zstd" else fh)
    if target is None:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as dst:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())


def newest_good(dirs: list[Path]) -> tuple[Path, Manifest] | None:
    """The newest archive in `dirs` whose manifest reads and says it was verified when written."""
    found: list[tuple[str, Path, Manifest]] = []
    for folder in dirs:
        if not folder.is_dir():
            continue
        for archive in folder.glob(ARCHIVE_GLOB):
            try:
                manifest = read_manifest(archive)
            except BackupError:
                continue
            if manifest.verified:
                found.append((manifest.created_at, archive, manifest))
    if not found:
        return None
    _, archive, manifest = max(found, key=lambda t: (t[0], t[1].name))
    return archive, manifest


# -- restoring one -------------------------------------------------------------------------------------------

class RestorePlan(msgspec.Struct, frozen=True):
    backup: str
    verified: bool
    problems: list[str]
    store_id: str | None
    current_store_id: str | None
    created_at: str
    journal: JournalHead | None
    replace: list[str]  # files of the data directory the restore replaces (set aside, not deleted)
    add: list[str]  # files the data directory does not have yet
    set_aside: list[str]  # WAL/shm files of the replaced databases, set aside too
    dry_run: bool
    kept_aside: str | None = None
    restored: bool = False
    refused: str | None = None  # why a verified backup was not restored


def plan_restore(archive: Path, data_dir: Path, verdict: Verified, dry_run: bool) -> RestorePlan:
    manifest = verdict.manifest
    replace = [e.path for e in manifest.files if (data_dir / e.path).exists()]
    add = [e.path for e in manifest.files if not (data_dir / e.path).exists()]
    aside: list[str] = []
    for entry in manifest.files:
        if entry.kind == "database":
            aside += [f"{entry.path}{sfx}" for sfx in ("-wal", "-shm", "-journal") if (data_dir / f"{entry.path}{sfx}")
                      .exists()]
    current = _store_id(data_dir / HUB_DB) if (data_dir / HUB_DB).exists() else None
    return RestorePlan(backup=str(archive), verified=verdict.ok, problems=verdict.problems, store_id=manifest.store_id,
                       current_store_id=current, created_at=manifest.created_at, journal=manifest.journal,
                       replace=replace, add=add, set_aside=aside, dry_run=dry_run)


def _other_store(plan: RestorePlan) -> str | None:
    if plan.store_id and plan.current_store_id and plan.store_id != plan.current_store_id:
        return (f"the backup is of store {plan.store_id}, this data directory holds store {plan.current_store_id}"
                " (--force restores it anyway)")
    return None


def restore(archive: Path, data_dir: Path, *, dry_run: bool, allow_other_store: bool = False,
            now: datetime.datetime | None = None) -> RestorePlan:
    """Verify `archive` and (unless `dry_run`) put its files into `data_dir`, setting the replaced ones
    aside in `<data>/replaced-<stamp>/`. The caller holds the data directory's hub lock."""
    now = now or datetime.datetime.now(datetime.UTC)
    if dry_run:
        verdict = verify_archive(archive)
        plan = plan_restore(archive, data_dir, verdict, dry_run=True)
        return msgspec.structs.replace(plan, refused=None if allow_other_store else _other_store(plan))
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=data_dir))
    try:
        verdict = verify_archive(archive, extract_to=staging)
        plan = plan_restore(archive, data_dir, verdict, dry_run=False)
        if not verdict.ok:
            return plan
        if not allow_other_store and _other_store(plan):
            return msgspec.structs.replace(plan, refused=_other_store(plan))
        aside_dir = data_dir / f"replaced-{_stamp(now)}"
        for rel in [*plan.replace, *plan.set_aside]:
            target = aside_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            (data_dir / rel).replace(target)
        owner = data_dir.stat()  # a restore run as root leaves files the hub's own user can open
        for entry in verdict.manifest.files:
            target = data_dir / entry.path
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            (staging / entry.path).replace(target)
            if os.geteuid() == 0:
                os.chown(target, owner.st_uid, owner.st_gid)
                os.chown(target.parent, owner.st_uid, owner.st_gid)
        fsync_dir(data_dir)
        return msgspec.structs.replace(plan, restored=True,
                                       kept_aside=str(aside_dir) if aside_dir.exists() else None)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
