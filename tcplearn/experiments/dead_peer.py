"""When the peer vanishes without a word: who notices, how, and when.

``dead_peer(method, **params)`` opens a loopback connection, makes the peer go silent
(no FIN, no RST, no ACK ever again) and watches the local end until it notices or a
bounded window (at most 60 s) ends.  The methods:

* ``"none"``: nothing is set.  An idle connection sends nothing, so nothing notices:
  the socket stays ESTABLISHED for ever.
* ``"keepalive"``: ``SO_KEEPALIVE`` with ``TCP_KEEPIDLE``/``TCP_KEEPINTVL``/``TCP_KEEPCNT``
  set *on the socket* (no sysctl is touched): probes, then ``ETIMEDOUT``.
* ``"user_timeout"``: ``TCP_USER_TIMEOUT`` on the socket, with one byte left
  unacknowledged: retransmissions, then ``ETIMEDOUT``.
* ``"retransmissions"``: ``net.ipv4.tcp_retries2``, a per-network-namespace sysctl, set
  inside a private lab (never on the host), with one byte left unacknowledged.
* ``"settimeout"``: Python's ``sock.settimeout``: ``recv`` raises ``TimeoutError`` yet
  the connection is still ESTABLISHED; it says nothing about the peer (the Python docs' socket timeouts: a
  per-call limit, kept with poll/select, not ``SO_RCVTIMEO``).
* ``"node_idle"``: real Node's ``socket.setTimeout``: only a ``'timeout'`` event, the
  socket stays open (Node's ``doc/api/net.md``, ``socket.setTimeout`` and ``'timeout'``).
* ``"node_keepalive"``: real Node's ``socket.setKeepAlive(true, ms)``: kernel keepalive.
  The values Node sets are read back from Node's own socket (``pidfd_getfd`` then
  ``getsockopt``) and reported, and the detection is compared with them.

How the peer is silenced (measured on Linux 6.18, 2 cores): a classic BPF socket filter
that drops everything (``SO_ATTACH_FILTER``, one instruction ``BPF_RET|BPF_K 0``) is
attached to the *peer's* socket.  Every segment for it is discarded by the socket
filter before TCP processes it, so the peer neither ACKs nor resets, ``lo`` stays up,
and the capture on ``lo`` sees every keepalive probe and retransmission.  On a TCP
socket it needs ``CAP_NET_ADMIN`` (measured: ``EPERM`` as ``nobody`` and as root without
capabilities, while UDP and Unix sockets take it; gVisor PR #14478 traces this to Linux
commit 5d39580f68e6).  Inside a private lab the user is root over the lab's network, so
it works there without root; on the machine itself it needs root.  Taking a lab's ``lo`` down instead gives the same detection times
(keepalive 2/1/2: 4.07 s both ways; TCP_USER_TIMEOUT 1500 ms: 1.92 s both ways), but
the capture then sees nothing between the handshake and the end: segments sent on a
DOWN ``lo`` never reach the packet socket.  Before the peer is closed its filter is
removed and it is closed with ``SO_LINGER`` 0 (an RST); a peer closed while still
filtered would drop the RST answering its FIN and retransmit that FIN as an orphan.

So the lab is used whenever one can start (``lab=None``, the default): for the filter,
for the capture, and for ``tcp_retries2``, which is set per namespace.  Without a lab
the per-socket methods run on this machine's loopback as root (``where == "root"``),
captured there too; without a lab and without root nothing can be silenced, and
``dead_peer`` says so with ``PermissionError``.

``retransmission_schedule()`` is the kernel's model of ``tcp_retries2`` as a pure
function: ``retransmits_timed_out()`` does not count retransmissions; it turns the
count into a time budget with ``tcp_model_timeout()`` (a ``TCP_RTO_MIN`` of 200 ms
doubling, capped at ``TCP_RTO_MAX`` 120 s) and gives up at the first retransmission
timeout that fires once that much time has passed since ``retrans_stamp``
(``torvalds/linux:net/ipv4/tcp_timer.c``).  For 15 the budget is 924.6 s.

Measured with ``tcp_retries2=3`` in a lab: the byte is sent at 0; a tail loss probe goes
out one RTO later (``TcpExt TCPLossProbes`` +1); RTO retransmissions follow at about
0.41, 0.83, 1.66 and 3.33 s (within 25 ms from run to run; ``TCPTimeouts`` +5 with the
last, fatal one); ``ETIMEDOUT`` comes after 6.66-6.87 s over five runs (6.63 s once
with ``lo`` down instead).  The budget, 3.0 s, runs from the first RTO retransmission
(0.41 s), not from the send: the timer at 3.33 s is 0.09 s short of it, so one more
doubling is waited for.  The model's 6.4 s assumes exact 200 ms doublings; the
measured intervals come out 2-7 % longer.  The issue's 6.75 s is the same schedule.
``TCP_USER_TIMEOUT`` is counted from the same point: 1500 ms ended at 1.92 s.
"""

from __future__ import annotations

import errno
import math
import os
import select
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from ..base.experiment import Call, Need, Place, Rule, Where, experiment, node_executable
from ..base.kernel import netstat
from ..base.observe.procfs import parse_proc_net_tcp
from ..base.observe.tcpsocket import TIMER_NAMES
from ..base.peek import getsockopt_int, pidfd_getfd, socket_fd_of
from ..base.states import TcpState
from ..base.util import loopback_listener
from .tools import node as node_tool
from .tools.silence import _abort, can_silence, silence, unsilence

__all__ = [
    "dead_peer", "DeadPeerResult", "METHODS", "PARAMS", "MAX_WINDOW",
    "retransmission_schedule", "RetransmissionSchedule", "predict", "silence", "unsilence",
    "can_silence",
]

#: The longest any run may watch, in seconds.  The kernel's default ``tcp_retries2=15``
#: (924.6 s) and the default keepalive (7200 s + 9 × 75 s) are explained, not waited for.
MAX_WINDOW = 60.0

#: The methods and, for each, its keyword parameters with their defaults.
PARAMS: dict[str, dict[str, float]] = {
    "none": {"duration": 3.0},
    "keepalive": {"keepalive_time": 2, "keepalive_intvl": 1, "keepalive_probes": 2},
    "user_timeout": {"user_timeout_ms": 1500},
    "retransmissions": {"tcp_retries2": 3},
    "settimeout": {"timeout": 1.0},
    "node_idle": {"timeout_ms": 1000},
    "node_keepalive": {"initial_delay_ms": 1000},
}
METHODS = tuple(PARAMS)

NODE_KEEPCNT, NODE_KEEPINTVL = 10, 1  # Node's lib/net.js setKeepAlive (PR #32204); measured from Node's socket on every run


# ---------------------------------------------------------------- the model


@dataclass(frozen=True)
class RetransmissionSchedule:
    """The kernel's model of ``tcp_retries2`` (all times in seconds since the data was sent).

    ``budget`` is ``tcp_model_timeout()``: how long after the first RTO retransmission the
    connection may keep trying; ``probe`` the tail loss probe (None if not modelled);
    ``retransmissions`` the RTO retransmissions; ``gives_up_at`` the RTO that fires once
    the budget is spent, when ``ETIMEDOUT`` is reported."""

    tcp_retries2: int
    rto: float
    budget: float
    probe: float | None
    retransmissions: tuple[float, ...]
    gives_up_at: float


def _model_timeout(boundary: int, rto_min_ms: int, rto_max_ms: int) -> int:
    """``tcp_model_timeout()`` in ms: doubling from ``rto_min`` until capped at ``rto_max``."""
    linear_backoff_thresh = int(math.log2(rto_max_ms // rto_min_ms))
    if boundary <= linear_backoff_thresh:
        return ((2 << boundary) - 1) * rto_min_ms
    return (((2 << linear_backoff_thresh) - 1) * rto_min_ms
            + (boundary - linear_backoff_thresh) * rto_max_ms)


def retransmission_schedule(tcp_retries2: int = 15, rto_min: float = 0.2, rto_max: float = 120.0,
                            rtt: float = 0.0, *, tail_loss_probe: bool = True) -> RetransmissionSchedule:
    """When unacknowledged data is retransmitted, and when the connection gives up.

    The budget is the kernel's ``tcp_model_timeout(tcp_retries2)``, built from
    ``rto_min`` (``TCP_RTO_MIN``) whatever this connection's real RTO is; 924.6 s for 15.
    The real timer starts at ``rto = rtt + rto_min`` (Linux floors the RTT variance at
    ``rto_min``: ``tcp_rtt_estimator``) and doubles up to ``rto_max``.  With
    ``tail_loss_probe`` one probe goes out one RTO after the send and the RTO timer
    restarts from it, as measured on loopback (``TCPLossProbes``).  The budget is counted
    from the first RTO retransmission; the connection gives up at the first RTO expiry
    at or after that point plus the budget.
    """
    if isinstance(tcp_retries2, bool) or not isinstance(tcp_retries2, int) or not 0 <= tcp_retries2 <= 255:
        raise ValueError(f"tcp_retries2={tcp_retries2!r} refused: expected an int from 0 to 255")
    for name, value in (("rto_min", rto_min), ("rto_max", rto_max)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.001 <= value <= 3600:
            raise ValueError(f"{name}={value!r} refused: expected seconds from 0.001 to 3600")
    if rto_max < rto_min:
        raise ValueError(f"rto_max={rto_max!r} refused: it must be at least rto_min={rto_min!r}")
    if isinstance(rtt, bool) or not isinstance(rtt, (int, float)) or not 0 <= rtt <= 60:
        raise ValueError(f"rtt={rtt!r} refused: expected seconds from 0 to 60")
    rto_min_ms, rto_max_ms = round(rto_min * 1000), round(rto_max * 1000)
    budget = _model_timeout(tcp_retries2, rto_min_ms, rto_max_ms) / 1000
    rto = min(rto_max, rtt + rto_min)
    t, probe = 0.0, None
    if tail_loss_probe:
        t = probe = rto
    retransmissions = []
    interval, start = rto, None
    while True:
        t += interval
        if start is not None and t - start >= budget - 1e-9:
            return RetransmissionSchedule(tcp_retries2, rto, budget, probe, tuple(retransmissions), t)
        if start is None:
            start = t
        retransmissions.append(t)
        interval = min(interval * 2, rto_max)


def predict(method: str, **params: Any) -> dict:
    """What the settings predict, before anything runs: ``detected_after`` (seconds, or
    None when nothing should notice) and ``probes`` / ``retransmissions`` (times of the
    segments the local end should send, in seconds from the start of the silence)."""
    p = _validate(method, params)
    if method == "keepalive":
        idle, intvl, n = p["keepalive_time"], p["keepalive_intvl"], p["keepalive_probes"]
        return {"detected_after": idle + n * intvl, "probes": [idle + k * intvl for k in range(n)]}
    if method == "node_keepalive":
        idle = p["initial_delay_ms"] // 1000  # Node passes whole seconds (lib/net.js: ~~(ms / 1000))
        return {"detected_after": idle + NODE_KEEPCNT * NODE_KEEPINTVL,
                "probes": [idle + k * NODE_KEEPINTVL for k in range(NODE_KEEPCNT)]}
    if method == "user_timeout":
        # Counted from the first RTO retransmission (retrans_stamp), like tcp_retries2's budget:
        # measured 1.92 s for 1500 ms, the first RTO retransmission being at 0.41 s.
        s = retransmission_schedule(15)
        return {"detected_after": s.retransmissions[0] + p["user_timeout_ms"] / 1000,
                "probe": s.probe, "first_rto_retransmission": s.retransmissions[0]}
    if method == "retransmissions":
        s = retransmission_schedule(p["tcp_retries2"])
        return {"detected_after": s.gives_up_at, "retransmissions": list(s.retransmissions),
                "probe": s.probe, "budget": s.budget}
    return {"detected_after": None}


# ---------------------------------------------------------------- validation


def _number(method: str, name: str, value: object, low: float, high: float, *, integer: bool) -> float:
    kind = "an int" if integer else "a number"
    ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
    if ok and isinstance(value, float) and not math.isfinite(value):
        ok = False
    if not ok or not low <= value <= high:  # type: ignore[operator]
        raise ValueError(f"dead_peer({method!r}): {name}={value!r} refused: expected {kind} "
                         f"from {low:g} to {high:g}")
    return value  # type: ignore[return-value]


def _validate(method: object, params: dict) -> dict:
    if method not in PARAMS:
        raise ValueError(f"unknown method {method!r}: expected one of {', '.join(METHODS)}")
    accepted = PARAMS[method]  # type: ignore[index]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"dead_peer({method!r}) takes {', '.join(accepted)}; "
                         f"not {', '.join(unknown)}")
    p = {**accepted, **params}
    w = MAX_WINDOW
    if method == "none":
        _number(method, "duration", p["duration"], 0.1, w, integer=False)
    elif method == "settimeout":
        _number(method, "timeout", p["timeout"], 0.05, w - 1, integer=False)
    elif method == "keepalive":
        for name in ("keepalive_time", "keepalive_intvl", "keepalive_probes"):
            _number(method, name, p[name], 1, w, integer=True)
        total = p["keepalive_time"] + p["keepalive_intvl"] * p["keepalive_probes"]
        if total > w:
            raise ValueError(
                f"dead_peer('keepalive'): keepalive_time + keepalive_intvl * keepalive_probes = {total} s "
                f"is over the {w:g} s limit; the kernel's defaults (7200 + 75 * 9 s) are explained, "
                "not waited for")
    elif method == "user_timeout":
        _number(method, "user_timeout_ms", p["user_timeout_ms"], 1, w * 1000, integer=True)
    elif method == "retransmissions":
        _number(method, "tcp_retries2", p["tcp_retries2"], 1, 15, integer=True)
        gives_up = retransmission_schedule(p["tcp_retries2"]).gives_up_at
        if gives_up > w:
            raise ValueError(
                f"dead_peer('retransmissions'): tcp_retries2={p['tcp_retries2']} gives up only after "
                f"about {gives_up:.1f} s, over the {w:g} s limit (accepted: 1 to 6); the default 15 "
                f"(a budget of {retransmission_schedule(15).budget:.1f} s) is explained by "
                "retransmission_schedule(), not waited for")
    elif method == "node_idle":
        _number(method, "timeout_ms", p["timeout_ms"], 1, (w - 1) * 1000, integer=True)
    elif method == "node_keepalive":
        limit = int(w - NODE_KEEPCNT * NODE_KEEPINTVL - 2) * 1000
        _number(method, "initial_delay_ms", p["initial_delay_ms"], 1000, limit, integer=True)
    return p


# ---------------------------------------------------------------- observing the local end


def _proc_row(local_port: int, remote_port: int, proc_root: str = "/proc") -> dict | None:
    """This connection's line of ``/proc/net/tcp`` (read by the one parser,
    ``parse_proc_net_tcp``) as the fields this module shows, or ``None`` once it is gone."""
    try:
        with open(f"{proc_root}/net/tcp", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    for s in parse_proc_net_tcp(text, port=local_port):
        if (s.local_port, s.remote_port) == (local_port, remote_port):
            return {"state": s.state.name, "tr": TIMER_NAMES.index(s.timer), "timer": s.timer,
                    "when_s": s.timer_remaining, "retrnsmt": s.retransmits, "timeout": s.probes,
                    "inode": s.inode}
    return None


def _tcp_state(sock: socket.socket) -> str:
    """The kernel's state of our own socket (``TCP_INFO``'s first byte), also once the
    socket has left ``/proc/net/tcp`` (CLOSED)."""
    try:
        return TcpState(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]).name
    except (OSError, ValueError):
        return "CLOSED"


def _netstat() -> dict[str, int]:
    """A few ``TcpExt`` counters of this network namespace (meaningful inside a lab)."""
    counters = netstat()
    return {k: counters[k] for k in ("TCPLossProbes", "TCPTimeouts", "TCPKeepAlive", "TCPAbortOnTimeout")
            if k in counters}


class _Watch:
    """Samples one connection's ``/proc/net/tcp`` row on a time axis starting at ``t0``."""

    def __init__(self, local_port: int, remote_port: int, t0: float, every: float):
        self.ports, self.t0, self.every = (local_port, remote_port), t0, every
        self.rows: list[dict] = []
        self._next = 0.0

    def now(self) -> float:
        return time.monotonic() - self.t0

    def sample(self, force: bool = False, fallback_state: str | None = None) -> dict | None:
        t = self.now()
        if not force and t < self._next:
            return None
        self._next = t + self.every
        row = _proc_row(*self.ports)
        if row is None:
            row = {"state": fallback_state or "CLOSED", "tr": 0, "timer": "off", "when_s": 0.0,
                   "retrnsmt": 0, "timeout": 0, "inode": 0}
        row = {"t": round(t, 4), **{k: v for k, v in row.items() if k != "inode"}}
        self.rows.append(row)
        return row


def _sample_every() -> float:
    return 0.05 if _lab_here() else 0.2  # the host's table may hold many thousands of rows


def _lab_here() -> bool:
    from ..base.lab import in_lab

    return in_lab()


# ---------------------------------------------------------------- one run, in the lab or here


def _pair() -> tuple[socket.socket, socket.socket]:
    with loopback_listener() as lst:
        client = socket.create_connection(lst.getsockname(), timeout=5)
        peer, _ = lst.accept()
    client.settimeout(None)
    return client, peer


def _configure(method: str, p: dict, sock: socket.socket) -> None:
    if method == "keepalive":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, p["keepalive_time"])
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, p["keepalive_intvl"])
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, p["keepalive_probes"])
    elif method == "user_timeout":
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, p["user_timeout_ms"])


def _window(method: str, p: dict) -> float:
    """How long to watch: a little past the prediction, never over ``MAX_WINDOW``."""
    if method == "none":
        return p["duration"]
    if method == "settimeout":
        return p["timeout"] + 0.5
    predicted = predict(method, **p)["detected_after"]
    return min(MAX_WINDOW, predicted * 1.5 + 2)


def _run_python(method: str, p: dict, capture: bool) -> dict:
    """Runs where it is called (a lab's worker, or here) and returns plain data."""
    cap = _start_capture(capture)
    before = _netstat()
    events: list[dict] = []
    error = detected = None
    client, peer = _pair()
    ports = (client.getsockname()[1], peer.getsockname()[1])
    try:
        silence(peer)
        _configure(method, p, client)
        t0_wall, t0 = time.time(), time.monotonic()
        watch = _Watch(*ports, t0, _sample_every())
        if method in ("user_timeout", "retransmissions"):
            client.send(b"x")  # one byte the silent peer will never acknowledge
            events.append({"t": watch.now(), "event": "send(1 byte)"})
        watch.sample(force=True)
        window = _window(method, p)
        if method == "settimeout":
            client.settimeout(p["timeout"])
            try:
                client.recv(1)
            except TimeoutError:
                events.append({"t": watch.now(), "event": "recv() raised TimeoutError"})
            client.settimeout(None)
        poller = select.poll()
        poller.register(client, select.POLLERR | select.POLLHUP | select.POLLIN)
        while watch.now() < window:
            watch.sample()
            if poller.poll(20):
                detected = watch.now()
                err = client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                error = errno.errorcode.get(err, str(err)) if err else None
                events.append({"t": detected, "event": f"poll() reports an error: {error}" if error
                               else "poll() reports the connection readable"})
                break
        watch.sample(force=True, fallback_state=_tcp_state(client))
        final_state = _tcp_state(client)
    finally:
        unsilence(peer)
        _abort(peer)
        _abort(client)
    after = _netstat()
    segments = _stop_capture(cap, ports, t0_wall)
    return {"detected_after": detected, "error": error, "timeline": watch.rows, "events": events,
            "segments": segments, "final_state": final_state,
            "counters": {k: after[k] - before.get(k, 0) for k in after}, "measured": {},
            "ports": ports}


def _start_capture(capture: bool):
    if not capture:
        return None
    from ..base.lab.capture import Capture

    cap = Capture("lo")
    try:
        cap.__enter__()
    except OSError:
        return None
    return cap


def _stop_capture(cap, ports: tuple[int, int], t0_wall: float) -> list[dict] | None:
    if cap is None:
        return None
    cap.settle()
    cap.__exit__(None, None, None)
    local = ports[0]
    out = []
    for s in cap.segments:
        if {s.sport, s.dport} != set(ports):
            continue
        d = s.to_record()  # plain fields: the captured frame's bytes stay out of JSON
        d["t"] = round(cap.started + s.t - t0_wall, 6)
        d["from"] = "local" if s.sport == local else "peer"
        out.append(d)
    _classify(out)
    return out


def _classify(segments: list[dict]) -> None:
    """Name each segment: handshake, data, retransmission, keepalive probe, reset, fin, ack."""
    highest = 0  # the local end's next sequence number seen so far
    for s in segments:
        flags = s["flags"].split(",")
        if "SYN" in flags:
            kind = "handshake"
        elif "RST" in flags:
            kind = "reset"
        elif "FIN" in flags:
            kind = "fin"
        elif s["from"] == "local" and s["length"] > 0:
            kind = "retransmission" if s["seq"] + s["length"] <= highest else "data"
        elif s["from"] == "local" and s["length"] == 0 and highest and s["seq"] == highest - 1:
            kind = "keepalive probe"  # an ACK carrying seq one below snd_nxt
        else:
            kind = "ack"
        if s["from"] == "local":
            highest = max(highest, s["seq"] + s["length"] + ("SYN" in flags))
        s["kind"] = kind


# ---------------------------------------------------------------- real Node


def _node_socket_options(pid: int, inode: int) -> dict:
    """Read the keepalive options of Node's socket (the one with ``inode``) from outside."""
    try:
        target = socket_fd_of(pid, inode)
    except LookupError:
        return {"how": f"socket:[{inode}] not found among Node's descriptors"}
    fd = pidfd_getfd(pid, target)  # our duplicate; closing it leaves Node's socket alone
    try:
        return {"SO_KEEPALIVE": getsockopt_int(fd, socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                "TCP_KEEPIDLE": getsockopt_int(fd, socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                "TCP_KEEPINTVL": getsockopt_int(fd, socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                "TCP_KEEPCNT": getsockopt_int(fd, socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
                "how": f"pidfd_getfd(Node pid {pid}, fd {target}) then getsockopt"}
    finally:
        os.close(fd)


def _run_node(method: str, p: dict, capture: bool, node: str) -> dict:
    """Node is the local end; Python holds the silenced peer and watches Node's socket."""
    cap = _start_capture(capture)
    before = _netstat()
    mode = "idle" if method == "node_idle" else "keepalive"
    window = (p["timeout_ms"] / 1000 + 1.0 if mode == "idle"
              else _window("node_keepalive", p))
    args = {"host": "127.0.0.1", "mode": mode, "duration_s": window,
            "timeout_ms": p.get("timeout_ms"), "initial_delay_ms": p.get("initial_delay_ms")}
    lst = loopback_listener()
    proc = peer = None
    events: list[dict] = []
    measured: dict = {}
    rows: list[dict] = []
    error = detected = None
    final_state = "CLOSED"
    ports = (0, lst.getsockname()[1])
    t0_wall = time.time()
    try:
        args["port"] = ports[1]
        proc = node_tool.start("dead_peer_client.js", args)
        lst.settimeout(10)
        peer, _ = lst.accept()
        silence(peer)
        t0_wall, t0 = time.time(), time.monotonic()
        lines = node_tool.Lines(proc)
        first = lines.next(10)
        if not first or first.get("event") != "connected":
            raise RuntimeError(f"Node did not connect: {first!r}; {proc.stderr.read()[-300:]!r}")  # type: ignore[union-attr]
        ports = (first["local_port"], ports[1])
        events.append({"t": first["t"], "event": "connected"})
        watch = _Watch(*ports, t0, _sample_every())
        configured = lines.next(5)
        call = (f"setTimeout({p['timeout_ms']})" if mode == "idle"
                else f"setKeepAlive(true, {p['initial_delay_ms']})")
        events.append({"t": (configured or {}).get("t", watch.now()), "event": call})
        row = watch.sample(force=True)
        if mode == "keepalive":
            measured = _node_socket_options(proc.pid, _proc_row(*ports)["inode"])  # type: ignore[index]
        done = None
        while watch.now() < window + 5:
            watch.sample()
            msg = lines.next(0.02)
            if msg is None:
                if proc.poll() is not None and not lines.buf:
                    break
                continue
            if msg.get("done"):
                done = msg
                break
            ev = {"t": msg["t"], "event": msg["event"]}
            if msg["event"] == "timeout":
                row = watch.sample(force=True)
                ev.update(readyState=msg["readyState"], destroyed=msg["destroyed"],
                          kernel_state=row["state"] if row else None)
            elif msg["event"] == "error":
                ev["code"] = msg["code"]
                if detected is None:
                    detected, error = msg["t"], msg["code"]
                watch.sample(force=True)
            events.append(ev)
        watch.sample(force=True)
        rows = watch.rows
        if mode == "idle":
            final_state = next((e["kernel_state"] for e in events if e["event"] == "timeout"), "CLOSED")
        else:
            final_state = rows[-1]["state"] if rows else "CLOSED"
        measured["node"] = (done or {}).get("node")
    finally:
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)
        if peer is not None:
            unsilence(peer)
            _abort(peer)
        lst.close()
    after = _netstat()
    segments = _stop_capture(cap, ports, t0_wall)
    return {"detected_after": detected, "error": error, "timeline": rows, "events": events,
            "segments": segments, "final_state": final_state,
            "counters": {k: after[k] - before.get(k, 0) for k in after}, "measured": measured,
            "ports": ports}


# ---------------------------------------------------------------- the result


@dataclass
class DeadPeerResult:
    """One run of ``dead_peer``.

    ``detected_after`` is seconds from the start of the silence until the local end saw
    an error (None: it never noticed); ``error`` that error's errno name (``"ETIMEDOUT"``);
    where it ran is the ``Result``'s to say, not the value's.  ``how`` says in one sentence
    what made it notice; ``timeline`` (a pandas DataFrame built from ``timeline_rows``) the local end's ``/proc/net/tcp`` row over
    time: ``t``, ``state``, timer code ``tr`` and its name, ``when_s`` left on it,
    ``retrnsmt``, ``timeout`` (unanswered probes); ``segments`` the capture (each with
    ``t`` on the same axis, ``from`` "local" or "peer" and a ``kind``), or None without
    capture; ``events`` what the program saw; ``predicted`` what the settings predict;
    ``measured`` values read back (Node's socket options); ``counters`` the lab's TcpExt
    deltas; ``ports`` (local, peer).
    """

    method: str
    params: dict
    detected_after: float | None
    error: str | None
    how: str
    timeline_rows: list[dict]
    segments: list[dict] | None
    events: list[dict] = field(default_factory=list)
    final_state: str = "ESTABLISHED"
    predicted: dict = field(default_factory=dict)
    measured: dict = field(default_factory=dict)
    counters: dict = field(default_factory=dict)
    ports: tuple[int, int] = (0, 0)

    @property
    def timeline(self):
        """``timeline_rows`` as a pandas DataFrame (pandas is imported only here)."""
        import pandas as pd

        return pd.DataFrame(self.timeline_rows, columns=_TIMELINE_COLUMNS)

    def sent(self, kind: str) -> list[float]:
        """Times of the local end's captured segments of one ``kind`` (``"keepalive probe"``,
        ``"retransmission"``, ``"data"``...), empty without a capture."""
        return [s["t"] for s in self.segments or () if s["from"] == "local" and s["kind"] == kind]

    def loss_probes(self) -> list[float]:
        """Times of the captured resends that were tail loss probes (RFC 8985 §7), not
        timeout retransmissions: a probe goes out before the RTO fires, so they are the first
        ``counters["TCPLossProbes"]`` resends.  Empty without a capture or that counter."""
        return self.sent("retransmission")[:max(0, int(self.counters.get("TCPLossProbes", 0)))]

    def segment_table(self):
        """The captured segments as a DataFrame (empty without a capture)."""
        import pandas as pd

        cols = ["t", "from", "kind", "flags", "seq", "ack", "length"]
        return pd.DataFrame(self.segments or [], columns=cols)[cols]

    def to_record(self) -> dict:
        """Plain JSON-able data; ``from_record`` rebuilds the result from it."""
        return {"method": self.method, "params": dict(self.params),
                "detected_after": self.detected_after, "error": self.error,
                "how": self.how, "timeline": [dict(r) for r in self.timeline_rows],
                "segments": self.segments, "events": self.events, "final_state": self.final_state,
                "predicted": self.predicted, "measured": self.measured, "counters": self.counters,
                "ports": list(self.ports)}

    @classmethod
    def from_record(cls, record: dict, arguments: dict | None = None) -> DeadPeerResult:
        """A result from ``to_record()`` data (e.g. loaded from JSON)."""
        data = dict(record)
        data["timeline_rows"] = [dict(r) for r in data.pop("timeline")]
        data["ports"] = tuple(data.get("ports", (0, 0)))
        return cls(**data)


_TIMELINE_COLUMNS = ["t", "state", "tr", "timer", "when_s", "retrnsmt", "timeout"]


def _how(method: str, p: dict, measured: dict) -> str:
    silent = "the peer was silenced with a drop-all socket filter"
    if method == "none":
        return f"Nothing set: an idle connection sends nothing, so nothing notices ({silent})."
    if method == "keepalive":
        return (f"Per socket: SO_KEEPALIVE=1, TCP_KEEPIDLE={p['keepalive_time']} s, "
                f"TCP_KEEPINTVL={p['keepalive_intvl']} s, TCP_KEEPCNT={p['keepalive_probes']} set "
                f"with setsockopt; no sysctl changed ({silent}).")
    if method == "user_timeout":
        return (f"Per socket: TCP_USER_TIMEOUT={p['user_timeout_ms']} ms with one byte left "
                f"unacknowledged; no sysctl changed ({silent}).")
    if method == "retransmissions":
        return (f"Per network namespace: net.ipv4.tcp_retries2={p['tcp_retries2']} set inside the "
                f"private lab (the host's value is untouched), one byte left unacknowledged ({silent}).")
    if method == "settimeout":
        return (f"Python's sock.settimeout({p['timeout']:g}): a per-call limit kept by Python; "
                f"recv() raised TimeoutError and the connection itself was untouched ({silent}).")
    if method == "node_idle":
        return (f"Node's socket.setTimeout({p['timeout_ms']}): a JavaScript inactivity timer that "
                f"only emits 'timeout'; the socket stays open ({silent}).")
    opts = ", ".join(f"{k}={measured[k]}" for k in ("SO_KEEPALIVE", "TCP_KEEPIDLE", "TCP_KEEPINTVL",
                                                      "TCP_KEEPCNT") if k in measured)
    return (f"Node's socket.setKeepAlive(true, {p['initial_delay_ms']}) set {opts or 'options not readable'} "
            f"on its socket (read back with pidfd_getfd + getsockopt) ({silent}).")


def _waiting(fn, method: str, p: dict, progress: bool) -> dict:
    """``fn()``, with a progress bar counting the seconds meanwhile when the run may watch
    longer than 2 s (the bar closes when the run ends, usually before its window does)."""
    from concurrent.futures import ThreadPoolExecutor

    from ..base.progress import MIN_SECONDS, wait_for

    seconds = p["timeout_ms"] / 1000 + 1.0 if method == "node_idle" else _window(method, p)
    if not progress or seconds <= MIN_SECONDS:
        return fn()
    with ThreadPoolExecutor(1) as pool:
        return wait_for(pool.submit(fn), seconds, f"watching ({method})")


def _check(method: str, **params: Any) -> None:
    _validate(method, params)


def _model(method: str, **params: Any) -> None:
    """Where nothing can run: no result, the note says why (``predict`` gives the model)."""
    return None


#: What some methods need beyond a lab or root, read by the ladder before anything runs.
RULES = (
    Rule({"method": ("retransmissions",)}, needs=(Need.LAB,),
         why="tcp_retries2 is a per-network-namespace setting that tcplearn never changes on this machine"),
    Rule({"method": ("node_idle", "node_keepalive")}, needs=(Need.NODE,), why="the local end is real Node"),
)


@experiment(notebook="06", title="a peer that vanishes silently: which timeout notices, and when",
            needs=[Need.KERNEL, Need.CAPTURE], check=_check, model=_model, rules=RULES,
            calls=[Call(("none",), {"duration": 3}, "a silent peer that nothing notices, watched 3 s in a private lab"),
                   Call(("keepalive",), {"keepalive_time": 2, "keepalive_intvl": 1, "keepalive_probes": 2},
                        "keepalive (2 s idle, 1 s interval, 2 probes) against a silent peer in a private lab"),
                   Call(("user_timeout",), {"user_timeout_ms": 1500},
                        "TCP_USER_TIMEOUT 1500 ms with unacknowledged data, silent peer, private lab"),
                   Call(("retransmissions",), {"tcp_retries2": 3},
                        "tcp_retries2=3 in a private lab with unacknowledged data, silent peer"),
                   Call(("settimeout",), {"timeout": 1.0},
                        "Python's settimeout(1.0) and recv() against a silent peer in a private lab"),
                   Call(("node_idle",), {"timeout_ms": 1000},
                        "real Node's socket.setTimeout(1000) against a silent peer in a private lab")],
            notes={Where.LAB: "Ran in your private lab: the peer was silenced with a drop-all socket filter and "
                              "the segments were captured on the lab's loopback.",
                   Where.ROOT: "No private lab ({why}); ran on this machine as root, capturing its loopback."},
            show="show_dead_peer")
def dead_peer(place: Place, method: str, *, progress: bool = True, **params: Any) -> DeadPeerResult:
    """Open a loopback connection, make the peer vanish silently, and watch the local end.

    ``method`` is one of ``METHODS``; its keyword parameters and defaults are in
    ``PARAMS`` (e.g. ``dead_peer("keepalive", keepalive_time=2, keepalive_intvl=1,
    keepalive_probes=2)``).  Bad names or values raise ``ValueError`` saying what is
    accepted; no run watches longer than ``MAX_WINDOW`` seconds.  Where it runs is the
    ladder's choice: a private lab (with capture), else this machine as root (the socket
    filter that silences the peer needs ``CAP_NET_ADMIN``).  ``"retransmissions"`` needs
    the lab: ``tcp_retries2`` is per namespace, and the host's is never changed; without a
    lab (and for the Node methods without Node) the recorded lab run is shown instead, under
    one line saying why.  ``progress`` shows a bar while a run watches longer than 2 s.
    """
    p = _validate(method, params)
    predicted = predict(method, **p)
    node = node_executable() if method.startswith("node_") else None  # the ladder checked it is there
    run, args = (_run_node, (method, p, place.can_capture, node)) if node else (_run_python, (method, p,
                                                                                           place.can_capture))
    with place.settings(**({"tcp_retries2": p["tcp_retries2"]} if method == "retransmissions" else {})):
        out = _waiting(lambda: place.call(run, *args), method, p, progress)
    if method == "node_keepalive" and {"TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"} <= set(out["measured"]):
        m = out["measured"]
        predicted = {"detected_after": m["TCP_KEEPIDLE"] + m["TCP_KEEPCNT"] * m["TCP_KEEPINTVL"],
                     "probes": [m["TCP_KEEPIDLE"] + k * m["TCP_KEEPINTVL"] for k in range(m["TCP_KEEPCNT"])],
                     "from": "the options read back from Node's socket"}
    return DeadPeerResult(
        method=method, params=p, detected_after=out["detected_after"], error=out["error"],
        how=_how(method, p, out["measured"]),
        timeline_rows=out["timeline"], segments=out["segments"], events=out["events"],
        final_state=out["final_state"], predicted=predicted, measured=out["measured"],
        counters=out["counters"] if place.where is Where.LAB else {}, ports=tuple(out["ports"]),
    )
