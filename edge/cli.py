"""The `backroom` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from edge import startup_gc
from edge.config import HubConfig, load_config


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data or os.environ.get("BACKROOM_DATA") or "var/demo")


def cmd_serve(args: argparse.Namespace) -> int:
    with startup_gc.frozen_after():  # the imports and the app, without cyclic collections (edge/startup_gc.py)
        import uvicorn

        from edge.app import create_app
        from edge.members.pii import redact_access_log
        from edge.serving import CorkedHttpToolsProtocol

        config = load_config(Path(args.config) if args.config else None, data_dir=_data_dir(args), port=args.port,
                             mqtt_port=args.mqtt_port, hq_url=args.hq)
        if not config.db_path.exists() and not (config.data_dir / "secret.key").exists():
            logging.getLogger("backroom").warning("data directory %s is empty; run `backroom seed --demo` first",
                                                  config.data_dir)
        from edge.care.cli import serve_guard

        guard = serve_guard(config)  # refuses a damaged database (exit 78) or a data directory in use
        if isinstance(guard, int):
            return guard
        redact_access_log()
        from edge.api.sale_fast_path import SaleFastPath

        app = SaleFastPath(create_app(config), config.max_body_bytes)  # POST /api/v1/sales below Litestar
    uvicorn.run(app, host=config.host, port=config.port, log_level=args.log_level,
                access_log=args.access_log, timeout_graceful_shutdown=5, http=CorkedHttpToolsProtocol,
                ws="none")  # no WebSocket routes: uvicorn need not import `websockets` at start
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    from edge.clock import StoreClock
    from edge.seed.demo import AlreadySeeded, seed_demo
    from edge.storage.db import Database

    if not args.demo:
        print("only the demo store can be seeded: backroom seed --demo", file=sys.stderr)
        return 2
    config = load_config(data_dir=_data_dir(args), store_id=args.store)
    db = Database(config.db_path)
    try:
        counts = db.write_sync(lambda conn: seed_demo(conn, config.store_id, StoreClock(config.timezone)))
    except AlreadySeeded as exc:
        print(f"not seeded: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()
    print(json.dumps({"store_id": config.store_id, "data": str(config.data_dir), **counts}))
    return 0


def cmd_journal_verify(args: argparse.Namespace) -> int:
    from edge.journal.chain import verify
    from edge.storage.db import connect

    path = HubConfig(data_dir=_data_dir(args)).db_path
    if not path.exists():
        print(f"no hub database at {path}", file=sys.stderr)
        return 2
    conn = connect(path, readonly=True)
    verdict = verify(conn)
    conn.close()
    if verdict.ok:
        print(f"journal intact: {verdict.count} records, head {verdict.head}")
        return 0
    print(f"journal BROKEN at seq {verdict.broken_seq}: {verdict.reason} "
          f"({verdict.count} records verified before it)")
    return 1


def cmd_points_expire(args: argparse.Namespace) -> int:
    """Expire points batches dated before --today (default: the store's today); exit 1 on a paired hub."""
    from edge.clock import StoreClock
    from edge.members.points import expire_points, is_paired, parse_today
    from edge.storage.db import Database

    config = load_config(data_dir=_data_dir(args))
    if not config.db_path.exists():
        print(f"no hub database at {config.db_path}", file=sys.stderr)
        return 2
    clock = StoreClock(config.timezone)
    try:
        today = parse_today(args.today, clock.today())
    except ValueError:
        print(f"--today must be a date YYYY-MM-DD, not {args.today!r}", file=sys.stderr)
        return 2
    db = Database(config.db_path)
    try:
        if db.write_sync(is_paired):
            print("not expired: this hub is paired with HQ, whose ledger expires points", file=sys.stderr)
            return 1
        done = db.write_sync(lambda conn: expire_points(conn, today, clock.stamp()))
    finally:
        db.close()
    print(json.dumps({"today": today, "members": len(done), "points": sum(p for _, p in done),
                      "expired": dict(done)}))
    return 0


def cmd_campaigns_run(args: argparse.Namespace) -> int:
    """Generate and deliver the campaigns of --day (default: the store's today) at a standalone hub; the last
    line printed is JSON. Exit 1 on a hub that is paired (HQ runs them), 2 on bad input."""
    import datetime

    from edge.clock import StoreClock
    from edge.engage import campaigns, referrals
    from edge.engage.channels import channels_for
    from edge.members.points import is_paired
    from edge.storage.db import Database

    config = load_config(data_dir=_data_dir(args))
    if not config.db_path.exists():
        print(f"no hub database at {config.db_path}", file=sys.stderr)
        return 2
    clock = StoreClock(config.timezone)
    try:
        day = datetime.date.fromisoformat(args.day or clock.today())
    except ValueError:
        print(f"--day must be a date YYYY-MM-DD, not {args.day!r}", file=sys.stderr)
        return 2
    db = Database(config.db_path)
    try:
        if db.write_sync(is_paired):
            print("not run: this hub is paired with HQ, which runs the chain's campaigns", file=sys.stderr)
            return 1
        policy = db.write_sync(referrals.load_policy)
        result = db.write_sync(lambda conn: campaigns.run(conn, day, clock.stamp(), policy))
        outcomes = campaigns.deliver(db.write_sync(campaigns.queued), channels_for(policy))
        db.write_sync(lambda conn: campaigns.record(conn, outcomes, clock.stamp()))
    finally:
        db.close()
    delivered: dict[str, int] = {}
    for _, outcome in outcomes:
        delivered[outcome.status] = delivered.get(outcome.status, 0) + 1
    print(json.dumps({"day": result.day, "notices": result.notices, "created": result.created,
                      "coupons": result.coupons, "delivered": delivered}))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.stores is None:
        args.stores = 1000 if args.kind == "chain" else 50
    if args.kind == "chain":  # HQ under a thousand stores' busy hour (hq_sync/bench_chain.py)
        from hq_sync.bench_chain import run_chain_bench

        return run_chain_bench(args)
    if args.kind == "sync":  # hub -> HQ upload, HQ ingest, feed apply (hq_sync/bench.py)
        from hq_sync.bench import run_sync_bench

        return run_sync_bench(args)
    if args.kind == "spend":  # the cross-store spend that must reclaim first (hq_sync/bench.py)
        from hq_sync.bench import run_spend_bench

        return run_spend_bench(args)
    if args.kind == "devices":  # frame -> till latency and 200 devices' load (devices/bench.py)
        from devices.bench import run_devices_bench

        return run_devices_bench(args)
    if args.kind == "ui":  # every tablet page on a year of a busy store (edge/bench_ui.py)
        from edge.bench_ui import run_ui_bench

        args.tickets_per_day = args.tickets_per_day or 2000
        return run_ui_bench(args)
    if args.kind == "console":  # every HQ console page on a chain with a year of history (hq_sync/bench_console.py)
        from hq_sync.bench_console import run_console_bench

        args.tickets_per_day = args.tickets_per_day or 200
        return run_console_bench(args)
    if args.kind == "statements":  # import + match of a 100,000-row bill (edge/payments/bench.py)
        from edge.payments.bench import run_statements_bench

        return run_statements_bench(args)
    if args.kind == "hq-bill":  # HQ imports a chain merchant bill split over --stores (hq_sync/bench_statements.py)
        from hq_sync.bench_statements import run_hq_bill_bench

        return run_hq_bill_bench(args)
    if args.kind == "shifts":  # a busy shift's report, close and verify (edge/bench_shifts.py)
        from edge.bench_shifts import run_shift_bench

        return run_shift_bench(args)
    if args.kind == "footprint":  # RSS, cold start and bytes written of a whole box (edge/bench_footprint.py)
        from edge.bench_footprint import run_footprint_bench

        return run_footprint_bench(args)
    if args.kind == "coldstart":  # spawn -> first /healthz of `backroom serve` (edge/bench_coldstart.py)
        from edge.bench_coldstart import run_coldstart_bench

        return run_coldstart_bench(args)
    if args.kind == "quote":  # the pure pricing engine; no server
        from edge.bench_quote import run_quote_bench

        return run_quote_bench(args)
    from edge.bench import run_bench

    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backroom", description="Backroom store hub")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the hub API")
    serve.add_argument("--data")
    serve.add_argument("--port", type=int)
    serve.add_argument("--mqtt-port", type=int)
    serve.add_argument("--hq")
    serve.add_argument("--config")
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--access-log", action="store_true")
    serve.set_defaults(fn=cmd_serve)

    seed = sub.add_parser("seed", help="seed a hub's data directory")
    seed.add_argument("--demo", action="store_true")
    seed.add_argument("--store", default=None)
    seed.add_argument("--data")
    seed.set_defaults(fn=cmd_seed)

    journal = sub.add_parser("journal", help="the hash-chained journal")
    jsub = journal.add_subparsers(dest="journal_command", required=True)
    jverify = jsub.add_parser("verify", help="walk the chain; exit 0 only if intact")
    jverify.add_argument("--data")
    jverify.set_defaults(fn=cmd_journal_verify)

    points = sub.add_parser("points", help="member points")
    psub = points.add_subparsers(dest="points_command", required=True)
    pexpire = psub.add_parser("expire", help="expire points batches past their date (unpaired hubs)")
    pexpire.add_argument("--data")
    pexpire.add_argument("--today", help="YYYY-MM-DD: expire batches dated before this day (default: today)")
    pexpire.set_defaults(fn=cmd_points_expire)

    campaign = sub.add_parser("campaigns", help="member campaigns (standalone hubs; HQ runs a chain's)")
    csub = campaign.add_subparsers(dest="campaigns_command", required=True)
    crun = csub.add_parser("run", help="generate and deliver the day's campaigns; a rerun adds nothing")
    crun.add_argument("--data")
    crun.add_argument("--day", help="YYYY-MM-DD (default: the store's today)")
    crun.set_defaults(fn=cmd_campaigns_run)

    bench = sub.add_parser("bench", help="benchmarks; the last line printed is JSON")
    bench.add_argument("kind", choices=["checkout", "lookup", "quote", "sync", "spend", "devices", "ui", "console",
                                          "statements", "hq-bill", "shifts", "footprint", "chain", "coldstart"])
    bench.add_argument("--json", action="store_true", help="print only the JSON line")
    bench.add_argument("--tills", type=int, default=8)
    bench.add_argument("--seconds", type=float, default=10.0)
    bench.add_argument("--idle-seconds", type=float, default=20.0, help="footprint: the idle window measured")
    bench.add_argument("--rate", type=float, default=1000.0, help="lookups per second (lookup bench)")
    bench.add_argument("--data", help="bench data directory (default: a fresh temporary one)")
    bench.add_argument("--devices", type=int, default=200, help="simulated devices publishing (devices bench)")
    bench.add_argument("--repeat", type=int, default=20,
                       help="fetches of each page (ui, console benches); starts of each kind (coldstart)")
    bench.add_argument("--days", type=int, default=365, help="days of history to build (ui, console benches)")
    bench.add_argument("--tickets-per-day", type=int, default=None,
                       help="tickets a day in the history (ui bench: 2000; console bench: 200 per store)")
    bench.add_argument("--stores", type=int, default=None, help="stores of the chain (console bench: 50; chain: 1000)")
    bench.add_argument("--members", type=int, default=20000, help="generated members (console bench)")
    bench.add_argument("--db", help="the chain's SQLite file, built on first use and kept (console bench); "
                                    "HQ's postgresql:// URL (chain bench; default: a private cluster)")
    bench.add_argument("--roles", default="hq_admin,region_manager", help="roles to measure (console bench)")
    bench.add_argument("--rows", type=int, default=100_000, help="rows of the bill (statements bench)")

    from hq_sync.bench_chain import register_args as chain_args

    chain_args(bench)  # --workers, --sales-per-store, --auth-rate
    bench.set_defaults(fn=cmd_bench)

    from devices.cli import register as register_devices

    register_devices(sub)  # devices, mqtt, profiles
    from hq_sync.cli import register as register_sync

    register_sync(sub)  # hq serve, hq pair-code, pair
    from edge.payments.cli import register as register_statements

    register_statements(sub)  # statements import

    from edge.care.cli import register as register_care

    register_care(sub)  # backup, restore, doctor

    from edge.appliance.cli import register as register_appliance

    register_appliance(sub)  # install, uninstall
    return parser


def main(argv: list[str] | None = None) -> int:
    startup_gc.pause()  # the parser imports every command's module: no collections meanwhile (edge/startup_gc.py)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    startup_gc.resume()
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
