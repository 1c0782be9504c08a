"""`backroom backup`, `backroom restore`, `backroom doctor`, and the guard `backroom serve` passes first.

The last line each command prints is one JSON object (docs/appliance-care.md). Exit codes: 0 done /
all checks pass; 1 refused or a check failed; 2 bad input; 78 (serve) the hub database is damaged.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import msgspec

from edge.care import lock
from edge.care.startup import EXIT_DAMAGED, check_at_start
from edge.config import HubConfig, load_config

EXIT_IN_USE = 1


def _config(args: argparse.Namespace) -> HubConfig:
    data = Path(args.data or os.environ.get("BACKROOM_DATA") or "var/demo")
    return load_config(Path(args.config) if getattr(args, "config", None) else None, data_dir=data)


def serve_guard(config: HubConfig) -> lock.DataLock | int:
    """Before `serve` opens anything: the data directory's lock, then the quick check of the database.
    The held lock (keep it for the life of the process), or the exit code to leave with."""
    try:
        held = lock.acquire(config.data_dir)
    except lock.Locked as exc:
        print(f"backroom: not started: {exc}", file=sys.stderr)
        return EXIT_IN_USE
    message = check_at_start(config)
    if message is not None:
        held.release()
        print(message, file=sys.stderr, flush=True)
        return EXIT_DAMAGED
    return held


def cmd_backup(args: argparse.Namespace) -> int:
    from edge.storage.backup import BackupError, backup_box

    config = _config(args)
    if args.keep < 1:
        print("--keep must be at least 1", file=sys.stderr)
        return 2
    dest = Path(args.to) if args.to else config.backups_dir
    try:
        done = backup_box(config.data_dir, dest, keep=args.keep, reserve_bytes=config.disk_low_mb << 20)
    except BackupError as exc:
        print(f"backup failed: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"backup failed: {exc.strerror or exc} ({getattr(exc, 'filename', '') or dest})", file=sys.stderr)
        return 1
    m = done.manifest
    if not args.json:
        journal = f", journal {m.journal.count} records, head {m.journal.head[:12]}" if m.journal else ""
        print(f"backup written and verified: {done.path} ({len(m.files)} files{journal})")
    print(json.dumps({"backup": done.path, "verified": True, "store_id": m.store_id, "created_at": m.created_at,
                      "journal": msgspec.to_builtins(m.journal), "files": [f.path for f in m.files]}))
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from edge.members import pii
    from edge.storage.backup import BackupError, restore

    config = _config(args)
    archive = Path(args.file)
    if not archive.is_file():
        print(f"no backup file {archive}", file=sys.stderr)
        return 2
    held: lock.DataLock | None = None
    if not args.dry_run:
        try:
            held = lock.acquire(config.data_dir)
        except lock.Locked as exc:
            print(f"not restored: {exc}; stop it first (systemctl stop backroom-hub)", file=sys.stderr)
            return EXIT_IN_USE
    try:
        plan = restore(archive, config.data_dir, dry_run=args.dry_run, allow_other_store=args.force)
    except BackupError as exc:
        print(f"not restored: {exc}", file=sys.stderr)
        return 1
    finally:
        if held is not None:
            held.release()
    pii.forget_cached()
    if plan.restored:
        from devices import broker

        broker.reload(config.data_dir)  # a broker that runs on its own (systemd) rereads the restored credentials
    if not args.json:
        verdict = "verifies" if plan.verified else "DOES NOT verify: " + "; ".join(plan.problems)
        journal = f", journal {plan.journal.count} records" if plan.journal else ""
        print(f"backup {plan.backup} (store {plan.store_id}, taken {plan.created_at}{journal}) {verdict}")
        verb = "would replace" if plan.dry_run else "replaced"
        print(f"{verb}: {', '.join(plan.replace) or 'nothing'}; "
              f"{'would add' if plan.dry_run else 'added'}: {', '.join(plan.add) or 'nothing'}; "
              f"set aside: {', '.join(plan.set_aside) or 'nothing'}")
        if plan.refused:
            print(f"{'would refuse' if plan.dry_run else 'not restored'}: {plan.refused}")
        if plan.kept_aside:
            print(f"the replaced files are kept in {plan.kept_aside}")
    print(json.dumps(msgspec.to_builtins(plan)))
    return 0 if plan.verified and not plan.refused else 1


def cmd_doctor(args: argparse.Namespace) -> int:
    from edge.care.doctor import run

    report = run(_config(args))
    if not args.json:
        for check in report.checks:
            mark = "ok  " if check.ok else "FAIL"
            print(f"{mark} {check.name:<9} {check.detail}")
            if not check.ok and check.remedy:
                print(f"     {'':<9} -> {check.remedy}")
    print(json.dumps(msgspec.to_builtins(report), ensure_ascii=False))
    return 0 if report.ok else 1


def cmd_setup_code(args: argparse.Namespace) -> int:
    """Print the setup code while the box has no store manager (exit 0), or say it needs none (exit 1)."""
    import sqlite3

    from edge.appliance import setup

    config = _config(args)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(f"file:{config.db_path}?mode=ro", uri=True)
        try:
            needed = setup.needs_setup(conn)
        finally:
            conn.close()
    except sqlite3.Error:  # no database yet (the hub makes it at its first start): no accounts either
        needed = True
    if not needed:
        setup.clear_code(config.data_dir)
        print(json.dumps({"needed": False}))
        print("this box has a store manager: staff are added on the tablet (Users)", file=sys.stderr)
        return 1
    code = setup.shown(setup.ensure_code(config.data_dir))
    print(f"setup code {code}: open the tablet at /ui/setup and enter it to make the first store manager",
          file=sys.stderr)
    print(json.dumps({"needed": True, "code": code}))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = sub.add_parser("backup", help="verified online backup of the data directory")
    backup.add_argument("--to", help="directory for the backup (default: the config's backup_dir, <data>/backups)")
    backup.add_argument("--data")
    backup.add_argument("--config")
    backup.add_argument("--keep", type=int, default=7, help="keep the newest N backups there (default 7)")
    backup.add_argument("--json", action="store_true", help="print only the JSON line")
    backup.set_defaults(fn=cmd_backup)

    restore = sub.add_parser("restore", help="restore a backup into the data directory (the hub stopped)")
    restore.add_argument("file")
    restore.add_argument("--data")
    restore.add_argument("--config")
    restore.add_argument("--dry-run", action="store_true", help="verify and say what would be replaced")
    restore.add_argument("--force", action="store_true", help="restore another store's backup over this one's")
    restore.add_argument("--json", action="store_true", help="print only the JSON line")
    restore.set_defaults(fn=cmd_restore)

    code = sub.add_parser("setup-code", help="the one-time code that makes the first store manager at /ui/setup")
    code.add_argument("--data")
    code.add_argument("--config")
    code.set_defaults(fn=cmd_setup_code)

    doctor = sub.add_parser("doctor", help="check the box; exit 0 only if every check passes")
    doctor.add_argument("--data")
    doctor.add_argument("--config")
    doctor.add_argument("--json", action="store_true", help="print only the JSON line")
    doctor.set_defaults(fn=cmd_doctor)
