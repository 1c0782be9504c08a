"""The simulator's I/O shell: a pty (what a bridge opens as its serial port) or a TCP server (port 9100).

`serve` prints the device's address first (the pty path, or host:port), then moves bytes between
the host and the simulated device until SIGTERM/SIGINT. Lines on stdin are operator commands
(`weight 1500`, `scan 6901234567892`, `offline`); printed pages and display changes go to stdout.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sys
import threading
import tty
from collections.abc import Callable

from devices.simulators.base import DeviceSim


class Stop:
    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.event.set())


def _control(sim: DeviceSim, line: str, out: Callable[[str], None]) -> None:
    words = line.split()
    if words:
        out(f"# {sim.control(words)}")


def serve_pty(sim: DeviceSim, announce: Callable[[str], None], stop: threading.Event,
              control_fd: int | None = None, log: Callable[[str], None] = print) -> None:
    master, slave = os.openpty()
    # Raw, no echo, until the bridge sets its own line settings (pyserial does; 7E1 is accepted).
    tty.setraw(slave)
    # Holding the slave open keeps the master readable when no bridge has the port open.
    announce(os.ttyname(slave))
    try:
        _loop(sim, [master], lambda fd, data: os.write(fd, data), lambda data: os.write(master, data), stop,
              control_fd, log, read=lambda fd: os.read(fd, 4096))
    finally:
        os.close(master)
        os.close(slave)


def serve_tcp(sim: DeviceSim, host: str, port: int, announce: Callable[[str], None], stop: threading.Event,
              control_fd: int | None = None, log: Callable[[str], None] = print) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, port))
    server.listen(8)
    announce(f"{host}:{server.getsockname()[1]}")
    clients: dict[int, socket.socket] = {}

    def read(fd: int) -> bytes:
        if fd == server.fileno():
            conn, _ = server.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            clients[conn.fileno()] = conn
            fds.append(conn.fileno())
            return b""
        try:
            data = clients[fd].recv(4096)
        except OSError:
            data = b""
        if not data:
            fds.remove(fd)
            clients.pop(fd).close()
        return data

    def write(fd: int, data: bytes) -> None:
        targets = [clients[fd]] if fd in clients else list(clients.values())
        for conn in targets:
            with contextlib.suppress(OSError):
                conn.sendall(data)

    fds = [server.fileno()]
    try:
        _loop(sim, fds, write, lambda data: write(-1, data), stop, control_fd, log, read=read)
    finally:
        for conn in clients.values():
            conn.close()
        server.close()


def _loop(sim: DeviceSim, fds: list[int], write: Callable[[int, bytes], object],
          broadcast: Callable[[bytes], object], stop: threading.Event, control_fd: int | None,
          log: Callable[[str], None], read: Callable[[int], bytes]) -> None:
    pending = b""
    while not stop.is_set():
        watch = list(fds) + ([control_fd] if control_fd is not None else [])
        try:
            ready, _, _ = select.select(watch, [], [], 0.05)
        except InterruptedError:
            continue
        for fd in ready:
            if fd == control_fd:
                chunk = os.read(fd, 4096)
                if not chunk:
                    control_fd = None  # stdin closed: keep running
                    continue
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    _control(sim, line.decode(errors="replace"), log)
                continue
            try:
                data = read(fd)
            except OSError:
                continue
            if data:
                answer = sim.receive(data)
                if answer:
                    write(fd, answer)
        emitted = sim.emit()
        if emitted:
            broadcast(emitted)


def run(sim: DeviceSim, *, tcp_port: int | None, host: str = "127.0.0.1") -> int:
    """The `backroom devices simulate` process: announce the address on the first line, serve until a signal."""
    stop = Stop()
    stop.install()

    def say(line: str) -> None:
        print(line, flush=True)

    control = sys.stdin.fileno() if sys.stdin is not None and not sys.stdin.closed else None
    if tcp_port is None:
        serve_pty(sim, say, stop.event, control, say)
    else:
        serve_tcp(sim, host, tcp_port, say, stop.event, control, say)
    return 0
