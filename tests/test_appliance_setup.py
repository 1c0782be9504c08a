"""Setting up a box installed for a real store (not the demo): no accounts, so the first store manager is made
with the one-time setup code the status ticket prints (edge/appliance/setup.py), through the API, the CLI and
the tablet, on a real `backroom serve` over an empty data directory."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hubproc import HubProcess, backroom

from edge.appliance.first_boot import Ticket, lines

GOOD = {"username": "wang.li", "display_name": "王丽", "password": "tea-and-noodles"}


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[HubProcess]:
    """A hub of store s-042 on an empty data directory: no accounts at all."""
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "backroom.toml").write_text('store_id = "s-042"\ndevices_enabled = false\n', "utf-8")
    hub = HubProcess(data, config=tmp_path / "backroom.toml").start()
    yield hub
    hub.stop()


def _code(hub: HubProcess) -> str:
    done = backroom("setup-code", "--data", str(hub.data_dir))
    assert done.returncode == 0, done.stderr
    code = json.loads(done.stdout.strip().splitlines()[-1])["code"]
    assert re.fullmatch(r"[A-HJ-NP-Z2-9]{4}-[A-HJ-NP-Z2-9]{4}", code), code
    return str(code)


def test_the_first_manager_is_made_with_the_setup_code_and_only_once(fresh: HubProcess) -> None:
    api = httpx.Client(base_url=fresh.url, timeout=10)
    assert api.get("/api/v1/setup").json() == {"needed": True}
    assert api.post("/api/v1/auth/login", json={"username": "manager", "password": "manager-demo"}).status_code == 401
    code = _code(fresh)
    assert _code(fresh) == code  # asked again: the same code
    path = fresh.data_dir / "setup-code"
    assert path.stat().st_mode & 0o077 == 0

    wrong = api.post("/api/v1/setup", json={**GOOD, "code": "AAAA-AAAA" if code != "AAAA-AAAA" else "BBBB-BBBB"})
    assert wrong.status_code == 403 and wrong.json()["code"] == "bad_setup_code"
    short = api.post("/api/v1/setup", json={**GOOD, "code": code, "password": "short"})
    assert short.status_code == 400, short.text
    weak = api.post("/api/v1/setup", json={**GOOD, "code": code, "password": "wang.li-2026"})
    assert weak.status_code == 422 and weak.json()["code"] == "weak_password"
    huge = api.post("/api/v1/setup", json={**GOOD, "code": "X" * 33})
    assert huge.status_code == 400
    assert api.get("/api/v1/setup").json() == {"needed": True}  # nothing of those was kept

    done = api.post("/api/v1/setup", json={**GOOD, "code": code.lower().replace("-", " ")})
    assert done.status_code == 201, done.text
    body = done.json()
    assert body["username"] == "wang.li" and body["role"] == "store_manager"
    me = api.get("/api/v1/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200 and me.json()["role"] == "store_manager"
    login = api.post("/api/v1/auth/login", json={"username": "wang.li", "password": GOOD["password"]})
    assert login.status_code == 200

    assert not path.exists()  # used up
    assert api.get("/api/v1/setup").json() == {"needed": False}
    again = api.post("/api/v1/setup", json={**GOOD, "username": "zhao.qiang", "code": code})
    assert again.status_code == 409 and again.json()["code"] == "already_set_up"
    cli = backroom("setup-code", "--data", str(fresh.data_dir))
    assert cli.returncode == 1 and json.loads(cli.stdout.strip().splitlines()[-1]) == {"needed": False}
    assert not path.exists()

    conn = sqlite3.connect(f"file:{fresh.data_dir / 'hub.sqlite3'}?mode=ro", uri=True)
    try:
        audit = conn.execute("SELECT user_id, action, target FROM audit WHERE action = 'user.create'").fetchall()
        users = conn.execute("SELECT username, role FROM users").fetchall()
    finally:
        conn.close()
    assert audit == [("setup", "user.create", body["user_id"])]
    assert users == [("wang.li", "store_manager")]
    assert code.replace("-", "") not in fresh.log()  # the code is never logged


def test_wrong_codes_lock_the_setup_for_everyone(fresh: HubProcess) -> None:
    code = _code(fresh)
    api = httpx.Client(base_url=fresh.url, timeout=10)
    others = [c for c in ("AAAA-AAAA", "BBBB-BBBB", "CCCC-CCCC", "DDDD-DDDD", "EEEE-EEEE", "FFFF-FFFF") if c != code]
    for wrong in others[:5]:
        assert api.post("/api/v1/setup", json={**GOOD, "code": wrong}).status_code == 403
    locked = api.post("/api/v1/setup", json={**GOOD, "code": code})  # even the right one, for a while
    assert locked.status_code == 429 and locked.json()["code"] == "locked_out", locked.text
    assert api.get("/api/v1/setup").json() == {"needed": True}
    fresh.stop()  # a restart does not give a guesser a fresh allowance
    fresh.start()
    api = httpx.Client(base_url=fresh.url, timeout=10)
    still = api.post("/api/v1/setup", json={**GOOD, "code": code})
    assert still.status_code == 429 and still.json()["code"] == "locked_out", still.text
    assert code.replace("-", "") not in (fresh.data_dir / "setup-failures").read_text()


def test_the_tablet_sets_the_box_up_and_goes_on_to_pairing(fresh: HubProcess) -> None:
    code = _code(fresh)
    tablet = httpx.Client(base_url=fresh.url, timeout=10, follow_redirects=False)
    login = tablet.get("/ui/login")
    assert login.status_code == 200 and 'href="/ui/setup"' in login.text
    page = tablet.get("/ui/setup")
    assert page.status_code == 200 and "s-042" in page.text
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
    assert nonce is not None
    form = {"nonce": nonce.group(1), "code": "ZZZZ-ZZZZ" if code != "ZZZZ-ZZZZ" else "YYYY-YYYY",
            "username": "wang.li", "display_name": "王丽", "password": GOOD["password"],
            "password_again": GOOD["password"]}
    refused = tablet.post("/ui/setup", data=form)
    assert refused.status_code == 403 and 'role="alert"' in refused.text and 'value="wang.li"' in refused.text
    nonce = re.search(r'name="nonce" value="([^"]+)"', refused.text)
    assert nonce is not None
    differ = tablet.post("/ui/setup", data={**form, "nonce": nonce.group(1), "code": code, "password_again": "x"})
    assert differ.status_code == 400
    nonce = re.search(r'name="nonce" value="([^"]+)"', differ.text)
    assert nonce is not None
    done = tablet.post("/ui/setup", data={**form, "nonce": nonce.group(1), "code": code})
    assert done.status_code == 303 and done.headers["location"] == "/ui/sync/pair", done.text
    pair = tablet.get("/ui/sync/pair")
    assert pair.status_code == 200 and 'name="hq_url"' in pair.text  # logged in as the new manager
    assert tablet.get("/ui/setup").status_code == 303  # set up: to the login page
    assert 'href="/ui/setup"' not in httpx.get(f"{fresh.url}/ui/login").text


def test_the_ticket_prints_the_setup_code_while_the_box_needs_one() -> None:
    base = Ticket(store_name="Backroom s-042", store_id="s-042", addresses=["192.168.1.20"],
                  tablet_url="http://192.168.1.20:8080/ui", hq_url=None, at="2026-12-03T07:30:12+08:00")
    with_code = Ticket(**{**{f: getattr(base, f) for f in base.__struct_fields__}, "setup_code": "K7QM2XPD"})
    printed = lines(with_code)
    assert "设置码 Setup code: K7QM-2XPD" in printed
    assert printed[printed.index("Set up the store manager on the tablet:") + 1] == "http://192.168.1.20:8080/ui/setup"
    assert not any("Setup code" in line for line in lines(base))
