"""The kernel's TCP counters of this network namespace, and how much a step changed them.

``/proc/net/netstat`` holds the ``TcpExt`` counters (``TCPChallengeACK``, ``PAWSEstab``,
``TCPTimeWaitOverflow``, …, named as in the kernel's ``include/uapi/linux/snmp.h`` and
``net/ipv4/proc.c``), ``/proc/net/snmp`` the RFC 4022 ``Tcp`` ones (``InSegs``,
``OutRsts``, …).  Inside a private lab nothing else runs, so a delta is the experiment's
own; on the machine itself other programs' traffic counts too.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ...base.kernel import counter_table, netstat

__all__ = ["tcp", "snapshot", "delta", "wait_for"]


def tcp() -> dict[str, int]:
    """The ``Tcp:`` counters of ``/proc/net/snmp`` (this namespace); empty where unreadable."""
    return counter_table("/proc/net/snmp", "Tcp")


def snapshot() -> dict[str, dict[str, int]]:
    """Both tables now: ``{"TcpExt": {...}, "Tcp": {...}}``."""
    return {"TcpExt": netstat(), "Tcp": tcp()}


def delta(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]] | None = None,
          table: str = "TcpExt") -> dict[str, int]:
    """The counters of ``table`` that changed from ``before`` to ``after`` (default: now),
    by their kernel names, zeros left out."""
    after = snapshot() if after is None else after
    old, new = before.get(table, {}), after.get(table, {})
    return {name: new[name] - old.get(name, 0) for name in new if new[name] != old.get(name, 0)}


def wait_for(before: dict[str, dict[str, int]], done: Callable[[dict[str, int]], bool],
             timeout: float = 1.0, table: str = "Tcp") -> dict[str, int]:
    """Poll until ``done(delta)`` holds for ``table``'s delta since ``before`` (at most
    ``timeout`` seconds); returns the last delta either way."""
    deadline = time.monotonic() + timeout
    while True:
        changed = delta(before, table=table)
        if done(changed) or time.monotonic() > deadline:
            return changed
        time.sleep(0.002)
