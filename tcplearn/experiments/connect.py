"""A ``connect()`` to a peer that never answers: Python's timeout, and the kernel's own limit.

The seed's Python example bounds a connect with a timeout.  ``connect_timeout()`` runs it
against a loopback listener whose incoming SYNs are all dropped (``tools.silence.silence``: a
drop-all socket filter on the *listening* socket, so the kernel neither answers with
SYN-ACK nor with RST), and beside it a plain blocking ``connect()`` with no timeout at all,
which only the kernel ends: after ``net.ipv4.tcp_syn_retries`` retransmissions of the SYN,
with ``ETIMEDOUT`` (the Python docs' ``socket.connect``: "the system network stack may
also return a connection timeout error of its own"; ip-sysctl.rst ``tcp_syn_retries``).  Both raise
``TimeoutError`` in Python; the errno tells
them apart (``None`` for Python's own timeout, 110 ``ETIMEDOUT`` for the kernel's).

``tcp_syn_retries`` is per network namespace, so it is shortened inside a private lab
(the machine's own value is never touched); the filter needs ``CAP_NET_ADMIN``, which the
lab gives.  The SYNs are captured on the lab's ``lo``.

Measured on Linux 6.18 (2 cores) in a lab, no timeout, silent listener:

=============== ======================= ==================================== ============
tcp_syn_retries tcp_syn_linear_timeouts SYNs sent at (s)                     ETIMEDOUT at
=============== ======================= ==================================== ============
1               4 (the default)         0, 1, 2                              3.06 s
2               4                       0, 1, 2, 3, 4, 5                     7.12 s
2               0                       0, 1, 3                              7.18 s
3               4                       0, 1, 2, 3, 4, 5, 7, 11              19.34 s
=============== ======================= ==================================== ============

``syn_schedule()`` is that rule as a pure function (checked against those runs by the
tests): the SYN's retransmission timer starts at 1 s (``TCP_TIMEOUT_INIT``); on kernels
with ``tcp_syn_linear_timeouts`` the first ones stay at 1 s, then it doubles; the
connection fails at the first timer that finds either the time budget of
``tcp_syn_retries`` spent (``tcp_model_timeout``: 2^(n+1) - 1 s from a 1 s base) or
``tcp_syn_retries + tcp_syn_linear_timeouts`` retransmissions made
(``torvalds/linux:net/ipv4/tcp_timer.c``, ``tcp_write_timeout``).  For the default 6 it
gives 127 s without linear timeouts (ip-sysctl.rst, ``tcp_syn_retries``) and 131 s with the default 4.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from dataclasses import dataclass, field

from ..base import sysctl
from ..base.experiment import Call, Need, Place, Where, experiment
from .tools.silence import silence

__all__ = ["connect_timeout", "ConnectTimeoutResult", "syn_schedule", "MAX_SYN_RETRIES"]

#: The largest ``syn_retries`` an experiment waits for (about 35 s with linear timeouts).
MAX_SYN_RETRIES = 4
TIMEOUT_INIT = 1.0     # TCP_TIMEOUT_INIT: the SYN's first retransmission timeout, seconds
RTO_MAX = 120.0        # TCP_RTO_MAX
LINEAR_PATH = "/proc/sys/net/ipv4/tcp_syn_linear_timeouts"


def syn_schedule(syn_retries: int, linear_timeouts: int = 0) -> dict:
    """When a ``connect()`` that is never answered sends its SYNs and gives up, by the
    kernel's rule (see the module's docstring): ``{"syns": [seconds...], "gives_up": s}``."""
    sysctl.validate("tcp_syn_retries", syn_retries)
    if isinstance(linear_timeouts, bool) or not isinstance(linear_timeouts, int) or linear_timeouts < 0:
        raise ValueError(f"linear_timeouts must be a non-negative int, got {linear_timeouts!r}")
    thresh = 6  # ilog2(TCP_RTO_MAX / TCP_TIMEOUT_INIT)
    budget = ((2 << min(syn_retries, thresh)) - 1) * TIMEOUT_INIT + max(0, syn_retries - thresh) * RTO_MAX
    most = syn_retries + linear_timeouts
    syns, t, rto, sent = [0.0], 0.0, TIMEOUT_INIT, 0
    while True:
        t += rto
        if sent >= most or t >= budget:
            return {"syns": syns, "gives_up": t}
        sent += 1
        syns.append(t)
        if sent > linear_timeouts:
            rto = min(rto * 2, RTO_MAX)


# ---------------------------------------------------------------- inside the lab (module level)


def _silent_listener() -> socket.socket:
    """A loopback listener that never answers: every SYN for it is dropped by its filter."""
    lst = socket.socket()
    try:
        lst.bind(("127.0.0.1", 0))
        lst.listen()
        silence(lst)
    except BaseException:
        lst.close()
        raise
    return lst


def _attempt(address, timeout: float | None, out: dict) -> None:
    """``socket.create_connection(address, timeout=timeout)``, timed; the outcome in ``out``."""
    t0 = time.monotonic()
    try:
        with socket.create_connection(address, timeout=timeout):
            out.update(raised=None, errno=None, message="connected")
    except OSError as exc:
        out.update(raised=type(exc).__name__, errno=exc.errno, message=str(exc))
    out["after_s"] = time.monotonic() - t0


def _read_linear() -> int | None:
    try:
        with open(LINEAR_PATH) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def _both(timeout: float) -> dict:
    """The two attempts at once, each to its own silent listener: Python's ``timeout``, and
    none (the kernel's limit).  Returns both outcomes, the listeners' ports and settings."""
    with _silent_listener() as py_lst, _silent_listener() as kernel_lst:
        outs = {"python": {"port": py_lst.getsockname()[1], "timeout": timeout},
                "kernel": {"port": kernel_lst.getsockname()[1], "timeout": None}}
        threads = [threading.Thread(target=_attempt, args=(lst.getsockname(), outs[k]["timeout"], outs[k]),
                                    name=f"tcplearn-connect-{k}", daemon=True)
                   for k, lst in (("python", py_lst), ("kernel", kernel_lst))]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=150)
        return {"attempts": outs, "tcp_syn_retries": sysctl.read("tcp_syn_retries"),
                "tcp_syn_linear_timeouts": _read_linear()}


# ---------------------------------------------------------------- the result


@dataclass
class ConnectTimeoutResult:
    """What ``connect_timeout`` measured: per attempt what Python raised, its errno and
    message, after how long, and when the SYNs went out (captured; ``None`` where nothing
    was captured); the settings in force; the kernel's rule's prediction."""

    attempts: dict
    tcp_syn_retries: int
    tcp_syn_linear_timeouts: int | None
    predicted: dict
    captured: bool = True
    segments: list = field(default_factory=list)

    def table(self):
        import pandas as pd

        names = {"python": f"create_connection(addr, timeout={self.attempts['python']['timeout']:g})",
                 "kernel": "create_connection(addr), no timeout"}
        rows = []
        for key, name in names.items():
            a = self.attempts[key]
            syns = a.get("syns_at")
            err = "none" if a["errno"] is None else f"{a['errno']} ({errno.errorcode.get(a['errno'], '?')})"
            rows.append({"call": name, "raised": a["raised"], "errno": err, "message": a["message"],
                         "after (s)": round(a["after_s"], 2),
                         "SYNs sent at (s)": (", ".join(f"{t:.2f}" for t in syns) if syns is not None
                                              else "not captured")})
        return pd.DataFrame(rows).set_index("call")

    def to_record(self) -> dict:
        return {"attempts": self.attempts, "tcp_syn_retries": self.tcp_syn_retries,
                "tcp_syn_linear_timeouts": self.tcp_syn_linear_timeouts, "predicted": self.predicted,
                "captured": self.captured}

    @classmethod
    def from_record(cls, record: dict, arguments: dict | None = None) -> ConnectTimeoutResult:
        return cls(record["attempts"], record["tcp_syn_retries"], record["tcp_syn_linear_timeouts"],
                   record["predicted"], record.get("captured", True))


def _syn_times(segments, port: int) -> list[float]:
    """Times of the SYNs sent to ``port`` (the client's, not a SYN-ACK), from the first."""
    times = [s.t for s in segments if s.dport == port and s.has("SYN") and not s.has("ACK")]
    return [round(t - times[0], 3) for t in times] if times else []


def _check(timeout: float = 2.0, *, syn_retries: int = 2) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 30:
        raise ValueError(f"timeout must be a number of seconds in (0, 30], got {timeout!r}")
    if isinstance(syn_retries, bool) or not isinstance(syn_retries, int) \
            or not 1 <= syn_retries <= MAX_SYN_RETRIES:
        raise ValueError(f"syn_retries must be an int from 1 to {MAX_SYN_RETRIES} (tcplearn waits for the "
                         "kernel to give up; the kernel's default is 6, about two minutes), got "
                         f"{syn_retries!r}")


@experiment(notebook="03",
            title="the seed's connect timeout, and the kernel's own limit, against a silent peer",
            needs=[Need.KERNEL, Need.SETTINGS], wants=[Need.CAPTURE], check=_check,
            calls=[Call((), {}, "create_connection with timeout=2 and without a timeout, to loopback "
                                "listeners whose SYNs are dropped, tcp_syn_retries=2, in a private lab")],
            notes={Where.LAB: "Ran in your private lab: the listeners' SYNs were dropped by a socket filter, "
                              "`tcp_syn_retries` was {syn_retries} there (the machine's own is untouched), "
                              "and the SYNs were captured on the lab's loopback.",
                   Where.ROOT: "No private lab ({why}): ran on this machine as root, `tcp_syn_retries` set "
                               "to {syn_retries} meanwhile (the original value has been restored)."},
            show="show_connect_timeout")
def connect_timeout(place: Place, timeout: float = 2.0, *, syn_retries: int = 2,
                    progress: bool = True) -> ConnectTimeoutResult:
    """Connect to a loopback listener that never answers (its SYNs are dropped), twice at
    once: ``socket.create_connection(addr, timeout=timeout)``, and the same without a
    timeout, which only the kernel ends, after ``syn_retries`` (set as
    ``net.ipv4.tcp_syn_retries``, in a private lab) with ``ETIMEDOUT``.  Shows a progress
    bar meanwhile.  A ``ConnectTimeoutResult``."""
    from concurrent.futures import ThreadPoolExecutor

    from ..base.progress import wait_for

    linear_here = _read_linear()
    expected = max(timeout, syn_schedule(syn_retries, linear_here or 0)["gives_up"])
    # Not ``with ThreadPoolExecutor``: on an interrupt, leaving must not wait for the connects; the
    # ladder then stops the lab, which ends the call in the lab at once.
    pool = ThreadPoolExecutor(1, thread_name_prefix="tcplearn-connect")
    try:
        with place.settings(tcp_syn_retries=syn_retries):
            if place.can_capture:
                future = pool.submit(place.capture, _both, timeout)
            else:
                future = pool.submit(place.call, _both, timeout)
            out = wait_for(future, expected, "waiting for both connects to fail", enabled=progress)
    finally:
        pool.shutdown(wait=False)
    out, segments = out if place.can_capture else (out, None)
    for attempt in out["attempts"].values():
        attempt["syns_at"] = _syn_times(segments, attempt["port"]) if segments is not None else None
    linear = out["tcp_syn_linear_timeouts"]
    return ConnectTimeoutResult(out["attempts"], out["tcp_syn_retries"], linear,
                                syn_schedule(out["tcp_syn_retries"], linear or 0), segments is not None,
                                list(segments or []))
