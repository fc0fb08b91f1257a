"""One dead-peer run, in the lab or here: a connection whose peer goes silent, the local
end (a Python socket or real Node) watched through its ``/proc/net/tcp`` row and
captured until it notices or the window ends.  Each run function returns plain data.

How the peer is silenced (measured on Linux 6.18, 2 cores): a classic BPF socket filter
that drops everything (``SO_ATTACH_FILTER``, one instruction ``BPF_RET|BPF_K 0``) is
attached to the *peer's* socket.  Every segment for it is discarded by the socket
filter before TCP processes it, so the peer neither ACKs nor resets, ``lo`` stays up,
and the capture on ``lo`` sees every keepalive probe and retransmission.  On a TCP
socket it needs ``CAP_NET_ADMIN`` (measured: ``EPERM`` as ``nobody`` and as root without
capabilities, while UDP and Unix sockets take it; gVisor PR #14478 traces this to Linux
commit 5d39580f68e6).  Inside a private lab the user is root over the lab's network, so
it works there without root; on the machine itself it needs root.  Taking a lab's ``lo`` down instead gives
the same detection times
(keepalive 2/1/2: 4.07 s both ways; TCP_USER_TIMEOUT 1500 ms: 1.92 s both ways), but
the capture then sees nothing between the handshake and the end: segments sent on a
DOWN ``lo`` never reach the packet socket.  Before the peer is closed its filter is
removed and it is closed with ``SO_LINGER`` 0 (an RST); a peer closed while still
filtered would drop the RST answering its FIN and retransmit that FIN as an orphan.

So the lab is used whenever one can start : for the filter,
for the capture, and for ``tcp_retries2``, which is set per namespace.  Without a lab
the per-socket methods run on this machine's loopback as root,
captured there too; without a lab and without root nothing can be silenced, and
``dead_peer`` says so with ``PermissionError``.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import time

from ..base.kernel import netstat
from ..base.observe.procfs import parse_proc_net_tcp
from ..base.observe.tcpsocket import TIMER_NAMES
from ..base.peek import getsockopt_int, pidfd_getfd, socket_fd_of
from ..base.states import TcpState
from ..base.util import loopback_listener
from .dead_peer_model import _window
from .tools import node as node_tool
from .tools.silence import _abort, silence, unsilence

__all__ = ["run_python", "run_node"]


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


def run_python(method: str, p: dict, capture: bool) -> dict:
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


def run_node(method: str, p: dict, capture: bool, node: str) -> dict:
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
            raise RuntimeError(f"Node did not connect: {first!r}; "
                               f"{proc.stderr.read()[-300:]!r}")  # type: ignore[union-attr]
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
            node_tool.stop(proc)
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
