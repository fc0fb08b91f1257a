"""``TcpSocket``: one row of the kernel's TCP table, whatever backend produced it."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from ..states import TcpState

__all__ = ["TcpSocket", "TIMER_NAMES"]

#: Timer names, indexed by the ``tr`` code of ``/proc/net/tcp`` (``get_tcp4_sock()`` in
#: ``net/ipv4/tcp_ipv4.c``).
TIMER_NAMES = ("off", "retransmit", "keepalive", "timewait", "probe")


@dataclass(frozen=True, slots=True)
class TcpSocket:
    """One TCP socket as the kernel reports it.

    ``timer`` is one of ``"off"``, ``"retransmit"``, ``"keepalive"`` (the ``sk_timer``,
    which also runs the FIN-WAIT-2 timeout of a full socket), ``"timewait"`` (the timer of
    a TIME-WAIT or orphaned FIN-WAIT-2 mini-socket) and ``"probe"`` (zero-window probe).
    ``timer_remaining`` is the time left on it in seconds, or ``None`` where the backend
    cannot see timers (psutil).  ``uid`` and ``inode`` are 0 for mini-sockets, which
    belong to no process.
    """

    family: int
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    state: TcpState
    tx_queue: int = 0
    rx_queue: int = 0
    timer: str = "off"
    timer_remaining: float | None = 0.0
    retransmits: int = 0
    uid: int = 0
    inode: int = 0
    probes: int = 0  # unanswered keepalive or zero-window probes (icsk_probes_out), /proc only

    @property
    def local(self) -> tuple[str, int]:
        """``(local_address, local_port)``."""
        return (self.local_address, self.local_port)

    @property
    def remote(self) -> tuple[str, int]:
        """``(remote_address, remote_port)``."""
        return (self.remote_address, self.remote_port)

    def involves_port(self, port: int) -> bool:
        """True if either end of this socket uses ``port``."""
        return self.local_port == port or self.remote_port == port

    def __str__(self) -> str:
        fam = "tcp6" if self.family == socket.AF_INET6 else "tcp"
        timer = ""
        if self.timer != "off":
            left = "?" if self.timer_remaining is None else f"{self.timer_remaining:.2f}s"
            timer = f" timer:{self.timer},{left}"
        return (
            f"{fam} {self.state.label:<12} {_endpoint(self.local)} -> "
            f"{_endpoint(self.remote)}{timer}"
        )


def _endpoint(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
