"""mDNS with python-zeroconf: the hub is found with its TXT record; devices stay pending until approved."""

from __future__ import annotations

import socket
import time
import uuid

from zeroconf import ServiceInfo, Zeroconf

from devices import discovery
from devices.broker import lan_address

# Multicast on the machine's LAN interface; loopback when there is none (still real mDNS packets).
INTERFACE = lan_address()


def test_a_browser_finds_the_hub_with_its_txt_record() -> None:
    # A store id of its own: a demo store running elsewhere on this LAN must not answer for it.
    store = f"mdns-{uuid.uuid4().hex[:8]}"
    with discovery.Advertiser(store, 8080, 1883, addresses=[INTERFACE], interfaces=[INTERFACE]):
        ours = lambda info: info.properties.get(b"store") == store.encode()  # noqa: E731
        found = discovery.find(discovery.HUB_SERVICE, timeout_s=15, interfaces=[INTERFACE], want=ours)
        mqtt = discovery.find(discovery.MQTT_SERVICE, timeout_s=15, interfaces=[INTERFACE], want=ours)
    hubs = [info for info in found if info.properties.get(b"store") == store.encode()]
    assert len(hubs) == 1, found
    hub = hubs[0]
    assert hub.name == f"Backroom {store}._backroom._tcp.local."
    assert hub.port == 8080
    assert hub.parsed_addresses() == [INTERFACE]
    assert {k: v for k, v in hub.properties.items()} == {b"store": store.encode(), b"api": b"/api/v1", b"mqtt": b"1883"}
    assert [(info.name, info.port) for info in mqtt if info.properties.get(b"store") == store.encode()] == [
        (f"Backroom {store}._mqtt._tcp.local.", 1883)]


def test_a_network_printer_shows_up_as_pending_until_approved() -> None:
    printer = ServiceInfo(discovery.PRINTER_SERVICE, f"TM-T20III test.{discovery.PRINTER_SERVICE}",
                          addresses=[socket.inet_aton(INTERFACE)], port=9100, server="tm-t20iii-test.local.",
                          properties={"ty": "EPSON TM-T20III"})
    announcer = Zeroconf(interfaces=[INTERFACE])
    browser = discovery.DeviceBrowser(interfaces=[INTERFACE])
    try:
        announcer.register_service(printer)
        deadline = time.monotonic() + 8
        while not browser.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        pending = browser.pending()
        assert [(p.name, p.service_type, p.port, p.addresses, p.properties["ty"]) for p in pending] == [
            ("TM-T20III test._pdl-datastream._tcp.local.", "_pdl-datastream._tcp.local.", 9100, [INTERFACE],
             "EPSON TM-T20III")]
        approved = browser.approve(pending[0].name)
        assert approved is not None and approved.host == "tm-t20iii-test.local"
        assert browser.pending() == []
    finally:
        browser.close()
        announcer.unregister_service(printer)
        announcer.close()
