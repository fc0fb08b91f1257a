"""What a TIME-WAIT socket costs in kernel memory, as the kernel itself reports it.

A connection in TIME-WAIT is no longer a full ``tcp_sock``: Linux replaces it with a
mini-socket, a ``struct tcp_timewait_sock`` allocated from its own slab cache named
``tw_sock_TCP`` (``tw_sock_TCPv6`` for IPv6).  The cache is created with
``kmem_cache_create("tw_sock_" + prot->name, twsk_prot->twsk_obj_size, ...)`` and
``twsk_obj_size = sizeof(struct tcp_timewait_sock)`` (``net/core/sock.c``,
``net/ipv4/tcp_ipv4.c``), so the cache's ``object_size`` *is* that struct's size on the
running kernel, and ``slab_size`` is what each one occupies in its slab.

Both are read from ``/sys/kernel/slab/<cache>/`` (SLUB; root-only on many kernels),
else from ``/proc/slabinfo`` (root-only; it gives the slab size only), else a sourced
figure is returned, clearly marked.  What is counted is the mini-socket only: the
established-hash bucket it sits in is preallocated, and the bind bucket of an outgoing
connection's local port is shared by every connection on that port.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

__all__ = ["time_wait_size", "time_wait_cost", "TimeWaitCost", "mem_total", "SOURCED"]

SLAB_DIR = Path("/sys/kernel/slab")
SLABINFO = Path("/proc/slabinfo")
MEMINFO = Path("/proc/meminfo")

#: The figure used where the kernel's own cannot be read (Vincent Bernat, "Coping with the TCP TIME-WAIT state
#: on busy Linux servers", section "Memory").
SOURCED = {
    "object_size": 168,
    "slab_size": 256,
    "citation": ("Vincent Bernat, 'Coping with the TCP TIME-WAIT state on busy Linux servers' (2014, "
                 "updated 2017), https://vincent.bernat.ch/en/blog/2014-tcp-time-wait-state-linux: "
                 "sizeof(struct tcp_timewait_sock) = 168 bytes (gdb), slabtop shows tw_sock_TCP "
                 "objects of 0.25K"),
    "kernel": "the author's kernel in 2014; current kernels differ (unconfirmed)",
}


def _int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _from_slabinfo(cache: str) -> int | None:
    """The cache's ``<objsize>`` column (its slab size per object), if readable."""
    try:
        lines = SLABINFO.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[0] == cache:
            try:
                return int(fields[3])
            except ValueError:
                return None
    return None


def time_wait_size(ipv6: bool = False) -> dict[str, Any]:
    """The size of one TIME-WAIT mini-socket, and where the figure comes from.

    Keys: ``cache`` (``tw_sock_TCP`` or ``tw_sock_TCPv6``); ``object_size`` (bytes of the
    struct the cache holds, ``struct tcp_timewait_sock`` for IPv4; ``None`` if unknown); ``slab_size``
    (bytes each takes in its slab, alignment included); ``bytes`` (what one costs: the
    slab size, else the object size, else ``None``); ``source`` (``"sysfs"``,
    ``"slabinfo"``, ``"sourced"`` or ``"unknown"``); ``where`` (the file read, or the
    citation); ``kernel``; ``merged`` (SLUB shares the cache with others of a like
    size, so ``object_size`` may be the largest of them); ``slabinfo`` (the slab size
    ``/proc/slabinfo`` reports, when it is readable, as a cross-check).
    """
    cache = "tw_sock_TCPv6" if ipv6 else "tw_sock_TCP"
    directory = SLAB_DIR / cache
    object_size, slab_size = _int(directory / "object_size"), _int(directory / "slab_size")
    from_slabinfo = _from_slabinfo(cache)
    out: dict[str, Any] = {"cache": cache, "object_size": None, "slab_size": None, "bytes": None,
                           "source": "unknown",
           "where": None, "kernel": platform.release(), "merged": False, "slabinfo": from_slabinfo}
    if object_size is not None or slab_size is not None:
        out.update(object_size=object_size, slab_size=slab_size, source="sysfs", where=str(directory),
                   merged=directory.is_symlink() or (_int(directory / "aliases") or 0) > 0)
    elif from_slabinfo is not None:
        out.update(slab_size=from_slabinfo, source="slabinfo", where=str(SLABINFO))
    elif not ipv6:
        out.update(object_size=SOURCED["object_size"], slab_size=SOURCED["slab_size"], source="sourced",
                   where=SOURCED["citation"], kernel=SOURCED["kernel"])
    else:
        out["where"] = f"neither {directory} nor {SLABINFO} is readable here, and no IPv6 figure is sourced"
    out["bytes"] = out["slab_size"] if out["slab_size"] is not None else out["object_size"]
    return out


class TimeWaitCost(dict[str, Any]):
    """``time_wait_cost``'s answer: a plain dict (its keys are documented there) that a
    notebook shows as one sentence saying where the size came from."""


def mem_total() -> int | None:
    """This machine's memory in bytes (``MemTotal`` in ``/proc/meminfo``), or ``None``."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def time_wait_cost(count: int, ipv6: bool = False) -> TimeWaitCost:
    """What ``count`` TIME-WAIT sockets cost: ``bytes`` and ``MiB`` (``None`` when the
    size is unknown), with ``bytes_per_socket``, ``object_size``, ``cache``, ``source``,
    ``where``, ``kernel`` and ``merged`` from ``time_wait_size``, and the machine's ``mem_total``
    (bytes, ``None`` where unreadable).  E.g. ``time_wait_cost(131072)``, a common
    ``tcp_max_tw_buckets``."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count is a number of sockets, a whole number >= 0, not {count!r}")
    size = time_wait_size(ipv6)
    per = size["bytes"]
    total = None if per is None else per * count
    return TimeWaitCost({"count": count, "bytes_per_socket": per, "bytes": total,
                         "MiB": None if total is None else total / 2**20,
                         "object_size": size["object_size"], "cache": size["cache"],
                         "source": size["source"], "where": size["where"], "kernel": size["kernel"],
                         "merged": size["merged"], "mem_total": mem_total()})
