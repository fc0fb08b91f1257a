"""Small internal helpers shared across tcplearn's modules."""

from __future__ import annotations

import functools
import ipaddress
import os
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
