"""Receipts in ESC/POS (python-escpos), read back by the printer simulator; the customer display; topics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from devices import profiles, receipt, topics
from devices.codecs import dmd110, escpos
from devices.codecs.base import Kick, PrintText, ShowText
from devices.simulators.factory import make_simulator

SALE = receipt.Receipt(
    store_name="鲜果店 Demo 001", receipt_no="DEMO001-00000042", sale_id="6c1d7c4e-1b7e-4e0b-9d4e-2a3c4d5e6f70",
    at="2025-01-01T10:00:00+08:00", till_id="T1", cashier="cashier",
    lines=[receipt.ReceiptLine(name="富士苹果 Fuji apples", weight_g=1500, unit_price=1598, gross=2397, discount=240,
                               net=2157, applied=["会员9折"]),
           receipt.ReceiptLine(name="Milk 1L", qty=2, unit_price=1250, gross=2500, net=2500)],
    subtotal=4897, discount=240, total=4657, tenders=[receipt.ReceiptTender("cash", 5000)], change=343,
    member=receipt.ReceiptMember(member_id="M000001", points=5046, balance=20000, points_earned=46),
    journal_hash="3f9a2c1b77aa0000")


def printed(profile_id: str, data: bytes) -> str:
    sim = make_simulator(profiles.get(profile_id))
    sim.receive(data)
    text = sim.rendered()
    assert text is not None
    return text


def test_a_receipt_on_the_tm_t20iii_reads_back_line_for_line() -> None:
    profile = profiles.get("epson-tm-t20iii")
    data = receipt.render(SALE, profile.protocol, profile.capabilities)
    assert b"\x1c&" + "合计 TOTAL".encode("gb18030") in data  # Chinese in the printer's GB18030 mode
    assert data.endswith(b"\x1bd\x06\x1dV\x01")  # feed and partial cut
    assert printed("epson-tm-t20iii", data) == """鲜果店 Demo 001
------------------------------------------------
小票 Receipt                    DEMO001-00000042
2025-01-01T10:00:00+08:00
Till T1                                  cashier
------------------------------------------------
富士苹果 Fuji apples
  1.500 kg x 15.98/kg                      23.97
  会员9折                                  -2.40
Milk 1L
  2 x 12.50                                25.00
------------------------------------------------
小计 Subtotal                              48.97
优惠 Discount                              -2.40
合计 TOTAL                                 46.57
现金 Cash                                  50.00
找零 Change                                 3.43
------------------------------------------------
会员 Member                              M000001
积分 Points                           5046 (+46)
余额 Balance                              200.00
Journal                                 3F9A2C1B
[QR 6c1d7c4e-1b7e-4e0b-9d4e-2a3c4d5e6f70]
[PARTIAL CUT]"""


def test_a_printer_without_chinese_font_gets_raster_lines_and_no_cut() -> None:
    profile = profiles.get("xprinter-xp58-usb")
    lines = printed("xprinter-xp58-usb", receipt.render(SALE, profile.protocol, profile.capabilities)).splitlines()
    assert lines[0] == "[IMAGE 384x28]"  # the store name has Chinese: a raster line 384 dots wide
    assert "Milk 1L" in lines
    assert "[PARTIAL CUT]" not in lines and "[CUT]" not in lines
    assert lines[-1] == SALE.sale_id  # no native QR on this model: the id as text
    assert all(len(line) <= 32 for line in lines[:-1] if not line.startswith("["))


def test_the_printer_simulator_keeps_each_page_as_text_and_png(tmp_path: Path) -> None:
    pages: list[str] = []
    sim = make_simulator(profiles.get("epson-tm-t20iii"), on_output=pages.append, out_dir=tmp_path)
    codec = escpos.Codec(escpos.Params(escpos_profile="TM-T20II"))
    sim.receive(codec.encode(PrintText(lines=["first"])) + codec.encode(PrintText(lines=["second"])))
    assert pages == ["first\n[PARTIAL CUT]", "second\n[PARTIAL CUT]"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page-0001.png", "page-0001.txt", "page-0002.png",
                                                          "page-0002.txt"]
    assert (tmp_path / "page-0002.txt").read_text("utf-8") == "second\n[PARTIAL CUT]\n"
    with Image.open(tmp_path / "page-0001.png") as png:
        assert png.size[0] == 576 and png.getextrema() == (0, 255)  # black text on white


def test_columns_come_from_the_python_escpos_profile() -> None:
    assert escpos.columns(escpos.Params(escpos_profile="TM-T20II")) == 48
    assert escpos.columns(escpos.Params(escpos_profile="POS-5890")) == 32
    assert receipt.two_columns("合计 TOTAL", "46.57", 20) == "合计 TOTAL     46.57"
    assert receipt.two_columns("a very long item name indeed", "1.00", 20) == "a very long ite 1.00"


def test_drawer_kicks_follow_the_design_bytes() -> None:
    codec = escpos.Codec(escpos.Params(escpos_profile="TM-T20II"))
    assert codec.encode(Kick(pin=2)) == bytes.fromhex("1b 70 00 32 32")
    assert codec.encode(Kick(pin=5)) == bytes.fromhex("1b 70 01 32 32")


def test_the_renderer_reads_barcodes_images_and_code_pages() -> None:
    renderer = escpos.Renderer(escpos.code_pages("TM-T20II"))
    data = (b"\x1b@\x1bt\x02caf\x82\n"  # CP850: e acute
            b"\x1dk\x022112345015002\x00"  # EAN-13, NUL-terminated
            b"\x1dkI\x05AB123"  # CODE128 with a length byte
            b"\x1dv0\x00\x02\x00\x01\x00\xff\xff"  # a 16x1 raster image
            b"\x1dV\x00")
    assert renderer.feed(data[:7]) == []
    pages = renderer.feed(data[7:])
    assert [p.text for p in pages] == [
        "café\n[BARCODE EAN13 2112345015002]\n[BARCODE CODE128 AB123]\n[IMAGE 16x1]\n[CUT]"]
    assert renderer.images == [(16, 1, b"\xff\xff")]


def test_the_printer_answers_status_requests() -> None:
    sim = make_simulator(profiles.get("epson-tm-t20iii"))
    assert sim.receive(b"\x10\x04\x01") == b"\x12"
    sim.control(["offline"])
    assert sim.receive(b"\x10\x04\x01") == b"\x1a"


def test_the_customer_display_shows_two_lines_of_twenty() -> None:
    params = dmd110.Params()
    screen = dmd110.Screen(params)
    codec = dmd110.Codec(params)
    screen.feed(codec.encode(ShowText(lines=["Apples 1.500 kg", "TOTAL        46.57"])))
    assert screen.text() == "Apples 1.500 kg\nTOTAL        46.57"
    screen.feed(codec.encode(ShowText(lines=["Thank you"])))
    assert screen.text() == "Thank you\n"
    chinese = dmd110.Codec(dmd110.Params(chinese="gb18030"))
    screen.feed(chinese.encode(ShowText(lines=["合计 46.57", "谢谢"])))
    assert screen.text() == "合计 46.57\n谢谢"


def test_print_text_is_python_escpos_output() -> None:
    codec = escpos.Codec(escpos.Params(escpos_profile="TM-T88V", cut="full"))
    assert codec.encode(PrintText(lines=["A"])) == b"\x1b@\x1bt\x00A\n\x1bd\x06\x1dV\x00"


# --- topics -------------------------------------------------------------------------------------

def test_topics_follow_the_contract() -> None:
    assert topics.data("demo-001", "scale-1", "weight") == "backroom/v1/demo-001/dev/scale-1/data/weight"
    assert topics.result("demo-001", "p1", "print") == "backroom/v1/demo-001/dev/p1/cmd/print/result"
    assert topics.parse("backroom/v1/demo-001/dev/p1/cmd/print/result") == topics.Topic(
        "demo-001", "p1", "result", "print")
    assert topics.parse("backroom/v1/demo-001/dev/p1/birth") == topics.Topic("demo-001", "p1", "birth")
    for bad in ("backroom/v2/demo-001/dev/p1/birth", "backroom/v1/demo-001/dev/p1", "backroom/v1/x/dev/p1/other",
                "backroom/v1/demo-001/dev/+/birth"):
        assert topics.parse(bad) is None
    with pytest.raises(ValueError):
        topics.device_root("demo-001", "a/#")


def test_commands_decode_by_the_action_in_the_topic() -> None:
    assert topics.decode_command("kick", b'{"cmd_id": "c1"}') == topics.KickCommand(cmd_id="c1", pin=2)
    assert topics.decode_command("display", b'{"cmd_id": "c2", "lines": ["a", "b"], "new_field": 1}') == \
        topics.DisplayCommand(cmd_id="c2", lines=["a", "b"])
    body = json.loads(topics.encode_command(topics.PrintCommand(cmd_id="c3", sale_id="s1")))
    assert body == {"cmd_id": "c3", "sale_id": "s1", "lines": None, "receipt": None, "cut": True, "qr": None}
    for action, payload, message in (("launch", b'{"cmd_id": "c4"}', "unknown action 'launch'"),
                                     ("display", b'{"cmd_id": "c5"}', "missing required field `lines`"),
                                     ("tare", b"[]", "must be a JSON object"),
                                     ("tare", b"{", "not JSON")):
        with pytest.raises(topics.BadCommand, match=message):
            topics.decode_command(action, payload)
    assert topics.encode(topics.CommandResult(cmd_id="c1", ok=True)) == b'{"cmd_id":"c1","ok":true}'
