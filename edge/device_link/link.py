"""The hub's device link: the managed Mosquitto, the hub's MQTT client, commands and their results, mDNS.

One `DeviceLink` per running hub, owned by `device_lifespan` (started after the hub, stopped
before it, each resource torn down in the reverse order it was started):

1. the broker: a Mosquitto child on this data directory's configuration (`devices/broker.py`),
   unless one already runs on it (systemd's `mosquitto.service` with the backroom drop-in);
2. the hub's paho client on the broker's localhost listener, subscribed to every device's birth,
   status, readings and command results; `live.Board` keeps the latest of each in memory;
3. mDNS: the advertiser (`_backroom._tcp`, `_mqtt._tcp`) and the browser for pending devices,
   started in a thread because registering probes the network for a second or two.

Commands go out at QoS 1 with a cmd_id; the result is matched by (device, action, cmd_id) and
remembered, so a till that retries a command with the same cmd_id gets the first result instead
of a second drawer kick. Everything that cannot wait (kick, tare, zero, display) carries an MQTT
message expiry: a drawer must not open minutes late. After a committed sale the link prints the
receipt on the till's printer and kicks its drawer for cash, as a background task: the sale never
waits for a device and never fails because of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import msgspec

from devices import broker, profiles, topics
from devices.receipt import Receipt
from edge import stopping
from edge.background import settled
from edge.config import TillDevices
from edge.device_link import receipts
from edge.device_link.live import Board
from edge.sales.models import SaleResult

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt
    from litestar import Litestar
    from litestar.datastructures import State
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

    from devices.discovery import Advertiser, DeviceBrowser
    from edge.hub import Hub
else:  # paho is imported when the link starts (devices on), not at the hub's start (docs/performance.md)
    from edge.lazy_import import LazyModule

    mqtt = LazyModule("paho.mqtt.client")

log = logging.getLogger("backroom.devices.link")

COMMAND_TIMEOUT_S = 5.0  # the HTTP command endpoint's wait for a result
SALE_PRINT_TIMEOUT_S = 30.0  # after a sale: how long to wait for the printer's confirmation before logging
EXPIRY_S = 10  # kick, tare, zero and display older than this are dropped by the broker
REMEMBERED_RESULTS = 2000
INFLIGHT_TTL_S = 3600.0
BROKER_START_S = 15.0  # Mosquitto listens and takes the hub's login in milliseconds; a box busy booting is slower
SUBSCRIBER_QUEUE = 256
_CMD_NAMESPACE = uuid.UUID("5b0c1f0e-6a57-4d0c-9e1f-3c3f6c1d2a10")
_result_decoder = msgspec.json.Decoder(topics.CommandResult)
CommandKey = tuple[str, str, str]  # device id, action, cmd_id


class LinkDown(Exception):
    """The hub has no broker connection (devices disabled, broker down)."""


class DeviceTimeout(Exception):
    """No result within the wait."""


def sale_cmd_id(sale_id: str, action: str) -> str:
    """The cmd_id of the automatic print/kick/display after a sale: one per sale and action."""
    return str(uuid.uuid5(_CMD_NAMESPACE, f"{sale_id}/{action}"))


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class DeviceLink:
    def __init__(self, hub: Hub) -> None:
        config = hub.config
        self.hub = hub
        self.config = config
        self.data_dir = config.data_dir
        self.store_id = hub.store_id
        self.settings = broker.Settings(
            store_id=hub.store_id, lan_port=config.mqtt_port, local_port=config.mqtt_local_port or config.mqtt_port + 1,
            lan_bind=config.mqtt_bind, advertise_host=config.mqtt_advertise_host)
        self.board = Board(hub.store_id, hub.clock.tz)
        self.broker: broker.Broker | None = None  # None when another process (systemd) runs the broker
        self.client: mqtt.Client | None = None
        self.advertiser: Advertiser | None = None
        self.browser: DeviceBrowser | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.connected = threading.Event()
        self._refused: str | None = None
        self._closing = False
        self._mdns_thread: threading.Thread | None = None
        self._mdns_starter: asyncio.Task[None] | None = None
        self._inflight: dict[CommandKey, tuple[asyncio.Future[topics.CommandResult], float]] = {}
        self._results: OrderedDict[CommandKey, topics.CommandResult] = OrderedDict()
        self._subscribers: dict[str, set[asyncio.Queue[tuple[str, bytes] | None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._registry: tuple[int, dict[str, broker.DeviceRecord]] | None = None
        self._profiles: dict[str, profiles.Profile | None] = {}

    # --- start and stop (mirrored) ----------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        # On this (the main) thread: the broker child dies with it (PR_SET_PDEATHSIG follows the starting thread).
        # Tens of milliseconds, before the hub serves anything.
        self._start_broker()
        await asyncio.to_thread(self._start_client)
        if self.config.mdns_enabled:
            # A moment after the hub serves: importing and starting zeroconf (its threads, its sockets) would
            # otherwise hold the GIL against the hub's own start (docs/performance.md, cold start).
            self._mdns_starter = asyncio.create_task(self._start_mdns_when_serving(), name="backroom-mdns-start")

    async def _start_mdns_when_serving(self) -> None:
        await settled(self.config.host, self.config.port)
        if not self._closing:
            self._mdns_thread = threading.Thread(target=self._start_mdns, name="backroom-mdns", daemon=True)
            self._mdns_thread.start()

    def _start_broker(self) -> None:
        pid = broker.running_pid(self.data_dir)
        current = broker.load_settings(self.data_dir)
        if pid is not None and current is not None:
            # systemd's mosquitto (or one left by a hub that was killed): use it with the ports it listens on.
            log.info("using the Mosquitto already running on %s (pid %d)", self.data_dir, pid)
            if current.lan_port != self.settings.lan_port:
                log.warning("that broker listens on %d, not the configured %d", current.lan_port,
                            self.settings.lan_port)
            self.settings = current
        else:
            broker.mosquitto_binary()  # BrokerError, with the way to install it, when missing
            for host, port in ((self.settings.lan_bind, self.settings.lan_port),
                               ("127.0.0.1", self.settings.local_port)):
                if not _port_free(host, port):
                    raise broker.BrokerError(f"MQTT port {port} is in use (another broker?); "
                                             "set --mqtt-port or BACKROOM_MQTT_PORT")
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.broker = broker.Broker(self.data_dir, self.settings, log_path=self.data_dir / "mosquitto.log")
            self.broker.start(timeout_s=BROKER_START_S)
            if self.broker.proc is None or self.broker.proc.poll() is not None:
                raise broker.BrokerError(f"mosquitto exited at once; see {self.data_dir / 'mosquitto.log'}")

    def _start_client(self) -> None:
        from paho.mqtt.enums import CallbackAPIVersion

        creds = broker.hub_credentials(self.data_dir)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"backroom-hub-{self.store_id}",
                             protocol=mqtt.MQTTv5)
        client.username_pw_set(creds.username, creds.password)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client
        client.connect("127.0.0.1", self.settings.local_port, keepalive=30)
        client.loop_start()
        deadline = time.monotonic() + BROKER_START_S
        while not self.connected.wait(0.02):
            if self._refused is not None or time.monotonic() > deadline:
                raise broker.BrokerError(f"the hub could not log in to its broker on port {self.settings.local_port}"
                                         f" ({self._refused or 'no answer'})")
        log.info("devices: broker on port %d (hub on %d), store %s", self.settings.lan_port,
                 self.settings.local_port, self.store_id)

    def _start_mdns(self) -> None:
        from devices.discovery import Advertiser, DeviceBrowser

        try:
            advertiser = Advertiser(self.store_id, self.config.port, self.settings.lan_port)
            self.advertiser = advertiser
            if not self._closing:
                advertiser.start()
        except Exception as exc:  # noqa: BLE001 - no multicast (a container, no network): the hub runs on
            log.warning("mDNS advertising is off: %s", exc)
        try:
            if not self._closing:
                self.browser = DeviceBrowser()
        except Exception as exc:  # noqa: BLE001 - as above: browsing is a convenience
            log.warning("mDNS browsing for devices is off: %s", exc)

    async def stop(self) -> None:
        self._closing = True
        if self._mdns_starter is not None:
            self._mdns_starter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._mdns_starter
        if self._tasks:  # after-sale jobs already published; give them a moment to log their results
            await asyncio.wait(list(self._tasks), timeout=1.0)
            for task in list(self._tasks):
                task.cancel()
        for future, _ in self._inflight.values():
            if not future.done():
                future.set_exception(LinkDown("the hub is stopping"))
        self._inflight.clear()
        self.end_streams()
        await asyncio.to_thread(self._stop_blocking)

    def end_streams(self) -> None:
        """Every tablet's live device stream ends (the hub is stopping)."""
        for queues in self._subscribers.values():
            for queue in queues:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(None)

    def _stop_blocking(self) -> None:
        if self._mdns_thread is not None:
            self._mdns_thread.join(10.0)
        for closer in (self.browser, self.advertiser):
            if closer is not None:
                try:
                    closer.close()
                except Exception as exc:  # noqa: BLE001 - teardown goes on whatever mDNS says
                    log.warning("closing mDNS: %s", exc)
        self.browser = self.advertiser = None
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    # --- MQTT (the paho thread) ----------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags, reason: ReasonCode,
                    properties: Properties | None) -> None:
        if reason.is_failure:
            self._refused = str(reason)
            log.error("the broker refused the hub: %s", reason)
            return
        root = topics.root(self.store_id)
        client.subscribe([(f"{root}/dev/+/birth", 1), (f"{root}/dev/+/status", 1), (f"{root}/dev/+/data/+", 0),
                          (f"{root}/dev/+/cmd/+/result", 1)])
        self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags, reason: ReasonCode,
                       properties: Properties | None) -> None:
        self.connected.clear()
        if not self._closing:
            log.warning("the hub lost its broker connection (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        parsed = topics.parse(message.topic)
        if parsed is None or parsed.store_id != self.store_id or self.loop is None:
            return
        payload = bytes(message.payload)
        if parsed.channel == "result":
            try:
                result = _result_decoder.decode(payload)
            except msgspec.DecodeError:
                return
            self.loop.call_soon_threadsafe(self._resolve, (parsed.device_id, parsed.name or "", result.cmd_id), result)
            return
        if parsed.channel == "cmd":
            return
        self.board.apply(parsed, payload)
        if parsed.device_id in self._subscribers and parsed.channel in ("data", "status"):
            event = parsed.name if parsed.channel == "data" and parsed.name else parsed.channel
            self.loop.call_soon_threadsafe(self._fan_out, parsed.device_id, event, payload)

    # --- the event loop's side ---------------------------------------------------------------------

    def _resolve(self, key: CommandKey, result: topics.CommandResult) -> None:
        self._results[key] = result
        self._results.move_to_end(key)
        while len(self._results) > REMEMBERED_RESULTS:
            self._results.popitem(last=False)
        entry = self._inflight.pop(key, None)
        if entry is not None and not entry[0].done():
            entry[0].set_result(result)

    def _fan_out(self, device_id: str, event: str, payload: bytes) -> None:
        for queue in self._subscribers.get(device_id, ()):
            if queue.full():  # a slow reader loses the oldest readings, never the newest
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait((event, payload))

    def subscribe(self, device_id: str) -> asyncio.Queue[tuple[str, bytes] | None]:
        queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self._subscribers.setdefault(device_id, set()).add(queue)
        return queue

    def unsubscribe(self, device_id: str, queue: asyncio.Queue[tuple[str, bytes] | None]) -> None:
        queues = self._subscribers.get(device_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._subscribers[device_id]

    # --- registry and profiles ---------------------------------------------------------------------

    def registered(self) -> dict[str, broker.DeviceRecord]:
        """The broker's registry (approved devices), reread only when the file changed."""
        path = broker.Paths(self.data_dir).registry
        try:
            stamp = path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        if self._registry is None or self._registry[0] != stamp:
            self._registry = (stamp, {r.device_id: r for r in broker.devices(self.data_dir)})
        return self._registry[1]

    def profile(self, profile_id: str) -> profiles.Profile | None:
        if profile_id not in self._profiles:
            try:
                self._profiles[profile_id] = profiles.get(profile_id)
            except profiles.ProfileError:
                self._profiles[profile_id] = None
        return self._profiles[profile_id]

    def pairing(self, till_id: str) -> TillDevices | None:
        return self.config.tills.get(till_id) or self.config.tills.get("*")

    # --- commands ----------------------------------------------------------------------------------

    async def command(self, device_id: str, command: topics.Command,
                      timeout_s: float = COMMAND_TIMEOUT_S) -> topics.CommandResult:
        """Publish a command and wait for its result; a cmd_id seen before gets the first result again."""
        action = command.__struct_config__.tag
        assert isinstance(action, str)
        key = (device_id, action, command.cmd_id)
        known = self._results.get(key)
        if known is not None:
            return known
        entry = self._inflight.get(key)
        if entry is None:
            if action != "print" and self.board.status(device_id) == "offline":
                return topics.CommandResult(cmd_id=command.cmd_id, ok=False, error="device offline")
            if self.client is None or not self.connected.is_set():
                raise LinkDown("the hub is not connected to its MQTT broker")
            self._prune()
            assert self.loop is not None
            future: asyncio.Future[topics.CommandResult] = self.loop.create_future()
            self._inflight[key] = (future, time.monotonic())
            properties = None
            if action != "print":  # a print job waits for the printer; nothing else may fire late
                from paho.mqtt.packettypes import PacketTypes
                from paho.mqtt.properties import Properties

                properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                properties.MessageExpiryInterval = EXPIRY_S
            info = self.client.publish(topics.command(self.store_id, device_id, action),
                                       topics.encode_command(command), qos=1, properties=properties)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                self._inflight.pop(key, None)
                raise LinkDown(f"the broker did not take the command ({mqtt.error_string(info.rc)})")
        else:
            future = entry[0]
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            raise DeviceTimeout(f"{device_id} sent no result for {action} {command.cmd_id} within {timeout_s:g} s") \
                from None

    def _prune(self) -> None:
        """Forget commands whose result never came (a device that was replaced, say)."""
        cutoff = time.monotonic() - INFLIGHT_TTL_S
        for key in [k for k, (_, at) in self._inflight.items() if at < cutoff]:
            future, _ = self._inflight.pop(key)
            future.cancel()

    # --- receipts and the after-sale jobs ----------------------------------------------------------

    def store_name(self) -> str:
        return self.config.store_name or f"Backroom {self.store_id}"

    def receipt(self, sale: SaleResult) -> Receipt:
        row = self.hub.db.reader().execute(
            "SELECT u.display_name FROM sales s JOIN users u ON u.user_id = s.user_id WHERE s.sale_id = ?",
            (sale.sale_id,)).fetchone()
        return receipts.receipt_for(sale, self.store_name(), row[0] if row else "")

    def sale_committed(self, till_id: str, body: bytes) -> None:
        """Called by the sale handler after a commit (never a replay): schedule the till's devices."""
        pairing = self.pairing(till_id)
        if pairing is None or not (pairing.printer or pairing.drawer or pairing.display) or self._closing:
            return
        task = asyncio.get_running_loop().create_task(self._after_sale(till_id, pairing, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def print_lines(self, till_id: str, cmd_id: str, lines: list[str], what: str) -> bool:
        """Print a plain-text document (a shift report, a Z closing) on the till's printer in the background;
        False when the till has no printer. The cmd_id makes a repeated print of one document print once."""
        pairing = self.pairing(till_id)
        if pairing is None or not pairing.printer or self._closing:
            return False
        task = asyncio.get_running_loop().create_task(self._device_job(
            till_id, pairing.printer, topics.PrintCommand(cmd_id=cmd_id, lines=lines), what, SALE_PRINT_TIMEOUT_S))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _after_sale(self, till_id: str, pairing: TillDevices, body: bytes) -> None:
        try:
            sale = receipts.decode_sale(body)
            jobs = []
            if pairing.drawer and receipts.paid_cash(sale):
                jobs.append(self._device_job(till_id, pairing.drawer, topics.KickCommand(
                    cmd_id=sale_cmd_id(sale.sale_id, "kick")), sale.receipt_no, COMMAND_TIMEOUT_S))
            if pairing.printer:
                jobs.append(self._device_job(till_id, pairing.printer, topics.PrintCommand(
                    cmd_id=sale_cmd_id(sale.sale_id, "print"), receipt=self.receipt(sale)), sale.receipt_no,
                    SALE_PRINT_TIMEOUT_S))
            if pairing.display:
                jobs.append(self._device_job(till_id, pairing.display, topics.DisplayCommand(
                    cmd_id=sale_cmd_id(sale.sale_id, "display"), lines=receipts.display_lines(sale)),
                    sale.receipt_no, COMMAND_TIMEOUT_S))
            await asyncio.gather(*jobs)
        except Exception:  # noqa: BLE001 - the sale is committed; a device problem is only logged
            log.exception("after-sale device jobs failed for till %s", till_id)

    async def _device_job(self, till_id: str, device_id: str, command: topics.Command, receipt_no: str,
                          timeout_s: float) -> None:
        action = command.__struct_config__.tag
        if device_id not in self.registered():
            log.warning("till %s: %s for %s skipped, %s is not a registered device", till_id, action, receipt_no,
                        device_id)
            return
        try:
            result = await self.command(device_id, command, timeout_s)
        except DeviceTimeout:
            spooled = " (the bridge keeps the job until the printer takes it)" if action == "print" else ""
            log.warning("till %s: no %s result from %s for %s within %g s%s", till_id, action, device_id,
                        receipt_no, timeout_s, spooled)
        except LinkDown as exc:
            log.warning("till %s: %s for %s not sent: %s", till_id, action, receipt_no, exc)
        else:
            if result.ok:
                log.info("till %s: %s %s done on %s", till_id, action, receipt_no, device_id)
            else:
                log.warning("till %s: %s %s failed on %s: %s", till_id, action, receipt_no, device_id, result.error)


def sale_committed(state: State, till_id: str, body: bytes) -> None:
    """The sale handler's hook: hand a committed sale to the device link, if devices run. Never raises."""
    link: DeviceLink | None = getattr(state, "devices", None)
    if link is None:
        return
    try:
        link.sale_committed(till_id, body)
    except Exception:  # noqa: BLE001 - printing must never fail a committed sale
        log.exception("could not schedule the after-sale device jobs")


def print_document(state: State, till_id: str, key: str, lines: list[str], what: str) -> bool:
    """Print `lines` on the till's printer if devices run (one cmd_id per `key`). Never raises."""
    link: DeviceLink | None = getattr(state, "devices", None)
    if link is None:
        return False
    try:
        return link.print_lines(till_id, str(uuid.uuid5(_CMD_NAMESPACE, key)), lines, what)
    except Exception:  # noqa: BLE001 - a printer must never fail a committed close
        log.exception("could not schedule printing %s", what)
        return False


@asynccontextmanager
async def device_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Run the device link while the hub runs (config `devices_enabled`, env BACKROOM_DEVICES=0 to turn off).

    A missing Mosquitto or a busy port turns devices off with a warning; the till API runs regardless.
    """
    hub: Hub = app.state.hub
    app.state.devices = None
    link: DeviceLink | None = None
    if hub.config.devices_enabled:
        link = DeviceLink(hub)
        try:
            await link.start()
        except (broker.BrokerError, OSError, ValueError) as exc:
            log.warning("devices are off: %s", exc)
            await link.stop()
            link = None
    app.state.devices = link
    # told to stop, the tablets' live device streams end at once (edge/stopping.py), not after uvicorn's grace
    forget = stopping.when_stopping(link.end_streams) if link is not None else (lambda: None)
    try:
        yield
    finally:
        forget()
        app.state.devices = None
        if link is not None:
            await link.stop()


def link_of(state: State) -> DeviceLink:
    link: Any = getattr(state, "devices", None)
    if link is None:
        raise LinkDown("devices are off on this hub (no broker; see the hub's log)")
    assert isinstance(link, DeviceLink)
    return link
