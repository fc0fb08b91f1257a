"""Figures: the RFC 9293 state diagram drawn from ``TRANSITIONS``, and sequence diagrams.

Every figure is returned, never shown here: figures are plain ``matplotlib.figure.Figure``
objects, not registered with pyplot, so a notebook shows each once.  Every TCP state has one visual identity
(``STATE_STYLE``: a colour from the Okabe-Ito colour-blind-safe palette, a line style
and a marker) used by every plot of the series.  Arrows carry a ``gid`` naming what
they draw, so tests can check a figure's content.
"""

from __future__ import annotations

from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from ..base.states import TRANSITIONS, Event, TcpState

__all__ = ["STATE_STYLE", "StateStyle", "state_diagram", "sequence_diagram", "legend_handles",
           "countdown_plot", "myth_plot", "simulation_diagram", "timeout_timeline", "counts_plot", "load_plot"]


def _png(fig: Figure) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def _register_with_ipython() -> None:
    """Let a notebook show a returned Figure as a picture.  Figures here are not made by
    pyplot, so nothing else registers IPython's PNG formatter for them."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["image/png"].for_type(Figure, _png)


_register_with_ipython()


@dataclass(frozen=True)
class StateStyle:
    color: str
    linestyle: str
    marker: str
    text: str = "black"


_OI = {"black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73",
       "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7",
       "grey": "#999999"}

#: One visual identity per state, used by every figure of the series.
STATE_STYLE: dict[TcpState, StateStyle] = {
    TcpState.ESTABLISHED: StateStyle(_OI["green"], "-", "o", "white"),
    TcpState.SYN_SENT: StateStyle(_OI["sky"], "--", "^"),
    TcpState.SYN_RECEIVED: StateStyle(_OI["blue"], "--", "v", "white"),
    TcpState.FIN_WAIT_1: StateStyle(_OI["orange"], "-", "s"),
    TcpState.FIN_WAIT_2: StateStyle(_OI["vermillion"], "-", "D", "white"),
    TcpState.TIME_WAIT: StateStyle(_OI["purple"], "-", "P"),
    TcpState.CLOSED: StateStyle(_OI["black"], ":", "x", "white"),
    TcpState.CLOSE_WAIT: StateStyle(_OI["yellow"], "-.", "h"),
    TcpState.LAST_ACK: StateStyle(_OI["orange"], "-.", "p"),
    TcpState.LISTEN: StateStyle(_OI["sky"], "-", "*"),
    TcpState.CLOSING: StateStyle(_OI["purple"], "--", "X"),
    TcpState.NEW_SYN_RECV: StateStyle(_OI["blue"], ":", "v", "white"),
    TcpState.BOUND_INACTIVE: StateStyle(_OI["grey"], ":", "."),
}


def legend_handles(states=None):
    """Line handles for a legend of ``states`` (default: the RFC states) in their styles."""
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=STATE_STYLE[s].color, linestyle=STATE_STYLE[s].linestyle,
                   marker=STATE_STYLE[s].marker, label=s.label) for s in (states or TcpState.rfc_states())]


# ---------------------------------------------------------------- the state diagram

# Laid out as RFC 9293 Figure 5: opening at the top, ESTABLISHED in the middle, the
# active close down the left, the passive close down the right, TIME-WAIT at the bottom.
# Like the figure, CLOSED appears twice: at the top (start) and bottom right (end).
_POS = {
    TcpState.CLOSED: (4.0, 10.0),
    TcpState.LISTEN: (4.0, 8.2),
    TcpState.SYN_RECEIVED: (0.0, 6.6),
    TcpState.SYN_SENT: (8.0, 6.6),
    TcpState.ESTABLISHED: (4.0, 5.0),
    TcpState.FIN_WAIT_1: (0.0, 3.4),
    TcpState.CLOSE_WAIT: (8.0, 3.4),
    TcpState.FIN_WAIT_2: (0.0, 1.5),
    TcpState.CLOSING: (4.0, 1.9),
    TcpState.LAST_ACK: (8.0, 1.5),
    TcpState.TIME_WAIT: (4.0, 0.0),
}
_CLOSED_END = (8.0, 0.0)
_BOX_W, _BOX_H = 1.7, 0.62
_RST_EVENTS = (Event.ABORT, Event.RCV_RST)
# Curvature for arcs that would otherwise overlap their reverse or a sibling.
_RAD = {
    (TcpState.CLOSED, Event.PASSIVE_OPEN): 0.3,
    (TcpState.LISTEN, Event.CLOSE_NO_TCB): 0.3,
    (TcpState.LISTEN, Event.SEND): -0.15,
    (TcpState.SYN_SENT, Event.RCV_SYN): 0.12,
    (TcpState.CLOSED, Event.ACTIVE_OPEN): -0.3,
    (TcpState.SYN_SENT, Event.CLOSE_NO_TCB): 0.1,
    (TcpState.FIN_WAIT_1, Event.RCV_FIN_ACK): 0.25,
}


def _where(state: TcpState, target_of: TcpState | None = None) -> tuple[float, float]:
    if state is TcpState.CLOSED and target_of is not None and _POS[target_of][1] < 5.5:
        return _CLOSED_END
    return _POS[state]


def _box(ax, xy, state: TcpState, highlight: str | None) -> None:
    style = STATE_STYLE[state]
    x, y = xy
    ax.add_patch(FancyBboxPatch((x - _BOX_W / 2, y - _BOX_H / 2), _BOX_W, _BOX_H,
                                boxstyle="round,pad=0.02,rounding_size=0.12",
                                facecolor=style.color, edgecolor="black",
                                linewidth=3.5 if highlight else 1.0, zorder=3,
                                gid=f"state:{state.name}" + (":highlight" if highlight else "")))
    ax.text(x, y, state.label, ha="center", va="center", fontsize=9, fontweight="bold",
            color=style.text, zorder=4)
    if highlight:
        ax.annotate(highlight, (x, y + _BOX_H / 2), xytext=(0, 9), textcoords="offset points",
                    ha="center", fontsize=9, fontweight="bold", color="black", zorder=5,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "#ffffff", "ec": "black"})


def state_diagram(highlight: dict[TcpState, str] | None = None, *, show_rst: bool = True,
                  title: str = "RFC 9293 TCP state diagram (drawn from tcplearn.TRANSITIONS)"):
    """Draw the RFC 9293 state machine from ``TRANSITIONS``, laid out like its Figure 5.

    ``highlight`` maps states to labels shown on them, e.g.
    ``{TcpState.TIME_WAIT: "client", TcpState.CLOSED: "server"}`` (two ends in one
    state share a label: ``"client + server"``).  Arcs of the figure are solid with
    their RFC labels; arcs the figure omits but the text defines (abort and RST, the
    FIN+ACK shortcut) are dashed.  Returns the matplotlib Figure.
    """
    highlight = dict(highlight or {})
    fig = Figure(figsize=(11, 11))  # not registered with pyplot: shown once, when returned
    ax = fig.subplots()
    ax.set_xlim(-1.4, 9.4)
    ax.set_ylim(-0.8, 10.8)
    ax.set_axis_off()
    ax.set_title(title, fontsize=12)
    for state, xy in _POS.items():
        _box(ax, xy, state, highlight.get(state))
    _box(ax, _CLOSED_END, TcpState.CLOSED, None)
    drawn = []
    for state, event, target in TRANSITIONS.arcs():
        if event in _RST_EVENTS and not show_rst:
            continue
        start, end = _where(state), _where(target, target_of=state)
        rst = event in _RST_EVENTS
        rad = _RAD.get((state, event), 0.0)
        if rst:
            rad = 0.18 if event is Event.ABORT else -0.18
        arrow = FancyArrowPatch(
            start, end, arrowstyle="-|>", mutation_scale=12,
            connectionstyle=f"arc3,rad={rad}",
            linestyle="--" if not event.in_figure else "-",
            color="#888888" if rst else "#222222", linewidth=0.8 if rst else 1.3,
            shrinkA=24, shrinkB=24, zorder=2, gid=f"arc:{state.name}:{event.name}:{target.name}",
        )
        ax.add_patch(arrow)
        drawn.append((state, event, target))
        if not rst:
            mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
            dx, dy = end[0] - start[0], end[1] - start[1]
            # arc3 bulges by rad/2 of the chord; put a curved arc's label just outside it
            mx -= rad * dy * 0.5
            my += rad * dx * 0.5
            if rad:
                norm = (dx * dx + dy * dy) ** 0.5 or 1.0
                side = 0.45 if rad < 0 else -0.45
                mx += side * dy / norm
                my -= side * dx / norm
            ax.text(mx, my, event.value.replace(" / ", "\n"), fontsize=7, ha="center", va="center",
                    color="#222222", zorder=4,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85})
    if show_rst:
        ax.text(9.3, -0.7, "dashed grey: ABORT / snd RST and rcv RST → CLOSED\n"
                "(RFC 9293 §3.5.2, §3.10.7.4; not drawn in Figure 5)",
                fontsize=7, ha="right", va="bottom", color="#555555")
    fig.tcplearn_arcs = drawn  # what was drawn, for tests and curious readers
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- the sequence diagram

_LANE = {"client": 0.0, "server": 1.0}


def sequence_diagram(history, segments_by_step=None, *, server_port: int | None = None,
                     title: str | None = None):
    """Draw a connection's exchange: the client's and the server's timelines, one arrow per
    segment, and the states the kernel reported for both ends after every step.

    ``history`` is ``ConnectionPair.history``, or a ``CloseRun`` (whose captured segments
    and server port are then used).  Without captured segments the arrows are what
    RFC 9293 says each step sends, and the title says so; with them (one list of
    ``Segment`` per step, and the server's port to tell directions apart) every arrow
    is a real captured segment with its flags and relative seq/ack.  Returns the Figure.
    """
    if hasattr(history, "history"):
        run = history
        history, segments_by_step, server_port = run.history, run.segments_by_step, run.server_port
    real = segments_by_step is not None
    if real and server_port is None:
        raise ValueError("captured segments need server_port= to tell the two directions apart")
    rows: list[tuple] = []
    for i, step in enumerate(history):
        if real:
            for seg in segments_by_step[i]:
                sender = "server" if seg.sport == server_port else "client"
                detail = f"seq={seg.seq} ack={seg.ack}" + (f" len={seg.length}" if seg.length else "")
                rows.append(("seg", sender, seg.flags, detail))
        else:
            for sender, flags in step.segments:
                rows.append(("seg", sender, "data" if flags == "DATA" else flags, ""))
        rows.append(("step", step))
    height = max(4.0, 0.42 * len(rows) + 1.2)
    fig = Figure(figsize=(9.5, height))
    ax = fig.subplots()
    ax.set_xlim(-0.75, 1.75)
    ax.set_ylim(len(rows) + 0.2, -1.3)
    ax.set_axis_off()
    for name, x in _LANE.items():
        ax.plot([x, x], [-0.4, len(rows)], color="#444444", linewidth=1.2, zorder=1)
        ax.text(x, -0.7, name, ha="center", va="bottom", fontsize=11, fontweight="bold")
    n_arrows = 0
    for y, row in enumerate(rows):
        if row[0] == "seg":
            _, sender, flags, detail = row
            x0 = _LANE[sender]
            lost = flags.endswith("(lost)")
            # A lost segment stops halfway, dashed, with a cross where it vanished.
            x1 = 0.5 if lost else 1.0 - x0
            arrow = FancyArrowPatch((x0, y), (x1, y + (0.28 if lost else 0.55)),
                                    arrowstyle="-" if lost else "-|>", mutation_scale=13,
                                    color="#b2182b" if ("RST" in flags or lost) else "#222222",
                                    linestyle="--" if lost else "-",
                                    linewidth=1.4, zorder=2, gid=f"segment:{n_arrows}:{sender}:{flags}")
            ax.add_patch(arrow)
            if lost:
                ax.text(x1, y + 0.28, "✗", color="#b2182b", ha="center", va="center", fontsize=14, zorder=5)
            n_arrows += 1
            ax.text(0.5 if not lost else 0.5 + (0.22 if x0 == 0 else -0.22), y + 0.1 if lost else y + 0.22,
                    flags + (f"  {detail}" if detail else ""), ha="center", va="center",
                    fontsize=8.5, zorder=4,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.9})
        else:
            step = row[1]
            who = step.action if step.actor == "both" else f"{step.actor}: {step.action}"
            ax.text(0.5, y + 0.35, who, ha="center", va="center", fontsize=8, style="italic", color="#333333")
            for end, x, state in (("client", -0.05, step.client_state), ("server", 1.05, step.server_state)):
                style = STATE_STYLE[state]
                ax.text(x, y + 0.35, state.label, ha="right" if end == "client" else "left", va="center",
                        fontsize=8.5, fontweight="bold", color=style.text, zorder=4,
                        bbox={"boxstyle": "round,pad=0.25", "fc": style.color, "ec": "black", "lw": 0.6},
                        gid=f"state:{end}:{state.name}")
    source = "captured on the loopback" if real else "what RFC 9293 says each step sends"
    ax.set_title(title or f"Segments: {source}. States: read from the kernel after each step.", fontsize=10)
    fig.tcplearn_segments = n_arrows
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- TIME-WAIT figures


def countdown_plot(countdown, title: str = "TIME-WAIT: the kernel's own timer, read live"):
    """The kernel's TIME-WAIT timer over time, from ``timewait.sample_countdown``."""
    style = STATE_STYLE[TcpState.TIME_WAIT]
    fig = Figure(figsize=(8, 4))
    ax = fig.subplots()
    tw = countdown[countdown["state"] == "TIME_WAIT"]
    ax.plot(tw["t"], tw["timer_remaining"], color=style.color, linestyle=style.linestyle,
            marker=style.marker, label="timer left (kernel)", gid="countdown")
    gone = countdown[countdown["state"] == "CLOSED"]
    if len(gone):
        ax.axvline(gone["t"].iloc[0], color="black", linestyle=":", label="gone from the table")
    ax.set_xlabel("seconds since the socket entered TIME-WAIT")
    ax.set_ylabel("seconds left on the kernel's timer")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def myth_plot(table, fin_timeout: int):
    """The timers of ``timewait.myth_test``: an orphaned FIN-WAIT-2, a TIME-WAIT, and an
    orphaned FIN-WAIT-2 whose peer's FIN arrives midway.  Each reading is drawn in the
    style of the state it was in; the lines are labelled with the socket they belong to."""
    fig = Figure(figsize=(9, 4.6))
    ax = fig.subplots()
    for name in dict.fromkeys(table["socket"]):
        rows = table[(table["socket"] == name) & (table["state"] != "CLOSED")]
        parts = [part for _, part in rows.groupby((rows["state"] != rows["state"].shift()).cumsum())]
        for part in parts:
            style = STATE_STYLE[TcpState[part["state"].iloc[0]]]
            ax.plot(part["t"], part["timer_remaining"], color=style.color, linestyle=style.linestyle,
                    marker=style.marker, markersize=5, gid=f"timer:{name}:{part['state'].iloc[0]}")
        if len(parts) > 1:  # the socket moved state: show where and why
            a, b = parts[0].iloc[-1], parts[1].iloc[0]
            ax.annotate("", xy=(b["t"], b["timer_remaining"]), xytext=(a["t"], a["timer_remaining"]),
                        arrowprops={"arrowstyle": "->", "linestyle": ":", "color": "#333333"})
            ax.text(b["t"] + 0.1, 33, "the peer's FIN arrives:\na fresh 60 s TIME-WAIT", fontsize=8)
        last = rows.iloc[-1] if len(rows) else None
        if last is not None:
            offset = {"TIME-WAIT": 2.5, "orphaned FIN-WAIT-2": 1.5}.get(name, -3.5)
            ax.text(last["t"], last["timer_remaining"] + offset, name, fontsize=8, ha="right")
    ax.axhline(fin_timeout, color="#555555", linestyle=":")
    handles = legend_handles([TcpState.FIN_WAIT_2, TcpState.TIME_WAIT])
    from matplotlib.lines import Line2D

    handles.append(Line2D([], [], color="#555555", linestyle=":", label=f"tcp_fin_timeout = {fin_timeout} s"))
    ax.legend(handles=handles, loc="center right", fontsize=8)
    ax.set_xlabel("seconds")
    ax.set_ylabel("seconds left on the kernel's timer")
    ax.set_ylim(0, 66)
    ax.set_title("One setting, two timers: tcp_fin_timeout moves only the orphaned FIN-WAIT-2")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def simulation_diagram(sim):
    """A ``model`` simulation as a sequence diagram, titled as a simulation."""
    kind = "with" if sim.time_wait else "WITHOUT"
    return sequence_diagram(sim.steps, title=f"Simulated, {kind} TIME-WAIT: {sim.name} (model, not measured)")


# ---------------------------------------------------------------- timeouts


_EVENT_STYLE = {  # event -> (marker, colour, size)
    "send": ("v", _OI["black"], 60), "recv": ("o", _OI["green"], 45), "data": ("o", _OI["green"], 45),
    "write": ("^", _OI["blue"], 45), "timeout": ("X", _OI["vermillion"], 110),
    "eof": ("s", _OI["black"], 60), "end": ("s", _OI["black"], 60), "close": ("D", _OI["grey"], 55),
}


def timeout_timeline(lanes: dict[str, list[dict]], *, title: str | None = None):
    """One lane per client (``{"lane name": events}``, events as the ``timeouts`` clients
    return them), on one time axis; each event kind has one marker.  Returns the Figure."""
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(10, 0.9 * len(lanes) + 1.6))
    ax = fig.subplots()
    names = list(lanes)
    for y, name in enumerate(reversed(names)):
        ax.axhline(y, color="#dddddd", zorder=0)
        for kind in dict.fromkeys(e["event"] for e in lanes[name]):
            marker, color, size = _EVENT_STYLE.get(kind, ("o", _OI["grey"], 40))
            xs = [e["t"] for e in lanes[name] if e["event"] == kind]
            ax.scatter(xs, [y] * len(xs), marker=marker, color=color, s=size, zorder=3,
                       gid=f"events:{name}:{kind}")
    ax.set_yticks(range(len(names)), list(reversed(names)))
    ax.set_xlabel("seconds since connect")
    ax.set_ylim(-0.7, len(names) - 0.3)
    kinds = sorted({e["event"] for events in lanes.values() for e in events})
    handles = [Line2D([], [], linestyle="", marker=_EVENT_STYLE.get(k, ("o",))[0],
                      color=_EVENT_STYLE.get(k, ("o", _OI["grey"]))[1], label=k) for k in kinds]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=len(handles), fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title or "The same silence, three kinds of \"timeout\"")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- state counts under load


def counts_plot(samples, *, model=None, states=None, title: str = "TCP states over time (kernel counts)",
                load_window: tuple[float, float] | None = None):
    """Per-state counts over time from ``sample_states`` / ``StateSampler`` (each state in its
    fixed style), with a model's prediction (``model.predict_counts``) overlaid when given."""
    fig = Figure(figsize=(9, 4.5))
    ax = fig.subplots()
    shown = states or [s for s in TcpState.rfc_states() if s.name in samples and samples[s.name].max() > 0]
    for state in shown:
        style = STATE_STYLE[state]
        ax.plot(samples["t"], samples[state.name], color=style.color, linestyle=style.linestyle,
                label=f"{state.label} (measured)", gid=f"measured:{state.name}")
    if model is not None:
        ax.plot(model["t"], model["TIME_WAIT"], color="black", linestyle="--", linewidth=1.2,
                label="TIME-WAIT (model)", gid="model:TIME_WAIT")
    if load_window is not None:
        ax.axvspan(*load_window, color="#cccccc", alpha=0.3, label="load running")
    ax.set_xlabel("seconds")
    ax.set_ylabel("sockets")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def load_plot(result, *, title: str | None = None):
    """A ``LoadResult``'s timeline: completed connections and errors per second."""
    fig = Figure(figsize=(9, 3.6))
    ax = fig.subplots()
    tl = result.timeline
    ax.plot(tl["t"], tl["connections"] * 10, color=_OI["green"], label="connections / s", gid="load:ok")
    if tl["errors"].sum():
        names = ", ".join(sorted(result.errors))
        ax.plot(tl["t"], tl["errors"] * 10, color=_OI["vermillion"], label=f"errors / s ({names})",
                gid="load:errors")
    ax.set_xlabel("seconds since the load started")
    ax.set_ylabel("per second")
    ax.set_ylim(bottom=0)
    ax.set_title(title or f"Load: {result.connections} connections, {result.rate:.0f}/s achieved")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
