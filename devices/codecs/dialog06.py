"""Dialog 06 (CAS PDN ECR12 and other price-computing scales); 7 data bits, odd parity.

Host: `EOT ENQ` asks for the weighing; `EOT STX "01" ESC pppppp ESC ETX` sets the unit price (fen/kg),
answered `ACK`; `EOT STX "08" ETX` asks why there is no weight. Scale: `STX "02" ESC unit ESC
weight(5) ESC price(6) ESC total(6) ETX` for a stable weight, `NAK` when it has none, and
`STX "09" ESC nn ETX` for the status: 20 motion, 30 zero, 31 negative, 32 overload.
"""

from __future__ import annotations

from devices.codecs.base import (
    Ack,
    DeviceError,
    Nak,
    ProtocolParams,
    Reading,
    Request,
    SetPrice,
    Status,
    Unsupported,
    Weigh,
    WeightReading,
    weight_state,
)

EOT, ENQ, STX, ETX, ESC, ACK, NAK = 0x04, 0x05, 0x02, 0x03, 0x1B, 0x06, 0x15
_MAX_FRAME = 40
_STATUS: dict[bytes, WeightReading] = {
    b"20": WeightReading(grams=None, stable=False, state="motion"),
    b"30": WeightReading(grams=0, stable=True, state="ok"),
    b"31": WeightReading(grams=None, stable=False, state="underload"),
    b"32": WeightReading(grams=None, stable=False, state="overload"),
}


class Params(ProtocolParams, tag="dialog06", frozen=True):
    decimals: int = 3  # the weight field is kg with this many decimals: 01500 = 1.500 kg


class Codec:
    def __init__(self, params: Params) -> None:
        self.params = params
        self._frame: bytearray | None = None

    def encode(self, request: Request) -> bytes:
        match request:
            case Weigh():
                return bytes([EOT, ENQ])
            case Status():
                return bytes([EOT, STX]) + b"08" + bytes([ETX])
            case SetPrice(unit_price=price):
                if not 0 <= price <= 999_999:
                    raise Unsupported(f"unit price {price} does not fit six digits")
                return bytes([EOT, STX]) + b"01" + bytes([ESC]) + f"{price:06d}".encode() + bytes([ESC, ETX])
        raise Unsupported(request)

    def expects_reply(self, request: Request) -> bool:
        return True

    def feed(self, data: bytes) -> list[Reading]:
        out: list[Reading] = []
        for raw in data:
            byte = raw & 0x7F
            if byte == STX:
                self._frame = bytearray()
            elif byte < 0x20 and byte not in (ETX, ESC):
                self._frame = None  # no control byte but ESC can be inside a frame: whatever was open is noise
                if byte == ACK:
                    out.append(Ack())
                elif byte == NAK:
                    out.append(Nak())
            elif self._frame is None:
                continue
            elif byte == ETX:
                reading = self._decode(bytes(self._frame))
                self._frame = None
                if reading is not None:
                    out.append(reading)
            else:
                self._frame.append(byte)
                if len(self._frame) > _MAX_FRAME:
                    self._frame = None
        return out

    def _decode(self, body: bytes) -> Reading | None:
        fields = body.split(bytes([ESC]))
        if fields[0] == b"02" and len(fields) == 5:
            _, unit, weight, price, total = fields
            if len(unit) != 1 or len(weight) != 5 or len(price) != 6 or len(total) != 6:
                return None
            if not (weight.isdigit() and price.isdigit() and total.isdigit()):
                return None
            grams = int(weight) * 10 ** (3 - self.params.decimals) if self.params.decimals <= 3 else None
            if grams is None:
                return None
            return weight_state(grams)
        if fields[0] == b"09" and len(fields) == 2:
            known = _STATUS.get(fields[1])
            if known is not None:
                return known
            if len(fields[1]) == 2 and fields[1].isdigit():
                return DeviceError(code=f"status-{fields[1].decode()}")
        return None
