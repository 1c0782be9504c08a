"""The hub's side of the device broker: its MQTT client, live device state, commands, till pairing, mDNS.

`link.DeviceLink` owns the resources (the managed Mosquitto, the paho client, the mDNS advertiser
and browser) and is started by `link.device_lifespan`; `routes` is its HTTP API; `live` and
`receipts` are the pure parts (what a device's messages mean, what a sale's receipt says).
"""
