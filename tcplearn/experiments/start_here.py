"""Notebook 00's experiments: a first look at the kernel's TCP table, the private lab beside
this machine, and one captured connection.  Each cleans up everything it opened."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

from ..base import sysctl
from ..base.experiment import Call, Need, Where, experiment
from ..base.lab import Segment, write_pcap
from ..base.lab.pcap import writable_path
from ..base.observe import TcpSocket, sockets
from ..base.tables import segments_frame, sockets_frame
from ..base.util import loopback_host, loopback_listener

__all__ = ["first_look", "lab_side_by_side", "capture_one_connection", "CapturedConnection"]


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


def _host_only(name: str = "tcp_fin_timeout", value: object = 5):
    """Where no lab can start: no DataFrame, the note says why (and the host's value)."""
    return None


def _no_lab_note(why: str, arguments: dict) -> str:
    host = sysctl.read(sysctl.setting(arguments["name"]).short)
    shown = f" The host's value is {host!r}." if host is not None else ""
    return f"No private lab on this machine: {why}.{shown} Nothing was changed."


def _check_setting(name: str, value: object) -> None:
    sysctl.setting(name)


def _split(frame) -> dict:
    return frame.to_dict(orient="split")


def _from_split(record: dict, arguments: dict):
    import pandas as pd

    return pd.DataFrame(record["data"], index=record["index"], columns=record["columns"])


@experiment(notebook="00", title="a private lab's setting beside this machine's",
            needs=[Need.SETTINGS], check=_check_setting, model=_host_only,
            calls=[Call(("tcp_fin_timeout", 5), {}, "a private lab's tcp_fin_timeout read, set to 5 and read "
                                                   "again, beside the machine's")],
            to_record=_split, from_record=_from_split,
            notes={Where.MODEL: _no_lab_note, Where.ROOT: _no_lab_note})
def lab_side_by_side(place, name: str = "tcp_fin_timeout", value: object = 5):
    """The host's value of a setting beside a private lab's, before and after the lab
    changes it (a DataFrame).  Only a lab shows this live: as root without a lab, the
    ``Result`` holds no table and its note says why and what the host's value is; where
    neither a lab nor root is available, the run recorded in a Linux lab."""
    import pandas as pd

    spec = sysctl.setting(name)
    if place.lab is None:
        return None
    lab = place.lab
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


@dataclass
class CapturedConnection:
    """One connection's captured segments (each keeps its frame's bytes when captured live)
    and the server's port, which tells the two directions apart."""

    segments: list[Segment]
    server_port: int

    def table(self):
        """One row per segment: time, direction, flags, relative seq/ack, length."""
        return segments_frame(self.segments, server_port=self.server_port)

    def save_pcap(self, path: str = "00-handshake.pcap"):
        """Write the segments as a pcap file (Wireshark, ``tcpdump -nn -r``) and return its path:
        ``path``, or the temporary directory where ``path``'s folder cannot be written."""
        return write_pcap(self.segments, writable_path(path))

    def to_record(self) -> dict:
        return {"segments": [s.to_record() for s in self.segments], "server_port": self.server_port}

    @classmethod
    def from_record(cls, record: dict, arguments: dict | None = None) -> CapturedConnection:
        return cls([Segment(**s) for s in record["segments"]], record["server_port"])


@experiment(notebook="00", title="one connection opened and closed, its segments captured",
            needs=[Need.KERNEL, Need.CAPTURE],
            calls=[Call((), {}, "one loopback connection opened and closed in a private lab, captured on its "
                                "loopback")],
            show="show_captured")
def capture_one_connection(place) -> CapturedConnection:
    """Open and close one loopback connection and capture its segments: in a private lab
    where one can start, else on this machine's loopback as root (only that connection's
    segments are kept), else the connection recorded in a Linux lab.  A
    ``CapturedConnection``: its ``table()`` has one row per segment, ``save_pcap()`` writes
    the real frames for Wireshark."""
    port, segments = place.capture(_connect_once)
    return CapturedConnection([s for s in segments if port in (s.sport, s.dport)], port)
