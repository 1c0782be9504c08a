"""The hub's resources, owned in one place and torn down in reverse order."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from edge.auth import users
from edge.auth.tokens import Claims, load_key
from edge.catalog.repository import ScanCache
from edge.clock import StoreClock
from edge.config import HubConfig
from edge.promotions.repository import PromotionCache
from edge.storage.db import Database

if TYPE_CHECKING:
    from edge.sales.sale_writer import SaleWriter

log = logging.getLogger(__name__)


class LoginThrottle:
    """Five failed logins for a username lock it for five minutes (PINs are only four digits)."""

    def __init__(self, limit: int = 5, window_s: float = 300.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: dict[str, list[float]] = {}

    def locked(self, username: str) -> bool:
        now = time.monotonic()
        recent = [t for t in self._failures.get(username, []) if now - t < self.window_s]
        self._failures[username] = recent
        return len(recent) >= self.limit

    def failed(self, username: str) -> None:
        self._failures.setdefault(username, []).append(time.monotonic())

    def succeeded(self, username: str) -> None:
        self._failures.pop(username, None)


class Hub:
    def __init__(self, config: HubConfig) -> None:
        self.config = config
        self.db = Database(config.db_path)
        self.key = load_key(config.data_dir)
        self.clock = StoreClock(config.timezone)
        self.throttle = LoginThrottle()
        self.promotions = PromotionCache()
        self.scans = ScanCache()  # scanned codes resolved, while the catalog does not change (m180)
        self.sale_writer: SaleWriter | None = None  # the sale-writer process (edge/sales/sale_writer.py)
        # Per user, the second before which his tokens are refused (deactivated, role changed, secret
        # reset): both guards check every request, so it is a dict lookup, not a database read.
        self.tokens_after: dict[str, int] = users.tokens_after(self.db.reader())
        stored = self.db.reader().execute("SELECT value FROM settings WHERE key = 'store_id'").fetchone()
        self.store_id: str = stored[0] if stored else config.store_id
        # Receipt numbers read e.g. D001-00000042: short, and unique across the chain's stores.
        self.store_code = "".join(ch for ch in self.store_id.upper() if ch.isalnum())[:12] or "STORE"

    def token_revoked(self, claims: Claims) -> bool:
        """Issued before its user's cut-off. Claims carry no issue time (their msgpack layout is fixed
        for the tokens out there), so it is the expiry less the token lifetime."""
        after = self.tokens_after.get(claims.user_id)
        return after is not None and claims.expires_at - self.config.token_ttl_s < after

    def user_changed(self, user_id: str) -> None:
        """Reload the user's cut-off after a committed write to his account (edge/auth/users.py)."""
        row = self.db.reader().execute("SELECT tokens_after FROM users WHERE user_id = ?", (user_id,)).fetchone()
        if row is not None and row[0] is not None:
            self.tokens_after[user_id] = int(row[0])

    def close(self) -> None:
        self.db.close()
