"""Simulated scales: a load that settles from motion to stable, overload, underload; one class per protocol.

`ScaleModel` is the physics (what the load cell reads now); each protocol class frames requests
from the host and formats the model's reading byte for byte as that scale model does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal

from devices.codecs import adam, cas_pd2, dialog06, mettler8217, mtsics, nci
from devices.simulators.base import DeviceState, SimulatorSpec, WeightState

STX, ETX, EOT, ENQ, ACK, NAK, ESC, SOH, DC1, CR, LF = 0x02, 0x03, 0x04, 0x05, 0x06, 0x15, 0x1B, 0x01, 0x11, 0x0D, 0x0A
LB_G = Decimal("453.59237")


class ScaleModel:
    """The load on the platter. `place(grams)` starts a motion that settles after `settle_s`."""

    def __init__(self, capacity_g: int, settle_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity_g = capacity_g
        self.settle_s = settle_s
        self.clock = clock
        self.gross = 0
        self._from = 0
        self._since = -1e9
        self.tare_g = 0
        self.zero_g = 0
        self.forced: WeightState | None = None

    def place(self, grams: int) -> None:
        self._from = self.gross_now()
        self.gross = grams
        self._since = self.clock()
        self.forced = None

    def set_state(self, state: DeviceState) -> None:
        self.gross, self._from, self._since = state.grams + state.tare_g, state.grams, -1e9
        self.tare_g, self.zero_g = state.tare_g, 0
        self.forced = None if state.state == "ok" else state.state

    def gross_now(self) -> int:
        elapsed = self.clock() - self._since
        if elapsed >= self.settle_s:
            return self.gross
        # Swings past the target and back, as a platter does when something is put down.
        fraction = elapsed / self.settle_s
        return int(self._from + (self.gross - self._from) * (fraction * 1.2 if fraction < 0.8 else 1.0))

    def reading(self) -> tuple[int, WeightState]:
        """Net grams and state now."""
        gross = self.gross_now() - self.zero_g
        net = gross - self.tare_g
        if self.forced is not None:
            return net, self.forced
        if gross > self.capacity_g:
            return net, "overload"
        if net < 0:
            return net, "underload"
        if self.clock() - self._since < self.settle_s:
            return net, "motion"
        return net, "ok"

    def tare(self) -> bool:
        net, state = self.reading()
        if state != "ok":
            return False
        self.tare_g += net
        return True

    def zero(self) -> bool:
        net, state = self.reading()
        if state not in ("ok", "underload") or abs(net + self.tare_g) > self.capacity_g // 50:
            return False  # zeroing only captures a small drift (2 % of capacity)
        self.zero_g = self.gross_now()
        self.tare_g = 0
        return True

    def control(self, words: list[str]) -> str:
        match words:
            case ["weight", grams] if grams.lstrip("-").isdigit():
                self.place(int(grams))
                return f"placed {grams} g"
            case ["remove"]:
                self.place(0)
                return "removed"
            case ["overload"]:
                self.place(self.capacity_g + 1000)
                return "overloaded"
            case ["underload"]:
                self.forced = "underload"
                return "below zero"
            case ["tare"]:
                return "tared" if self.tare() else "not stable"
            case ["zero"]:
                return "zeroed" if self.zero() else "cannot zero"
        return "commands: weight G | remove | overload | underload | tare | zero"


def _quantize(grams: int, unit: str, decimals: int) -> Decimal:
    """Grams in the display unit, rounded to the display's decimals."""
    factor = {"kg": Decimal(1000), "g": Decimal(1), "lb": LB_G}[unit]
    return (Decimal(grams) / factor).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)


class _Scale:
    """Shared by the protocol classes: the model, line framing, and the stdin commands."""

    def __init__(self, capacity_g: int, sim: SimulatorSpec, clock: Callable[[], float] = time.monotonic) -> None:
        self.model = ScaleModel(capacity_g, sim.settle_ms / 1000, clock)
        self.sim = sim
        self._buf = bytearray()

    def set_state(self, state: DeviceState) -> None:
        self.model.set_state(state)

    def control(self, words: list[str]) -> str:
        return self.model.control(words)

    def emit(self) -> bytes:
        return b""

    def rendered(self) -> str | None:
        return None

    def _lines(self, data: bytes, end: bytes) -> list[bytes]:
        self._buf += data
        lines = []
        while (at := self._buf.find(end)) >= 0:
            lines.append(bytes(self._buf[:at]).strip(b"\r\n"))
            del self._buf[: at + len(end)]
        if len(self._buf) > 64:
            self._buf.clear()
        return lines


class Mettler8217(_Scale):
    def __init__(self, params: mettler8217.Params, capacity_g: int, sim: SimulatorSpec,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(capacity_g, sim, clock)
        self.params = params

    def receive(self, data: bytes) -> bytes:
        out = bytearray()
        for byte in data:
            command = chr(byte & 0x7F)
            if command == "W":
                out += self._weight()
            elif command == "Z":
                self.model.zero()
            elif command == "T":
                self.model.tare()
            elif command == "C":
                self.model.tare_g = 0
        return bytes(out)

    def _weight(self) -> bytes:
        grams, state = self.model.reading()
        bits = {"motion": 0x01, "overload": 0x02, "underload": 0x04, "error": 0x08}.get(state)
        if bits is not None:
            return bytes([STX, ord("?"), 0x40 | bits, CR])
        if self.params.unit == "kg":
            text = f"{_quantize(grams, 'kg', 3):07.3f}"
        else:
            text = f"{_quantize(grams, 'lb', 2):06.2f}"
        net = "N" if self.model.tare_g else ""
        return bytes([STX]) + text.encode() + net.encode() + bytes([CR])


class MtSics(_Scale):
    def receive(self, data: bytes) -> bytes:
        out = bytearray()
        for line in self._lines(data, b"\n"):
            out += self._answer(line.decode("ascii", errors="replace")) + b"\r\n"
        return bytes(out)

    def _answer(self, command: str) -> bytes:
        grams, state = self.model.reading()
        match command:
            case "SI" | "S":
                if state == "overload":
                    return b"S +"
                if state == "underload":
                    return b"S -"
                if state == "error" or (command == "S" and state == "motion"):
                    return b"S I"
                value = _quantize(grams, self.sim.unit, self.sim.decimals)
                return f"S {'D' if state == 'motion' else 'S'} {value:>11} {self.sim.unit}".encode()
            case "Z":
                return b"Z A" if self.model.zero() else b"Z I"
            case "T":
                if not self.model.tare():
                    return b"T I"
                value = _quantize(self.model.tare_g, self.sim.unit, self.sim.decimals)
                return f"T S {value:>11} {self.sim.unit}".encode()
            case "TAC":
                self.model.tare_g = 0
                return b"TAC A"
            case "@":
                return b'I4 A "0000000000"'
        return b"ES"


class Nci(_Scale):
    def __init__(self, params: nci.Params, capacity_g: int, sim: SimulatorSpec,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(capacity_g, sim, clock)
        self.params = params

    def receive(self, data: bytes) -> bytes:
        out = bytearray()
        for line in self._lines(bytes(b & 0x7F for b in data), b"\r"):
            if line == b"W":
                out += self._frame(with_weight=True)
            elif line == b"S":
                out += self._frame(with_weight=False)
            elif line == b"Z":
                self.model.zero()
                out += self._frame(with_weight=False)
            else:
                out += b"\n?\r\x03"  # NCI answers an unknown command with `?`
        return bytes(out)

    def _frame(self, *, with_weight: bool) -> bytes:
        grams, state = self.model.reading()
        first = 0x30 | (0x01 if state == "motion" else 0) | (0x02 if grams == 0 and state == "ok" else 0)
        second = 0x30 | (0x01 if state == "underload" else 0) | (0x02 if state == "overload" else 0)
        status = b"S" + bytes([first, second])
        if not with_weight or state in ("overload", "underload"):
            return b"\n" + status + b"\r\x03"
        unit = self.params.unit
        value = _quantize(grams, unit, 3 if unit == "kg" else 2)
        weight = (f"{value:06.3f}KG" if unit == "kg" else f"{value:05.2f}LB").encode()
        return b"\n" + weight + b"\r\n" + status + b"\r\x03"


class Dialog06(_Scale):
    def __init__(self, params: dialog06.Params, capacity_g: int, sim: SimulatorSpec,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(capacity_g, sim, clock)
        self.params = params
        self.unit_price = 0
        self._frame: bytearray | None = None
        self._eot = False

    def set_state(self, state: DeviceState) -> None:
        super().set_state(state)
        self.unit_price = state.unit_price

    def receive(self, data: bytes) -> bytes:
        out = bytearray()
        for raw in data:
            byte = raw & 0x7F
            if self._frame is not None:
                if byte == ETX:
                    out += self._record(bytes(self._frame))
                    self._frame = None
                else:
                    self._frame.append(byte)
                    if len(self._frame) > 32:
                        self._frame = None
            elif byte == EOT:
                self._eot = True
                continue
            elif self._eot and byte == ENQ:
                out += self._weighing()
            elif self._eot and byte == STX:
                self._frame = bytearray()
            self._eot = False
        return bytes(out)

    def _weighing(self) -> bytes:
        grams, state = self.model.reading()
        if state != "ok" or grams <= 0 or self.unit_price <= 0:
            return bytes([NAK])
        weight = grams // 10 ** (3 - self.params.decimals)
        total = int((Decimal(grams) * self.unit_price / 1000).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        fields = [b"02", b"1", f"{weight:05d}".encode(), f"{self.unit_price:06d}".encode(), f"{total:06d}".encode()]
        return bytes([STX]) + bytes([ESC]).join(fields) + bytes([ETX])

    def _record(self, body: bytes) -> bytes:
        fields = body.split(bytes([ESC]))
        if fields[0] == b"01" and len(fields) >= 2 and len(fields[1]) == 6 and fields[1].isdigit():
            self.unit_price = int(fields[1])
            return bytes([ACK])
        if fields[0] == b"08":
            grams, state = self.model.reading()
            code = {"motion": b"20", "underload": b"31", "overload": b"32"}.get(state)
            if code is None:
                code = b"30" if grams == 0 else b"00"
            return bytes([STX]) + b"09" + bytes([ESC]) + code + bytes([ETX])
        return bytes([NAK])


class CasPd2(_Scale):
    def receive(self, data: bytes) -> bytes:
        out = bytearray()
        for byte in data:
            if byte == ENQ:
                out.append(ACK)
            elif byte == DC1:
                out += self._frame()
        return bytes(out)

    def _frame(self) -> bytes:
        grams, state = self.model.reading()
        status = b"U" if state == "motion" else b"S"
        sign = b"F" if state == "overload" else b"-" if grams < 0 else b" "
        value = Decimal(0) if state == "overload" else _quantize(abs(grams), "kg", 3)
        body = status + sign + f"{value:06.3f}".encode() + b"kg"
        return bytes([SOH, STX]) + body + bytes([cas_pd2.bcc(body), ETX, EOT])


class Adam(_Scale):
    """AZExtra: answers `P` only with a new, stable, non-zero weight (and would beep otherwise)."""

    def __init__(self, params: adam.Params, capacity_g: int, sim: SimulatorSpec,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(capacity_g, sim, clock)
        self.params = params
        self._last: int | None = None

    def set_state(self, state: DeviceState) -> None:
        super().set_state(state)
        self._last = None

    def receive(self, data: bytes) -> bytes:
        out = bytearray()
        for line in self._lines(data, b"\n"):
            if line == b"P":
                out += self._print()
            elif line == b"Z":
                self.model.zero()
            elif line == b"T":
                self.model.tare()
        return bytes(out)

    def _print(self) -> bytes:
        grams, state = self.model.reading()
        if state == "overload":
            return b" -OL-\r\n"
        if state != "ok" or grams == 0 or grams == self._last:
            return b""
        self._last = grams
        unit = self.params.unit
        value = _quantize(grams, unit, 0 if unit == "g" else 3)
        return f"{value:>9}{unit}\r\n".encode()


Scale = Mettler8217 | MtSics | Nci | Dialog06 | CasPd2 | Adam


def scale_for(protocol: object, capacity_g: int, sim: SimulatorSpec,
              clock: Callable[[], float] = time.monotonic) -> Scale | None:
    match protocol:
        case mettler8217.Params():
            return Mettler8217(protocol, capacity_g, sim, clock)
        case mtsics.Params():
            return MtSics(capacity_g, sim, clock)
        case nci.Params():
            return Nci(protocol, capacity_g, sim, clock)
        case dialog06.Params():
            return Dialog06(protocol, capacity_g, sim, clock)
        case cas_pd2.Params():
            return CasPd2(capacity_g, sim, clock)
        case adam.Params():
            return Adam(protocol, capacity_g, sim, clock)
    return None
