"""The hub's automatic tags: the tag rules (`tag_rules`), members' purchase histories from this store's
sales, and the daily recompute into `members.auto_tags` (never touching the manual `members.tags`).

A standalone hub recomputes daily (edge/members/review.py); a paired hub receives HQ's results in the
feed. `effective_tags` is what promotion eligibility and member search see: manual and automatic.
"""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import Sequence

import msgspec

from edge.members import pii
from edge.members.tagging import DEFAULT_RULES, History, Spend, TagRule, auto_tags, history_days, tag_rule_decoder

_encoder = msgspec.json.Encoder()
_CHUNK = 500


def read_rules(conn: sqlite3.Connection) -> list[TagRule]:
    """The stored rules, or the defaults while none were ever set."""
    if conn.execute("SELECT 1 FROM settings WHERE key = 'tag_rules_set'").fetchone() is None:
        return list(DEFAULT_RULES)
    return [tag_rule_decoder.decode(r[0]) for r in conn.execute("SELECT rule FROM tag_rules ORDER BY position")]


def put_rules(conn: sqlite3.Connection, rules: Sequence[TagRule]) -> None:
    conn.execute("DELETE FROM tag_rules")
    conn.executemany("INSERT INTO tag_rules (name, position, rule) VALUES (?, ?, ?)",
                     [(r.name, n, _encoder.encode(r).decode()) for n, r in enumerate(rules)])
    conn.execute("INSERT OR REPLACE INTO settings (key, value) VALUES ('tag_rules_set', '1')")


def _day(text: str | None) -> datetime.date | None:
    if not text:
        return None
    try:
        return datetime.date.fromisoformat(text[:10])
    except ValueError:
        return None


def histories(conn: sqlite3.Connection, member_ids: Sequence[str], today: datetime.date,
              days: int) -> dict[str, History]:
    """Purchase histories of these members over the last `days` days (and their last purchase ever)."""
    start = (today - datetime.timedelta(days=days)).isoformat() if days else "9999"
    end = (today + datetime.timedelta(days=1)).isoformat()
    out: dict[str, History] = {}
    for i in range(0, len(member_ids), _CHUNK):
        chunk = list(member_ids[i:i + _CHUNK])
        marks = ",".join("?" * len(chunk))
        tickets: dict[str, list[datetime.date]] = {}
        spend: dict[str, list[Spend]] = {}
        last: dict[str, datetime.date | None] = {}
        for member_id, day in conn.execute(
                f"""SELECT member_id, substr(created_at, 1, 10) FROM sales
                    WHERE member_id IN ({marks}) AND created_at >= ? AND created_at < ?""", [*chunk, start, end]):
            tickets.setdefault(member_id, []).append(datetime.date.fromisoformat(day))
        for member_id, day, category, net, discounted in conn.execute(
                f"""SELECT s.member_id, substr(s.created_at, 1, 10), i.category_id, sum(l.net),
                           sum(CASE WHEN l.discount > 0 THEN l.net ELSE 0 END)
                    FROM sales s JOIN sale_lines l ON l.sale_id = s.sale_id JOIN items i ON i.sku = l.sku
                    WHERE s.member_id IN ({marks}) AND s.created_at >= ? AND s.created_at < ?
                    GROUP BY 1, 2, 3""", [*chunk, start, end]):
            spend.setdefault(member_id, []).append(
                Spend(datetime.date.fromisoformat(day), str(category), int(net), int(discounted)))
        for member_id, at in conn.execute(
                f"SELECT member_id, max(created_at) FROM sales WHERE member_id IN ({marks}) GROUP BY member_id", chunk):
            last[member_id] = _day(at)
        k = pii.keys(conn)  # the birthday is sealed (docs/privacy.md)
        for member_id, created_at, blob in conn.execute(
                f"SELECT member_id, created_at, pii FROM members WHERE member_id IN ({marks})", chunk):
            out[member_id] = History(joined_on=_day(created_at) or today,
                                     birthday=_day(k.open_personal(member_id, blob).birthday),
                                     tickets=tickets.get(member_id, []), spend=spend.get(member_id, []),
                                     last_purchase_on=last.get(member_id))
    return out


def recompute(conn: sqlite3.Connection, today: datetime.date, member_ids: Sequence[str] | None = None) -> list[str]:
    """Recompute the automatic tags (of every member without `member_ids`); returns the members whose
    automatic tags changed."""
    rules = read_rules(conn)
    sql = "SELECT member_id, auto_tags FROM members"
    if member_ids is None:
        current = {str(r[0]): str(r[1]) for r in conn.execute(sql)}
    else:
        current = {}
        for i in range(0, len(member_ids), _CHUNK):
            chunk = list(member_ids[i:i + _CHUNK])
            current.update((str(r[0]), str(r[1])) for r in conn.execute(
                sql + f" WHERE member_id IN ({','.join('?' * len(chunk))})", chunk))
    updates = []
    for member_id, history in histories(conn, list(current), today, history_days(rules)).items():
        text = _encoder.encode(auto_tags(rules, history, today)).decode()
        if current.get(member_id) != text:
            updates.append((text, member_id))
    conn.executemany("UPDATE members SET auto_tags = ? WHERE member_id = ?", updates)
    return [m for _, m in updates]


def effective_tags(manual: str | None, auto: str | None) -> tuple[str, ...]:
    """Manual and automatic tags (JSON lists as stored), without repeats, manual first."""
    seen: dict[str, None] = {}
    for text in (manual, auto):
        if text:
            for tag in msgspec.json.decode(text, type=list[str]):
                seen.setdefault(tag, None)
    return tuple(seen)
