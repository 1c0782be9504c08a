"""The managed Mosquitto: per-device credentials and the ACL, enforced by a real broker."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from hubproc import free_port
from test_devices_support import ROOT, Client, RunningBroker, cli, hub_client, mosquitto, observer

from devices import broker

__all__ = ["mosquitto"]


def test_a_device_cannot_publish_into_another_devices_subtree(mosquitto: RunningBroker) -> None:
    a, _ = mosquitto.add("acl-a"), mosquitto.add("acl-b")
    watcher = observer(mosquitto)
    device = Client(a.username, a.password, mosquitto.settings.lan_port)
    assert device.accepted

    assert device.publish(f"{ROOT}/dev/acl-b/data/weight", {"forged": True}) == "Not authorized"
    assert device.publish(f"{ROOT}/dev/acl-a/data/weight", {"sentinel": True}) == "Success"
    # The broker handles one client's publishes in order: once the sentinel arrives, the forged
    # message would have arrived before it had it been let through.
    watcher.topic(f"{ROOT}/dev/acl-a/data/weight")
    assert [t for t, _, _ in watcher.seen if "acl-b" in t] == []
    device.close()
    watcher.close()


def test_a_device_writes_only_its_own_subtree_and_never_a_command(mosquitto: RunningBroker) -> None:
    creds = mosquitto.add("acl-c")
    device = Client(creds.username, creds.password, mosquitto.settings.lan_port)
    base = f"{ROOT}/dev/acl-c"
    assert device.publish(f"{base}/birth", {"device_id": "acl-c"}) == "Success"
    assert device.publish(f"{base}/status", "online") == "Success"
    assert device.publish(f"{base}/data/scan", {"code": "1"}) == "Success"
    assert device.publish(f"{base}/cmd/tare/result", {"cmd_id": "x", "ok": True}) == "Success"
    assert device.publish(f"{base}/cmd/tare", {"cmd_id": "x"}) == "Not authorized"
    assert device.publish(f"{ROOT}/hub/anything", {}) == "Not authorized"
    assert device.publish("backroom/v1/other-store/dev/acl-c/data/scan", {}) == "Not authorized"
    device.close()


def test_a_device_reads_only_its_own_commands(mosquitto: RunningBroker) -> None:
    mine, _ = mosquitto.add("acl-d"), mosquitto.add("acl-e")
    device = Client(mine.username, mine.password, mosquitto.settings.lan_port)
    device.subscribe(f"{ROOT}/#")
    hub = hub_client(mosquitto)
    hub.publish(f"{ROOT}/dev/acl-e/cmd/tare", {"cmd_id": "not-yours"})
    hub.publish(f"{ROOT}/dev/acl-d/data/weight", {"seq": 1})
    hub.publish(f"{ROOT}/dev/acl-d/cmd/tare", {"cmd_id": "yours"})
    assert device.topic(f"{ROOT}/dev/acl-d/cmd/tare") == {"cmd_id": "yours"}
    assert [t for t, _, _ in device.seen] == [f"{ROOT}/dev/acl-d/cmd/tare"]
    device.close()
    hub.close()


def test_the_observer_reads_everything_and_writes_nothing(mosquitto: RunningBroker) -> None:
    watcher = observer(mosquitto)
    assert watcher.publish(f"{ROOT}/dev/acl-a/cmd/kick", {"cmd_id": "x"}) == "Not authorized"
    hub = hub_client(mosquitto)
    hub.publish(f"{ROOT}/dev/acl-a/cmd/kick", {"cmd_id": "from-hub"})
    assert watcher.topic(f"{ROOT}/dev/acl-a/cmd/kick") == {"cmd_id": "from-hub"}
    watcher.close()
    hub.close()


def test_each_listener_takes_only_its_own_credentials(mosquitto: RunningBroker) -> None:
    device = mosquitto.add("acl-f")
    hub = broker.hub_credentials(mosquitto.data_dir)
    assert not Client(device.username, device.password, mosquitto.settings.local_port).accepted
    assert not Client(hub.username, hub.password, mosquitto.settings.lan_port).accepted
    assert not Client(device.username, "wrong", mosquitto.settings.lan_port).accepted
    assert Client(hub.username, hub.password, mosquitto.settings.local_port).accepted


def test_rotation_retires_the_old_password_without_a_restart(mosquitto: RunningBroker) -> None:
    old = mosquitto.add("acl-g")
    assert Client(old.username, old.password, mosquitto.settings.lan_port).accepted
    new = broker.rotate(mosquitto.data_dir, "acl-g")
    assert new.password != old.password
    time.sleep(0.3)  # the SIGHUP is asynchronous
    assert not Client(old.username, old.password, mosquitto.settings.lan_port).accepted
    assert Client(new.username, new.password, mosquitto.settings.lan_port).accepted


def test_removing_a_device_withdraws_its_credentials(mosquitto: RunningBroker) -> None:
    creds = mosquitto.add("acl-h")
    broker.remove_device(mosquitto.data_dir, "acl-h")
    time.sleep(0.3)
    assert not Client(creds.username, creds.password, mosquitto.settings.lan_port).accepted
    assert "acl-h" not in [record.device_id for record in broker.devices(mosquitto.data_dir)]


def test_devices_add_prints_one_json_line_of_working_credentials(mosquitto: RunningBroker) -> None:
    proc = cli("devices", "add", "--device-id", "cli-scale", "--profile", "mettler-toledo-8217",
               "--data", str(mosquitto.data_dir))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    creds = json.loads(lines[0])
    assert list(creds) == ["device_id", "username", "password", "mqtt_url"]
    assert creds["device_id"] == "cli-scale"
    assert creds["mqtt_url"] == f"mqtt://127.0.0.1:{mosquitto.settings.lan_port}"
    time.sleep(0.3)
    assert Client(creds["username"], creds["password"], mosquitto.settings.lan_port).accepted
    # The password is stored only as Mosquitto's PBKDF2 hash.
    registry = (mosquitto.data_dir / "mqtt" / "registry.json").read_text()
    assert creds["password"] not in registry
    record = next(r for r in broker.devices(mosquitto.data_dir) if r.device_id == "cli-scale")
    assert broker.verify_password(creds["password"], record.password_hash)


def test_mqtt_observer_prints_read_only_credentials(mosquitto: RunningBroker) -> None:
    proc = cli("mqtt", "observer", "--data", str(mosquitto.data_dir))
    assert proc.returncode == 0, proc.stderr
    creds = json.loads(proc.stdout)
    assert list(creds) == ["username", "password", "mqtt_url"]
    client = Client(creds["username"], creds["password"], mosquitto.settings.lan_port)
    assert client.accepted
    assert client.publish(f"{ROOT}/dev/x/data/weight", {}) == "Not authorized"
    client.close()


def test_unknown_profiles_and_unsafe_device_ids_are_refused(mosquitto: RunningBroker) -> None:
    proc = cli("devices", "add", "--device-id", "x", "--profile", "no-such-scale", "--data", str(mosquitto.data_dir))
    assert proc.returncode == 2
    assert "no firmware profile 'no-such-scale'" in proc.stderr
    for bad in ("a/b", "+", "#", "", "x" * 65):
        proc = cli("devices", "add", "--device-id", bad, "--profile", "mettler-toledo-8217",
                   "--data", str(mosquitto.data_dir))
        assert proc.returncode == 2, bad


def test_the_acl_grants_exactly_the_device_subtree() -> None:
    registry = broker.Registry(devices={"scale-1": broker.DeviceRecord(
        device_id="scale-1", profile="mettler-toledo-8217", username="dev-scale-1", password_hash="$7$...",
        created_at="", rotated_at="")})
    assert broker.render_acl_lan("demo-001", registry) == """# Written by backroom; one block per approved device.

user backroom-observer
topic read backroom/v1/demo-001/#

user dev-scale-1
topic write backroom/v1/demo-001/dev/scale-1/birth
topic write backroom/v1/demo-001/dev/scale-1/status
topic write backroom/v1/demo-001/dev/scale-1/data/#
topic write backroom/v1/demo-001/dev/scale-1/cmd/+/result
topic read backroom/v1/demo-001/dev/scale-1/cmd/#
"""


def test_password_hashes_are_mosquittos_pbkdf2_format() -> None:
    hashed = broker.hash_password("secret", salt=bytes(12))
    assert hashed.startswith("$7$101$AAAAAAAAAAAAAAAA$")
    assert broker.verify_password("secret", hashed)
    assert not broker.verify_password("Secret", hashed)


def test_a_broker_that_cannot_listen_is_reported_at_once_with_its_log(tmp_path: Path) -> None:
    # Something else holds the hub's localhost port: Mosquitto exits at its bind. The start must say so (with
    # Mosquitto's own words) when the process exits, not after waiting out its whole timeout. The port is bound,
    # not listening: a listening holder would answer the start's own check that the port is open.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        settings = broker.Settings(store_id="demo-001", lan_port=free_port(), local_port=taken.getsockname()[1],
                                   lan_bind="127.0.0.1", advertise_host="127.0.0.1")
        started = broker.Broker(tmp_path, settings, log_path=tmp_path / "mosquitto.log")
        began = time.monotonic()
        with pytest.raises(broker.BrokerError) as refused:
            started.start(timeout_s=30)
        took = time.monotonic() - began
    assert took < 10, took
    assert "exited with code" in str(refused.value)
    assert "Address already in use" in str(refused.value)
    assert started.proc is None and broker.running_pid(tmp_path) is None
