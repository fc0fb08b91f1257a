"""Python ``settimeout`` against Node's ``socket.setTimeout``, measured on one time axis.

They are different things.  Python's ``settimeout(t)`` bounds *each blocking call* and
raises ``TimeoutError``; the socket stays usable.  Node's ``socket.setTimeout(ms)`` is an
*inactivity* timer kept in JavaScript, refreshed by reads and by writes, that only emits
``'timeout'`` and leaves the socket open (Node's ``doc/api/net.md``, ``socket.setTimeout``;
Python's ``socket`` docs, "Notes on socket timeouts").  Neither sets
``SO_RCVTIMEO``.

All three clients here return the same event format: a list of
``{"t": seconds since connect, "event": ..., "bytes": n}``.  Node's side (the emulation,
real Node, its socket's options) lives in ``timeouts_node``; its names are reachable here.
"""

from __future__ import annotations

import math
import os
import socket
import struct
import sys
import threading
import time

from ..base.experiment import Need, experiment
from .timeouts_node import (  # noqa: F401 - re-exported: notebook 03 reads them here
    MAX_DURATION_S,
    TIMEOUT_MAX,
    IdleTimeout,
    NodeArgumentError,
    _check_duration,
    _connect,
    _require_loopback,
    node_available,
    node_socket_options,
    node_style_timeline,
    node_validate,
    run_node_client,
    validate_msecs,
)

__all__ = [
    "settimeout_timeline", "node_style_timeline", "run_node_client", "node_validate", "IdleTimeout",
    "NodeArgumentError", "recv_until", "sendall_with_timeout", "so_rcvtimeo_recv", "nonblocking_recv",
    "create_connection_timeout", "TIMEOUT_MAX", "node_available", "compare", "Comparison",
    "demo_python_cases", "state_after_timeout", "describe_schedule", "node_socket_options",
]


# ---------------------------------------------------------------- Python's settimeout


def _check_writes(writes) -> list[tuple[float, bytes]]:
    out = []
    for entry in writes:
        try:
            at, payload = entry
        except (TypeError, ValueError):
            raise ValueError(f"writes must be (seconds, bytes) pairs, got {entry!r}") from None
        if not isinstance(at, (int, float)) or not 0 <= at <= MAX_DURATION_S \
                or not isinstance(payload, (bytes, bytearray)):
            raise ValueError(f"writes must be (0-{MAX_DURATION_S:g} seconds, bytes) pairs, got {entry!r}")
        out.append((float(at), bytes(payload)))
    return sorted(out, key=lambda e: e[0])


def settimeout_timeline(address, timeout_s: float | None, duration_s: float, *,
                        writes: list[tuple[float, bytes]] = ()) -> list[dict]:
    """Read from ``address`` for ``duration_s`` with ``sock.settimeout(timeout_s)``, while a
    second thread sends ``writes`` (``(seconds, bytes)``) on the same socket on schedule.

    Events: ``"data"`` (bytes arrived: one ``recv`` returned them; the same name as the
    Node clients use), ``"write"`` (a send of ours went out),
    ``"timeout"`` (a ``recv`` raised ``TimeoutError``; the socket stays usable and reading
    goes on; ``"since_call"`` is how long that ``recv`` call had waited), ``"eof"`` (the
    peer closed), ``"close"`` (this client closed its socket, at the end).  The writes do not touch the
    ``recv`` in progress: its timeout counts
    from the moment the call started.
    """
    duration_s = _check_duration(duration_s)
    if timeout_s is not None and (not isinstance(timeout_s, (int, float)) or timeout_s <= 0):
        raise ValueError(f"timeout_s must be a positive number of seconds or None, got {timeout_s!r}")
    pending = _check_writes(writes)
    events: list[dict] = []
    with _connect(address) as sock:
        t0 = time.monotonic()
        end = t0 + duration_s
        stop = threading.Event()

        def write_on_schedule() -> None:
            for at, payload in pending:
                if stop.wait(max(0.0, t0 + at - time.monotonic())) or time.monotonic() >= end:
                    return
                try:
                    sock.sendall(payload)
                except OSError:
                    return
                events.append({"t": time.monotonic() - t0, "event": "write", "bytes": len(payload)})

        writer = threading.Thread(target=write_on_schedule, name="tcplearn-writes", daemon=True)
        if pending:
            writer.start()
        try:
            while time.monotonic() < end:
                left = end - time.monotonic()
                # never wait past the end of the experiment
                sock.settimeout(min(timeout_s, left) if timeout_s is not None else left)
                called = time.monotonic()
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    now = time.monotonic()
                    if timeout_s is not None and now < end - 1e-3:
                        events.append({"t": now - t0, "event": "timeout", "bytes": 0,
                                       "since_call": now - called})
                    continue
                now = time.monotonic() - t0
                if not data:
                    events.append({"t": now, "event": "eof", "bytes": 0})
                    break
                events.append({"t": now, "event": "data", "bytes": len(data)})
        finally:
            stop.set()
            if pending:
                writer.join(timeout=5)
    events.append({"t": time.monotonic() - t0, "event": "close", "bytes": 0})
    return sorted(events, key=lambda e: e["t"])


# ---------------------------------------------------------------- the Python cases


def recv_until(sock: socket.socket, n: int, deadline: float) -> bytes:
    """Read exactly ``n`` bytes or raise ``TimeoutError`` at ``deadline`` (a
    ``time.monotonic()`` value): one overall deadline, however slowly the bytes drip in.
    The usual fix for ``settimeout``, which limits each ``recv`` but not their sum."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    chunks, got = [], 0
    saved = sock.gettimeout()
    try:
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"deadline passed after {got} of {n} bytes")
            sock.settimeout(left)
            data = sock.recv(n - got)
            if not data:
                raise ConnectionError(f"peer closed after {got} of {n} bytes")
            chunks.append(data)
            got += len(data)
    finally:
        sock.settimeout(saved)
    return b"".join(chunks)


def sendall_with_timeout(address, payload_size: int, timeout_s: float) -> dict:
    """``sendall`` of ``payload_size`` bytes with ``settimeout(timeout_s)`` to a slow reader
    at ``address``: since Python 3.5 the timeout is the *total* time allowed (the Python docs,
``socket.sendall``, "Changed in version 3.5").
    Returns what happened: elapsed seconds and whether it raised."""
    with _connect(address) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.settimeout(timeout_s)
        t0 = time.monotonic()
        try:
            sock.sendall(b"x" * payload_size)
            return {"raised": None, "elapsed": time.monotonic() - t0}
        except TimeoutError as exc:
            return {"raised": type(exc).__name__, "elapsed": time.monotonic() - t0}


def so_rcvtimeo_recv(address, timeout_s: float) -> dict:
    """A *blocking* socket with the real ``SO_RCVTIMEO`` option set via ``setsockopt``: the
    kernel ends a blocked ``recv`` after ``timeout_s`` with EAGAIN.  Returns the exception
    Python raised and the elapsed time."""
    with _connect(address, timeout=5.0) as sock:
        sock.settimeout(None)  # blocking: SO_RCVTIMEO only matters for blocking calls
        sec = int(timeout_s)
        # Windows takes a DWORD of milliseconds; POSIX systems a struct timeval
        value = (struct.pack("I", round(timeout_s * 1000)) if sys.platform == "win32"
                 else struct.pack("ll", sec, int((timeout_s - sec) * 1e6)))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
        t0 = time.monotonic()
        try:
            data = sock.recv(1024)
            return {"raised": None, "bytes": len(data), "elapsed": time.monotonic() - t0}
        except OSError as exc:
            return {"raised": f"{type(exc).__name__} (errno {exc.errno}: {os.strerror(exc.errno or 0)})",
                    "elapsed": time.monotonic() - t0}


def nonblocking_recv(address) -> dict:
    """``settimeout(0)``: non-blocking; a ``recv`` with nothing to read fails at once."""
    with _connect(address) as sock:
        sock.settimeout(0)
        t0 = time.monotonic()
        try:
            sock.recv(1024)
            return {"raised": None, "elapsed": time.monotonic() - t0}
        except BlockingIOError as exc:
            return {"raised": type(exc).__name__, "elapsed": time.monotonic() - t0,
                    "gettimeout": sock.gettimeout(), "blocking": sock.getblocking()}


def create_connection_timeout(address, timeout_s: float) -> dict:
    """``socket.create_connection(address, timeout=...)`` leaves that timeout on the socket."""
    with socket.create_connection(address, timeout=timeout_s) as sock:
        return {"gettimeout": sock.gettimeout(), "blocking": sock.getblocking()}


# ---------------------------------------------------------------- one call for the notebook


def _seconds(t: float) -> str:
    return f"{t:.2f}".rstrip("0").rstrip(".")


def _describe_sends(entries: list[tuple[float, bytes]], who: str, verb: str) -> str:
    """``"peer sends 3 bytes at 0.3, 0.6, 0.9 s"`` or ``"peer sends a byte every 0.3 s until 3 s"``."""
    if not entries:
        return f"{who} {verb} nothing"
    times = [t for t, _ in entries]
    sizes = {len(b) for _, b in entries}
    size = next(iter(sizes)) if len(sizes) == 1 else None
    unit = ("a byte" if size == 1 else f"{size} bytes") if size is not None else "data"
    gaps = [round(b - a, 3) for a, b in zip(times, times[1:], strict=False)]
    if len(entries) >= 4 and len(set(gaps)) == 1 and math.isclose(times[0], gaps[0], abs_tol=1e-3):
        return f"{who} {verb} {unit} every {_seconds(gaps[0])} s until {_seconds(times[-1])} s"
    total = sum(len(b) for _, b in entries)
    what = f"{total} byte{'s' if total != 1 else ''}"
    return f"{who} {verb} {what} at {', '.join(_seconds(t) for t in times)} s"


def describe_schedule(schedule, timeout_s: float, writes=()) -> str:
    """A figure title computed from what was actually run, e.g. ``"peer sends 3 bytes at
    0.3, 0.6, 0.9 s; timeout 0.5 s"``."""
    parts = [_describe_sends(sorted(schedule), "peer", "sends")]
    if writes:
        parts.append(_describe_sends(sorted(writes), "client", "writes"))
    parts.append(f"timeout {_seconds(timeout_s)} s")
    return "; ".join(parts)


class Comparison:
    """One peer schedule met by Python ``settimeout``, the Node-style emulation and real
    Node: ``lanes`` maps a lane name to its events; ``note`` says whether real Node ran;
    ``title`` describes the schedule that was run; ``wall_s`` is how long it all took."""

    def __init__(self, lanes: dict[str, list[dict]], note: str, title: str = "", wall_s: float | None = None):
        self.lanes, self.note, self.title, self.wall_s = lanes, note, title, wall_s

    def first(self, lane: str, event: str) -> float | None:
        """Time of the first ``event`` in ``lane`` (None if it never happened)."""
        return next((e["t"] for e in self.lanes.get(lane, []) if e["event"] == event), None)

    def times(self, lane: str, event: str) -> list[float]:
        """Times of every ``event`` in ``lane``."""
        return [e["t"] for e in self.lanes.get(lane, []) if e["event"] == event]

    def count(self, lane: str, event: str) -> int:
        return sum(1 for e in self.lanes.get(lane, []) if e["event"] == event)

    def table(self):
        """Per lane: how many of each event, and when the first 'timeout' came."""
        import pandas as pd

        kinds = sorted({e["event"] for ev in self.lanes.values() for e in ev})
        return pd.DataFrame([{"client": lane, **{k: self.count(lane, k) for k in kinds},
                              "first timeout (s)": self.first(lane, "timeout")}
                             for lane in self.lanes]).set_index("client")


PYTHON_LANE = "Python settimeout"
EMULATION_LANE = "Node-style (emulated in Python)"
NODE_LANE = "real Node setTimeout"
PEER_LANE = "the peer (server) sends"
PROGRESS_MIN_S = 2.0  # shorter comparisons show no progress bar


def _wait_all(futures, duration_s: float, progress: bool) -> None:
    """Wait for every future; with ``progress`` and a schedule longer than
    ``PROGRESS_MIN_S``, a progress bar counts the schedule's seconds meanwhile."""
    from concurrent.futures import wait

    from ..base.progress import progress as bar_for

    with bar_for(duration_s, "schedule running", enabled=progress and duration_s > PROGRESS_MIN_S) as bar:
        while wait(futures, timeout=0.1).not_done:
            bar.to(bar.elapsed())


@experiment(notebook="03", title="Python settimeout beside Node's idle setTimeout, on one peer schedule",
            wants=[Need.NODE],
            show="show_comparison")
def compare(place, schedule: list[tuple[float, bytes]], *, timeout_s: float, duration_s: float,
            writes: list[tuple[float, bytes]] = (), progress: bool = True) -> Comparison:
    """Run all three clients *at the same time*, each on its own connection to its own
    ``TrickleServer(schedule)``, with the same timeout (``timeout_s`` for Python,
    ``timeout_s * 1000`` ms for Node) and the same ``writes`` (the clients' own sends on
    schedule).  Each lane's times count from its own connection's start, so the lanes line
    up although the three connections are independent.  One comparison takes one schedule's
    time; ``progress`` shows a bar when that is longer than 2 s."""
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import ExitStack

    from .tools.trickle import TrickleServer

    duration_s = _check_duration(duration_s)
    writes = _check_writes(writes)
    validate_msecs(timeout_s * 1000)
    node, why = node_available()
    clients = {PYTHON_LANE: lambda addr: settimeout_timeline(addr, timeout_s, duration_s, writes=writes),
               EMULATION_LANE: lambda addr: node_style_timeline(addr, timeout_s * 1000, duration_s,
                                                                writes=writes)}
    if node is not None:
        clients[NODE_LANE] = lambda addr: run_node_client(addr, timeout_s * 1000, duration_s, writes=writes)
    note = f"Real Node: {why}." if node is not None else f"{why}."
    lanes: dict[str, list[dict]] = {}
    t0 = time.monotonic()
    with ExitStack() as stack:
        peers = {lane: stack.enter_context(TrickleServer(schedule)) for lane in clients}
        with ThreadPoolExecutor(max_workers=len(clients), thread_name_prefix="tcplearn-lane") as pool:
            futures = {lane: pool.submit(run, peers[lane].address) for lane, run in clients.items()}
            _wait_all(list(futures.values()), duration_s, progress)
        for lane, future in futures.items():
            if lane == NODE_LANE:
                try:
                    lanes[lane] = future.result()
                except (OSError, RuntimeError) as exc:
                    note = f"Real Node failed here ({exc}); the emulation is shown alone."
            else:
                lanes[lane] = future.result()
        lanes[PEER_LANE] = [e for e in peers[EMULATION_LANE].timeline if e["event"] == "send"]
    wall = time.monotonic() - t0
    order = [PEER_LANE, PYTHON_LANE, EMULATION_LANE, NODE_LANE]
    return Comparison({k: lanes[k] for k in order if k in lanes}, note,
                      describe_schedule(schedule, timeout_s, writes), wall)


# ---------------------------------------------------------------- small demos for notebook 03


def demo_python_cases():
    """The Python timeout cases, each measured against its own loopback peer: a DataFrame
    with what was done, what happened and how long it took."""
    import pandas as pd

    from .tools.trickle import TrickleServer

    rows = []
    drip = [(0.3 * i, b"d") for i in range(1, 8)]  # one byte every 0.3 s for 2.1 s
    with TrickleServer(drip) as peer, _connect(peer.address) as sock:
        sock.settimeout(0.5)
        t0 = time.monotonic()
        got = 0
        while got < 7:
            got += len(sock.recv(10))
        rows.append(("settimeout(0.5), a byte every 0.3 s, read 7 bytes", "no TimeoutError",
                     time.monotonic() - t0))
    with TrickleServer(drip) as peer, _connect(peer.address) as sock:
        t0 = time.monotonic()
        try:
            recv_until(sock, 7, deadline=t0 + 1.0)
            outcome = "all bytes"
        except TimeoutError:
            outcome = "TimeoutError at the overall deadline"
        rows.append(("recv_until(7 bytes, deadline 1.0 s), same drip", outcome, time.monotonic() - t0))
    with TrickleServer([], read_pace=(1024, 0.1)) as slow:
        r = sendall_with_timeout(slow.address, 8_000_000, 0.8)
        rows.append(("settimeout(0.8), sendall(8 MB) to a slow reader", f"{r['raised']} (total deadline)",
                     r["elapsed"]))
    with TrickleServer([]) as quiet:
        r = nonblocking_recv(quiet.address)
        rows.append(("settimeout(0): recv with nothing to read", r["raised"], r["elapsed"]))
        r = create_connection_timeout(quiet.address, 2.5)
        rows.append(("create_connection(timeout=2.5), then gettimeout()", f"{r['gettimeout']}", 0.0))
        r = so_rcvtimeo_recv(quiet.address, 0.3)
        rows.append(("blocking socket with setsockopt SO_RCVTIMEO = 0.3 s, recv", r["raised"], r["elapsed"]))
    frame = pd.DataFrame(rows, columns=["what was done", "what happened", "seconds"]).round({"seconds": 3})
    # numbered as the notebook's list numbers them (1 to 6), not from 0
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="row")
    return frame


def state_after_timeout(timeout_s: float = 0.3) -> dict:
    """A ``recv`` times out; then the kernel's table is read: the connection is still
    ESTABLISHED, because no timeout closes anything (only ``close()`` starts the FIN)."""
    from ..base.observe import sockets
    from .tools.trickle import TrickleServer

    with TrickleServer([]) as peer, _connect(peer.address) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.recv(10)
            raised = None
        except TimeoutError as exc:
            raised = type(exc).__name__
        mine, theirs = sock.getsockname()[1], peer.address[1]
        # match the whole four-tuple: the same ephemeral port may also hold an older
        # connection's TIME-WAIT, to another peer
        state = next((s.state.label for s in sockets(port=mine)
                      if s.local_port == mine and s.remote_port == theirs), "CLOSED")
        return {"recv raised": raised, "kernel state of this end afterwards": state}
