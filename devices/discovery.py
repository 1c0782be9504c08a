"""mDNS: the hub advertises itself; it browses for raw-9100 printers and Backroom devices (pending approval).

Advertised: `_backroom._tcp.local.` (the HTTP port; TXT `store`, `api=/api/v1`, `mqtt=<port>`) and
`_mqtt._tcp.local.` (the broker's LAN port). Browsed: `_pdl-datastream._tcp.local.` (network
receipt printers) and `_backroom-dev._tcp.local.` (devices that announce themselves). What is found
is only *pending*: a store manager approves it, and only then does it get broker credentials
(`broker.add_device`).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import msgspec
from zeroconf import IPVersion, ServiceInfo, ServiceStateChange, Zeroconf
from zeroconf import ServiceBrowser as _ServiceBrowser

HUB_SERVICE = "_backroom._tcp.local."
MQTT_SERVICE = "_mqtt._tcp.local."
PRINTER_SERVICE = "_pdl-datastream._tcp.local."
DEVICE_SERVICE = "_backroom-dev._tcp.local."


class Pending(msgspec.Struct, frozen=True):
    """A device seen on the network and not yet approved."""

    name: str
    service_type: str
    host: str
    port: int
    addresses: list[str]
    properties: dict[str, str]
    first_seen: float


def _txt(info: ServiceInfo) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in info.properties.items():
        out[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace") if value is not None else ""
    return out


class Advertiser:
    """Registers the hub's services; `close()` withdraws them (a goodbye packet)."""

    def __init__(self, store_id: str, http_port: int, mqtt_port: int, *, addresses: list[str] | None = None,
                 interfaces: list[str] | None = None, hostname: str | None = None) -> None:
        self.store_id = store_id
        self.addresses = addresses or [_primary_address()]
        host = hostname or f"backroom-{store_id}.local."
        name = f"Backroom {store_id}"
        packed = [socket.inet_aton(address) for address in self.addresses]
        self.infos = [
            ServiceInfo(HUB_SERVICE, f"{name}.{HUB_SERVICE}", addresses=packed, port=http_port, server=host,
                        properties={"store": store_id, "api": "/api/v1", "mqtt": str(mqtt_port)}),
            ServiceInfo(MQTT_SERVICE, f"{name}.{MQTT_SERVICE}", addresses=packed, port=mqtt_port, server=host,
                        properties={"store": store_id}),
        ]
        self.zeroconf = Zeroconf(interfaces=interfaces or self.addresses, ip_version=IPVersion.V4Only)

    def start(self) -> Advertiser:
        for info in self.infos:
            self.zeroconf.register_service(info, allow_name_change=True)
        return self

    def close(self) -> None:
        for info in self.infos:
            self.zeroconf.unregister_service(info)
        self.zeroconf.close()

    def __enter__(self) -> Advertiser:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class DeviceBrowser:
    """Browses printers and Backroom devices; keeps what it finds in `pending` until approved."""

    def __init__(self, *, interfaces: list[str] | None = None, service_types: list[str] | None = None,
                 on_found: Callable[[Pending], None] | None = None) -> None:
        self.zeroconf = Zeroconf(interfaces=interfaces or [_primary_address()], ip_version=IPVersion.V4Only)
        self.service_types = service_types or [PRINTER_SERVICE, DEVICE_SERVICE]
        self.on_found = on_found
        self._lock = threading.Lock()
        self._pending: dict[str, Pending] = {}
        self._approved: set[str] = set()
        self.browser = _ServiceBrowser(self.zeroconf, self.service_types, handlers=[self._changed])

    def _changed(self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change is ServiceStateChange.Removed:
            with self._lock:
                self._pending.pop(name, None)
            return
        info = zeroconf.get_service_info(service_type, name, timeout=3000)
        if info is None:
            return
        found = Pending(name=name, service_type=service_type, host=(info.server or "").rstrip("."),
                        port=info.port or 0, addresses=info.parsed_addresses(), properties=_txt(info),
                        first_seen=time.time())
        with self._lock:
            if name in self._approved:
                return
            known = self._pending.get(name)
            self._pending[name] = msgspec.structs.replace(found, first_seen=known.first_seen) if known else found
        if self.on_found is not None:
            self.on_found(found)

    def pending(self) -> list[Pending]:
        with self._lock:
            return sorted(self._pending.values(), key=lambda p: p.name)

    def approve(self, name: str) -> Pending | None:
        """Take a device off the pending list (the caller then registers it with the broker)."""
        with self._lock:
            self._approved.add(name)
            return self._pending.pop(name, None)

    def close(self) -> None:
        self.browser.cancel()
        self.zeroconf.close()


def find(service_type: str, timeout_s: float = 5.0, interfaces: list[str] | None = None,
         want: Callable[[ServiceInfo], bool] | None = None) -> list[ServiceInfo]:
    """Browse until a service `want`s (any, without it) is resolved or `timeout_s` passes; return
    what was resolved (used by tests and `bench`). Other hubs on the LAN may answer first."""
    zc = Zeroconf(interfaces=interfaces or [_primary_address()], ip_version=IPVersion.V4Only)
    found: dict[str, ServiceInfo] = {}
    done = threading.Event()

    def changed(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change is not ServiceStateChange.Removed:
            info = zeroconf.get_service_info(service_type, name, timeout=3000)
            if info is not None:
                found[name] = info
                if want is None or want(info):
                    done.set()

    browser = _ServiceBrowser(zc, service_type, handlers=[changed])
    try:
        done.wait(timeout_s)
    finally:
        browser.cancel()
        zc.close()
    return list(found.values())


def _primary_address() -> str:
    from devices.broker import lan_address

    return lan_address()
