"""`backroom install` / `backroom uninstall`: lay the appliance out on a Debian-family system, or in a
scratch root (`--root DIR`) for tests and image builds.

What goes where (paths below the root):
- the system user `backroom` (`useradd --system` on the real system; in a scratch root, lines appended to
  its etc/passwd and etc/group);
- /var/lib/backroom (the data; 0750, the user's), its backups/ and spool/;
- /etc/backroom/backroom.toml (the hub's settings: data directory, store, HQ) and /etc/backroom/devices/
  (the per-device env files of backroom-bridge@); the settings file is written once and then the
  operator's: a new install keeps it;
- the units of systemd/ in /etc/systemd/system, with the paths of this checkout, its virtual environment
  and the data directory put in, and enabled (the .wants symlinks that `systemctl enable` makes);
- the Mosquitto drop-in (the broker's configuration is written from the data directory at each start);
- udev rules for stable device names (edge/appliance/udev.py);
- on the real system, the bytecode of the application's packages: the units run with a read-only
  /opt (ProtectSystem=strict), where Python cannot cache it, and a hub compiling its ~280 modules at
  every start took half a second more to serve (docs/performance.md, cold start).

Idempotent: each path is compared with what it should hold, and only a difference is written; a second
run reports every path unchanged. `uninstall` removes units, drop-in, rules and /etc/backroom, and leaves
the data directory and the user alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Literal

import msgspec

from devices import profiles
from edge.appliance.udev import RULES_NAME, rules

REPO = Path(__file__).resolve().parents[2]
UNITS_DIR = REPO / "systemd"
USER = "backroom"
DEFAULT_DATA = "/var/lib/backroom"
TEMPLATE_APP = "/opt/backroom"
TEMPLATE_VENV = "/opt/backroom/.venv"
PACKAGES = ("edge", "hq_sync", "devices")
SYSTEM_UID_MAX = 999
# The units `install` enables, as their [Install] sections say: unit -> the target that wants it.
ENABLED = {"backroom-hub.service": "multi-user.target", "backroom-devices.service": "multi-user.target",
           "backroom-backup.timer": "timers.target"}

Kind = Literal["dir", "file", "config", "link"]
Action = Literal["created", "updated", "unchanged", "kept", "removed", "absent"]


class Options(msgspec.Struct, frozen=True, kw_only=True):
    root: Path = Path("/")
    data: str = DEFAULT_DATA  # the data directory as the installed system sees it
    store: str = "demo-001"
    hq: str | None = None
    app: str = str(REPO)  # where the code is (the checkout whose .venv runs it)
    venv: str = sys.prefix


class Entry(msgspec.Struct, frozen=True):
    path: str  # absolute, as the installed system sees it
    kind: Kind
    mode: int
    content: bytes = b""  # a file's bytes; a link's target


class Change(msgspec.Struct, frozen=True):
    path: str
    action: Action


def _rel(path: str) -> str:
    return str(PurePosixPath(path).relative_to("/"))


def _unit_text(text: str, opts: Options) -> str:
    # The venv first: it lies inside the application directory in the template.
    return (text.replace(TEMPLATE_VENV, opts.venv.rstrip("/")).replace(TEMPLATE_APP, opts.app.rstrip("/"))
            .replace(DEFAULT_DATA, opts.data.rstrip("/")))


def _toml_string(value: str) -> str:
    return msgspec.json.encode(value).decode()  # a JSON string is a TOML basic string for these values


def config_text(opts: Options) -> str:
    hq = (f"hq_url = {_toml_string(opts.hq)}" if opts.hq
          else '# hq_url = "https://hq.example.com"  (or pair from the tablet)')
    return (
        "# The hub's settings (edge/config.py HubConfig; docs/appliance.md). Written once by `backroom install`;\n"
        "# yours to edit from then on: a new install keeps this file. `systemctl restart backroom-hub` applies it.\n"
        f"data_dir = {_toml_string(opts.data)}\n"
        f"store_id = {_toml_string(opts.store)}\n"
        f"{hq}\n"
        "# Sync with the HQ this box was paired with (from the tablet or `backroom pair`) when hq_url is unset.\n"
        "hq_from_pairing = true\n"
        "# Print a status ticket (addresses, tablet URL and its QR code, pairing) once per boot.\n"
        "status_ticket = true\n")


def unit_files() -> list[Path]:
    return sorted(p for p in UNITS_DIR.iterdir() if p.suffix in (".service", ".timer"))


def plan(opts: Options) -> list[Entry]:
    """Every directory, file and link the install makes, in the order it makes them."""
    data = opts.data.rstrip("/")
    entries = [Entry(data, "dir", 0o750), Entry(f"{data}/backups", "dir", 0o750),
               Entry(f"{data}/spool", "dir", 0o750),
               Entry("/etc/backroom", "dir", 0o755), Entry("/etc/backroom/devices", "dir", 0o750),
               Entry("/etc/backroom/backroom.toml", "config", 0o644, config_text(opts).encode()),
               Entry("/etc/systemd/system", "dir", 0o755)]
    for unit in unit_files():
        entries.append(Entry(f"/etc/systemd/system/{unit.name}", "file", 0o644,
                             _unit_text(unit.read_text("utf-8"), opts).encode()))
    entries.append(Entry("/etc/systemd/system/mosquitto.service.d", "dir", 0o755))
    for conf in sorted((UNITS_DIR / "mosquitto.service.d").glob("*.conf")):
        entries.append(Entry(f"/etc/systemd/system/mosquitto.service.d/{conf.name}", "file", 0o644,
                             _unit_text(conf.read_text("utf-8"), opts).encode()))
    for name, target in sorted(ENABLED.items()):
        if not any(e.path == f"/etc/systemd/system/{target}.wants" for e in entries):
            entries.append(Entry(f"/etc/systemd/system/{target}.wants", "dir", 0o755))
        entries.append(Entry(f"/etc/systemd/system/{target}.wants/{name}", "link", 0o777,
                             f"/etc/systemd/system/{name}".encode()))
    entries.append(Entry("/etc/udev/rules.d", "dir", 0o755))
    entries.append(Entry(f"/etc/udev/rules.d/{RULES_NAME}", "file", 0o644,
                         rules(profiles.load_all().values()).encode()))
    return entries


def _apply(root: Path, entry: Entry) -> Action:
    path = root / _rel(entry.path)
    if entry.kind == "dir":
        if path.is_dir():
            return "unchanged"
        path.mkdir(parents=True, mode=entry.mode)
        path.chmod(entry.mode)
        return "created"
    if entry.kind == "link":
        target = entry.content.decode()
        if path.is_symlink() and os.readlink(path) == target:
            return "unchanged"
        existed = path.is_symlink() or path.exists()
        if existed:
            path.unlink()
        path.symlink_to(target)
        return "updated" if existed else "created"
    if path.exists():
        if entry.kind == "config":
            return "unchanged" if path.read_bytes() == entry.content else "kept"
        if path.read_bytes() == entry.content and (path.stat().st_mode & 0o777) == entry.mode:
            return "unchanged"
        action: Action = "updated"
    else:
        action = "created"
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_bytes(entry.content)
    temp.chmod(entry.mode)
    temp.replace(path)
    return action


def _account_lines(root: Path) -> tuple[Path, Path]:
    return root / "etc/passwd", root / "etc/group"


def _ensure_user_in_root(root: Path, data: str) -> Action:
    """A scratch root: the user and group appended to its etc/passwd and etc/group (ids from the system range,
    the highest free one below 1000, as useradd --system picks them)."""
    passwd, group = _account_lines(root)
    passwd.parent.mkdir(parents=True, exist_ok=True)
    users = [line.split(":") for line in passwd.read_text("utf-8").splitlines()] if passwd.exists() else []
    groups = [line.split(":") for line in group.read_text("utf-8").splitlines()] if group.exists() else []
    has_user = any(u[0] == USER for u in users)
    has_group = any(g[0] == USER for g in groups)
    if has_user and has_group:
        return "unchanged"
    taken = {int(f[2]) for f in users + groups if len(f) > 2 and f[2].isdigit()}
    free = (i for i in range(SYSTEM_UID_MAX, 99, -1) if i not in taken)
    gid = next(g[2] for g in groups if g[0] == USER) if has_group else str(next(free))
    if not has_group:
        with group.open("a", encoding="utf-8") as f:
            f.write(f"{USER}:x:{gid}:\n")
    if not has_user:
        uids = {u[2] for u in users if len(u) > 2}
        uid = gid if gid not in uids else str(next(free))
        with passwd.open("a", encoding="utf-8") as f:
            f.write(f"{USER}:x:{uid}:{gid}:Backroom store hub:{data}:/usr/sbin/nologin\n")
    return "created"


def _ensure_user_on_system(data: str) -> Action:
    import pwd

    try:
        pwd.getpwnam(USER)
        return "unchanged"
    except KeyError:
        pass
    subprocess.run(["useradd", "--system", "--user-group", "--home-dir", data, "--no-create-home",
                    "--shell", "/usr/sbin/nologin", "--comment", "Backroom store hub", USER], check=True)
    return "created"


def install(opts: Options) -> list[Change]:
    real = opts.root.resolve() == Path("/")
    if real and os.geteuid() != 0:
        raise PermissionError("installing on this system needs root (sudo); or give --root DIR for a scratch root")
    user = _ensure_user_on_system(opts.data) if real else _ensure_user_in_root(opts.root, opts.data)
    changes = [Change(f"user {USER}", user)]
    for entry in plan(opts):
        changes.append(Change(entry.path, _apply(opts.root, entry)))
    if real:
        data = opts.data.rstrip("/")
        for owned in (data, f"{data}/backups", f"{data}/spool", "/etc/backroom/devices"):
            shutil.chown(owned, USER, USER)
        changes.append(Change(f"{opts.app.rstrip('/')} bytecode", compile_bytecode(Path(opts.app))))
        if any(c.action in ("created", "updated") for c in changes):
            for command in (["systemctl", "daemon-reload"], ["udevadm", "control", "--reload-rules"]):
                if shutil.which(command[0]):
                    subprocess.run(command, check=False)
    return changes


def compile_bytecode(app: Path) -> Action:
    """Write the missing or stale bytecode of the application's packages (`__pycache__` beside them)."""
    import compileall

    def stamps() -> dict[Path, int]:
        return {p: p.stat().st_mtime_ns for package in PACKAGES for p in (app / package).rglob("*.pyc")}

    before = stamps()
    for package in PACKAGES:
        if (app / package).is_dir():
            compileall.compile_dir(app / package, quiet=1)
    return "unchanged" if stamps() == before else "updated"


def uninstall(root: Path) -> list[Change]:
    """Remove what `install` put in /etc; leave the data directory (and the user that owns it) alone."""
    real = root.resolve() == Path("/")
    if real and os.geteuid() != 0:
        raise PermissionError("uninstalling from this system needs root (sudo); or give --root DIR")
    if real and shutil.which("systemctl"):
        subprocess.run(["systemctl", "disable", "--now", *sorted(ENABLED)], check=False)
    paths = [f"/etc/systemd/system/{target}.wants/{unit}" for unit, target in sorted(ENABLED.items())]
    paths += [f"/etc/systemd/system/{unit.name}" for unit in unit_files()]
    paths += [f"/etc/systemd/system/mosquitto.service.d/{d.name}"
              for d in sorted((UNITS_DIR / "mosquitto.service.d").glob("*.conf"))]
    paths += [f"/etc/udev/rules.d/{RULES_NAME}"]
    changes = []
    for name in paths:
        path = root / _rel(name)
        if path.is_symlink() or path.exists():
            path.unlink()
            changes.append(Change(name, "removed"))
        else:
            changes.append(Change(name, "absent"))
    dropins = root / "etc/systemd/system/mosquitto.service.d"
    if dropins.is_dir() and not any(dropins.iterdir()):
        dropins.rmdir()
    etc = root / "etc/backroom"
    if etc.exists():
        shutil.rmtree(etc)
        changes.append(Change("/etc/backroom", "removed"))
    else:
        changes.append(Change("/etc/backroom", "absent"))
    if real and shutil.which("systemctl"):
        subprocess.run(["systemctl", "daemon-reload"], check=False)
    return changes
