"""`make run`: seed the demo store when the data directory is empty, then run the hub.

Runs in the foreground; SIGINT/SIGTERM stop the hub and every child it started.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from edge.cli import main


def run() -> int:
    data = Path(os.environ.get("BACKROOM_DATA", "var/demo"))
    port = os.environ.get("BACKROOM_PORT", "8080")
    store = os.environ.get("BACKROOM_STORE", "demo-001")
    if not (data / "hub.sqlite3").exists():
        code = main(["seed", "--demo", "--store", store, "--data", str(data)])
        if code:
            return code
    print(f"""
Backroom demo store {store}
  Till API      http://localhost:{port}/api/v1   (OpenAPI: http://localhost:{port}/schema)
  Health        http://localhost:{port}/healthz
  Demo logins   manager / manager-demo (store manager)
                cashier / PIN 1234 at any till_id (cashier)
                guide / PIN 5678 (sales guide), region / region-demo (region manager)
  Demo member   M000001, phone 13800138000, card 8800000001 (gold)
  Data          {data}
Press Ctrl-C to stop.
""", flush=True)
    return main(["serve", "--data", str(data), "--port", port])


if __name__ == "__main__":
    sys.exit(run())
