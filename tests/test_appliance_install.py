"""`backroom install` / `uninstall` into a scratch root, and `systemd-analyze verify` of every unit it lays out."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hubproc import backroom

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
MOSQUITTO_UNIT = any(Path(d, "mosquitto.service").exists() for d in ("/lib/systemd/system", "/usr/lib/systemd/system"))
WANTS = "etc/systemd/system/multi-user.target.wants"

EXPECTED_TREE = [
    "etc/", "etc/backroom/", "etc/backroom/backroom.toml", "etc/backroom/devices/", "etc/group", "etc/passwd",
    "etc/systemd/", "etc/systemd/system/",
    "etc/systemd/system/backroom-backup.service", "etc/systemd/system/backroom-backup.timer",
    "etc/systemd/system/backroom-bridge@.service", "etc/systemd/system/backroom-devices.service",
    "etc/systemd/system/backroom-hub.service",
    "etc/systemd/system/mosquitto.service.d/", "etc/systemd/system/mosquitto.service.d/backroom.conf",
    "etc/systemd/system/multi-user.target.wants/",
    f"{WANTS}/backroom-devices.service -> /etc/systemd/system/backroom-devices.service",
    f"{WANTS}/backroom-hub.service -> /etc/systemd/system/backroom-hub.service",
    "etc/systemd/system/timers.target.wants/",
    "etc/systemd/system/timers.target.wants/backroom-backup.timer -> /etc/systemd/system/backroom-backup.timer",
    "etc/udev/", "etc/udev/rules.d/", "etc/udev/rules.d/60-backroom.rules",
    "var/", "var/lib/", "var/lib/backroom/", "var/lib/backroom/backups/", "var/lib/backroom/spool/",
]


def tree(root: Path) -> list[str]:
    out = []
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out.append(f"{rel} -> {os.readlink(path)}")
        elif path.is_dir():
            out.append(rel + "/")
        else:
            out.append(rel)
    return out


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() and not p.is_symlink() else
                                       os.readlink(p).encode() if p.is_symlink() else b"", p.lstat().st_mode)
            for p in root.rglob("*")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("root")
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\nsystemd-network:x:998:998::/:/bin/false\n"
                                  "_apt:x:999:65534::/nonexistent:/usr/sbin/nologin\n")
    (root / "etc/group").write_text("root:x:0:\nsystemd-network:x:998:\ndialout:x:20:\n")
    done = backroom("install", "--root", str(root), "--store", "s-042", "--hq", "https://hq.example.com")
    assert done.returncode == 0, done.stderr
    return root, done


def test_install_lays_out_the_expected_tree(installed: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    root, done = installed
    assert tree(root) == EXPECTED_TREE
    assert (root / "etc/passwd").read_text().splitlines()[-1] == \
        "backroom:x:997:997:Backroom store hub:/var/lib/backroom:/usr/sbin/nologin"
    assert (root / "etc/group").read_text().splitlines()[-1] == "backroom:x:997:"
    assert (root / "etc/backroom/backroom.toml").read_text().splitlines()[2:5] == [
        'data_dir = "/var/lib/backroom"', 'store_id = "s-042"', 'hq_url = "https://hq.example.com"']
    hub = (root / "etc/systemd/system/backroom-hub.service").read_text()
    assert f"ExecStart={sys.prefix}/bin/backroom serve --config /etc/backroom/backroom.toml" in hub
    for line in ("Type=notify", "WatchdogSec=30", "RestartPreventExitStatus=78", "Restart=on-failure",
                 "User=backroom", "NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/backroom",
                 "PrivateTmp=yes", "ProtectHome=yes", "MemoryMax=256M", "StartLimitBurst=5"):
        assert line in hub.splitlines(), line
    devices = (root / "etc/systemd/system/backroom-devices.service").read_text()
    assert f"ExecStart={sys.prefix}/bin/backroom devices host --data ${{BACKROOM_DATA}}" in devices
    assert "SupplementaryGroups=dialout lp input" in devices
    assert "/opt/backroom" not in "".join(p.read_text() for p in (root / "etc/systemd/system").glob("*.service"))
    assert (root / "var/lib/backroom").stat().st_mode & 0o777 == 0o750
    assert done.stdout.splitlines()[-1] == f'{{"root": "{root}", "changed": 22, "unchanged": 0, "kept": []}}'


def test_a_second_install_changes_nothing(installed: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    root, _ = installed
    before = snapshot(root)
    again = backroom("install", "--root", str(root), "--store", "s-042", "--hq", "https://hq.example.com")
    assert again.returncode == 0, again.stderr
    assert "nothing to change: already installed" in again.stdout
    assert snapshot(root) == before


def test_an_edited_config_is_kept_and_a_damaged_unit_is_mended(tmp_path: Path) -> None:
    assert backroom("install", "--root", str(tmp_path), "--data", "/srv/backroom").returncode == 0
    config = tmp_path / "etc/backroom/backroom.toml"
    config.write_text(config.read_text() + "port = 8081\n")
    unit = tmp_path / "etc/systemd/system/backroom-hub.service"
    good = unit.read_bytes()
    unit.write_text("broken")
    again = backroom("install", "--root", str(tmp_path), "--data", "/srv/backroom")
    assert again.returncode == 0, again.stderr
    assert "kept      /etc/backroom/backroom.toml" in again.stdout
    assert "updated   /etc/systemd/system/backroom-hub.service" in again.stdout
    assert config.read_text().endswith("port = 8081\n")
    assert unit.read_bytes() == good
    assert "ReadWritePaths=/srv/backroom" in good.decode()
    assert (tmp_path / "srv/backroom/backups").is_dir()


def test_udev_rules_name_devices_by_port_and_usb_ids(installed: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    root, _ = installed
    rules = (root / "etc/udev/rules.d/60-backroom.rules").read_text()
    assert ('SUBSYSTEM=="tty", ENV{ID_BUS}=="usb", ENV{ID_PATH_TAG}=="?*", \\\n'
            '  SYMLINK+="backroom/by-port/$env{ID_PATH_TAG}", GROUP="dialout", MODE="0660"\n') in rules
    assert ('# xprinter-xp58-usb (Xprinter XP-58 (USB))\n'
            'SUBSYSTEM=="usbmisc", KERNEL=="lp[0-9]*", ATTRS{idVendor}=="0416", ATTRS{idProduct}=="5011", \\\n'
            '  SYMLINK+="backroom/printer%n", GROUP="lp", MODE="0660"\n') in rules


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_every_unit_passes_systemd_analyze_verify(installed: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    root, _ = installed
    units_dir = root / "etc/systemd/system"
    units = sorted(p.name for p in units_dir.iterdir() if p.suffix in (".service", ".timer") and not p.is_symlink())
    assert units == ["backroom-backup.service", "backroom-backup.timer", "backroom-bridge@.service",
                     "backroom-devices.service", "backroom-hub.service"]
    names = [u.replace("@.", "@scale-1.") for u in units]
    if MOSQUITTO_UNIT:
        names.append("mosquitto.service")  # Debian's unit with our drop-in from the installed root
    # The installed units first on the search path; the system's own (targets, mosquitto.service) after them.
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{units_dir}:", "SYSTEMD_LOG_COLOR": "0"}
    done = subprocess.run([str(SYSTEMD_ANALYZE), "verify", *names], capture_output=True, text=True, env=env,
                          cwd=units_dir, timeout=60)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_finds_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a unit whose program is missing and which has a typo does not pass."""
    (tmp_path / "backroom-hub.service").write_text("[Service]\nTyp=notify\nExecStart=/nonexistent/backroom serve\n")
    done = subprocess.run([str(SYSTEMD_ANALYZE), "verify", "backroom-hub.service"], capture_output=True, text=True,
                          env={**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"}, cwd=tmp_path, timeout=60)
    assert done.returncode != 0
    assert "Unknown key 'Typ'" in done.stderr and "/nonexistent/backroom" in done.stderr


def test_uninstall_leaves_the_data(tmp_path: Path) -> None:
    assert backroom("install", "--root", str(tmp_path)).returncode == 0
    (tmp_path / "var/lib/backroom/hub.sqlite3").write_bytes(b"the store's sales")
    (tmp_path / "etc/backroom/devices/scale-1.env").write_text("BACKROOM_PROFILE=mettler-toledo-8217\n")
    done = backroom("uninstall", "--root", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert tree(tmp_path) == [
        "etc/", "etc/group", "etc/passwd", "etc/systemd/", "etc/systemd/system/",
        "etc/systemd/system/multi-user.target.wants/", "etc/systemd/system/timers.target.wants/",
        "etc/udev/", "etc/udev/rules.d/",
        "var/", "var/lib/", "var/lib/backroom/", "var/lib/backroom/backups/", "var/lib/backroom/hub.sqlite3",
        "var/lib/backroom/spool/"]
    assert (tmp_path / "var/lib/backroom/hub.sqlite3").read_bytes() == b"the store's sales"
    again = backroom("uninstall", "--root", str(tmp_path))
    assert "nothing to change: already uninstalled" in again.stdout


def test_install_on_this_system_needs_root() -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: the real install would touch this machine")
    done = backroom("install")
    assert done.returncode == 1
    assert "needs root" in done.stderr


def test_install_writes_the_bytecode_the_read_only_units_cannot(tmp_path: Path) -> None:
    """The units see /opt read-only (ProtectSystem=strict): install caches the packages' bytecode, once."""
    from edge.appliance.install import compile_bytecode

    module = tmp_path / "edge" / "sub" / "m.py"
    module.parent.mkdir(parents=True)
    module.write_text("VALUE = 1\n")
    assert compile_bytecode(tmp_path) == "updated"
    assert [p.name for p in (module.parent / "__pycache__").iterdir()] == [f"m.{sys.implementation.cache_tag}.pyc"]
    assert compile_bytecode(tmp_path) == "unchanged"
    module.write_text("VALUE = 22\n")  # edited (a git pull), a while later: compiled again
    later = module.stat().st_mtime + 10
    os.utime(module, (later, later))
    assert compile_bytecode(tmp_path) == "updated"
