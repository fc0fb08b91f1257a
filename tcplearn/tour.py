"""One-call experiments for ``00-start-here``: a first look at the kernel's TCP table and
at the private lab.  Each returns a pandas DataFrame and cleans up everything it opened."""

from __future__ import annotations

import socket
import time

from . import sysctl
from ._util import loopback_host, loopback_listener
from .lab import PrivateLab, Segment, lab_available
from .observe import TcpSocket, sockets

__all__ = ["first_look", "lab_side_by_side", "capture_one_connection", "segments_frame",
           "sockets_frame", "Notice"]


class Notice(str):
    """A one-line message a notebook shows instead of a result it cannot produce here,
    always starting with a capital letter (it often begins with a lower-case reason)."""

    def __new__(cls, text: str) -> Notice:
        return super().__new__(cls, text[:1].upper() + text[1:])

    def _repr_markdown_(self) -> str:
        return f"> **Note:** {self}"


def sockets_frame(rows: list[TcpSocket], roles: dict[int, str] | None = None):
    """``TcpSocket`` rows as a DataFrame; ``roles`` maps a local port to a name ("client")."""
    import pandas as pd

    return pd.DataFrame(
        [{
            "role": (roles or {}).get(r.local_port, ""),
            "state": r.state.label,
            "local": f"{r.local_address}:{r.local_port}",
            "remote": f"{r.remote_address}:{r.remote_port}",
            "timer": r.timer,
            "timer left (s)": r.timer_remaining,
            "inode": r.inode,
        } for r in rows]
    )


def _settled(port: int, wanted: set[tuple[int, int]], timeout: float = 2.0) -> list[TcpSocket]:
    """This port's rows, polled until every wanted (local port, remote port) pair is there."""
    deadline = time.monotonic() + timeout
    while True:
        rows = [r for r in sockets(port=port) if (r.local_port, r.remote_port) in wanted]
        if {(r.local_port, r.remote_port) for r in rows} >= wanted or time.monotonic() > deadline:
            return rows
        time.sleep(0.01)


def first_look(family: int = socket.AF_INET):
    """Open one loopback connection and show what the kernel's table holds for it.

    Returns a DataFrame with a row per socket on the server's port (the listener, the
    client's end, the server's end), read from the kernel while the connection is open.
    Everything is closed before returning.
    """
    host = loopback_host(family)
    with loopback_listener(family) as listener:
        port = listener.getsockname()[1]
        with socket.create_connection((host, port)) as client:
            server, _ = listener.accept()
            with server:
                cport = client.getsockname()[1]
                # only this connection's rows: the port numbers may also carry an older
                # connection's TIME-WAIT
                mine = {(port, 0): "listener", (cport, port): "client", (port, cport): "server"}
                rows = _settled(port, set(mine))
                frame = sockets_frame(rows)
                frame["role"] = [mine[(r.local_port, r.remote_port)] for r in rows]
    return frame.sort_values("role", ignore_index=True)


def lab_side_by_side(name: str = "tcp_fin_timeout", value: object = 5):
    """The host's value of a setting beside a private lab's, before and after the lab
    changes it (a DataFrame), or a one-line ``Notice`` saying why no lab can start here."""
    import pandas as pd

    spec = sysctl.setting(name)
    ok, why = lab_available()
    if not ok:
        host = sysctl.read(spec.short)
        value = f" The host's value is {host!r}." if host is not None else ""
        return Notice(f"No private lab on this machine: {why}.{value} Nothing was changed.")
    with PrivateLab() as lab:
        lab_before = lab.read_sysctl(spec.short)
        lab.sysctl(**{spec.short: value})
        lab_after = lab.read_sysctl(spec.short)
        host_during = sysctl.read(spec.short)
    return pd.DataFrame(
        {"this machine": [host_during, sysctl.read(spec.short)],
         "private lab": [lab_before, lab_after]},
        index=[f"{spec.name} when the lab started", f"after lab.sysctl({spec.short}={value!r})"],
    )


def _connect_once() -> int:
    with loopback_listener() as listener:
        with socket.create_connection(listener.getsockname()):
            server, _ = listener.accept()
            server.close()
        return listener.getsockname()[1]


def capture_one_connection():
    """Open and close one loopback connection and capture its segments.

    In a private lab where one can start; else on this machine's loopback when root
    (only that connection's segments are kept); else the connection recorded in a Linux
    lab, as ``traces.Recorded`` with a one-line note.  Returns a DataFrame, one row per
    segment: time, direction, flags, relative seq/ack, length.
    """
    from .traces import why_not_live

    why = why_not_live()
    if why:
        return _recorded_capture(why)
    ok, why = lab_available()
    if ok:
        with PrivateLab() as lab:
            port, segments = lab.run(_connect_once, capture=True)
        return segments_frame(segments, server_port=port)
    if sysctl.is_root():
        from .lab.capture import Capture

        try:
            with Capture("lo") as cap:
                port = _connect_once()
                cap.settle()
        except OSError as exc:
            return _recorded_capture(f"{why}, and capturing as root failed: {exc}")
        mine = [s for s in cap.segments if port in (s.sport, s.dport)]
        return segments_frame(mine, server_port=port)
    return _recorded_capture(f"{why}, and you are not root, so nothing can be captured")


def _recorded_capture(why: str):
    import pandas as pd

    from . import traces

    trace, rows = traces.recorded_run("one_connection", "capture_one_connection")
    return traces.Recorded(pd.DataFrame(rows), traces.note(trace, why))


def segments_frame(segments: list[Segment], server_port: int | None = None):
    """Segments as a DataFrame; with ``server_port``, each row says who sent it."""
    import pandas as pd

    def who(s: Segment) -> str:
        if server_port is None:
            return f"{s.sport} → {s.dport}"
        return "server → client" if s.sport == server_port else "client → server"

    return pd.DataFrame(
        [{"t (ms)": round(s.t * 1000, 3), "direction": who(s), "flags": s.flags,
          "seq": s.seq, "ack": s.ack, "len": s.length} for s in segments]
    )
