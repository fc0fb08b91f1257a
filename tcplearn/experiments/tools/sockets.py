"""Small socket helpers for lab runs: a connected pair, the kernel's rows and state for one
connection, polling with a deadline, and closing without leaving anything behind (``abort``,
from ``silence``)."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from typing import TypeVar

from ...base.observe import sockets
from ...base.states import TcpState
from .silence import abort

__all__ = ["WAIT", "pair", "tcp_info", "poll", "rows", "abort", "read_eof"]

T = TypeVar("T")
WAIT = 10.0  # seconds: the longest any single step waits for the kernel


def tcp_info(sock: socket.socket) -> tuple[str, int]:
    """The kernel's state of ``sock`` (a ``TcpState`` name, "CLOSED" once it has left the
    table) and its ``tcpi_total_retrans`` (offset 100 of ``struct tcp_info``: every
    retransmission, tail loss probes included)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        return TcpState(info[0]).name, struct.unpack_from("I", info, 100)[0]
    except (OSError, ValueError, struct.error):
        return "CLOSED", 0


def poll(predicate: Callable[[], T], timeout: float = WAIT, what: str = "the kernel") -> T:
    """``predicate()``'s first truthy value, polled every 2 ms; ``TimeoutError`` naming
    ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:g} s for {what}")
        time.sleep(0.002)


def rows(server_port: int, client_port: int) -> list[dict]:
    """The kernel's rows for the connection between these ports (both ends), as plain
    dicts: ``end`` ("client" or "server"), ``state``, ``timer``, ``timer_s``."""
    out = []
    for r in sockets(port=server_port):
        if {r.local_port, r.remote_port} == {server_port, client_port}:
            out.append({"end": "client" if r.local_port == client_port else "server", "state": r.state.name,
                        "timer": r.timer, "timer_s": r.timer_remaining})
    return out


def pair(client_port: int = 0, *, listener: socket.socket | None = None,
         reuse: bool = False) -> tuple[socket.socket, socket.socket, socket.socket]:
    """``(listener, client, server)`` on 127.0.0.1: a new listener unless one is given, a
    client bound to ``client_port`` (0: any), the server's accepted end.  ``reuse`` sets
    ``SO_REUSEADDR`` on the sockets made here.  On error nothing made here stays open."""
    made: list[socket.socket] = []
    try:
        if listener is None:
            listener = socket.socket()
            made.append(listener)
            if reuse:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", 0))
            listener.listen()
        client = socket.socket()
        made.append(client)
        if reuse:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        client.bind(("127.0.0.1", client_port))
        client.settimeout(WAIT)
        client.connect(listener.getsockname())
        listener.settimeout(WAIT)
        server, _ = listener.accept()
    except BaseException:
        for sock in made:
            sock.close()
        raise
    client.settimeout(None)
    return listener, client, server


def read_eof(sock: socket.socket, what: str) -> None:
    """Wait (bounded) for the peer's FIN on ``sock``; ``RuntimeError`` if data came instead."""
    sock.settimeout(WAIT)
    if sock.recv(1) != b"":
        raise RuntimeError(f"{what} received data where only a FIN was expected")
    sock.settimeout(None)
