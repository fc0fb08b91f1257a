"""Capture the segments on a namespace's ``lo`` while an experiment runs (AF_PACKET).

Every frame on ``lo`` is seen twice by a packet socket, once leaving (PACKET_OUTGOING)
and once arriving (PACKET_HOST); only the outgoing copy is kept, so each segment
appears once.  On one end of a two-host lab's link (``eth0``) a frame is seen once, leaving
or arriving, so both kinds are kept there.  Timestamps are the kernel's (SO_TIMESTAMPNS).  Each ``Segment``
keeps
its frame's bytes exactly as read and the kernel's timestamp in nanoseconds, so
``tcplearn.lab.pcap.write_pcap`` can save the real capture.
"""

from __future__ import annotations

import errno
import select
import socket
import struct
import threading
import time

from .segments import Segment, parse_frame, relative

__all__ = ["Capture"]

ETH_P_ALL = 0x0003
PACKET_HOST = 0
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35
SOL_PACKET = 263
PACKET_STATISTICS = 6
MAX_FRAMES = 200_000  # bounded memory: beyond this, frames are counted as dropped
# The largest frame lo can carry without BIG TCP: Ethernet + IPv6 header + a 65535-byte
# payload (an IPv4 frame is at most 14 + 65535).  65535 would cut the largest ones.
FRAME_MAX = 14 + 40 + 65535


class Capture:
    """A packet capture on one interface, run by a background thread.

    ``with Capture() as cap: ...`` then ``cap.segments`` (relative seq/ack) and
    ``cap.dropped`` (frames the kernel or the bound did not keep).
    """

    def __init__(self, interface: str = "lo"):
        self.interface = interface
        # lo: each frame leaves and arrives on the same interface, so keep one copy of it
        self._keep = {PACKET_OUTGOING} if interface == "lo" else {PACKET_OUTGOING, PACKET_HOST}
        self._frames: list[tuple[int, bytes]] = []  # (kernel time in ns, the frame)
        self._overflow = 0
        self._stop = threading.Event()
        self._last = time.monotonic()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.segments: list[Segment] = []
        self.dropped = 0
        self.started = 0.0

    def __enter__(self) -> Capture:
        if not hasattr(socket, "AF_PACKET"):
            raise OSError(errno.EAFNOSUPPORT, "capturing segments needs Linux's AF_PACKET sockets")
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            sock.bind((self.interface, 0))
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.started = time.time()
        self._thread = threading.Thread(target=self._run, name="tcplearn-capture", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._stop.is_set():
            ready, _, _ = select.select([sock], [], [], 0.02)
            if ready:
                self._drain(sock)

    def _drain(self, sock: socket.socket) -> None:
        while True:
            try:
                data, anc, _, addr = sock.recvmsg(FRAME_MAX, 64)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ENETDOWN:
                    return  # the interface went down (an experiment's choice); it comes back
                raise
            if addr[2] not in self._keep:
                continue
            self._last = time.monotonic()
            if len(self._frames) >= MAX_FRAMES:
                self._overflow += 1
                continue
            stamp = time.time_ns()
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
                    sec, nsec = struct.unpack("qq", payload[:16])
                    stamp = sec * 1_000_000_000 + nsec
            self._frames.append((stamp, data))

    def settle(self, quiet: float = 0.05, limit: float = 1.0) -> None:
        """Wait until no frame has arrived for ``quiet`` seconds (at most ``limit``), so the
        last ACKs of an exchange that just finished are in."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and time.monotonic() - self._last < quiet:
            time.sleep(quiet / 5)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                self._drain(sock)
                stats = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
                self.dropped = struct.unpack("II", stats)[1] + self._overflow
            except OSError:
                self.dropped = self._overflow
            finally:
                sock.close()
        parsed = (parse_frame(data, stamp / 1e9 - self.started, stamp) for stamp, data in self._frames)
        self.segments = relative(s for s in parsed if s is not None)
        self._frames.clear()
