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

from ..base.experiment import Call, Need, Result, Where, experiment
from ..base.lab import Segment, in_lab
from ..base.lab.capture import Capture
from ..base.observe import sockets
from ..base.rfc import ENDS as _ENDS
from ..base.rfc import check_history, predict
from ..base.states import Event, TcpState
from ..base.util import loopback_listener

__all__ = ["ConnectionPair", "Step", "predict", "check_history", "SCENARIOS", "CloseRun", "run_scenario"]

SETTLE_TIMEOUT = 2.0


@dataclass(frozen=True)
class Step:
    """One step of a ``ConnectionPair``: who did what, what the RFC says is sent, and what
    the kernel then reported.  ``segments`` are ``(sender, flags)`` pairs, e.g.
    ``("client", "FIN")``; ``settled`` is False if the kernel did not reach ``expected``
    within the deadline (the observed states are recorded all the same); ``trail`` lists
    every distinct ``(client, server)`` pair seen while waiting, so a state held only for
    a moment (CLOSING) shows up when a poll catches it."""

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

    def _settle(self, expected):
        deadline = time.monotonic() + self.settle_timeout
        seen = self.states()
        trail = [seen]
        while seen != expected and time.monotonic() < deadline:
            time.sleep(0.002)
            seen = self.states()
            if seen != trail[-1]:
                trail.append(seen)
        return seen, seen == expected, tuple(trail)

    def _record(self, actor: str, action: str, segments, expected) -> Step:
        seen, settled, trail = self._settle(tuple(expected))
        step = Step(time.monotonic() - self._t0, actor, action, tuple(segments), seen[0], seen[1],
                    tuple(expected), settled, trail, time.time())
        self.history.append(step)
        return step

    def _step(self, actor: str, actions: list[tuple[str, Event | str]], do, label: str) -> Step:
        now = dict(zip(_ENDS, self.states(), strict=True))
        final, segments = predict(now, actions)
        do()
        return self._record(actor, label, segments, (final["client"], final["server"]))

    def _sock(self, end: str) -> socket.socket:
        sock = getattr(self, end)
        if sock is None:
            raise RuntimeError(f"the {end} socket is already closed; a closed socket can take no more steps")
        return sock

    def wait_until(self, client: TcpState | None = None, server: TcpState | None = None,
                   *, timeout: float = 10.0, label: str | None = None) -> Step:
        """Do nothing and wait (polling the kernel) until the ends reach these states, or
        ``timeout`` seconds pass; records what the kernel then reports.  For timers:
        e.g. an orphaned FIN-WAIT-2 disappearing after ``tcp_fin_timeout``."""
        if not 0 < timeout <= 120:
            raise ValueError(f"timeout must be between 0 and 120 seconds, got {timeout!r}")
        now = self.states()
        expected = (client or now[0], server or now[1])
        saved, self.settle_timeout = self.settle_timeout, timeout
        try:
            return self._record("nobody", label or "wait", (), expected)
        finally:
            self.settle_timeout = saved

    # -- the steps (each has a mirror image for the other end)

    def _release(self, end: str) -> None:
        sock = self._sock(end)
        sock.close()
        setattr(self, end, None)

    def _close(self, end: str) -> Step:
        self._sock(end)
        # After shutdown(SHUT_WR) the FIN has gone already: close() then sends nothing.
        actions = [] if end in self._closed else [(end, Event.CLOSE)]
        self._closed.add(end)
        return self._step(end, actions, lambda: self._release(end), "close()")

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

    def _recv(self, end: str, n: int = 65536) -> bytes:
        sock = self._sock(end)
        sock.settimeout(self.settle_timeout)
        try:
            data = sock.recv(n)
        finally:
            sock.settimeout(None)
        label = "recv() -> EOF (b'')" if data == b"" else f"recv() -> {len(data)} bytes"
        self._record(end, label, (), self.states())
        return data

    def _abort(self, end: str) -> Step:
        sock = self._sock(end)
        # SO_LINGER on with a zero timeout: close() sends RST and skips TIME-WAIT (facts L22).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._closed.add(end)
        return self._step(end, [(end, Event.ABORT)], lambda: self._release(end),
                          "close() with SO_LINGER 0 (abort)")

    def client_close(self) -> Step:
        """The client calls ``close()``: sends FIN (or nothing more if it already did)."""
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

    def client_recv(self, n: int = 65536) -> bytes:
        """The client reads up to ``n`` bytes; ``b""`` means the server's FIN (EOF) arrived."""
        return self._recv("client", n)

    def server_recv(self, n: int = 65536) -> bytes:
        """The server reads up to ``n`` bytes; ``b""`` is the client's FIN."""
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

# ---------------------------------------------------------------- scenarios for notebook 01

#: The close variants notebook 01 runs: name -> the pair's steps, as (method, *args).
SCENARIOS: dict[str, tuple[tuple, ...]] = {
    "client-closes-first": (("client_close",), ("server_close",)),
    "server-closes-first": (("server_close",), ("client_close",)),
    "half-close": (("client_shutdown",), ("server_send", b"data after the client's FIN"),
                   ("client_recv",), ("server_close",), ("client_recv",), ("client_close",)),
    "simultaneous": (("simultaneous_close",),),
    "abort": (("client_abort",),),
    "close-wait-leak": (("client_close",), ("wait_until", TcpState.CLOSED, None)),
}


@dataclass
class CloseRun:
    """One scenario's result: the pair's ``history``, the captured segments of each step
    (``None`` when nothing could be captured: the arrows are then what RFC 9293 says is
    sent) and the server's port.  Where it ran is the ``Result``'s."""

    name: str
    history: list[Step]
    segments_by_step: list[list] | None
    server_port: int

    def table(self):
        """The steps as a DataFrame: who did what, and both ends' states from the kernel."""
        import pandas as pd

        return pd.DataFrame([{
            "step": i, "who": s.actor, "action": s.action,
            "client (kernel)": s.client_state.label, "server (kernel)": s.server_state.label,
            "RFC predicted": " / ".join(x.label for x in s.expected),
            "matches": s.settled,
            "seen while waiting": " → ".join(f"{a.label}/{b.label}" for a, b in s.trail)
            if len(s.trail) > 1 else "",
        } for i, s in enumerate(self.history)])

    def final_states(self) -> dict[TcpState, str]:
        """The ends' last states, as ``plots.state_diagram(highlight=...)`` takes them."""
        last = self.history[-1]
        if last.client_state == last.server_state:
            return {last.client_state: "client + server"}
        return {last.client_state: "client", last.server_state: "server"}

    def to_record(self) -> dict:
        """Plain JSON-able data, from which ``from_record`` rebuilds this run (recordings)."""
        from dataclasses import asdict

        def step(s: Step) -> dict:
            d = asdict(s)
            d.update(client_state=s.client_state.name, server_state=s.server_state.name,
                     expected=[x.name for x in s.expected], trail=[[a.name, b.name] for a, b in s.trail])
            return d

        return {"name": self.name, "history": [step(s) for s in self.history], "server_port": self.server_port,
                "segments_by_step":
                None if self.segments_by_step is None else [[g.to_record() for g in gs] for gs in self.segments_by_step]}

    @classmethod
    def from_record(cls, record: dict, arguments: dict | None = None) -> CloseRun:
        """A ``CloseRun`` from ``to_record()`` data."""
        def step(d: dict) -> Step:
            return Step(**{**d, "segments": tuple(tuple(x) for x in d["segments"]),
                           "client_state": TcpState[d["client_state"]], "server_state": TcpState[d["server_state"]],
                           "expected": tuple(TcpState[x] for x in d["expected"]),
                           "trail": tuple((TcpState[a], TcpState[b]) for a, b in d["trail"])})

        segments = record["segments_by_step"]
        return cls(record["name"], [step(d) for d in record["history"]],
                   None if segments is None else [[Segment(**g) for g in gs] for gs in segments],
                   record["server_port"])


def _steps(name: str, in_lab: bool, wait_timeout: float):
    """Play one scenario's steps on a fresh pair: ``(history, ports, server port)``."""
    with ConnectionPair(settle_timeout=min(SETTLE_TIMEOUT, wait_timeout)) as pair:
        for method, *args in SCENARIOS[name]:
            if method == "simultaneous_close":
                pair.simultaneous_close(drop_until_both_closed=in_lab)
            elif method == "wait_until":
                pair.wait_until(*args, timeout=wait_timeout, label="wait: the server never calls close()")
            else:
                getattr(pair, method)(*args)
        return pair.history, {pair.client_port, pair.server_port}, pair.server_port


def _play(name: str, capture: bool, in_lab: bool, wait_timeout: float):
    """Play a scenario, capturing the loopback when asked: ``(history, segments by step or
    None, server port)``."""
    if not capture:
        history, _, server_port = _steps(name, in_lab, wait_timeout)
        return history, None, server_port
    with Capture("lo") as cap:
        history, ports, server_port = _steps(name, in_lab, wait_timeout)
        cap.settle()
    # Each segment belongs to the first step recorded after it; segments after the last step
    # come from leaving the ``with`` block (closing what is left), not from the scenario.
    by_step: list[list] = [[] for _ in history]
    for seg in cap.segments:
        if {seg.sport, seg.dport} != ports:
            continue
        when = cap.started + seg.t
        index = next((i for i, st in enumerate(history) if st.wall >= when), None)
        if index is not None:
            by_step[index].append(seg)
    return history, by_step, server_port


def _check_scenario(name: str) -> None:
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}: expected one of {', '.join(SCENARIOS)}")


_NO_CAPTURE = ("No private lab ({why}) and no capture: states are live, the arrows show what "
               "RFC 9293 says is sent.")


@experiment(
    notebook="01", title="the four-way close and its variants, with captured segments",
    needs=[Need.KERNEL], wants=[Need.CAPTURE], check=_check_scenario,
    calls=[Call((name,), {}, f"the '{name}' scenario in a private lab, its segments captured on the lab's loopback")
           for name in SCENARIOS],
    to_record=CloseRun.to_record, from_record=CloseRun.from_record,
    notes={Where.LAB: "Ran in your private lab: the segments are real, captured on the lab's loopback.",
           Where.ROOT: "No private lab ({why}); ran on this machine as root, capturing its loopback.",
           Where.LIVE: _NO_CAPTURE})
def run_scenario(place, name: str) -> CloseRun:
    """Run one close variant of ``SCENARIOS`` and return what happened (a ``CloseRun``).

    In a private lab: real captured segments; the simultaneous close is made real by losing
    both FINs; the CLOSE-WAIT leak runs with tcp_fin_timeout=1.  On this machine as root:
    capturing its loopback (short waits).  Else live without capture, the arrows then being
    what RFC 9293 says is sent; where the kernel's states cannot be read, the Linux recording.
    """
    if place.where is Where.LAB:
        if name == "close-wait-leak":
            place.lab.sysctl(tcp_fin_timeout=1)
        return CloseRun(name, *place.call(_play, name, True, True, 5.0))
    wait = 1.5  # on the machine: short, so that no step waits long enough to need a progress bar
    if place.where is Where.ROOT:
        try:
            return CloseRun(name, *_play(name, True, False, wait))
        except OSError:
            pass  # capturing failed: live without capture, one rung down
    history, _, port = _play(name, False, False, wait)
    return Result(CloseRun(name, history, None, port), Where.LIVE)

