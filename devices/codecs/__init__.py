"""Protocol codecs, one module per protocol; `make_codec` picks one by the profile's protocol id."""

from __future__ import annotations

from devices.codecs import (
    adam,
    cas_pd2,
    dialog06,
    dmd110,
    escpos,
    evdev_wedge,
    mettler8217,
    mtsics,
    nci,
    serial_scanner,
)
from devices.codecs.base import Codec

ProtocolSpec = (
    mettler8217.Params | mtsics.Params | nci.Params | dialog06.Params | cas_pd2.Params | adam.Params
    | serial_scanner.Params | evdev_wedge.Params | escpos.Params | dmd110.Params
)


def make_codec(params: ProtocolSpec) -> Codec:
    match params:
        case mettler8217.Params():
            return mettler8217.Codec(params)
        case mtsics.Params():
            return mtsics.Codec(params)
        case nci.Params():
            return nci.Codec(params)
        case dialog06.Params():
            return dialog06.Codec(params)
        case cas_pd2.Params():
            return cas_pd2.Codec(params)
        case adam.Params():
            return adam.Codec(params)
        case serial_scanner.Params():
            return serial_scanner.Codec(params)
        case evdev_wedge.Params():
            return evdev_wedge.Codec(params)
        case escpos.Params():
            return escpos.Codec(params)
        case dmd110.Params():
            return dmd110.Codec(params)
    raise AssertionError(params)
