"""Devices: protocol codecs, bridges, simulators and discovery (see issue: device hub)."""
