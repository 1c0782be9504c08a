"""The hub's Mosquitto: configuration, per-device credentials, the ACL, and the broker as a child process.

Everything lives in `{data}/mqtt/`:

    broker.json        the listener settings the files were written for (store, ports, advertised host)
    registry.json      approved devices: id, profile, username, PBKDF2 hash (never the password)
    secrets.json       the hub's and the observer's own passwords (mode 0600: the hub must log in)
    mosquitto.conf     two listeners: the LAN one (devices, observers) and a localhost one (the hub),
                       each with its own password file and ACL (per_listener_settings)
    passwd.lan, acl.lan, passwd.local, acl.local, mosquitto.pid, persistence/

Passwords are hashed in Mosquitto's own format (`$7$<iterations>$<salt>$<hash>`, PBKDF2-SHA512), so
no `mosquitto_passwd` run is needed. A change rewrites the files atomically and sends SIGHUP to the
running broker, which rereads the password files and ACLs without dropping connections. Mosquitto
checks ACLs on every publish and subscription, so a changed ACL applies at once; a rotated password
applies at the device's next connection.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import fcntl
import hashlib
import hmac
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import msgspec

from devices import topics

ITERATIONS = 101  # mosquitto_passwd's default; device passwords are 32 random bytes, not words
HUB_USER = "backroom-hub"
T = TypeVar("T")
OBSERVER_USER = "backroom-observer"


class BrokerError(RuntimeError):
    pass


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    store_id: str = "demo-001"
    lan_port: int = 1883
    lan_bind: str = "0.0.0.0"
    local_port: int = 1884
    advertise_host: str = ""  # what goes in the mqtt_url handed to devices; empty: this host's LAN address


class DeviceRecord(msgspec.Struct, frozen=True):
    device_id: str
    profile: str
    username: str
    password_hash: str
    created_at: str
    rotated_at: str


class Registry(msgspec.Struct):
    devices: dict[str, DeviceRecord] = {}


class Secrets(msgspec.Struct):
    hub_password: str = ""
    observer_password: str = ""


class Credentials(msgspec.Struct, frozen=True):
    username: str
    password: str
    mqtt_url: str
    device_id: str | None = None


class Paths:
    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir / "mqtt"
        self.settings = self.dir / "broker.json"
        self.registry = self.dir / "registry.json"
        self.secrets = self.dir / "secrets.json"
        self.conf = self.dir / "mosquitto.conf"
        self.passwd_lan = self.dir / "passwd.lan"
        self.acl_lan = self.dir / "acl.lan"
        self.passwd_local = self.dir / "passwd.local"
        self.acl_local = self.dir / "acl.local"
        self.pid = self.dir / "mosquitto.pid"
        self.persistence = self.dir / "persistence"
        self.lock = self.dir / ".lock"


# --- passwords ----------------------------------------------------------------------------------

def hash_password(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """Mosquitto 2's password-file hash: `$7$iterations$b64(salt)$b64(pbkdf2_sha512)`."""
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    parts = hashed.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    salt, expected = base64.b64decode(parts[3]), base64.b64decode(parts[4])
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, int(parts[2]))
    return hmac.compare_digest(digest, expected)


def new_password() -> str:
    return secrets.token_urlsafe(32)


# --- files ----------------------------------------------------------------------------------------

def _write(path: Path, text: str, mode: int = 0o600) -> None:
    """Atomically: the broker may reread the file at any moment."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(paths: Paths) -> Iterator[None]:
    paths.dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    with open(paths.lock, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read(path: Path, type_: type[T], default: T) -> T:
    if not path.exists():
        return default
    return msgspec.json.decode(path.read_bytes(), type=type_)


def load_settings(data_dir: Path) -> Settings | None:
    path = Paths(data_dir).settings
    return msgspec.json.decode(path.read_bytes(), type=Settings) if path.exists() else None


def lan_address() -> str:
    """This host's address on the LAN (the route to a public address; no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))
            return str(sock.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def mqtt_url(settings: Settings) -> str:
    return f"mqtt://{settings.advertise_host or lan_address()}:{settings.lan_port}"


def render_conf(settings: Settings, paths: Paths, run_as: str) -> str:
    return f"""# Written by backroom (devices/broker.py) from {paths.settings.name}; edits are overwritten.
per_listener_settings true
user {run_as}
pid_file {paths.pid}
persistence true
persistence_location {paths.persistence}/
autosave_interval 60
log_dest stderr
log_type error
log_type warning
log_type notice
connection_messages false
max_queued_messages 1000
max_inflight_messages 20
retain_available true

# LAN: devices and read-only observers, each with its own credentials.
listener {settings.lan_port} {settings.lan_bind}
allow_anonymous false
password_file {paths.passwd_lan}
acl_file {paths.acl_lan}

# Localhost: the hub itself.
listener {settings.local_port} 127.0.0.1
allow_anonymous false
password_file {paths.passwd_local}
acl_file {paths.acl_local}
"""


def device_username(device_id: str) -> str:
    return f"dev-{device_id}"


def render_acl_lan(store_id: str, registry: Registry) -> str:
    """Each device writes only its own subtree (never a command) and reads only its own commands."""
    root = topics.root(store_id)
    out = ["# Written by backroom; one block per approved device.", "",
           f"user {OBSERVER_USER}", f"topic read {root}/#", ""]
    for record in sorted(registry.devices.values(), key=lambda r: r.device_id):
        base = topics.device_root(store_id, record.device_id)
        out += [f"user {record.username}",
                f"topic write {base}/birth",
                f"topic write {base}/status",
                f"topic write {base}/data/#",
                f"topic write {base}/cmd/+/result",
                f"topic read {base}/cmd/#", ""]
    return "\n".join(out)


def render_acl_local(store_id: str) -> str:
    return f"user {HUB_USER}\ntopic readwrite {topics.root(store_id)}/#\ntopic read $SYS/#\n"


def _run_as(data_dir: Path) -> str:
    """Mosquitto started as root drops to `user`: the owner of the data directory can read its files."""
    return pwd.getpwuid(data_dir.stat().st_uid).pw_name


def _regenerate(paths: Paths, settings: Settings, registry: Registry, keys: Secrets, data_dir: Path) -> None:
    paths.persistence.mkdir(parents=True, exist_ok=True)
    _write(paths.passwd_lan, "".join(
        [f"{OBSERVER_USER}:{hash_password(keys.observer_password)}\n"]
        + [f"{r.username}:{r.password_hash}\n" for r in sorted(registry.devices.values(), key=lambda r: r.username)]))
    _write(paths.acl_lan, render_acl_lan(settings.store_id, registry))
    _write(paths.passwd_local, f"{HUB_USER}:{hash_password(keys.hub_password)}\n")
    _write(paths.acl_local, render_acl_local(settings.store_id))
    _write(paths.conf, render_conf(settings, paths, _run_as(data_dir)), mode=0o640)


def configure(data_dir: Path, settings: Settings | None = None) -> Settings:
    """Write every broker file (creating the hub and observer passwords once). Returns the settings used."""
    paths = Paths(data_dir)
    with _locked(paths):
        settings = settings or load_settings(data_dir) or Settings()
        topics.root(settings.store_id)  # a store id that cannot be a topic level fails here
        keys = _read(paths.secrets, Secrets, Secrets())
        if not keys.hub_password or not keys.observer_password:
            keys = Secrets(hub_password=keys.hub_password or new_password(),
                           observer_password=keys.observer_password or new_password())
            _write(paths.secrets, msgspec.json.encode(keys).decode())
        _write(paths.settings, msgspec.json.encode(settings).decode(), mode=0o640)
        registry = _read(paths.registry, Registry, Registry())
        _regenerate(paths, settings, registry, keys, data_dir)
    reload(data_dir)
    return settings


def _change(data_dir: Path, device_id: str, profile: str | None, *, remove: bool = False) -> Credentials | None:
    if not topics.valid_segment(device_id):
        raise BrokerError(f"device id {device_id!r}: letters, digits, '_', '.', '-' only (at most 64)")
    paths = Paths(data_dir)
    if load_settings(data_dir) is None:
        configure(data_dir)
    with _locked(paths):
        settings = load_settings(data_dir) or Settings()
        keys = _read(paths.secrets, Secrets, Secrets())
        registry = _read(paths.registry, Registry, Registry())
        now = datetime.now(UTC).isoformat(timespec="seconds")
        previous = registry.devices.get(device_id)
        password = new_password()
        if remove:
            if previous is None:
                raise BrokerError(f"no device {device_id!r}")
            del registry.devices[device_id]
        else:
            if profile is None:
                if previous is None:
                    raise BrokerError(f"no device {device_id!r}: add it first")
                profile = previous.profile
            registry.devices[device_id] = DeviceRecord(
                device_id=device_id, profile=profile, username=device_username(device_id),
                password_hash=hash_password(password), created_at=previous.created_at if previous else now,
                rotated_at=now)
        _write(paths.registry, msgspec.json.encode(registry).decode())
        _regenerate(paths, settings, registry, keys, data_dir)
    reload(data_dir)
    if remove:
        return None
    return Credentials(username=device_username(device_id), password=password, mqtt_url=mqtt_url(settings),
                       device_id=device_id)


def add_device(data_dir: Path, device_id: str, profile: str) -> Credentials:
    """Register an approved device (or re-register it: a new password) and return its credentials."""
    creds = _change(data_dir, device_id, profile)
    assert creds is not None
    return creds


def add_devices(data_dir: Path, wanted: list[tuple[str, str]]) -> list[Credentials]:
    """Register many (device id, profile) pairs in one change: one rewrite of the files, one reload."""
    for device_id, _ in wanted:
        if not topics.valid_segment(device_id):
            raise BrokerError(f"device id {device_id!r}: letters, digits, '_', '.', '-' only (at most 64)")
    paths = Paths(data_dir)
    if load_settings(data_dir) is None:
        configure(data_dir)
    out: list[Credentials] = []
    with _locked(paths):
        settings = load_settings(data_dir) or Settings()
        keys = _read(paths.secrets, Secrets, Secrets())
        registry = _read(paths.registry, Registry, Registry())
        now = datetime.now(UTC).isoformat(timespec="seconds")
        for device_id, profile in wanted:
            password = new_password()
            previous = registry.devices.get(device_id)
            registry.devices[device_id] = DeviceRecord(
                device_id=device_id, profile=profile, username=device_username(device_id),
                password_hash=hash_password(password), created_at=previous.created_at if previous else now,
                rotated_at=now)
            out.append(Credentials(username=device_username(device_id), password=password,
                                   mqtt_url=mqtt_url(settings), device_id=device_id))
        _write(paths.registry, msgspec.json.encode(registry).decode())
        _regenerate(paths, settings, registry, keys, data_dir)
    reload(data_dir)
    return out


def rotate(data_dir: Path, device_id: str) -> Credentials:
    """A new password for a registered device; the old one stops working at once for new connections."""
    creds = _change(data_dir, device_id, None)
    assert creds is not None
    return creds


def remove_device(data_dir: Path, device_id: str) -> None:
    _change(data_dir, device_id, None, remove=True)


def devices(data_dir: Path) -> list[DeviceRecord]:
    registry = _read(Paths(data_dir).registry, Registry, Registry())
    return sorted(registry.devices.values(), key=lambda r: r.device_id)


def observer_credentials(data_dir: Path) -> Credentials:
    settings = load_settings(data_dir) or configure(data_dir)
    keys = _read(Paths(data_dir).secrets, Secrets, Secrets())
    return Credentials(username=OBSERVER_USER, password=keys.observer_password, mqtt_url=mqtt_url(settings))


def hub_credentials(data_dir: Path) -> Credentials:
    settings = load_settings(data_dir) or configure(data_dir)
    keys = _read(Paths(data_dir).secrets, Secrets, Secrets())
    return Credentials(username=HUB_USER, password=keys.hub_password,
                       mqtt_url=f"mqtt://127.0.0.1:{settings.local_port}")


def running_pid(data_dir: Path) -> int | None:
    """The pid in the broker's pid file, if that process is alive and is a mosquitto (pids get reused)."""
    try:
        pid = int(Paths(data_dir).pid.read_text().strip())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return None
    return pid if comm == "mosquitto" else None


def reload(data_dir: Path) -> bool:
    """SIGHUP the running broker (if any) so it rereads passwords and ACLs. True if one was signalled."""
    pid = running_pid(data_dir)
    if pid is None:
        return False
    os.kill(pid, signal.SIGHUP)
    time.sleep(0.05)  # Mosquitto rereads the files on its next loop turn, within milliseconds
    return True


# --- the broker as a child process ----------------------------------------------------------------

def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if found is None:
        raise BrokerError("mosquitto is not installed (make system-packages, or apt-get install mosquitto)")
    return found


def wait_for_port(host: str, port: int, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """True once something accepts on host:port; False after `timeout_s`, or at once when `proc` (the process
    that should listen there) has exited."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.005)  # Mosquitto listens within milliseconds; the hub's start waits on this (cold start)
    return False


def _log_tail(path: Path | None, lines: int = 5) -> str:
    """The last lines of a broker's log, for an error message ("" when there is none)."""
    if path is None:
        return ""
    try:
        text = path.read_text("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def _die_with_parent() -> None:
    """In the child: SIGTERM when the thread that started it ends (PR_SET_PDEATHSIG), so a hub killed with
    SIGKILL leaves no broker behind. Start brokers from a thread that lives as long as they should (the main
    thread). Linux only; Mosquitto dropping to another user clears it (best effort)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


class Broker:
    """A Mosquitto child process on this data directory's configuration. `with Broker(...) as b:`."""

    def __init__(self, data_dir: Path, settings: Settings | None = None, log_path: Path | None = None) -> None:
        self.data_dir = data_dir
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> Broker:
        self.settings = configure(self.data_dir, self.settings)
        paths = Paths(self.data_dir)
        if running_pid(self.data_dir) is not None:
            raise BrokerError(f"a broker already runs on {paths.conf} (pid file {paths.pid})")
        command = [mosquitto_binary(), "-c", str(paths.conf)]
        # Not systemd's notification socket of a hub run as a Type=notify unit: Mosquitto would say READY=1 for it.
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        if self.log_path is None:
            self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                         start_new_session=True, preexec_fn=_die_with_parent)
        else:
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                             env=env, preexec_fn=_die_with_parent)
        host = "127.0.0.1" if self.settings.lan_bind in ("0.0.0.0", "::") else self.settings.lan_bind
        deadline = time.monotonic() + timeout_s
        if not (wait_for_port(host, self.settings.lan_port, timeout_s, self.proc)
                and wait_for_port("127.0.0.1", self.settings.local_port, max(deadline - time.monotonic(), 0.1),
                                  self.proc)):
            exited = self.proc.poll()
            self.stop()
            why = f"exited with code {exited}" if exited is not None else f"not listening after {timeout_s:g} s"
            tail = _log_tail(self.log_path)
            raise BrokerError(f"mosquitto did not open ports {self.settings.lan_port}/{self.settings.local_port} "
                              f"({why}){': ' + tail if tail else ''}")
        return self

    def reload(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        with contextlib.suppress(FileNotFoundError):
            Paths(self.data_dir).pid.unlink()

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def credentials_json(creds: Credentials) -> str:
    body = msgspec.to_builtins(creds)
    if body.get("device_id") is None:
        body.pop("device_id", None)
        return json.dumps(body)
    return json.dumps({"device_id": body["device_id"], "username": body["username"], "password": body["password"],
                       "mqtt_url": body["mqtt_url"]})
