"""Small internal helpers shared across tcplearn's modules."""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def per_process(probe: Callable[[], T]) -> Callable[[], T]:
    """Memoize a no-argument probe once per process.

    A forked child (a private lab's worker) lives in other namespaces, so it probes again
    instead of trusting its parent's answer."""
    results: dict[int, T] = {}

    @functools.wraps(probe)
    def cached() -> T:
        pid = os.getpid()
        if pid not in results:
            results[pid] = probe()
        return results[pid]

    cached.cache = results  # type: ignore[attr-defined]
    return cached


def is_loopback(host: object) -> bool:
    """True for loopback addresses (127.0.0.0/8, ::1) and the name ``localhost``: the
    only places tcplearn sends traffic."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(str(host)).is_loopback
    except ValueError:
        return False


def system_name() -> str:
    """This operating system as a learner calls it: "macOS", "Windows", "Linux", …"""
    import sys

    return {"darwin": "macOS", "win32": "Windows", "cygwin": "Windows (Cygwin)"}.get(
        sys.platform, "Linux" if sys.platform.startswith("linux") else sys.platform)


def loopback_host(family: int = socket.AF_INET) -> str:
    """The loopback address of ``family``: ``"::1"`` for IPv6, else ``"127.0.0.1"``."""
    return "::1" if family == socket.AF_INET6 else "127.0.0.1"


def loopback_listener(family: int = socket.AF_INET, backlog: int = 1, *,
                      reuse_address: bool = False) -> socket.socket:
    """A TCP socket listening on an ephemeral loopback port (``reuse_address`` sets
    ``SO_REUSEADDR`` before ``bind``); closed again if setting it up fails."""
    lst = socket.socket(family, socket.SOCK_STREAM)
    try:
        if reuse_address:
            lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind((loopback_host(family), 0))
        lst.listen(backlog)
    except BaseException:
        lst.close()
        raise
    return lst
