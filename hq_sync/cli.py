"""`backroom hq serve`, `backroom hq pair-code`, `backroom hq user add`, `backroom pair`: the command-line side
of HQ sync."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_HQ_DB = "var/hq/hq.sqlite3"
DEFAULT_HQ_PORT = 8090


def _db_url(args: argparse.Namespace) -> str:
    return str(args.db or os.environ.get("BACKROOM_HQ_DB") or DEFAULT_HQ_DB)


def cmd_hq_serve(args: argparse.Namespace) -> int:
    from edge import startup_gc

    with startup_gc.frozen_after():  # the imports without cyclic collections (edge/startup_gc.py)
        import msgspec
        import uvicorn

        from edge.members.pii import redact_access_log
        from hq_sync.server.api.app import create_hq_app
        from hq_sync.server.service.escrow import EscrowPolicy

    try:
        EscrowPolicy.from_env()  # a typo in BACKROOM_HQ_ESCROW_* fails here, not in the app's start-up
    except msgspec.ValidationError as exc:
        print(f"bad escrow policy (BACKROOM_HQ_ESCROW_*): {exc}", file=sys.stderr)
        return 2
    port = args.port or int(os.environ.get("BACKROOM_HQ_PORT") or DEFAULT_HQ_PORT)
    workers = args.workers or int(os.environ.get("BACKROOM_HQ_WORKERS") or 1)
    redact_access_log()
    if workers > 1:
        return _serve_workers(args, _db_url(args), port, workers)
    with startup_gc.frozen_after():  # and the app
        app = create_hq_app(_db_url(args), demo=args.demo)
    uvicorn.run(app, host=args.host, port=port, log_level=args.log_level, access_log=args.access_log,
                timeout_graceful_shutdown=5, ws="none", timeout_keep_alive=_keep_alive_s())  # no WebSocket routes
    return 0


def _keep_alive_s() -> int:
    """How long HQ keeps an idle connection (BACKROOM_HQ_KEEP_ALIVE_S, 30 s). Longer than a client keeps one
    idle (httpx, the hubs' agent: 5 s, uvicorn's own default too): with equal times, a request sent on a
    connection as HQ closed it failed in transit (the chain bench's transport errors)."""
    return int(os.environ.get("BACKROOM_HQ_KEEP_ALIVE_S") or 30)


def _serve_workers(args: argparse.Namespace, db_url: str, port: int, workers: int) -> int:
    """`hq serve --workers N`: uvicorn's own process manager binds the port once and hands the socket to
    N worker processes (each its own event loop and connection pool; the kernel spreads the connections
    among their accept()s). The workers speak to each other over PostgreSQL (server/api/bus.py), so
    SQLite, whose one writer lives in one process, is refused."""
    import uvicorn

    from hq_sync.server.api.resources import Hq

    if not db_url.startswith(("postgresql://", "postgres://")):
        print("--workers > 1 needs PostgreSQL (--db postgresql://...); a SQLite HQ runs as one process",
              file=sys.stderr)
        return 2
    Hq(db_url, demo=args.demo).close()  # the schema, the keys and the demo seed once, before the workers race
    os.environ["BACKROOM_HQ_DB"] = db_url
    uvicorn.run("hq_sync.server.api.app:create_hq_app_from_env", factory=True, workers=workers, host=args.host,
                port=port, log_level=args.log_level, access_log=args.access_log, timeout_graceful_shutdown=5, ws="none",
                timeout_keep_alive=_keep_alive_s())
    return 0


def cmd_hq_pair_code(args: argparse.Namespace) -> int:
    from hq_sync.server.service.access import system_principal
    from hq_sync.server.service.stores import make_pair_code
    from hq_sync.server.storage.db import open_db
    from hq_sync.server.storage.schema import create_schema

    db = open_db(_db_url(args))
    try:
        create_schema(db)
        code = make_pair_code(db, system_principal("cli"), args.store)
    finally:
        db.close()
    print(code)
    return 0


def cmd_hq_user_add(args: argparse.Namespace) -> int:
    """An HQ user from the shell (how a real HQ gets its first admin); the password is read from
    BACKROOM_HQ_PASSWORD or the first line of standard input, never from the command line."""
    import msgspec

    from hq_sync.server.service.access import system_principal
    from hq_sync.server.service.errors import HqError, now_text
    from hq_sync.server.service.users import UserIn, create_user
    from hq_sync.server.storage.db import open_db
    from hq_sync.server.storage.schema import create_schema

    password = os.environ.get("BACKROOM_HQ_PASSWORD") or sys.stdin.readline().rstrip("\r\n")
    try:
        req = msgspec.convert({"username": args.username, "password": password, "role": args.role,
                               "regions": args.region or [], "display_name": args.name or ""}, UserIn)
    except msgspec.ValidationError as exc:
        print(f"not added: {exc}", file=sys.stderr)
        return 2
    db = open_db(_db_url(args))
    try:
        create_schema(db)
        user = create_user(db, system_principal("cli"), req, now_text())
    except HqError as exc:
        print(f"not added: {exc.message}", file=sys.stderr)
        return 1
    finally:
        db.close()
    print(json.dumps({"username": user.username, "role": user.role, "regions": user.regions}, ensure_ascii=False))
    return 0


def cmd_pair(args: argparse.Namespace) -> int:
    from hq_sync.agent import PairingError, pair_data_dir

    data_dir = Path(args.data or os.environ.get("BACKROOM_DATA") or "var/demo")
    if not (data_dir / "hub.sqlite3").exists():
        print(f"no hub database in {data_dir}; seed it first", file=sys.stderr)
        return 2
    try:
        result = pair_data_dir(data_dir, args.hq, args.code)
    except PairingError as exc:
        print(f"not paired: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"store_id": result.store_id, "hq": args.hq, "base_seq": result.base_seq,
                      "adopted_members": len(result.kept)}))
    return 0


def register(sub: Any) -> None:
    hq = sub.add_parser("hq", help="the reference HQ server")
    hsub = hq.add_subparsers(dest="hq_command", required=True)
    serve = hsub.add_parser("serve", help="run the reference HQ (SQLite by default, PostgreSQL with --db postgresql://)")
    serve.add_argument("--db", help=f"SQLite file or postgresql:// URL (default {DEFAULT_HQ_DB} or BACKROOM_HQ_DB)")
    serve.add_argument("--port", type=int)
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--demo", action="store_true", help="seed an empty HQ with the demo chain")
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--access-log", action="store_true")
    serve.add_argument("--workers", type=int, choices=range(1, 65), metavar="N",
                       help="worker processes behind the one port (PostgreSQL only; default 1 or BACKROOM_HQ_WORKERS)")
    serve.set_defaults(fn=cmd_hq_serve)
    code = hsub.add_parser("pair-code", help="print a one-time pairing code for a store")
    code.add_argument("--store", required=True)
    code.add_argument("--db")
    code.set_defaults(fn=cmd_hq_pair_code)

    user = hsub.add_parser("user", help="HQ users from the shell")
    usub = user.add_subparsers(dest="hq_user_command", required=True)
    add = usub.add_parser("add", help="add an HQ user; the password comes from BACKROOM_HQ_PASSWORD or stdin")
    add.add_argument("username")
    add.add_argument("--role", required=True, help="hq_admin, hq_operator, region_manager, finance or auditor")
    add.add_argument("--region", action="append", help="a region of a region manager (repeat for several)")
    add.add_argument("--name", help="the user's display name")
    add.add_argument("--db")
    add.set_defaults(fn=cmd_hq_user_add)

    pair = sub.add_parser("pair", help="pair this hub with HQ (once, with a code from `backroom hq pair-code`)")
    pair.add_argument("--hq", required=True)
    pair.add_argument("--code", required=True)
    pair.add_argument("--data")
    pair.set_defaults(fn=cmd_pair)
