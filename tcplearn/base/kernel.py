"""Facts about the running kernel that several experiments need: its timer wheel, its
TcpExt counters, the file descriptors left to this process, whether its TCP table can be
read here at all, and whether the series runs in fast mode."""

from __future__ import annotations

import os
import sys

from .util import system_name

__all__ = ["fast_mode", "kernel_hz", "timer_slack", "wheel_slot", "netstat", "fd_headroom", "why_not_live"]


def fast_mode() -> bool:
    """True when ``TCPLEARN_FAST`` is set (tests, quick runs): shorter sampling windows.
    It never replaces a measurement with a constant."""
    return os.environ.get("TCPLEARN_FAST", "") not in ("", "0")


# kernel/time/timer.c: a timer 60 s away lands on a wheel level whose slots are this many
# milliseconds wide, and fires at the end of its slot (never early).  Keyed by CONFIG_HZ.
_WHEEL_SLOT_MS_AT_60S: dict[int | None, int] = {100: 5120, 250: 2048, 300: 1706, 1000: 4096}


def kernel_hz() -> int | None:
    """The kernel's CONFIG_HZ, from its build configuration where readable, else ``None``."""
    import gzip
    import platform

    for path, opener in ((f"/boot/config-{platform.release()}", open), ("/proc/config.gz", gzip.open)):
        try:
            with opener(path, "rt") as f:
                for line in f:
                    if line.startswith("CONFIG_HZ="):
                        return int(line.split("=", 1)[1])
        except (OSError, ValueError):
            continue
    return None


def wheel_slot(hz: int | None) -> float:
    """Seconds: the width of the timer-wheel slot a 60 s timer lands in at ``hz``; with
    HZ unknown, the widest slot of the common HZ values (5.12 s)."""
    return _WHEEL_SLOT_MS_AT_60S.get(hz, max(_WHEEL_SLOT_MS_AT_60S.values())) / 1000


def timer_slack() -> tuple[int | None, float]:
    """``(CONFIG_HZ, seconds)``: how much later than 60 s a TIME-WAIT socket may leave,
    because the timer wheel rounds a 60 s timer up to the end of its slot."""
    hz = kernel_hz()
    return hz, wheel_slot(hz)


def netstat() -> dict[str, int]:
    """The kernel's ``TcpExt`` counters from ``/proc/net/netstat`` (this network namespace),
    among them ``TW`` (grows by one for every socket entering TIME-WAIT: measured on Linux
    6.18, +200 at once for 200 connections in a fresh lab), ``TWRecycled`` (TIME-WAIT ports
    reused by ``tcp_tw_reuse``, despite the name) and ``TCPTimeWaitOverflow`` (closes that
    got no TIME-WAIT because ``tcp_max_tw_buckets`` was full).  Empty where unreadable."""
    return counter_table("/proc/net/netstat", "TcpExt")


def counter_table(path: str, table: str) -> dict[str, int]:
    """One table of a ``/proc/net/netstat``-style file (a line of names, then a line of
    values, each starting with ``table:``), by counter name; empty where unreadable."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith(f"{table}:"):
            return dict(zip(names.split()[1:], map(int, values.split()[1:]), strict=False))
    return {}


def fd_headroom() -> int:
    """File descriptors this process may still open under RLIMIT_NOFILE, less a margin of 32."""
    try:
        import resource  # POSIX only
    except ImportError:
        soft = 512  # no RLIMIT_NOFILE (Windows): a conservative bound of our own
    else:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        used = len(os.listdir("/proc/self/fd"))
    except OSError:
        used = 64
    return max(0, soft - used - 32)


def why_not_live() -> str:
    """Why the kernel experiments cannot run live here, in one phrase, or ``""`` when they
    can: they need Linux and a backend that sees the whole TCP table with its timers
    (``/proc/net/tcp`` or sock_diag netlink), which macOS, Windows and psutil lack.
    Read afresh on every call (``TCPLEARN_BACKEND`` may change)."""
    from .observe import backend

    if not sys.platform.startswith("linux"):
        return f"{system_name()} has no Linux TCP table with timers"
    try:
        info = backend()
    except RuntimeError as exc:
        return str(exc)
    if not info.live_timers:
        return f"the {info.listing} backend cannot see the kernel's whole TCP table and its timers"
    return ""
