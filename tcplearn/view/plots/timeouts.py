"""Timeouts on one time axis (notebook 03): Python's and Node's clients, and a connect nobody answers."""

from __future__ import annotations

from matplotlib.figure import Figure

from .style import _OI

__all__ = ["timeout_timeline", "syn_timeline"]


_EVENT_STYLE = {  # event -> (marker, colour, size)
    "send": ("v", _OI["black"], 60), "data": ("o", _OI["green"], 45),
    "write": ("^", _OI["blue"], 45), "timeout": ("X", _OI["vermillion"], 110),
    "eof": ("s", _OI["black"], 60), "end": ("p", _OI["orange"], 60), "close": ("D", _OI["grey"], 55),
}
#: The legend's words for an event kind, where its name alone is not enough.
_EVENT_LABEL = {"data": "data (bytes received)", "send": "send (the server)", "write": "write (the client)",
                "timeout": "timeout", "eof": "eof (Python: recv returned b'')",
                "end": "end (Node: the peer's FIN)", "close": "close (the client closed its socket)"}
#: Events drawn a little above their lane, so that one at the same moment as a timeout's
#: cross stays visible.
_EVENT_LIFT = {"write": 0.22}


def timeout_timeline(lanes: dict[str, list[dict]], *, title: str | None = None):
    """One lane per client (``{"lane name": events}``, events as the ``timeouts`` clients
    return them), on one time axis; each event kind has one marker.  Writes sit slightly
    above their lane so a timeout at the same moment does not hide them.  Returns the Figure."""
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(10, 0.9 * len(lanes) + 1.6))
    ax = fig.subplots()
    names = list(lanes)
    for y, name in enumerate(reversed(names)):
        ax.axhline(y, color="#dddddd", zorder=0)
        for kind in dict.fromkeys(e["event"] for e in lanes[name]):
            marker, color, size = _EVENT_STYLE.get(kind, ("o", _OI["grey"], 40))
            xs = [e["t"] for e in lanes[name] if e["event"] == kind]
            lift = _EVENT_LIFT.get(kind, 0.0)
            ax.scatter(xs, [y + lift] * len(xs), marker=marker, color=color, s=size, zorder=4 if lift else 3,
                       gid=f"events:{name}:{kind}")
    ax.set_yticks(range(len(names)), list(reversed(names)))
    ax.set_xlabel("seconds since connect")
    ax.set_ylim(-0.7, len(names) - 0.3)
    kinds = sorted({e["event"] for events in lanes.values() for e in events})
    handles = [Line2D([], [], linestyle="", marker=_EVENT_STYLE.get(k, ("o",))[0],
                      color=_EVENT_STYLE.get(k, ("o", _OI["grey"]))[1], label=_EVENT_LABEL.get(k, k))
               for k in kinds]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=min(len(handles), 4),
              fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title or "Python settimeout vs Node setTimeout")
    fig.tight_layout()
    return fig


def syn_timeline(result, *, title: str | None = None):
    """A ``connect_timeout`` result on one time axis: one lane per attempt, its captured SYNs
    (one marker each), and where it failed, labelled with what Python raised.  Returns the
    Figure."""
    fig = Figure(figsize=(10, 2.8))
    ax = fig.subplots()
    lanes = [("kernel", "no timeout"), ("python", f"timeout={result.attempts['python']['timeout']:g}")]
    for y, (key, _name) in enumerate(lanes):
        a = result.attempts[key]
        ax.axhline(y, color="#dddddd", zorder=0)
        syns = a.get("syns_at") or []
        ax.scatter(syns, [y] * len(syns), marker="|", s=300, linewidths=2.5, color=_OI["blue"], zorder=3,
                   gid=f"syns:{key}", label="SYN sent (captured)" if key == "kernel" and syns else None)
        err = "" if a["errno"] is None else f", errno {a['errno']}"
        ax.scatter([a["after_s"]], [y], marker="X", s=120, color=_OI["vermillion"], zorder=4,
                   gid=f"failed:{key}")
        ax.annotate(f"{a['raised']}{err}\nafter {a['after_s']:.2f} s", (a["after_s"], y), xytext=(8, 8),
                    textcoords="offset points", fontsize=8, color=_OI["vermillion"], gid=f"label:{key}")
    ax.set_yticks(range(len(lanes)), [f"create_connection(addr)\n{name}" for _, name in lanes])
    end = max(a["after_s"] for a in result.attempts.values())
    ax.set_xlim(-0.3, end * 1.25 + 0.5)
    ax.set_ylim(-0.6, len(lanes) - 0.2)
    ax.set_xlabel("seconds since connect() was called")
    ax.grid(axis="x", alpha=0.3)
    if any(result.attempts[k].get("syns_at") for k, _ in lanes):
        ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or f"A connect nobody answers: tcp_syn_retries={result.tcp_syn_retries}, "
                          f"tcp_syn_linear_timeouts={result.tcp_syn_linear_timeouts}")
    fig.tight_layout()
    return fig
