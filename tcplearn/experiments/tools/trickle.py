"""``TrickleServer``: a scriptable loopback peer for timeout experiments."""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Sequence

from ...base.util import loopback_listener

__all__ = ["TrickleServer"]

MAX_SCHEDULE_S = 600.0


class TrickleServer:
    """Accepts one connection at a time on loopback and sends on a schedule.

    ``schedule`` is a list of ``(seconds_after_accept, bytes)``; after the last entry the
    server stays silent, or closes the connection ``close_after`` seconds after accept.
    ``read_pace=(n_bytes, interval_s)`` makes it read at that pace (for send-side cases);
    otherwise it reads whatever arrives.  ``.address`` is ``(host, port)``; ``.timeline``
    records what it did: ``{"t", "event", "bytes", "conn"}`` with t since that accept.
    """

    def __init__(self, schedule: Sequence[tuple[float, bytes]] = (), *, family: int = socket.AF_INET,
                 close_after: float | None = None, read_pace: tuple[int, float] | None = None):
        self.schedule = self._check_schedule(schedule)
        if close_after is not None and not 0 <= close_after <= MAX_SCHEDULE_S:
            raise ValueError(f"close_after must be 0-{MAX_SCHEDULE_S:g} s or None, got {close_after!r}")
        if read_pace is not None:
            n, interval = read_pace
            if not (isinstance(n, int) and n > 0 and 0 < interval <= 60):
                raise ValueError(f"read_pace must be (bytes > 0, seconds in (0, 60]), got {read_pace!r}")
        if family not in (socket.AF_INET, socket.AF_INET6):
            raise ValueError(f"family must be socket.AF_INET or socket.AF_INET6, got {family!r}")
        self.family, self.close_after, self.read_pace = family, close_after, read_pace
        self.timeline: list[dict] = []
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @staticmethod
    def _check_schedule(schedule):
        out = []
        for entry in schedule:
            try:
                at, data = entry
            except (TypeError, ValueError):
                raise ValueError(f"schedule entries must be (seconds, bytes), got {entry!r}") from None
            if not isinstance(data, (bytes, bytearray)) or not isinstance(at, (int, float)) \
                    or not 0 <= at <= MAX_SCHEDULE_S:
                raise ValueError(f"schedule entries must be (0-{MAX_SCHEDULE_S:g} seconds, bytes), got "
                                 f"{entry!r}")
            out.append((float(at), bytes(data)))
        return sorted(out, key=lambda e: e[0])

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` to connect to."""
        if self._listener is None:
            raise RuntimeError("the TrickleServer is not running: use it in a 'with' block")
        return self._listener.getsockname()[:2]

    def __enter__(self) -> TrickleServer:
        self._listener = loopback_listener(self.family, 4)
        self._listener.settimeout(0.05)
        self._thread = threading.Thread(target=self._serve, name="tcplearn-trickle", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _serve(self) -> None:
        conn_no = 0
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            conn_no += 1
            with conn:
                self._one(conn, conn_no)

    def _one(self, conn: socket.socket, conn_no: int) -> None:
        t0 = time.monotonic()
        conn.setblocking(False)
        pending = list(self.schedule)
        next_read = t0
        with selectors.DefaultSelector() as sel:
            sel.register(conn, selectors.EVENT_READ)
            while not self._stop.is_set():
                now = time.monotonic() - t0
                while pending and pending[0][0] <= now:
                    _, data = pending.pop(0)
                    try:
                        self._send_all(conn, data)
                    except OSError:
                        return
                    self.timeline.append({"t": now, "event": "send", "bytes": len(data), "conn": conn_no})
                if self.close_after is not None and now >= self.close_after:
                    self.timeline.append({"t": now, "event": "close", "bytes": 0, "conn": conn_no})
                    return
                waits = [0.05]
                if pending:
                    waits.append(pending[0][0] - now)
                if self.close_after is not None:
                    waits.append(self.close_after - now)
                reading_allowed = self.read_pace is None or time.monotonic() >= next_read
                if not reading_allowed:
                    waits.append(next_read - time.monotonic())
                timeout = max(0.0, min(waits))
                if reading_allowed:
                    ready = sel.select(timeout)
                else:
                    time.sleep(timeout)  # pacing the reads: not reading is the point
                    ready = []
                if ready:
                    size = self.read_pace[0] if self.read_pace else 65536
                    try:
                        data = conn.recv(size)
                    except BlockingIOError:
                        continue
                    except OSError:
                        return
                    now = time.monotonic() - t0
                    if not data:
                        self.timeline.append({"t": now, "event": "eof", "bytes": 0, "conn": conn_no})
                        return
                    self.timeline.append({"t": now, "event": "recv", "bytes": len(data), "conn": conn_no})
                    if self.read_pace:
                        next_read = time.monotonic() + self.read_pace[1]

    @staticmethod
    def _send_all(conn: socket.socket, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = conn.send(view)
            except BlockingIOError:
                time.sleep(0.001)
                continue
            view = view[sent:]
