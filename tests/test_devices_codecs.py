"""Protocol codecs: table-driven frames, and fuzzed byte streams that must never crash a codec.

The recovery property: after any garbage, a codec decodes every valid frame from the second one
on. (The first may be lost: garbage without a terminator swallows the start of a line-framed
reply, as it would on a real device.)
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices import bytespec, profiles
from devices.codecs import adam, cas_pd2, dialog06, dmd110, escpos, evdev_wedge, make_codec, mettler8217, mtsics, nci
from devices.codecs import serial_scanner as scanner
from devices.codecs.base import (
    Ack,
    DeviceError,
    Nak,
    Reading,
    Rendered,
    ScanReading,
    SetPrice,
    Unsupported,
    Weigh,
    WeightReading,
    to_grams,
)

ALL = profiles.load_all()
OK = WeightReading(grams=1234, stable=True, state="ok")


def decode(codec: object, data: bytes) -> list[Reading]:
    assert hasattr(codec, "feed")
    return list(codec.feed(data))


@pytest.mark.parametrize(("frame", "expected"), [
    (b"\x02001.234\r", [OK]),
    (b"\x02  1.234\r", [OK]),  # leading spaces
    (b"\x02001.234N\r", [OK]),  # net
    (b"\x02?A\r", [WeightReading(stable=False, state="motion")]),
    (b"\x02?C\r", [WeightReading(stable=False, state="overload")]),  # overload wins over motion
    (b"\x02?\xc1\r", [WeightReading(stable=False, state="motion")]),  # parity bit set by the port
    (b"\x02?@\r", [WeightReading(stable=False, state="error")]),
    (b"\x0201.2x4\r", []),
    (b"001.234\r", []),  # no STX
    (b"\x02001\x02001.234\r", [OK]),  # a new STX restarts the frame
])
def test_mettler_8217_frames(frame: bytes, expected: list[Reading]) -> None:
    assert decode(mettler8217.Codec(mettler8217.Params()), frame) == expected


def test_mettler_8217_in_pounds() -> None:
    codec = mettler8217.Codec(mettler8217.Params(unit="lb"))
    assert decode(codec, b"\x0202.72\r") == [WeightReading(grams=1234, stable=True, state="ok")]


@pytest.mark.parametrize(("line", "expected"), [
    (b"S S      100.00 g\r\n", [WeightReading(grams=100, stable=True, state="ok")]),
    (b"S D      1.2345 kg\r\n", [WeightReading(grams=1235, stable=False, state="motion")]),  # half up
    (b"S S     -0.50 g\r\n", [WeightReading(grams=-1, stable=False, state="underload")]),
    (b"S +\r\n", [WeightReading(stable=False, state="overload")]),
    (b"S I\r\n", [DeviceError(code="busy")]),
    (b"ES\r\n", [DeviceError(code="syntax")]),
    (b"ET\r\nEL\r\n", [DeviceError(code="transmission"), DeviceError(code="logical")]),
    (b"Z A\r\n", [Ack()]),
    (b"S S      100.00 furlong\r\n", []),
])
def test_mt_sics_lines(line: bytes, expected: list[Reading]) -> None:
    assert decode(mtsics.Codec(mtsics.Params()), line) == expected


@pytest.mark.parametrize(("frame", "expected"), [
    (b"\n01.234KG\r\nS00\r\x03", [OK]),
    (b"\n02.72LB\r\nS00\r\x03", [OK]),
    (b"\n01.234KG\r\nS10\r\x03", [WeightReading(grams=1234, stable=False, state="motion")]),
    (b"\nS03\r\x03", [WeightReading(stable=False, state="overload")]),
    (b"junk\x03\n01.234KG\r\nS00\r\x03", [OK]),
    (b"\n01.234KG\r\n\x03", []),  # no status line
])
def test_nci_frames(frame: bytes, expected: list[Reading]) -> None:
    assert decode(nci.Codec(nci.Params()), frame) == expected


def test_dialog06_price_and_weighing() -> None:
    codec = dialog06.Codec(dialog06.Params())
    assert codec.encode(SetPrice(unit_price=1598)) == b"\x04\x0201\x1b001598\x1b\x03"
    with pytest.raises(Unsupported):
        codec.encode(SetPrice(unit_price=1_000_000))
    assert decode(codec, b"\x15\x0209\x1b20\x03\x06") == [Nak(), WeightReading(stable=False, state="motion"), Ack()]
    assert decode(codec, b"\x0209\x1b77\x03") == [DeviceError(code="status-77")]
    assert decode(codec, b"\x0202\x1b1\x1b01X00\x1b001598\x1b002397\x03") == []


def test_cas_pd2_checks_the_bcc() -> None:
    codec = cas_pd2.Codec(cas_pd2.Params())
    good = b"\x01\x02S 01.500kge\x03\x04"
    assert decode(codec, good) == [WeightReading(grams=1500, stable=True, state="ok")]
    assert decode(codec, good[:12] + b"f" + good[13:]) == []
    # A false SOH inside garbage does not hide the real frame after it.
    assert decode(codec, b"\x01\x02S 9" + good) == [WeightReading(grams=1500, stable=True, state="ok")]


@pytest.mark.parametrize(("line", "expected"), [
    (b"    1.500kg\r\n", [WeightReading(grams=1500, stable=True, state="ok")]),
    (b"ST,GS,+0001.500kg\r\n", [WeightReading(grams=1500, stable=True, state="ok")]),
    (b"US,NT,+0001.500kg\r\n", [WeightReading(grams=1500, stable=False, state="motion")]),
    (b"OL,GS,+9999.999kg\r\n", [WeightReading(stable=False, state="overload")]),
    (b" -OL-\r\n", [WeightReading(stable=False, state="overload")]),
    (b"  hello\r\n", []),
])
def test_adam_lines(line: bytes, expected: list[Reading]) -> None:
    assert decode(adam.Codec(adam.Params()), line) == expected


@pytest.mark.parametrize(("params", "data", "expected"), [
    (scanner.Params(aim_prefix=True), b"]E02112345015002\r", [ScanReading(code="2112345015002", symbology="ean13")]),
    (scanner.Params(aim_prefix=True), b"]E0012345678905\r", [ScanReading(code="012345678905", symbology="upca")]),
    (scanner.Params(aim_prefix=True), b"]Q1https://example.com/\xe4\xbd\xa0\r",
     [ScanReading(code="https://example.com/你", symbology="qr")]),
    (scanner.Params(aim_prefix=True), b"2112345015002\r", []),  # prefix expected but missing
    (scanner.Params(suffix="TAB"), b"96385074\t", [ScanReading(code="96385074", symbology="ean8")]),
    (scanner.Params(suffix="LF"), b"6901234567892\r\n", [ScanReading(code="6901234567892", symbology="ean13")]),
    (scanner.Params(), b"6901234567893\r", [ScanReading(code="6901234567893", symbology="unknown")]),  # bad check
    (scanner.Params(), b"69012\x0734567892\r", []),  # a control byte: noise
])
def test_serial_scanner(params: scanner.Params, data: bytes, expected: list[Reading]) -> None:
    assert decode(scanner.Codec(params), data) == expected


def test_keyboard_wedge_shift_and_32_bit_layout() -> None:
    for time_bytes in (16, 8):
        codec = evdev_wedge.Codec(evdev_wedge.Params(time_bytes=time_bytes))
        typed = evdev_wedge.type_text("Ab-12", time_bytes)
        assert decode(codec, typed) == [ScanReading(code="Ab-12", symbology="unknown")]


def test_grams_conversion_refuses_what_is_not_a_plain_number() -> None:
    assert to_grams("1.2345", "kg") == 1235
    assert to_grams("0.0005", "kg") == 1
    assert to_grams("1", "lb") == 454
    for bad in ("9e999", "NaN", "Infinity", "1,5", "", "١٢"):
        assert to_grams(bad, "kg") is None
    assert to_grams("1", "stone") is None


def test_bytespec_round_trips() -> None:
    raw = bytes(range(256))
    assert bytespec.parse(bytespec.format_bytes(raw)) == raw
    assert bytespec.parse("<STX>001.234<CR>") == b"\x02001.234\r"
    assert bytespec.parse("hex: 1b 40") == b"\x1b@"
    for bad in ("<BOGUS>", "a<b", "é"):
        with pytest.raises(bytespec.ByteSpecError):
            bytespec.parse(bad)


# --- fuzzing ------------------------------------------------------------------------------------

def _frames(profile: profiles.Profile) -> list[tuple[bytes, Reading]]:
    """Each vector whose answer decodes to one reading is a valid frame of that protocol."""
    return [(v.answer_bytes(), v.reading) for v in profile.vectors
            if v.reading is not None and v.answer and not isinstance(v.reading, Rendered)]


DECODING = sorted(pid for pid, p in ALL.items() if _frames(p) and p.kind in ("scale", "scanner")
                  and not isinstance(p.protocol, evdev_wedge.Params))
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_the_fuzzed_protocols_cover_every_serial_device_protocol() -> None:
    assert DECODING == ["adam-azextra", "cas-pd-ii", "cas-pdn-dialog06", "generic-serial-scanner",
                        "generic-serial-scanner-crlf", "mettler-toledo-8217", "mettler-toledo-mt-sics",
                        "weigh-tronix-nci-ecr"]


@pytest.mark.parametrize("profile_id", sorted(ALL))
@FUZZ
@given(chunks=st.lists(st.binary(max_size=64), max_size=12))
def test_no_byte_stream_crashes_a_codec(profile_id: str, chunks: list[bytes]) -> None:
    codec = make_codec(ALL[profile_id].protocol)
    for chunk in chunks:
        for reading in codec.feed(chunk):
            assert isinstance(reading, Reading.__args__)  # type: ignore[attr-defined]


@pytest.mark.parametrize("profile_id", DECODING)
@FUZZ
@given(data=st.data(), garbage=st.binary(max_size=80))
def test_codecs_recover_at_the_next_valid_frame(profile_id: str, data: st.DataObject, garbage: bytes) -> None:
    frames = _frames(ALL[profile_id])
    picked = data.draw(st.lists(st.sampled_from(frames), min_size=2, max_size=5))
    stream = garbage + b"".join(frame for frame, _ in picked)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    codec = make_codec(ALL[profile_id].protocol)
    readings: list[Reading] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        readings += codec.feed(stream[start:end])
    expected = [reading for _, reading in picked[1:]]
    assert readings[len(readings) - len(expected):] == expected


# What ends any frame the garbage left open. STX- and SOH-framed protocols need nothing: the next
# frame's first byte restarts them, so they recover at the very next frame.
CLEAN = {"mettler-toledo-8217": b"", "cas-pd-ii": b"", "cas-pdn-dialog06": b"\x03", "weigh-tronix-nci-ecr": b"\x03",
         "mettler-toledo-mt-sics": b"\n", "adam-azextra": b"\n", "generic-serial-scanner": b"\r",
         "generic-serial-scanner-crlf": b"\n"}


@pytest.mark.parametrize("profile_id", DECODING)
@FUZZ
@given(data=st.data(), garbage=st.binary(max_size=80))
def test_after_a_frame_end_codecs_decode_every_frame(profile_id: str, data: st.DataObject, garbage: bytes) -> None:
    frames = _frames(ALL[profile_id])
    picked = data.draw(st.lists(st.sampled_from(frames), min_size=1, max_size=4))
    codec = make_codec(ALL[profile_id].protocol)
    readings = codec.feed(garbage + CLEAN[profile_id] + b"".join(frame for frame, _ in picked))
    expected = [reading for _, reading in picked]
    assert readings[len(readings) - len(expected):] == expected


@FUZZ
@given(chunks=st.lists(st.binary(max_size=200), max_size=10))
def test_no_byte_stream_crashes_the_printer_renderer_or_the_display(chunks: list[bytes]) -> None:
    renderer = escpos.Renderer(escpos.code_pages("TM-T20II"), on_status=lambda n: b"\x12")
    screen = dmd110.Screen(dmd110.Params())
    for chunk in chunks:
        for page in renderer.feed(chunk):
            assert isinstance(page.text, str)
        screen.feed(chunk)
    renderer.flush()
    assert len(screen.text().splitlines()) <= 2


# Length-prefixed ESC/POS blocks (GS ( k, GS v 0, ESC *, FS ...) legitimately swallow what follows,
# on a real printer too; garbage here stays clear of those introducers.
PRINTER_GARBAGE = st.binary(max_size=80).filter(lambda b: 0x1D not in b and 0x1C not in b and b"\x1b*" not in b)


@FUZZ
@given(garbage=PRINTER_GARBAGE, texts=st.lists(st.from_regex(r"[A-Z0-9][A-Z0-9 .]{0,19}", fullmatch=True), min_size=2,
                                                max_size=4))
def test_the_printer_renderer_recovers_at_the_next_receipt(garbage: bytes, texts: list[str]) -> None:
    codec = escpos.Codec(escpos.Params(escpos_profile="TM-T20II", cut="partial"))
    from devices.codecs.base import PrintText

    jobs = [codec.encode(PrintText(lines=[text])) for text in texts]
    renderer = escpos.Renderer(escpos.code_pages("TM-T20II"))
    pages = renderer.feed(garbage + b"".join(jobs))
    expected = [Rendered(text=f"{text.rstrip()}\n[PARTIAL CUT]") for text in texts[1:]]
    assert pages[len(pages) - len(expected):] == expected


@FUZZ
@given(garbage=st.binary(max_size=80), screens=st.lists(st.tuples(st.from_regex(r"[ -~]{0,24}", fullmatch=True),
                                                                  st.from_regex(r"[ -~]{0,24}", fullmatch=True)),
                                                        min_size=2, max_size=3))
def test_the_display_recovers_at_the_next_screen(garbage: bytes, screens: list[tuple[str, str]]) -> None:
    params = dmd110.Params()
    codec = dmd110.Codec(params)
    from devices.codecs.base import ShowText

    screen = dmd110.Screen(params)
    screen.feed(garbage + b"".join(codec.encode(ShowText(lines=list(lines))) for lines in screens))
    top, bottom = screens[-1]
    assert screen.text() == f"{top[:20].rstrip()}\n{bottom[:20].rstrip()}"


def test_codecs_say_what_they_cannot_encode() -> None:
    with pytest.raises(Unsupported):
        scanner.Codec(scanner.Params()).encode(Weigh())
