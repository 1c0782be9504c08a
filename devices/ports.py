"""Byte pipes to devices: serial ports and pyserial URLs, raw TCP (network printers), USB printer and evdev nodes.

A port only moves bytes. Anything that means the device is gone (unplugged adapter, closed
socket, a pty whose other end exited) surfaces as `PortGone`, which the bridge answers by closing
the port and reopening it with backoff.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import socket
import time
from typing import Protocol
from urllib.parse import urlsplit

import serial  # type: ignore[import-untyped]

from devices.profiles import EvdevTransport, Profile, SerialTransport, TcpTransport

EVIOCGRAB = 0x40044590  # _IOW('E', 0x90, int)
_PARITY = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}


class PortGone(OSError):
    pass


class Port(Protocol):
    def read(self, timeout_s: float) -> bytes:
        """Whatever arrives within `timeout_s` (b'' if nothing)."""
        ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class SerialPort:
    def __init__(self, url: str, transport: SerialTransport) -> None:
        try:
            self.serial = serial.serial_for_url(
                url, baudrate=transport.baud, bytesize=transport.bits, parity=_PARITY[transport.parity],
                stopbits=transport.stop_bits, timeout=0.02, write_timeout=2.0, exclusive=None)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortGone(f"cannot open {url}: {exc}") from exc

    def read(self, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                data = self.serial.read(max(1, self.serial.in_waiting))
                if data or time.monotonic() >= deadline:
                    return bytes(data)
        except (serial.SerialException, OSError) as exc:
            raise PortGone(str(exc)) from exc

    def write(self, data: bytes) -> None:
        try:
            self.serial.write(data)
            self.serial.flush()
        except (serial.SerialException, OSError) as exc:
            raise PortGone(str(exc)) from exc

    def close(self) -> None:
        with contextlib.suppress(serial.SerialException, OSError):
            self.serial.close()


class TcpPort:
    def __init__(self, host: str, port: int, connect_timeout_s: float = 3.0) -> None:
        try:
            self.sock = socket.create_connection((host, port), timeout=connect_timeout_s)
        except OSError as exc:
            raise PortGone(f"cannot connect to {host}:{port}: {exc}") from exc
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.sock.settimeout(5.0)

    def read(self, timeout_s: float) -> bytes:
        try:
            ready, _, _ = select.select([self.sock], [], [], timeout_s)
            if not ready:
                return b""
            data = self.sock.recv(4096)
        except OSError as exc:
            raise PortGone(str(exc)) from exc
        if not data:
            raise PortGone("the device closed the connection")
        return data

    def write(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise PortGone(str(exc)) from exc

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class NodePort:
    """A device node read and written like a file: /dev/usb/lpN (printer class), /dev/input/eventN."""

    def __init__(self, path: str, grab: bool = False) -> None:
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as exc:
            raise PortGone(f"cannot open {path}: {exc}") from exc
        if grab:
            try:
                fcntl.ioctl(self.fd, EVIOCGRAB, 1)
            except OSError:
                pass  # not an input device (a test pipe): nothing to grab

    def read(self, timeout_s: float) -> bytes:
        try:
            ready, _, _ = select.select([self.fd], [], [], timeout_s)
            if not ready:
                return b""
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return b""
        except OSError as exc:
            raise PortGone(str(exc)) from exc
        if not data:
            raise PortGone("end of file")
        return data

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                _, ready, _ = select.select([], [self.fd], [], 5.0)
                if not ready:
                    raise PortGone("device does not accept data")
                view = view[os.write(self.fd, view):]
        except OSError as exc:
            raise PortGone(str(exc)) from exc

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def open_port(url: str, profile: Profile) -> Port:
    """`tcp://host[:port]`, a pyserial URL (`socket://`, `rfc2217://`, `loop://`), or a device path."""
    transport = profile.transport
    if url.startswith("tcp://"):
        parts = urlsplit(url)
        default = transport.port if isinstance(transport, TcpTransport) else 9100
        return TcpPort(parts.hostname or "127.0.0.1", parts.port or default)
    if isinstance(transport, EvdevTransport):
        return NodePort(url, grab=transport.grab)
    if "://" not in url and not isinstance(transport, SerialTransport):
        return NodePort(url)
    return SerialPort(url, transport if isinstance(transport, SerialTransport) else SerialTransport())
