"""`backroom install` and `backroom uninstall` (edge/appliance/install.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _report(changes: list[Any], root: Path, verb: str) -> None:
    for change in changes:
        print(f"{change.action:9} {change.path}")
    done = [c for c in changes if c.action in ("created", "updated", "removed")]
    kept = [c.path for c in changes if c.action == "kept"]
    if not done:
        print(f"nothing to change: already {verb}" + (f" (kept your {', '.join(kept)})" if kept else ""))
    print(json.dumps({"root": str(root), "changed": len(done), "unchanged": len(changes) - len(done),
                      "kept": kept}))


def cmd_install(args: argparse.Namespace) -> int:
    from edge.appliance.install import DEFAULT_DATA, Options, install

    opts = Options(root=Path(args.root or "/"), data=args.data or DEFAULT_DATA, store=args.store, hq=args.hq,
                   **({"app": args.app} if args.app else {}), **({"venv": args.venv} if args.venv else {}))
    if not opts.data.startswith("/"):
        print(f"--data must be an absolute path on the installed system, not {opts.data!r}", file=sys.stderr)
        return 2
    try:
        changes = install(opts)
    except PermissionError as exc:
        print(f"not installed: {exc}", file=sys.stderr)
        return 1
    _report(changes, opts.root, "installed")
    if opts.root == Path("/"):
        print("start it: systemctl start mosquitto backroom-hub backroom-devices backroom-backup.timer",
              file=sys.stderr)
    return 0


def cmd_uninstall(args: argparse.Namespace) -> int:
    from edge.appliance.install import uninstall

    root = Path(args.root or "/")
    try:
        changes = uninstall(root)
    except PermissionError as exc:
        print(f"not uninstalled: {exc}", file=sys.stderr)
        return 1
    _report(changes, root, "uninstalled")
    return 0


def register(sub: Any) -> None:
    install = sub.add_parser("install", help="lay out the appliance: user, directories, config, units, udev rules")
    install.add_argument("--root", help="install into this scratch root instead of the running system")
    install.add_argument("--data", help="the data directory on the installed system (default /var/lib/backroom)")
    install.add_argument("--store", default="demo-001", help="the store id written to /etc/backroom/backroom.toml")
    install.add_argument("--hq", help="the HQ URL written to /etc/backroom/backroom.toml")
    install.add_argument("--app", help="where the code is (default: this checkout)")
    install.add_argument("--venv", help="the virtual environment whose bin/backroom the units run (default: this one)")
    install.set_defaults(fn=cmd_install)
    uninstall = sub.add_parser("uninstall", help="remove units, rules and /etc/backroom; the data stays")
    uninstall.add_argument("--root", help="uninstall from this scratch root instead of the running system")
    uninstall.set_defaults(fn=cmd_uninstall)
