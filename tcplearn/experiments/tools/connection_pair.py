"""``ConnectionPair``: one loopback connection, closed one step at a time.

Each step does one thing (close, half-close, send, receive, abort) and then reads both
ends' states from the kernel.  Before acting it asks RFC 9293's table what should
happen (which segments are sent, which states follow) and then polls the kernel until
the states match that prediction or a deadline passes: waiting is driven by the
prediction, and what the kernel reported is recorded either way.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass

from ...base.lab import in_lab
from ...base.observe import sockets
from ...base.rfc import ENDS as _ENDS
from ...base.rfc import predict
from ...base.states import Event, TcpState, next_state
from ...base.util import loopback_listener

__all__ = ["ConnectionPair", "Step", "SETTLE_TIMEOUT"]

SETTLE_TIMEOUT = 2.0


@dataclass(frozen=True)
class Step:
    """One step of a ``ConnectionPair``: who did what, what the RFC says is sent, and what
    the kernel then reported.  ``segments`` are ``(sender, flags)`` pairs, e.g.
    ``("client", "FIN")``; ``settled`` is False if the kernel did not reach ``expected``
    within the deadline (the observed states are recorded all the same); ``trail`` lists
    every distinct ``(client, server)`` pair seen while waiting, so a state held only for
    a moment (CLOSING) shows up when a poll catches it.  ``differs`` says, where it is
    known, why the kernel did not do what RFC 9293 predicts (e.g. a Linux-only timer)."""

    t: float
    actor: str
    action: str
    segments: tuple[tuple[str, str], ...]
    client_state: TcpState
    server_state: TcpState
    expected: tuple[TcpState, TcpState]
    settled: bool = True
    trail: tuple[tuple[TcpState, TcpState], ...] = ()
    wall: float = 0.0  # time.time() when recorded, to line steps up with captured segments
    differs: str = ""
    began: float = 0.0  # time.time() just before the step's socket call(s); 0.0 if it made none

    @property
    def states(self) -> tuple[TcpState, TcpState]:
        return (self.client_state, self.server_state)


# ---------------------------------------------------------------- the pair


class ConnectionPair:
    """One loopback TCP connection with ``client`` and ``server`` sockets.

    ``with ConnectionPair() as pair: pair.client_close(); pair.states()``.  Every step
    appends a ``Step`` to ``pair.history``.  Leaving the block closes whatever is left.
    ``family=socket.AF_INET6`` uses ``::1``.  Ephemeral ports only.
    """

    def __init__(self, family: int = socket.AF_INET, *, settle_timeout: float = SETTLE_TIMEOUT):
        if family not in (socket.AF_INET, socket.AF_INET6):
            raise ValueError(f"family must be socket.AF_INET or socket.AF_INET6, got {family!r}")
        if not 0 < settle_timeout <= 60:
            raise ValueError(f"settle_timeout must be between 0 and 60 seconds, got {settle_timeout!r}")
        self.family = family
        self.settle_timeout = settle_timeout
        self.client: socket.socket | None = None
        self.server: socket.socket | None = None
        self.history: list[Step] = []
        self._ends: dict[str, tuple[str, int]] = {}
        self._closed: set[str] = set()
        self._t0 = 0.0
        self._began = 0.0

    # -- context

    def __enter__(self) -> ConnectionPair:
        listener = loopback_listener(self.family)
        try:
            self.client = socket.create_connection(listener.getsockname()[:2])
            self.server, _ = listener.accept()
        except BaseException:
            self._close_all()
            raise
        finally:
            listener.close()  # one connection only; the table then shows just its two ends
        self._ends = {"client": self.client.getsockname()[:2], "server": self.server.getsockname()[:2]}
        self._t0 = time.monotonic()
        # RFC 9293 section 3.5: the three-way handshake that create_connection() just did.
        handshake = (("client", "SYN"), ("server", "SYN,ACK"), ("client", "ACK"))
        self._record("both", "connect", handshake, (TcpState.ESTABLISHED, TcpState.ESTABLISHED))
        return self

    def __exit__(self, *exc_info) -> None:
        self._close_all()

    def _close_all(self) -> None:
        for name in _ENDS:
            sock = getattr(self, name)
            if sock is not None:
                sock.close()
                setattr(self, name, None)

    # -- reading the kernel

    @property
    def client_port(self) -> int:
        return self._ends["client"][1]

    @property
    def server_port(self) -> int:
        return self._ends["server"][1]

    def states(self) -> tuple[TcpState, TcpState]:
        """``(client_state, server_state)`` as the kernel reports them now; ``CLOSED``
        for an end that is gone from the kernel's table."""
        client, server = self._ends["client"], self._ends["server"]
        found = {"client": TcpState.CLOSED, "server": TcpState.CLOSED}
        for s in sockets(port=client[1], family=self.family):
            if s.local_port == client[1] and s.remote_port == server[1]:
                found["client"] = s.state
            elif s.local_port == server[1] and s.remote_port == client[1]:
                found["server"] = s.state
        return found["client"], found["server"]

    def _settle(self, target):
        deadline = time.monotonic() + self.settle_timeout
        seen = self.states()
        trail = [seen]
        while seen != target and time.monotonic() < deadline:
            time.sleep(0.002)
            seen = self.states()
            if seen != trail[-1]:
                trail.append(seen)
        return seen, tuple(trail)

    def _record(self, actor: str, action: str, segments, expected, *, target=None, differs: str = "") -> Step:
        """Poll until the ends reach ``target`` (by default RFC 9293's ``expected``) or the
        deadline passes, and record what the kernel then reports."""
        expected = tuple(expected)
        seen, trail = self._settle(tuple(target) if target is not None else expected)
        settled = seen == expected
        began, self._began = self._began, 0.0
        step = Step(time.monotonic() - self._t0, actor, action, tuple(segments), seen[0], seen[1],
                    expected, settled, trail, time.time(), differs if not settled else "", began)
        self.history.append(step)
        return step

    def _step(self, actor: str, actions: list[tuple[str, Event | str]], do, label: str) -> Step:
        now = dict(zip(_ENDS, self.states(), strict=True))
        final, segments = predict(now, actions)
        self._began = time.time()
        do()
        return self._record(actor, label, segments, (final["client"], final["server"]))

    def _sock(self, end: str) -> socket.socket:
        sock = getattr(self, end)
        if sock is None:
            raise RuntimeError(f"the {end} socket is already closed; a closed socket can take no more steps")
        return sock

    def wait_until(self, client: TcpState | None = None, server: TcpState | None = None,
                   *, timeout: float = 10.0, label: str | None = None, differs: str = "") -> Step:
        """Do nothing and wait (polling the kernel) until the ends reach these states, or
        ``timeout`` seconds pass; records what the kernel then reports.  For timers:
        e.g. an orphaned FIN-WAIT-2 disappearing after ``tcp_fin_timeout``.

        The step's ``expected`` is what RFC 9293 predicts while nobody acts: nothing
        changes (its only timer in the close is TIME-WAIT's 2MSL, 4 minutes, longer than
        any wait here).  Where the kernel moves anyway, the step does not match, and
        ``differs`` (if given) says why."""
        if not 0 < timeout <= 120:
            raise ValueError(f"timeout must be between 0 and 120 seconds, got {timeout!r}")
        now = self.states()
        target = (client or now[0], server or now[1])
        saved, self.settle_timeout = self.settle_timeout, timeout
        try:
            return self._record("nobody", label or "wait", (), now, target=target, differs=differs)
        finally:
            self.settle_timeout = saved

    # -- the steps (each has a mirror image for the other end)

    def _release(self, end: str) -> None:
        sock = self._sock(end)
        sock.close()
        setattr(self, end, None)

    def _close(self, end: str) -> Step:
        unread = _unread(self._sock(end))
        if unread:
            # RFC 9293 section 3.6.1 (SHLD-3): a CLOSE while received data is still pending
            # SHOULD send a RST to show that data was lost; Linux does (net/ipv4/tcp.c, __tcp_close).
            self._closed.add(end)
            return self._step(end, [(end, Event.ABORT)], lambda: self._release(end),
                              f"close() with {unread} bytes unread")
        # After shutdown(SHUT_WR) the FIN has gone already: close() then sends nothing.
        actions = [] if end in self._closed else [(end, Event.CLOSE)]
        self._closed.add(end)
        return self._step(end, actions, lambda: self._release(end), "close()")

    def client_close_server_follows(self, *, pause: float = 0.0) -> Step:
        """The client calls ``close()`` while a server thread waits in ``recv()``; the thread
        sees EOF (``b""``), waits ``pause`` seconds and calls ``close()`` too.

        RFC 9293 section 3.6: a TCP receiving a FIN ACKs it but sends its own FIN only once
        its user has closed.  With ``pause=0`` the server's FIN can carry the ACK of the
        client's FIN (three segments: FIN, FIN+ACK, ACK); after a pause the ACK has gone
        alone first (four).  The prediction says so; the capture shows what happened.
        """
        if not 0 <= pause <= 10:
            raise ValueError(f"pause must be between 0 and 10 seconds, got {pause!r}")
        self._sock("client")
        server = self._sock("server")
        got: list[bytes] = []
        waiting = threading.Event()

        def serve():
            server.settimeout(self.settle_timeout + 5)
            waiting.set()
            try:
                got.append(server.recv(1))  # b"": the client's FIN
                if pause:
                    time.sleep(pause)
            finally:
                server.close()

        now = dict(zip(_ENDS, self.states(), strict=True))
        # The table: client ESTABLISHED -CLOSE-> FIN-WAIT-1; server -rcv FIN-> CLOSE-WAIT -CLOSE->
        # LAST-ACK; the client's FIN-WAIT-1 on a FIN that ACKs its own -> TIME-WAIT (section
        # 3.10.7.4); the server's LAST-ACK on that ACK -> CLOSED.
        client_state = next_state(next_state(now["client"], Event.CLOSE),
                                  Event.RCV_FIN_ACK if not pause else Event.RCV_ACK_OF_FIN)
        if pause:
            client_state = next_state(client_state, Event.RCV_FIN)
        server_state = next_state(next_state(next_state(now["server"], Event.RCV_FIN), Event.CLOSE),
                                  Event.RCV_ACK_OF_FIN)
        segments = ((("client", "FIN"), ("server", "FIN,ACK"), ("client", "ACK")) if not pause else
                    (("client", "FIN"), ("server", "ACK"), ("server", "FIN"), ("client", "ACK")))
        thread = threading.Thread(target=serve, name="server waiting in recv()")
        thread.start()
        waiting.wait(5)
        self._closed.update(_ENDS)
        self._began = time.time()
        self._release("client")
        thread.join()
        self.server = None
        if got != [b""]:
            raise RuntimeError(f"the server thread expected EOF (b'') from recv(), got {got!r}")
        label = "client close(); server's recv() -> b'', then close()" + (f" after {pause * 1000:g} ms"
                                                                          if pause else " at once")
        return self._record("both", label, segments, (client_state, server_state))

    def _shutdown(self, end: str) -> Step:
        sock = self._sock(end)
        self._closed.add(end)
        return self._step(end, [(end, Event.CLOSE)], lambda: sock.shutdown(socket.SHUT_WR),
                          "shutdown(SHUT_WR)")

    def _send(self, end: str, data: bytes) -> Step:
        if not isinstance(data, (bytes, bytearray)) or not data:
            raise ValueError(f"send needs non-empty bytes, got {data!r}")
        sock = self._sock(end)
        return self._step(end, [(end, "DATA")], lambda: sock.sendall(data), f"send({len(data)} bytes)")

    def _recv(self, end: str, n: int = 65536) -> bytes | None:
        sock = self._sock(end)
        sock.settimeout(self.settle_timeout)
        try:
            data = sock.recv(n)
        except ConnectionResetError:
            data = None  # the peer's RST: the program learns the connection was aborted
        finally:
            sock.settimeout(None)
        label = ("recv() -> ConnectionResetError (RST)" if data is None else
                 "recv() -> EOF (b'')" if data == b"" else f"recv() -> {len(data)} bytes")
        self._record(end, label, (), self.states())
        return data

    def _abort(self, end: str) -> Step:
        sock = self._sock(end)
        # SO_LINGER on with a zero timeout: close() sends RST and skips TIME-WAIT (net/ipv4/tcp.c,
        # __tcp_close, "Check zero linger").
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._closed.add(end)
        return self._step(end, [(end, Event.ABORT)], lambda: self._release(end),
                          "close() with SO_LINGER 0 (abort)")

    def client_close(self) -> Step:
        """The client calls ``close()``: sends FIN (or nothing more if it already did; RST
        if received data is still unread)."""
        return self._close("client")

    def server_close(self) -> Step:
        """The server calls ``close()``."""
        return self._close("server")

    def client_shutdown(self) -> Step:
        """Half-close: the client sends FIN with ``shutdown(SHUT_WR)`` but can still read."""
        return self._shutdown("client")

    def server_shutdown(self) -> Step:
        """Half-close from the server's side."""
        return self._shutdown("server")

    def server_send(self, data: bytes) -> Step:
        """The server sends ``data`` (works after the client's half-close)."""
        return self._send("server", data)

    def client_send(self, data: bytes) -> Step:
        """The client sends ``data``."""
        return self._send("client", data)

    def client_recv(self, n: int = 65536) -> bytes | None:
        """The client reads up to ``n`` bytes; ``b""`` means the server's FIN (EOF) arrived,
        ``None`` that its RST did (``recv()`` raised ``ConnectionResetError``)."""
        return self._recv("client", n)

    def server_recv(self, n: int = 65536) -> bytes | None:
        """The server reads up to ``n`` bytes; ``b""`` is the client's FIN, ``None`` its RST."""
        return self._recv("server", n)

    def client_abort(self) -> Step:
        """Abortive close: ``SO_LINGER`` 0, then ``close()`` — an RST, no FIN, no TIME-WAIT."""
        return self._abort("client")

    def server_abort(self) -> Step:
        """Abortive close from the server."""
        return self._abort("server")

    def simultaneous_close(self, *, drop_until_both_closed: bool = False) -> Step:
        """Both ends call ``close()`` as nearly at once as two threads can.

        On loopback the peer usually processes the first FIN inside the first ``close()``,
        before the second end closes, so the race is rarely won and the RFC's CLOSING state
        (figure 13) is seldom seen.  ``drop_until_both_closed=True`` (only inside a private
        lab, which owns its loopback) takes ``lo`` down while both close, so both FINs are
        lost, then brings it back: the retransmitted FINs cross, as in figure 13.
        """
        client, server = self._sock("client"), self._sock("server")
        barrier = threading.Barrier(2)

        def close(sock):
            barrier.wait()
            sock.close()

        def do():
            if drop_until_both_closed:
                _set_loopback(False)
            try:
                threads = [threading.Thread(target=close, args=(s,)) for s in (client, server)]
                for th in threads:
                    th.start()
                for th in threads:
                    th.join()
            finally:
                if drop_until_both_closed:
                    _set_loopback(True)
            self.client = self.server = None

        self._closed.update(_ENDS)
        return self._step("both", [("client", Event.CLOSE), ("server", Event.CLOSE)], do,
                          "close() on both at once")


def _set_loopback(up: bool) -> None:
    """Bring ``lo`` up or down: only ever called inside a private lab's namespace."""
    import fcntl

    if not _in_private_namespace():
        raise RuntimeError("refusing to touch the loopback interface outside a private lab")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(s, 0x8913, ifr))[1]
        flags = flags | 1 if up else flags & ~1
        fcntl.ioctl(s, 0x8914, struct.pack("16sh", b"lo", flags))


def _in_private_namespace() -> bool:
    return in_lab()


def _unread(sock: socket.socket) -> int:
    """How many received bytes wait unread in ``sock``'s receive buffer (FIONREAD)."""
    import fcntl
    import termios

    return struct.unpack("i", fcntl.ioctl(sock, termios.FIONREAD, b"\0\0\0\0"))[0]
