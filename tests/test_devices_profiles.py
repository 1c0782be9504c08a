"""Firmware profiles: strict schema, the models the hub must know, and every vector against codec and simulator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from test_devices_support import REPO

from devices import profiles
from devices.codecs import mettler8217
from devices.vectors import check_codec, check_profile, check_simulator

ALL = profiles.load_all()
MINIMAL = """
id = "test-scale"
kind = "scale"
vendor = "Test"
model = "T1"
capabilities = ["weigh"]
capacity_g = 6000
[transport]
type = "serial"
[protocol]
id = "mettler-8217"
[[vectors]]
name = "stable"
request = { type = "weigh" }
send = "W"
answer = "<STX>001.000<CR>"
reading = { type = "weight", grams = 1000, stable = true, state = "ok" }
"""


def test_the_models_the_issue_names_have_profiles() -> None:
    kinds = {pid: p.kind for pid, p in ALL.items()}
    protocols = {type(p.protocol).__module__.rsplit(".", 1)[1] for p in ALL.values()}
    assert kinds["mettler-toledo-8217"] == "scale"
    assert kinds["epson-tm-t20iii"] == "printer"
    assert kinds["epson-dm-d110"] == "display"
    assert protocols == {"mettler8217", "mtsics", "nci", "dialog06", "cas_pd2", "adam", "serial_scanner",
                         "evdev_wedge", "escpos", "dmd110"}
    transports = {(p.kind, p.transport.__struct_config__.tag) for p in ALL.values()}
    assert {("printer", "tcp"), ("printer", "usb"), ("printer", "serial"), ("scanner", "evdev"),
            ("scanner", "serial")} <= transports
    assert isinstance(ALL["mettler-toledo-8217"].protocol, mettler8217.Params)
    assert ALL["mettler-toledo-8217"].protocol.command_spacing_ms == 200
    assert ALL["mettler-toledo-8217"].transport == profiles.SerialTransport(baud=9600, bits=7, parity="E")


@pytest.mark.parametrize("profile_id", sorted(ALL))
def test_every_vector_passes_against_codec_and_simulator(profile_id: str) -> None:
    assert check_profile(ALL[profile_id]) == []


def test_a_wrong_vector_is_caught_on_both_sides() -> None:
    profile = profiles.decode(MINIMAL)
    vector = profile.vectors[0]
    wrong_answer = msgspec.structs.replace(vector, answer="<STX>001.001<CR>")
    assert check_codec(profile, wrong_answer) != []
    assert check_simulator(profile, wrong_answer) != []
    wrong_send = msgspec.structs.replace(vector, send="w")
    assert check_codec(profile, wrong_send) == ["stable: codec sends 'W', vector says 'w'"]


@pytest.mark.parametrize(("change", "complaint"), [
    (("vendor = \"Test\"", "vendr = \"Test\""), "Object contains unknown field `vendr`"),
    (("id = \"mettler-8217\"", "id = \"mettler-8217\"\nspacing_ms = 100"), "unknown field `spacing_ms`"),
    (("[transport]\ntype = \"serial\"", "[transport]\ntype = \"serial\"\nbaud = \"fast\""), "Expected `int`"),
    (("[transport]\ntype = \"serial\"", "[transport]\ntype = \"serial\"\nbits = 9"), "Invalid enum value 9"),
    (("capabilities = [\"weigh\"]", "capabilities = [\"weight\"]"), "Invalid enum value 'weight'"),
    (("id = \"mettler-8217\"", "id = \"mettler-9999\""), "Invalid value 'mettler-9999'"),
    (("capacity_g = 6000", "capacity_g = 0"), "a scale needs capacity_g"),
    (("answer = \"<STX>001.000<CR>\"", "answer = \"<STX>001.000<KR>\""), "unknown mnemonic <KR>"),
    (("state = \"ok\"", "state = \"fine\""), "Invalid enum value 'fine'"),
])
def test_profiles_decode_strictly(change: tuple[str, str], complaint: str) -> None:
    assert change[0] in MINIMAL
    with pytest.raises(profiles.ProfileError) as error:
        profiles.decode(MINIMAL.replace(change[0], change[1], 1), "test.toml")
    assert complaint in str(error.value)


def test_profiles_check_validates_every_file_and_runs_its_vectors(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "edge.cli", "profiles", "check"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == f"{len(ALL)} of {len(ALL)} profiles pass"

    (tmp_path / "test-scale.toml").write_text(MINIMAL.replace("001.000", "001.001"), "utf-8")
    (tmp_path / "typo.toml").write_text(MINIMAL.replace("vendor", "vendr").replace("test-scale", "typo"), "utf-8")
    proc = subprocess.run([sys.executable, "-m", "edge.cli", "profiles", "check", "--dir", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    out = proc.stdout.splitlines()
    assert out[0].startswith("FAIL test-scale: stable: codec decodes whole to [WeightReading(grams=1001")
    assert out[1].startswith("FAIL typo.toml:") and "unknown field `vendr`" in out[1]
    assert out[-1] == "0 of 2 profiles pass"


def test_a_profile_id_must_match_its_file_name(tmp_path: Path) -> None:
    (tmp_path / "other-name.toml").write_text(MINIMAL, "utf-8")
    with pytest.raises(profiles.ProfileError, match="must match the file name"):
        profiles.load_all(tmp_path)
