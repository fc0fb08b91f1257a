"""A peer that vanished silently (notebook 06): each run of ``dead_peer`` as one lane of a timeline."""

from __future__ import annotations

from matplotlib.figure import Figure

from ...base.states import TcpState
from .style import _OI, STATE_STYLE

__all__ = ["dead_peer_lane", "dead_peer_timeline"]

#: What the local end sent, as captured, and what the program saw: kind -> (marker, colour, size, legend).
_DEAD_PEER_STYLE = {
    "data": ("s", _OI["blue"], 50, "1 byte of data sent"),
    "tail loss probe": ("h", _OI["yellow"], 70, "tail loss probe, RFC 8985 (captured)"),
    "retransmission": ("o", _OI["vermillion"], 50, "timeout retransmission (captured)"),
    "keepalive probe": ("^", _OI["orange"], 70, "keepalive probe (captured)"),
    "fin": ("D", _OI["grey"], 45, "FIN: the program closed it"),
    "recv() raised TimeoutError": ("X", _OI["purple"], 110, "Python: recv() raised TimeoutError"),
    "timeout": ("P", _OI["sky"], 110, "Node: 'timeout' event"),
}
_GAVE_UP = ("*", _OI["black"], 220, "noticed: the kernel gave up (ETIMEDOUT)")
_PREDICTED = ("*", "none", 220, "when its settings predict")


def dead_peer_lane(result) -> str:
    """A short lane name for one ``dead_peer`` run: its method and settings."""
    p = result.params
    return {
        "none": lambda: "nothing set",
        "settimeout": lambda: f"Python settimeout({p['timeout']!r})",
        "node_idle": lambda: f"Node setTimeout({p['timeout_ms']})",
        "keepalive": lambda: (f"keepalive {p['keepalive_time']} s idle\n+ {p['keepalive_probes']} probes "
                              f"× {p['keepalive_intvl']} s"),
        "user_timeout": lambda: f"TCP_USER_TIMEOUT {p['user_timeout_ms']} ms",
        "retransmissions": lambda: f"tcp_retries2={p['tcp_retries2']}",
        "node_keepalive": lambda: f"Node setKeepAlive(true, {p['initial_delay_ms']})",
    }[result.method]()


#: How far above (+) or below (-) its lane a gap between resends is measured: its bracket, then
#: its label.  Gaps alternate sides, so the short first ones each get room of their own.
_GAP_BRACKET, _GAP_TEXT, _GAP_TICK = 0.2, 0.23, 0.05
#: The narrowest an orphan's bar is drawn, in pixels (at the figure's 100 dpi), so that one the
#: kernel held for a few hundredths of a second stays visible next to the FIN's marker.
_ORPHAN_MIN_PX = 12.0


def _measured_gap(ax, a: float, b: float, side: int, y: float, text: str, color: str, gid: str):
    """A dimension line from ``a`` to ``b`` ``side`` (+1 above, -1 below) lane ``y``, with end
    ticks towards the lane and ``text`` centred beyond it: a label that sits by its own gap."""
    yb = y + side * _GAP_BRACKET
    ax.plot([a, a, b, b], [yb - side * _GAP_TICK, yb, yb, yb - side * _GAP_TICK], color=color, linewidth=0.8,
            solid_capstyle="butt", zorder=2, gid=f"{gid}-span")
    ax.text((a + b) / 2, y + side * _GAP_TEXT, text, ha="center", va="bottom" if side > 0 else "top",
            fontsize=7.5, color=color, zorder=4, gid=gid)


def _gaps(ax, y: int, name: str, sent: list[float], detected_after: float | None) -> None:
    """Every gap between resends measured by its own bracket, alternately above and below the
    lane, and the last wait before the kernel gave up above it (below sits the predicted star)."""
    for i, (a, b) in enumerate(zip(sent, sent[1:], strict=False)):
        _measured_gap(ax, a, b, 1 if i % 2 == 0 else -1, y, f"+{b - a:.2f}", _OI["vermillion"], f"gap:{name}")
    if len(sent) > 1 and detected_after is not None:
        _measured_gap(ax, sent[-1], detected_after, 1, y, f"last wait +{detected_after - sent[-1]:.2f} s",
                      "black", f"wait:{name}")


def dead_peer_timeline(results, *, title: str | None = None, footnote: str | None = None):
    """Runs of ``dead_peer`` on one time axis, one lane each, from the moment the peer went silent.

    ``results`` is ``{"lane name": result}`` or a list of results (lanes named by
    ``dead_peer_lane``); a result may be a ``Result`` holding a ``DeadPeerResult``, and
    one holding nothing (a one-line notice) is left out.  Each lane draws the connection
    as a bar while the kernel keeps it, what the local end sent as captured (data, keepalive
    probes, the tail loss probe drawn apart from the timeout retransmissions, with every gap
    between resends measured by a bracket of its own, alternately above and below the lane,
    and the last wait before the kernel gave up, so the exponential backoff shows), after
    ``close()`` the orphan the kernel still holds (e.g. FIN-WAIT-1 retransmitting its FIN) as a
    hatched bar in that state's colour, the whole lane high and at least ``_ORPHAN_MIN_PX``
    wide, what the program saw (Python's ``TimeoutError``, Node's ``'timeout'``), the moment
    the kernel gave up (a filled star) beside the moment its settings predict (a hollow one),
    or, when nothing noticed, "still ESTABLISHED".  ``footnote`` is printed under the axis.
    Artists carry gids (``segments:LANE:KIND``, ``events:LANE:EVENT``, ``gave-up:LANE``,
    ``predicted:LANE``, ``alive:LANE``, ``orphan:LANE``, brackets ``gap:LANE-span`` and
    ``wait:LANE-span``; texts ``gap:LANE``, ``wait:LANE``, ``still:LANE``);
    ``fig.tcplearn_orphans`` maps a lane to the span (s) ``/proc`` showed its orphan."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if not isinstance(results, dict):
        results = {dead_peer_lane(getattr(r, "value", r)): r for r in results
                   if getattr(r, "value", r) is not None}
    runs = {name: getattr(r, "value", r) for name, r in results.items()}
    runs = {name: r for name, r in runs.items() if r is not None}
    if not runs:
        raise ValueError("dead_peer_timeline() needs at least one run with a result")
    fig = Figure(figsize=(10.5, 0.95 * len(runs) + 2.2))
    ax = fig.subplots()
    used: dict[str, tuple] = {}
    right = 0.0
    orphans: dict[str, tuple] = {}  # lane -> (y, from, to, first state): drawn once the axis is known
    notes: list[tuple] = []  # (y, lane, text, x): "nothing noticed", placed after the orphan's bar
    for y, (name, r) in enumerate(reversed(list(runs.items()))):
        probes = set(r.loss_probes())
        seen = [dict(s, kind="tail loss probe") if s["kind"] == "retransmission" and s["t"] in probes else s
                for s in r.segments or () if s["from"] == "local" and s["kind"] in _DEAD_PEER_STYLE]
        events = [e for e in r.events if e["event"] in _DEAD_PEER_STYLE]
        times = [row["t"] for row in r.timeline_rows] + [s["t"] for s in seen] + [e["t"] for e in events]
        end = r.detected_after if r.detected_after is not None else max(times, default=0.0)
        right = max(right, end, r.predicted.get("detected_after") or 0.0)
        # ESTABLISHED until /proc shows another state; after close() the kernel may still hold an
        # orphan (FIN-WAIT-1 retransmitting its FIN): drawn hatched, as long as /proc showed it
        left_est = [row["t"] for row in r.timeline_rows if row["state"] not in ("ESTABLISHED", "CLOSED")]
        est_end = min([end] + left_est[:1])
        ax.plot([0, est_end], [y, y], color=STATE_STYLE[TcpState.ESTABLISHED].color, linewidth=7, alpha=0.3,
                solid_capstyle="butt", zorder=1, gid=f"alive:{name}")
        orphan_states = list(dict.fromkeys(row["state"] for row in r.timeline_rows
                                           if row["state"] not in ("ESTABLISHED", "CLOSED")))
        if left_est:
            orphans[name] = (y, est_end, max(left_est), orphan_states[0])
        for kind in dict.fromkeys(s["kind"] for s in seen):
            marker, color, size, label = used.setdefault(kind, _DEAD_PEER_STYLE[kind])
            xs = [s["t"] for s in seen if s["kind"] == kind]
            ax.scatter(xs, [y] * len(xs), marker=marker, color=color, s=size, zorder=3, edgecolors="black",
                       linewidths=0.5, gid=f"segments:{name}:{kind}")
        sent = sorted(s["t"] for s in seen if s["kind"] in ("data", "tail loss probe", "retransmission"))
        _gaps(ax, y, name, sent, r.detected_after)
        for kind in dict.fromkeys(e["event"] for e in events):
            marker, color, size, label = used.setdefault(kind, _DEAD_PEER_STYLE[kind])
            xs = [e["t"] for e in events if e["event"] == kind]
            ax.scatter(xs, [y] * len(xs), marker=marker, color=color, s=size, zorder=4,
                       gid=f"events:{name}:{kind}")
        predicted = r.predicted.get("detected_after")
        if predicted is not None:
            used.setdefault("predicted", _PREDICTED)
            ax.scatter([predicted], [y - 0.28], marker="*", facecolors="none", edgecolors="black", s=160,
                       linewidths=0.9, zorder=4, gid=f"predicted:{name}")
        if r.detected_after is not None:
            used.setdefault("gave up", _GAVE_UP)
            ax.scatter([r.detected_after], [y], marker="*", color="black", s=220, zorder=5,
                       gid=f"gave-up:{name}")
            ax.annotate(f"{r.error or 'noticed'} at {r.detected_after:.2f} s", (r.detected_after, y),
                        xytext=(8, -3), textcoords="offset points", fontsize=8, va="top")
        else:
            closed = any(s["kind"] == "fin" for s in seen)
            text = (f"nothing noticed: {r.final_state} until the program closed it" if closed
                    else f"nothing noticed: still {r.final_state} →")
            if closed and orphan_states:
                timers = sorted({row["timer"] for row in r.timeline_rows if row["state"] in orphan_states})
                text += (f";\nthen {', '.join(orphan_states).replace('_', '-')} "
                         f"(timer: {', '.join(timers)}), held by the kernel")
            notes.append((y, name, text, max([end] + left_est)))
    ax.set_yticks(range(len(runs)), list(reversed(list(runs))), fontsize=9)
    ax.set_ylim(-0.7, len(runs) - 0.3)
    ax.set_xlim(-0.2, right * 1.25 + 0.5)
    # the axis is known: an orphan the kernel held for a blink is still drawn a visible width
    x0, x1 = ax.get_xlim()
    min_width = _ORPHAN_MIN_PX / (fig.dpi * fig.get_figwidth() * ax.get_position().width) * (x1 - x0)
    bar_end = {}
    for name, (y, start, stop, state) in orphans.items():
        style = STATE_STYLE[TcpState[state]]
        width = max(stop - start, min_width)
        ax.barh(y, width, left=start, height=0.44, color=style.color, alpha=0.85, edgecolor="black",
                hatch="////", linewidth=0.8, zorder=2, gid=f"orphan:{name}")
        bar_end[name] = start + width
        used.setdefault(f"orphan:{state}", ("orphan", style.color, 0, f"after close(): "
                                            f"{TcpState[state].label}, held by the kernel (/proc)"))
    for y, name, text, x in notes:
        ax.annotate(text, (max(x, bar_end.get(name, x)), y), xytext=(6, 0), textcoords="offset points",
                    fontsize=8, va="center", gid=f"still:{name}")
    ax.set_xlabel("seconds since the peer went silent (red numbers: seconds between resends)")
    ax.grid(axis="x", alpha=0.3)
    handles = [Line2D([], [], color=STATE_STYLE[TcpState.ESTABLISHED].color, linewidth=7, alpha=0.3,
                      label="ESTABLISHED: the kernel keeps the connection")]
    for marker, color, _size, label in used.values():
        if marker == "orphan":
            handles.append(Patch(facecolor=color, alpha=0.85, edgecolor="black", hatch="////", label=label))
            continue
        hollow = color == "none"
        handles.append(Line2D([], [], linestyle="", marker=marker, markersize=9 if marker == "*" else 7,
                              markerfacecolor="none" if hollow else color,
                              markeredgecolor="black" if hollow or marker in "so^Dh" else color, label=label))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=8)
    ax.set_title(title or "A peer that vanished silently: which timeout noticed, and when")
    if footnote:
        fig.text(0.01, 0.005, footnote, fontsize=8, ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.05 if footnote else 0, 1, 1))
    fig.tcplearn_orphans = {name: (start, stop) for name, (_, start, stop, _) in orphans.items()}
    return fig
