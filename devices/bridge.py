"""One device on the broker: `backroom devices bridge --profile ID --port URL --device-id ID`.

The bridge owns one port and one MQTT connection. It publishes the retained birth and status
(the connection's will sets `offline`), polls or listens as the profile's protocol says (never
faster than its command spacing), publishes readings, and executes commands with results.

- Status is `online` while the broker connection is up, the port is open and the device answers.
- A port that fails is closed and reopened with backoff (0.25 s doubling to 10 s); birth and
  status are published again when it is back.
- Print jobs go to a spool first (a directory when `--spool` is given, so a restart loses
  nothing) and leave it only once the printer has them: when the model answers status requests,
  the bridge asks after each job, and TCP delivers in order, so an answer proves the job arrived.
  A job that was not confirmed is sent again after reconnecting (a duplicate receipt is better
  than a lost one). The result of a print command is published when its job is confirmed.
- The MQTT session is persistent (clean start off, one day expiry): commands sent while the
  bridge is away wait at the broker. Publishers give `kick`, `tare`, `zero` and `display` a
  message expiry so a stale one never fires.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from devices import receipt as receipts
from devices import topics
from devices.codecs import evdev_wedge, make_codec
from devices.codecs.base import (
    Ack,
    Codec,
    DeviceError,
    Enquire,
    Kick,
    Nak,
    PrinterStatus,
    PrintText,
    Reading,
    Request,
    ScanReading,
    ShowText,
    Status,
    Tare,
    Unsupported,
    Weigh,
    WeightReading,
    Zero,
)
from devices.ports import Port, PortGone, open_port
from devices.profiles import Capability, Profile

log = logging.getLogger("backroom.bridge")

BACKOFF_START_S, BACKOFF_MAX_S = 0.25, 10.0
WEIGHT_HEARTBEAT_S = 5.0  # republish an unchanged weight this often
SILENT_POLLS_OFFLINE = 3  # a device that answers none of this many polls in a row is offline
ACTION_CAPABILITY: dict[type, Capability] = {
    topics.PrintCommand: "print", topics.KickCommand: "kick", topics.DisplayCommand: "display",
    topics.TareCommand: "tare", topics.ZeroCommand: "zero",
}


@dataclass(frozen=True)
class MqttTarget:
    host: str
    port: int
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> MqttTarget:
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        if parts.scheme not in ("mqtt", "tcp"):
            raise ValueError(f"unsupported MQTT URL scheme {parts.scheme!r} (mqtt://user:password@host:port)")
        return cls(host=parts.hostname or "127.0.0.1", port=parts.port or 1883,
                   username=unquote(parts.username) if parts.username else None,
                   password=unquote(parts.password) if parts.password else None)


@dataclass
class PrintJob:
    cmd_id: str
    data: bytes
    path: Path | None = None


class Spool:
    """Print jobs in order; on disk when a directory is given, so a restarted bridge still prints them."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.jobs: deque[PrintJob] = deque()
        self._seq = 0
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            for path in sorted(directory.glob("*.job")):
                self._seq = max(self._seq, int(path.stem.split("-", 1)[0]))
                self.jobs.append(PrintJob(cmd_id=path.stem.split("-", 1)[1], data=path.read_bytes(), path=path))

    def add(self, cmd_id: str, data: bytes) -> None:
        self._seq += 1
        path = None
        if self.directory is not None:
            path = self.directory / f"{self._seq:010d}-{cmd_id}.job"
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        self.jobs.append(PrintJob(cmd_id=cmd_id, data=data, path=path))

    def done(self, job: PrintJob) -> None:
        self.jobs.popleft()
        if job.path is not None:
            with contextlib.suppress(FileNotFoundError):
                job.path.unlink()


class Bridge:
    def __init__(self, profile: Profile, port_url: str, device_id: str, store_id: str, mqtt_target: MqttTarget,
                 spool_dir: Path | None = None) -> None:
        self.profile = profile
        self.port_url = port_url
        self.device_id = device_id
        self.store_id = store_id
        self.target = mqtt_target
        self.params = profile.protocol
        if isinstance(self.params, evdev_wedge.Params):
            native = struct.calcsize("ll")  # the running platform's timeval
            self.params = evdev_wedge.Params(layout=self.params.layout, time_bytes=16 if native == 16 else 8)
        self.codec: Codec = make_codec(self.params)
        self.spool = Spool(spool_dir)
        self.commands: queue.Queue[topics.Command | tuple[str, str, str]] = queue.Queue()
        self.stop_event = threading.Event()
        self.port: Port | None = None
        self.seq = 0
        self._last_write = 0.0
        self._next_open = 0.0
        self._backoff = BACKOFF_START_S
        self._next_poll = 0.0
        self._next_status = 0.0
        self._silent = 0
        self._answering = True
        self._published_status: str | None = None
        self._last_weight: tuple[int | None, bool, str] | None = None
        self._last_weight_at = 0.0
        self._connected = threading.Event()
        self.client = self._make_client()

    # --- MQTT -----------------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bridge-{self.store_id}-{self.device_id}",
                             protocol=mqtt.MQTTv5)
        if self.target.username:
            client.username_pw_set(self.target.username, self.target.password)
        client.will_set(topics.status(self.store_id, self.device_id), topics.encode("offline"), qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                    reason: ReasonCode, properties: Properties | None) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        # Subscribe before announcing: the broker handles one connection's packets in order, so whoever
        # sees `online` can send a command and it will be delivered.
        client.subscribe(f"{topics.device_root(self.store_id, self.device_id)}/cmd/+", qos=1)
        self._connected.set()
        self._last_weight = None  # subscribers may have missed it: the next reading goes out
        self._publish_birth()
        self._published_status = None
        self._publish_status()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags,
                       reason: ReasonCode, properties: Properties | None) -> None:
        self._connected.clear()
        if not self.stop_event.is_set():
            log.warning("broker connection lost (%s); paho reconnects", reason)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        parsed = topics.parse(message.topic)
        if parsed is None or parsed.channel != "cmd" or parsed.name is None:
            return
        try:
            self.commands.put(topics.decode_command(parsed.name, bytes(message.payload)))
        except topics.BadCommand as exc:
            self.commands.put((parsed.name, exc.cmd_id, str(exc)))

    def _publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain)

    def _publish_birth(self) -> None:
        birth = topics.Birth(device_id=self.device_id, kind=self.profile.kind, profile=self.profile.id,
                             vendor=self.profile.vendor, model=self.profile.model,
                             capabilities=list(self.profile.capabilities), ts=topics.now())
        self._publish(topics.birth(self.store_id, self.device_id), topics.encode(birth), qos=1, retain=True)

    def _publish_status(self) -> None:
        status = "online" if self.port is not None and self._answering else "offline"
        if status != self._published_status and self._connected.is_set():
            self._published_status = status
            self._publish(topics.status(self.store_id, self.device_id), topics.encode(status), qos=1, retain=True)
            log.info("%s is %s", self.device_id, status)

    def _result(self, action: str, cmd_id: str, ok: bool, error: str | None = None) -> None:
        body = topics.CommandResult(cmd_id=cmd_id, ok=ok, error=error)
        self._publish(topics.result(self.store_id, self.device_id, action), topics.encode(body), qos=1)

    # --- the port -------------------------------------------------------------------------------

    def _open(self) -> None:
        try:
            self.port = open_port(self.port_url, self.profile)
        except PortGone as exc:
            log.warning("%s; retrying in %.1f s", exc, self._backoff)
            self._next_open = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)
            return
        log.info("opened %s", self.port_url)
        self._backoff = BACKOFF_START_S
        self.codec = make_codec(self.params)  # a fresh codec: no half frame from before
        self._silent = 0
        self._answering = True
        self._next_poll = self._next_status = time.monotonic()
        if self._connected.is_set():
            self._publish_birth()
        self._publish_status()

    def _lost(self, reason: str) -> None:
        log.warning("lost %s: %s", self.port_url, reason)
        if self.port is not None:
            self.port.close()
        self.port = None
        self._next_open = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)
        self._publish_status()

    def _write(self, data: bytes) -> None:
        assert self.port is not None
        spacing = self.params.command_spacing_ms / 1000
        wait = self._last_write + spacing - time.monotonic()
        if wait > 0:
            # Keep reading while we wait: bytes that arrive now are readings too.
            self._read(wait)
        self.port.write(data)
        self._last_write = time.monotonic()

    def _read(self, timeout_s: float) -> list[Reading]:
        assert self.port is not None
        readings = self.codec.feed(self.port.read(timeout_s))
        for reading in readings:
            self._publish_reading(reading)
        return readings

    def _transact(self, request: Request) -> list[Reading] | None:
        """Send one request; its answer's readings, [] if none is expected, None if the device kept silent."""
        self._write(self.codec.encode(request))
        if not self.codec.expects_reply(request):
            return []
        deadline = time.monotonic() + self.params.response_timeout_ms / 1000
        while (left := deadline - time.monotonic()) > 0:
            readings = self._read(min(left, 0.05))
            if readings:
                return readings
        return None

    def _heard(self, answered: bool) -> None:
        self._silent = 0 if answered else self._silent + 1
        answering = self._silent < SILENT_POLLS_OFFLINE
        if answering != self._answering:
            self._answering = answering
            self._publish_status()

    # --- readings -------------------------------------------------------------------------------

    def _publish_reading(self, reading: Reading) -> None:
        match reading:
            case WeightReading(grams=grams, stable=stable, state=state):
                if not self._connected.is_set():
                    return  # nobody to tell; the next poll after connecting publishes the weight
                key = (grams, stable, state)
                now = time.monotonic()
                if key == self._last_weight and now - self._last_weight_at < WEIGHT_HEARTBEAT_S:
                    return
                self._last_weight, self._last_weight_at = key, now
                self.seq += 1
                event = topics.WeightEvent(seq=self.seq, ts=topics.now(), grams=grams, stable=stable, state=state)
                self._publish(topics.data(self.store_id, self.device_id, "weight"), topics.encode(event))
            case ScanReading(code=code, symbology=symbology):
                self.seq += 1
                scan = topics.ScanEvent(seq=self.seq, ts=topics.now(), code=code, symbology=symbology)
                self._publish(topics.data(self.store_id, self.device_id, "scan"), topics.encode(scan), qos=1)
            case PrinterStatus(online=online):
                if online != self._answering:
                    self._answering = online
                    self._publish_status()

    def _poll(self) -> None:
        if self.params.handshake:
            answer = self._transact(Enquire())
            if not answer or not any(isinstance(r, Ack) for r in answer):
                self._heard(False)
                return
        readings = self._transact(Weigh())
        self._heard(readings is not None)
        if readings and any(isinstance(r, Nak) for r in readings) and self.profile.can("status"):
            self._transact(Status())

    def _check_printer(self) -> bool:
        """Ask the printer for its status; True if it answered (so everything sent before arrived)."""
        answer = self._transact(Status())
        if answer is None:
            raise PortGone("the printer does not answer status requests")
        return True

    # --- commands -------------------------------------------------------------------------------

    def _execute(self, command: topics.Command | tuple[str, str, str]) -> None:
        if isinstance(command, tuple):
            action, cmd_id, error = command
            self._result(action, cmd_id, False, error)
            return
        action = ACTION_CAPABILITY[type(command)]
        if not self.profile.can(action):
            self._result(action, command.cmd_id, False, f"{self.profile.id} cannot {action}")
            return
        if isinstance(command, topics.PrintCommand):
            self._enqueue_print(command)
            return
        if self.port is None:
            self._result(action, command.cmd_id, False, "device offline")
            return
        request: Request
        match command:
            case topics.TareCommand():
                request = Tare()
            case topics.ZeroCommand():
                request = Zero()
            case topics.KickCommand(pin=pin):
                request = Kick(pin=pin)
            case topics.DisplayCommand(lines=lines):
                request = ShowText(lines=lines)
        try:
            answer = self._transact(request)
        except Unsupported as exc:
            self._result(action, command.cmd_id, False, f"unsupported: {exc}")
            return
        if answer is None:
            self._result(action, command.cmd_id, False, "no answer from the device")
        elif errors := [r for r in answer if isinstance(r, DeviceError | Nak)]:
            self._result(action, command.cmd_id, False, f"device refused: {errors[0]}")
        else:
            self._result(action, command.cmd_id, True)

    def _enqueue_print(self, command: topics.PrintCommand) -> None:
        try:
            if command.receipt is not None:
                data = receipts.render(command.receipt, self.params, self.profile.capabilities)
            elif command.lines is not None:
                native_qr = command.qr is not None and self.profile.can("qr")
                lines = command.lines if native_qr or command.qr is None else [*command.lines, command.qr]
                data = self.codec.encode(PrintText(lines=lines, cut=command.cut, qr=command.qr if native_qr else None))
            else:
                data = None
        except Exception as exc:  # noqa: BLE001 - a job python-escpos cannot lay out must not stop the bridge
            log.exception("cannot lay out print job %s", command.cmd_id)
            self._result("print", command.cmd_id, False, f"cannot lay out the job: {exc}")
            return
        if data is None:
            self._result("print", command.cmd_id, False,
                         "no receipt: print a sale through the hub, which supplies its receipt")
            return
        self.spool.add(command.cmd_id, data)

    def _flush_spool(self) -> None:
        while self.spool.jobs and self.port is not None:
            job = self.spool.jobs[0]
            self._write(job.data)
            if self.profile.can("status"):
                self._check_printer()
            self.spool.done(job)
            self._result("print", job.cmd_id, True)

    # --- the loop -------------------------------------------------------------------------------

    def step(self) -> None:
        """One turn of the loop: open the port if due, run commands, poll, read."""
        now = time.monotonic()
        if self.port is None:
            if now >= self._next_open:
                self._open()
            if self.port is None:
                self._drain_offline()
                return
        try:
            while not self.commands.empty():
                self._execute(self.commands.get_nowait())
            self._flush_spool()
            interval = self.params.poll_interval_ms / 1000
            if interval > 0 and self.profile.can("weigh") and time.monotonic() >= self._next_poll:
                self._next_poll = time.monotonic() + interval
                self._poll()
            status_every = getattr(self.params, "status_interval_ms", 0) / 1000
            if status_every > 0 and self.profile.can("status") and time.monotonic() >= self._next_status:
                self._next_status = time.monotonic() + status_every
                self._check_printer()
            wait = 0.02 if not self.commands.empty() else 0.05
            if interval > 0:
                wait = max(0.0, min(wait, self._next_poll - time.monotonic()))
            self._read(wait)
        except PortGone as exc:
            self._lost(str(exc))

    def _drain_offline(self) -> None:
        """While the device is away: queue print jobs, refuse what cannot wait."""
        try:
            command = self.commands.get(timeout=max(0.0, min(0.1, self._next_open - time.monotonic())))
        except queue.Empty:
            return
        if isinstance(command, topics.PrintCommand) and self.profile.can("print"):
            self._enqueue_print(command)
        else:
            self._execute(command)

    def run(self) -> None:
        self.client.connect_async(self.target.host, self.target.port, keepalive=30, clean_start=False,
                                  properties=_session_properties())
        self.client.loop_start()
        try:
            while not self.stop_event.is_set():
                self.step()
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        if self.port is not None:
            self.port.close()
            self.port = None
        if self._connected.is_set():
            info = self.client.publish(topics.status(self.store_id, self.device_id), topics.encode("offline"),
                                       qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(2.0)
        self.client.disconnect()
        self.client.loop_stop()


def _session_properties() -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 24 * 3600
    return props
