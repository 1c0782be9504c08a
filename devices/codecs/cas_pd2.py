"""CAS PD-II, ECR type 6.

Host: `ENQ`, answered `ACK`; then `DC1` asks for the weight. Scale: `SOH STX STA SIGN W5..W0 UN1 UN0
BCC ETX EOT` — STA `S` stable or `U` unstable, SIGN ` `, `-` or `F` (overload), six weight
characters (`01.500`), a two-letter unit (`kg`, `lb`, ` g`), and BCC the XOR of STA..UN0.
"""

from __future__ import annotations

from devices.codecs.base import (
    Ack,
    Enquire,
    Nak,
    ProtocolParams,
    Reading,
    Request,
    Unsupported,
    Weigh,
    WeightReading,
    to_grams,
    weight_state,
)

SOH, STX, ETX, EOT, ENQ, ACK, NAK, DC1 = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x15, 0x11
FRAME_LEN = 15


def bcc(body: bytes) -> int:
    value = 0
    for byte in body:
        value ^= byte
    return value


class Params(ProtocolParams, tag="cas-pd2-type6", frozen=True):
    handshake: bool = True  # ENQ -> ACK before each DC1


class Codec:
    def __init__(self, params: Params) -> None:
        self.params = params
        self._buf = bytearray()

    def encode(self, request: Request) -> bytes:
        match request:
            case Enquire():
                return bytes([ENQ])
            case Weigh():
                return bytes([DC1])
        raise Unsupported(request)

    def expects_reply(self, request: Request) -> bool:
        return True

    def feed(self, data: bytes) -> list[Reading]:
        out: list[Reading] = []
        self._buf += data
        while self._buf:
            if self._buf[0] != SOH:
                if self._buf[0] == ACK:
                    out.append(Ack())
                elif self._buf[0] == NAK:
                    out.append(Nak())
                del self._buf[0]
                continue
            if len(self._buf) < FRAME_LEN:
                if len(self._buf) >= 2 and self._buf[1] != STX:
                    del self._buf[0]
                    continue
                break
            reading = self._decode(bytes(self._buf[:FRAME_LEN]))
            if reading is None:
                del self._buf[0]  # not a frame after all: look for the next SOH
                continue
            out.append(reading)
            del self._buf[:FRAME_LEN]
        return out

    def _decode(self, frame: bytes) -> WeightReading | None:
        if frame[1] != STX or frame[13] != ETX or frame[14] != EOT or bcc(frame[2:12]) != frame[12]:
            return None
        status, sign, number, unit = frame[2:3], frame[3:4], frame[4:10], frame[10:12]
        if status not in (b"S", b"U") or sign not in (b" ", b"-", b"F"):
            return None
        if sign == b"F":
            return WeightReading(grams=None, stable=False, state="overload")
        try:
            grams = to_grams(number.decode("ascii"), unit.decode("ascii"))
        except UnicodeDecodeError:
            return None
        if grams is None:
            return None
        if sign == b"-":
            return weight_state(-grams)
        return weight_state(grams, motion=status == b"U")
