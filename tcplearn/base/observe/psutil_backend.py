"""The psutil backend, for systems without ``/proc/net/tcp`` (macOS, Windows).

What a learner there can see: psutil lists connections with their state but no kernel
timers, so ``timer_remaining`` is ``None``.  On macOS a system-wide listing needs root;
without it only this process's own connections are visible, and TIME-WAIT sockets
belong to no process, so they are invisible there.  Windows lists system-wide
without administrator rights, TIME-WAIT included (owned by PID 0).
"""

from __future__ import annotations

import socket
from typing import Any

from ..states import TcpState
from .tcpsocket import TcpSocket

__all__ = ["list_sockets", "scope_note"]

_STATUS = {
    "ESTABLISHED": TcpState.ESTABLISHED,
    "SYN_SENT": TcpState.SYN_SENT,
    "SYN_RECV": TcpState.SYN_RECEIVED,
    "FIN_WAIT1": TcpState.FIN_WAIT_1,
    "FIN_WAIT2": TcpState.FIN_WAIT_2,
    "TIME_WAIT": TcpState.TIME_WAIT,
    "CLOSE": TcpState.CLOSED,
    "CLOSE_WAIT": TcpState.CLOSE_WAIT,
    "LAST_ACK": TcpState.LAST_ACK,
    "LISTEN": TcpState.LISTEN,
    "CLOSING": TcpState.CLOSING,
}

_scope = "system"


def scope_note() -> str:
    """One sentence on what the psutil backend can see on this machine right now."""
    if _scope == "process":
        return (
            "psutil can list only this process's own connections here (a system-wide list "
            "needs root); TIME-WAIT sockets belong to no process, so they are not visible."
        )
    return "psutil lists every connection with its state, but not the kernel's timers."


def list_sockets() -> list[TcpSocket]:
    """Every TCP connection psutil can see, system-wide when allowed, else this process's."""
    global _scope
    import psutil

    conns: list[Any]  # system-wide sconn rows, or this process's pconn rows
    try:
        conns = psutil.net_connections(kind="tcp")
        _scope = "system"
    except psutil.AccessDenied:
        conns = psutil.Process().net_connections(kind="tcp")
        _scope = "process"
    out = []
    for c in conns:
        state = _STATUS.get(c.status)
        if state is None:
            continue
        laddr = c.laddr or ("", 0)
        raddr = c.raddr or (("::" if c.family == socket.AF_INET6 else "0.0.0.0"), 0)
        out.append(
            TcpSocket(
                family=int(c.family),
                local_address=_clean(laddr[0]),
                local_port=laddr[1],
                remote_address=_clean(raddr[0]),
                remote_port=raddr[1],
                state=state,
                timer="off",
                timer_remaining=None,
            )
        )
    return out


def _clean(address: str) -> str:
    # psutil may give scoped IPv6 addresses ("fe80::1%lo0"); ipaddress formats the rest.
    import ipaddress

    try:
        return str(ipaddress.ip_address(address.split("%", 1)[0]))
    except ValueError:
        return address
