"""Kernel records as pandas DataFrames, the way every notebook shows them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lab.segments import Segment
from .observe.tcpsocket import TcpSocket

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["sockets_frame", "segments_frame"]


def sockets_frame(rows: list[TcpSocket], roles: dict[int, str] | None = None) -> pd.DataFrame:
    """``TcpSocket`` rows as a DataFrame; ``roles`` maps a local port to a name ("client").
    A socket with no timer running shows no time left (``None``), not 0.0."""
    import pandas as pd

    frame: pd.DataFrame = pd.DataFrame(
        [{
            "role": (roles or {}).get(r.local_port, ""),
            "state": r.state.label,
            "local": f"{r.local_address}:{r.local_port}",
            "remote": f"{r.remote_address}:{r.remote_port}",
            "timer": r.timer,
            "timer left (s)": None if r.timer in ("off", "") else r.timer_remaining,
            "inode": r.inode,
        } for r in rows]
    )
    return frame


def segments_frame(segments: list[Segment], server_port: int | None = None) -> pd.DataFrame:
    """Segments as a DataFrame; with ``server_port``, each row says who sent it."""
    import pandas as pd

    def who(s: Segment) -> str:
        if server_port is None:
            return f"{s.sport} → {s.dport}"
        return "server → client" if s.sport == server_port else "client → server"

    frame: pd.DataFrame = pd.DataFrame(
        [{"t (ms)": round(s.t * 1000, 3), "direction": who(s), "flags": s.flags,
          "seq": s.seq, "ack": s.ack, "len": s.length} for s in segments]
    )
    return frame
