"""`backroom statements import`: a provider's bill matched against the hub's tenders and refunds.

The last line printed is the JSON of CONTRACT.md: `{"provider", "rows", "matched", "anomalies": [...]}`
(with the import's id, fees and period beside them). A file that cannot be read exits 2 with the
reason on stderr and writes nothing; importing the same file again prints the first import's answer
with `"already_imported": true` and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import msgspec

from edge.config import load_config


def register(sub: Any) -> None:
    statements = sub.add_parser("statements", help="payment providers' bills (WeChat Pay, Alipay, mapped CSV)")
    ssub = statements.add_subparsers(dest="statements_command", required=True)
    imp = ssub.add_parser("import", help="import a bill and match it against the hub's tenders and refunds")
    imp.add_argument("--provider", required=True, choices=["wechat", "alipay", "csv"])
    imp.add_argument("file", help="the bill as downloaded (Alipay: the .zip or the .csv)")
    imp.add_argument("--data")
    imp.add_argument("--mapping", help="csv: a mapping file (TOML or JSON) or a preset name: unionpay")
    imp.set_defaults(fn=cmd_statements_import)


def cmd_statements_import(args: argparse.Namespace) -> int:
    from edge.clock import StoreClock
    from edge.errors import ApiError
    from edge.payments import statements, store
    from edge.stock.ledger import Actor
    from edge.storage.db import Database

    config = load_config(data_dir=Path(args.data or os.environ.get("BACKROOM_DATA") or "var/demo"))
    if not config.db_path.exists():
        print(f"no hub database at {config.db_path}", file=sys.stderr)
        return 2
    path = Path(args.file)
    try:
        data = path.read_bytes()
        mapping = None
        if args.mapping is not None:
            spec = Path(args.mapping)
            mapping = (
                store.mapping_for(args.mapping)
                if args.mapping in store.MAPPING_PRESETS
                else store.mapping_for(spec.read_bytes(), spec.name)
            )
        statement = statements.parse(args.provider, data, mapping)
    except OSError as exc:
        print(f"cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    except statements.StatementError as exc:
        print(f"{path.name}: {exc}; nothing imported", file=sys.stderr)
        return 2
    clock = StoreClock(config.timezone)
    digest = statements.content_hash(data)
    db = Database(config.db_path)
    try:
        first = store.already(db.reader(), statement.provider, digest)
        if first is None:
            prepared = store.prepare(db.reader(), statement, digest, path.name)
            actor = Actor(user_id="cli", till_id=None)
            first = db.write_sync(lambda conn: store.record(conn, prepared, actor, clock.stamp()))
    except ApiError as exc:
        print(f"{path.name}: {exc}; nothing imported", file=sys.stderr)
        return 2
    finally:
        db.close()
    print(json.dumps(msgspec.to_builtins(first), ensure_ascii=False))
    return 0
