"""Run a profile's test vectors against its codec (host side) and its simulator (device side).

Codec: the vector's request encodes to exactly `send`; `answer` decodes to exactly `[reading]`,
fed whole and fed one byte at a time. Simulator: put in the vector's state, it answers `send`
with exactly `answer` (a scanner emits `answer` by itself); printers and displays render `send`
to the reading's text.
"""

from __future__ import annotations

from devices import bytespec
from devices.codecs import make_codec
from devices.codecs.base import (
    Listen,
    PrinterStatus,
    Reading,
    Rendered,
    ScanReading,
    Unsupported,
    WeightReading,
)
from devices.profiles import Profile, Vector
from devices.simulators.base import DeviceState
from devices.simulators.factory import make_simulator


def device_state(profile: Profile, vector: Vector) -> DeviceState:
    """The state a vector's device is in: given, or read off the expected reading."""
    if vector.device is not None:
        return vector.device
    match vector.reading:
        case WeightReading(grams=grams, state=state):
            return DeviceState(grams=grams if grams is not None else 0, state=state)
        case ScanReading(code=code, symbology=symbology):
            return DeviceState(code=code, symbology=symbology)
        case PrinterStatus(online=online):
            return DeviceState(online=online)
    return DeviceState()


def check_codec(profile: Profile, vector: Vector) -> list[str]:
    problems = []
    codec = make_codec(profile.protocol)
    if not isinstance(vector.request, Listen):
        try:
            sent = codec.encode(vector.request)
        except Unsupported:
            problems.append(f"{vector.name}: codec cannot encode {vector.request}")
        else:
            if sent != vector.send_bytes():
                problems.append(f"{vector.name}: codec sends {bytespec.format_bytes(sent)!r}, "
                                f"vector says {vector.send!r}")
    if vector.reading is not None and not isinstance(vector.reading, Rendered):
        answer = vector.answer_bytes()
        whole = make_codec(profile.protocol).feed(answer)
        split: list[Reading] = []
        one_by_one = make_codec(profile.protocol)
        for index in range(len(answer)):
            split += one_by_one.feed(answer[index:index + 1])
        for how, got in (("whole", whole), ("byte by byte", split)):
            if got != [vector.reading]:
                problems.append(f"{vector.name}: codec decodes {how} to {got}, vector says [{vector.reading}]")
    return problems


def check_simulator(profile: Profile, vector: Vector) -> list[str]:
    problems = []
    sim = make_simulator(profile)
    sim.set_state(device_state(profile, vector))
    answer = sim.emit() if isinstance(vector.request, Listen) else sim.receive(vector.send_bytes())
    if answer != vector.answer_bytes():
        problems.append(f"{vector.name}: simulator answers {bytespec.format_bytes(answer)!r}, "
                        f"vector says {vector.answer!r}")
    if isinstance(vector.reading, Rendered):
        shown = sim.rendered()
        if shown != vector.reading.text:
            problems.append(f"{vector.name}: simulator renders {shown!r}, vector says {vector.reading.text!r}")
    return problems


def check_profile(profile: Profile) -> list[str]:
    problems: list[str] = []
    for vector in profile.vectors:
        problems += check_codec(profile, vector)
        problems += check_simulator(profile, vector)
    return problems
