"""Read TCP sockets and per-state counts from the running kernel.

Backends, in the order they are tried:

* listing (``sockets``): ``/proc/net/tcp{,6}`` (the only source with the kernel's
  ``tm->when`` timers for every socket), then sock_diag netlink, then psutil;
* counting (``count_states``): sock_diag netlink (filtered and counted in the kernel's
  dump, the fastest; for an unfiltered count TIME-WAIT sockets are not even dumped: the
  kernel's own ``tw`` counter in ``/proc/net/sockstat`` gives them), then ``/proc``,
  then psutil.

``TCPLEARN_BACKEND`` (``auto``, ``procfs``, ``netlink``, ``psutil``) or
``set_backend()`` forces one, e.g. to see what a macOS learner sees.  Everything
reads the network namespace of the calling process.
"""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

from ..states import TcpState
from ..util import per_process
from . import netlink, procfs, psutil_backend
from .procfs import ParsedTable, decode_address, parse_proc_net_tcp
from .tcpsocket import TcpSocket

__all__ = [
    "TcpSocket", "ParsedTable", "parse_proc_net_tcp", "decode_address",
    "sockets", "count_states", "backend", "set_backend", "BackendInfo", "BACKENDS",
]

BACKENDS = ("auto", "procfs", "netlink", "psutil")
_forced: str | None = None
_warned: set[str] = set()


@dataclass(frozen=True)
class BackendInfo:
    """Which backend lists sockets and which counts them here, and why.

    ``str()`` gives one line for a learner, e.g.
    ``"procfs (listing) + netlink sock_diag (counting)"``.
    """

    listing: str
    counting: str
    reason: str = ""

    @property
    def name(self) -> str:
        """The listing backend's name: ``"procfs"``, ``"netlink"`` or ``"psutil"``."""
        return self.listing

    @property
    def live_timers(self) -> bool:
        """True if the kernel's per-socket timers are visible."""
        return self.listing in ("procfs", "netlink")

    def __str__(self) -> str:
        text = f"{self.listing} (listing) + {self.counting} (counting)"
        return f"{text} — {self.reason}" if self.reason else text


def set_backend(name: str | None) -> None:
    """Force a backend (``"procfs"``, ``"netlink"``, ``"psutil"``), or ``None``/``"auto"``
    to choose automatically.  Raises ``ValueError`` for any other name."""
    global _forced
    if name is not None and name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: expected one of {', '.join(BACKENDS)}")
    _forced = None if name in (None, "auto") else name


def _requested() -> str:
    if _forced:
        return _forced
    name = os.environ.get("TCPLEARN_BACKEND", "auto").strip().lower() or "auto"
    if name not in BACKENDS:
        raise ValueError(
            f"TCPLEARN_BACKEND={name!r} is not a backend: expected one of {', '.join(BACKENDS)}"
        )
    return name


@per_process
def _procfs_ok() -> tuple[bool, str]:
    """Whether /proc/net/tcp can be read (probed once per process: reading it is not free)."""
    try:
        with open("/proc/net/tcp", "rb") as f:
            f.read(1)
    except FileNotFoundError:
        return False, "there is no /proc/net/tcp on this system"
    except OSError as exc:
        return False, f"/proc/net/tcp is unreadable ({exc.strerror}; a hardened kernel?)"
    return True, ""


def _psutil_ok() -> bool:
    try:
        import psutil  # noqa: F401
    except ImportError:
        return False
    return True


def backend() -> BackendInfo:
    """The backends ``sockets()`` and ``count_states()`` use here, with the reason."""
    wanted = _requested()
    if wanted != "auto":
        return BackendInfo(wanted, wanted, f"forced ({'set_backend' if _forced else 'TCPLEARN_BACKEND'})")
    proc_ok, proc_why = _procfs_ok()
    nl_ok, nl_why = netlink.available()
    if proc_ok:
        return BackendInfo("procfs", "netlink" if nl_ok else "procfs",
                           "" if nl_ok else f"netlink unavailable: {nl_why}")
    if nl_ok:
        return BackendInfo("netlink", "netlink", proc_why)
    if _psutil_ok():
        return BackendInfo("psutil", "psutil", f"{proc_why}; {psutil_backend.scope_note()}")
    raise RuntimeError(f"no way to read TCP state here: {proc_why}; {nl_why}; psutil missing")


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def _check_port(port: int | None) -> None:
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                             or not 0 <= port <= 65535):
        raise ValueError(f"port must be an int from 0 to 65535, got {port!r}")


def _families(family: int | None) -> tuple[int, ...]:
    if family is None:
        return (socket.AF_INET, socket.AF_INET6)
    if family not in (socket.AF_INET, socket.AF_INET6):
        raise ValueError(
            f"family must be socket.AF_INET, socket.AF_INET6 or None, got {family!r}"
        )
    return (family,)


def _state_set(states: Iterable[TcpState | str] | TcpState | str | None) -> set[TcpState] | None:
    if states is None:
        return None
    if isinstance(states, (TcpState, str)):
        states = [states]
    return {s if isinstance(s, TcpState) else TcpState.from_name(s) for s in states}


def sockets(
    *,
    port: int | None = None,
    states: Iterable[TcpState | str] | TcpState | str | None = None,
    family: int | None = None,
) -> list[TcpSocket]:
    """The TCP sockets of this network namespace, as ``TcpSocket`` records.

    ``port`` keeps sockets with that port at either end; ``states`` keeps those states
    (``TcpState`` members or any of their names); ``family`` is ``socket.AF_INET`` or
    ``AF_INET6``.  Listing order is the kernel's.
    """
    _check_port(port)
    families = _families(family)
    wanted = _state_set(states)
    info = backend()
    rows = _list(info.listing, families, port)
    return [
        s for s in rows
        if s.family in families
        and (port is None or s.involves_port(port))
        and (wanted is None or s.state in wanted)
    ]


def _list(name: str, families: tuple[int, ...], port: int | None) -> list[TcpSocket]:
    if name == "procfs":
        try:
            return parse_proc_net_tcp(procfs.read_table(families=families), port=port)
        except OSError as exc:
            _warn_once("procfs", f"/proc/net/tcp unreadable ({exc}); falling back to netlink")
            name = "netlink"
    if name == "netlink":
        try:
            return netlink.dump_sockets(families, port=port)
        except OSError as exc:
            _warn_once("netlink", f"sock_diag netlink unavailable ({exc}); falling back to psutil")
    return psutil_backend.list_sockets()


@per_process
def _sockstat_trusted() -> bool:
    """Whether this kernel's sockstat ``tw`` counts exactly this namespace's timewait
    mini-sockets, checked once per process against a full dump (older kernels kept one
    counter for all namespaces; those fall back to the full dump)."""
    try:
        full = netlink.dump_counts()
        fast = netlink.dump_counts(time_wait_from_sockstat=True)
    except OSError:
        return False
    return abs(full[TcpState.TIME_WAIT] - fast[TcpState.TIME_WAIT]) <= max(2, full[TcpState.TIME_WAIT] // 100)


def count_states(*, port: int | None = None, family: int | None = None) -> dict[TcpState, int]:
    """How many sockets are in each state: every ``TcpState`` is a key, zeros included.

    ``port`` counts only sockets with that port at either end (filtered inside the
    kernel on the netlink backend); ``family`` restricts to IPv4 or IPv6.
    """
    _check_port(port)
    families = _families(family)
    name = backend().counting
    if name == "netlink":
        try:
            everything = port is None and len(families) == 2
            return netlink.dump_counts(
                families, port=port, time_wait_from_sockstat=everything and _sockstat_trusted()
            )
        except OSError as exc:
            _warn_once("netlink-count", f"sock_diag netlink unavailable ({exc}); counting from /proc")
            name = "procfs"
    rows = _list(name, families, port)
    counts = dict.fromkeys(TcpState, 0)
    for s in rows:
        if s.family in families and (port is None or s.involves_port(port)):
            counts[s.state] += 1
    return counts
