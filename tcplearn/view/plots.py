"""Figures: the RFC 9293 state diagram drawn from ``TRANSITIONS``, and sequence diagrams.

Every figure is returned, never shown here: figures are plain ``matplotlib.figure.Figure``
objects, not registered with pyplot, so a notebook shows each once.  Every TCP state has one visual identity
(``STATE_STYLE``: a colour of its own from the colour-blind-safe Okabe-Ito and Paul Tol
palettes, a line style and a marker of its own) used by every plot of the series.  Arrows carry a ``gid`` naming what
they draw, so tests can check a figure's content.
"""

from __future__ import annotations

from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from ..base.states import TRANSITIONS, Event, TcpState

__all__ = ["STATE_STYLE", "StateStyle", "CLOSE_STATES", "NOTATION", "state_diagram", "sequence_diagram", "legend_handles",
           "countdown_plot", "myth_plot", "simulation_diagram", "timeout_timeline", "counts_plot", "load_plot",
           "syn_timeline", "dead_peer_timeline", "dead_peer_lane", "sources_remedy_plot"]


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
# Paul Tol's "muted" scheme (https://personal.sron.nl/~pault/), also colour-blind safe: the
# colours of it that stay apart from Okabe-Ito's give the states Okabe-Ito has no room for.
_TOL = {"indigo": "#332288", "wine": "#882255", "olive": "#999933", "pale grey": "#DDDDDD"}

#: One visual identity per state, used by every figure of the series: no two states share
#: a colour, a marker or a (colour, line style, marker) triple.  The close states get the
#: eight Okabe-Ito colours; the opening states and the Linux-only ones get Tol's.
STATE_STYLE: dict[TcpState, StateStyle] = {
    TcpState.ESTABLISHED: StateStyle(_OI["green"], "-", "o", "white"),
    TcpState.SYN_SENT: StateStyle(_OI["sky"], "--", "^"),
    TcpState.SYN_RECEIVED: StateStyle(_TOL["indigo"], "--", "v", "white"),
    TcpState.FIN_WAIT_1: StateStyle(_OI["orange"], "-", "s"),
    TcpState.FIN_WAIT_2: StateStyle(_OI["vermillion"], "-", "D", "white"),
    TcpState.TIME_WAIT: StateStyle(_OI["purple"], "-", "P"),
    TcpState.CLOSED: StateStyle(_OI["black"], ":", "x", "white"),
    TcpState.CLOSE_WAIT: StateStyle(_OI["yellow"], "-.", "h"),
    TcpState.LAST_ACK: StateStyle(_OI["blue"], "-.", "p", "white"),
    TcpState.LISTEN: StateStyle(_TOL["olive"], "-", "*"),
    TcpState.CLOSING: StateStyle(_TOL["wine"], "--", "X", "white"),
    TcpState.NEW_SYN_RECV: StateStyle(_TOL["pale grey"], ":", "<"),
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
#: The states of the close, as ``state_diagram(close_only=True)`` draws them.
CLOSE_STATES = (TcpState.ESTABLISHED, TcpState.FIN_WAIT_1, TcpState.FIN_WAIT_2, TcpState.CLOSING,
                TcpState.TIME_WAIT, TcpState.CLOSE_WAIT, TcpState.LAST_ACK, TcpState.CLOSED)

_S, _E = TcpState, Event
# Where each arc of the figure runs and where its label sits, placed by hand as the RFC's
# ASCII figure places them: (start point, end point, connection style, label position).
# A point is the state box it belongs to (the arrow is clipped at the box's edge).
_ARC = {
    (_S.CLOSED, _E.PASSIVE_OPEN): ((3.6, 10.0), (3.6, 8.2), "arc3", (2.55, 9.1)),
    (_S.LISTEN, _E.CLOSE_NO_TCB): ((4.4, 8.2), (4.4, 10.0), "arc3", (5.35, 9.1)),
    (_S.CLOSED, _E.ACTIVE_OPEN): ((4.0, 10.15), (8.45, 6.6), "angle,angleA=0,angleB=90,rad=10", (9.45, 8.6)),
    (_S.SYN_SENT, _E.CLOSE_NO_TCB): ((7.65, 6.6), (4.0, 9.85), "angle,angleA=90,angleB=0,rad=10", (6.75, 9.2)),
    (_S.LISTEN, _E.RCV_SYN): ((3.6, 8.2), (0.3, 6.6), "arc3", (1.55, 7.75)),
    (_S.LISTEN, _E.SEND): ((4.4, 8.2), (7.3, 6.6), "arc3", (6.25, 7.85)),
    (_S.SYN_RECEIVED, _E.RCV_RST): ((-0.45, 6.6), (4.0, 8.35), "angle,angleA=90,angleB=180,rad=10", (0.9, 8.75)),
    (_S.SYN_SENT, _E.RCV_SYN): ((8.0, 6.6), (0.0, 6.6), "arc3", (4.0, 7.05)),
    (_S.SYN_RECEIVED, _E.RCV_ACK_OF_SYN): ((0.3, 6.6), (3.6, 5.0), "arc3", (1.45, 5.55)),
    (_S.SYN_SENT, _E.RCV_SYN_ACK): ((7.7, 6.6), (4.4, 5.0), "arc3", (6.55, 5.55)),
    (_S.SYN_RECEIVED, _E.CLOSE): ((0.0, 6.6), (0.0, 3.4), "arc3", (-0.8, 5.0)),
    (_S.ESTABLISHED, _E.CLOSE): ((3.6, 5.0), (0.3, 3.4), "arc3", (1.45, 4.5)),
    (_S.ESTABLISHED, _E.RCV_FIN): ((4.4, 5.0), (7.7, 3.4), "arc3", (6.55, 4.5)),
    (_S.FIN_WAIT_1, _E.RCV_ACK_OF_FIN): ((0.0, 3.4), (0.0, 1.5), "arc3", (-0.85, 2.45)),
    (_S.FIN_WAIT_1, _E.RCV_FIN): ((0.3, 3.4), (4.0, 1.9), "arc3", (2.5, 3.2)),
    (_S.FIN_WAIT_1, _E.RCV_FIN_ACK): ((0.0, 3.4), (3.7, 0.0), "arc3", (2.05, 1.6)),
    (_S.FIN_WAIT_2, _E.RCV_FIN): ((0.0, 1.5), (4.0, 0.0), "arc3", (1.35, 0.45)),
    (_S.CLOSING, _E.RCV_ACK_OF_FIN): ((4.0, 1.9), (4.0, 0.0), "arc3", (4.85, 0.95)),
    (_S.CLOSE_WAIT, _E.CLOSE): ((8.0, 3.4), (8.0, 1.5), "arc3", (7.15, 2.45)),
    (_S.LAST_ACK, _E.RCV_ACK_OF_FIN): ((8.0, 1.5), (8.0, 0.0), "arc3", (7.1, 0.75)),
    (_S.TIME_WAIT, _E.TIMEOUT_2MSL): ((4.0, 0.0), (8.0, 0.0), "arc3", (6.0, -0.4)),
}
# ABORT and "rcv RST" lead to CLOSED from every synchronized state.  Figure 5 leaves
# them out; drawn as arcs they would pile up at CLOSED, so each state gets a short pair
# of stubs ending at a small CLOSED tag, pointing where there is room.
_STUB_DIR = {_S.SYN_SENT: (1, 0), _S.ESTABLISHED: (0, -1), _S.FIN_WAIT_1: (-1, 0), _S.FIN_WAIT_2: (-1, 0),
             _S.CLOSE_WAIT: (1, 0), _S.LAST_ACK: (1, 0), _S.CLOSING: (1, 0), _S.TIME_WAIT: (0, -1)}
_STUB_LEN = 0.55
_PATH_MARK = "①②③④⑤⑥⑦⑧⑨⑩⑪⑫⑬⑭⑮⑯⑰⑱⑲⑳"

NOTATION = ("How to read an arc (RFC 9293 Figure 5's notation): the event above the line, what the end sends "
            "below it.  \"rcv FIN / snd ACK\": when a FIN arrives, the end sends an ACK and moves along the "
            "arrow.  \"x\": it sends nothing.  CLOSE, SEND, OPEN and ABORT are calls by the program; rcv is "
            "a segment received; Timeout=2MSL is TIME-WAIT's timer.")


def _label_text(event: Event) -> str:
    """An arc label as the RFC writes it: the event over a line over the action."""
    def tex(part: str) -> str:
        return part.replace(" ", r"\ ").replace(",", "{,}").replace("=", "{=}")
    what, _, action = event.value.partition(" / ")
    return rf"$\dfrac{{\mathrm{{{tex(what)}}}}}{{\mathrm{{{tex(action)}}}}}$"


def _where(state: TcpState, target_of: TcpState | None = None) -> tuple[float, float]:
    if state is TcpState.CLOSED and target_of is not None and _POS[target_of][1] < 5.5:
        return _CLOSED_END
    return _POS[state]


def _box(ax, xy, state: TcpState, highlight: str | None, *, on_path: bool = False, faded: bool = False):
    style = STATE_STYLE[state]
    x, y = xy
    gid = f"state:{state.name}" + (":highlight" if highlight else "") + (":path" if on_path else "")
    box = FancyBboxPatch((x - _BOX_W / 2, y - _BOX_H / 2), _BOX_W, _BOX_H,
                         boxstyle="round,pad=0.02,rounding_size=0.12", facecolor=style.color,
                         edgecolor="black", alpha=0.35 if faded else 1.0,
                         linewidth=3.5 if highlight or on_path else 1.0, zorder=3, gid=gid)
    ax.add_patch(box)
    ax.text(x, y + (0.1 if highlight else 0.0), state.label, ha="center", va="center", fontsize=9,
            fontweight="bold", color=style.text, alpha=0.5 if faded else 1.0, zorder=4,
            gid=f"name:{state.name}")
    if highlight:  # inside the box, under the name: never on an arc or its label
        ax.text(x, y - 0.15, highlight, ha="center", va="center", fontsize=7.5, fontweight="bold",
                color="black", zorder=5, gid=f"highlight:{state.name}",
                bbox={"boxstyle": "round,pad=0.15", "fc": "#ffffff", "ec": "black", "lw": 0.6})
    return box


def _path_arcs(path, arcs) -> list[tuple[TcpState, Event, TcpState]]:
    """The arcs a run took: for each change of state in ``path``, the direct arcs of
    ``arcs`` between the two states, else the shortest chain of arcs (an observer polling
    the kernel can miss a state, e.g. see ESTABLISHED then FIN-WAIT-2)."""
    states = [s for i, s in enumerate(path) if i == 0 or s is not path[i - 1]]
    taken: list[tuple[TcpState, Event, TcpState]] = []
    for a, b in zip(states, states[1:], strict=False):
        direct = [arc for arc in arcs if arc[0] is a and arc[2] is b]
        direct = [arc for arc in direct if arc[1].in_figure] or direct  # a timeout, not a reset, if both
        if direct:
            taken += [arc for arc in direct if arc not in taken]
            continue
        # breadth-first over the figure's arcs first, then over the others
        order = sorted(arcs, key=lambda arc: not arc[1].in_figure)
        prev, frontier = {a: None}, [a]
        while frontier and b not in prev:
            nxt = []
            for s in frontier:
                for arc in order:
                    if arc[0] is s and arc[2] not in prev and not (s is TcpState.CLOSED and s is not a):
                        prev[arc[2]] = arc
                        nxt.append(arc[2])
            frontier = nxt
        if b not in prev:
            raise ValueError(f"RFC 9293 has no way from {a.label} to {b.label} in this diagram; "
                             f"path was {[s.label for s in states]}")
        chain, s = [], b
        while prev[s] is not None:
            chain.append(prev[s])
            s = prev[s][0]
        taken += [arc for arc in reversed(chain) if arc not in taken]
    return taken


def state_diagram(highlight: dict[TcpState, str] | None = None, *, show_rst: bool = True,
                  close_only: bool = False, path=None, title: str | None = None):
    """Draw the RFC 9293 state machine from ``TRANSITIONS``, laid out like its Figure 5.

    ``highlight`` maps states to labels shown on them, e.g.
    ``{TcpState.TIME_WAIT: "client", TcpState.CLOSED: "server"}`` (two ends in one
    state share a label: ``"client + server"``).  Arcs of the figure are solid, with
    their RFC labels (event over action, explained under the figure); arcs the figure
    omits but the text defines are dashed (the FIN+ACK shortcut, ``rcv RST`` back to
    LISTEN), and ABORT / rcv RST from every synchronized state are short grey stubs to
    a CLOSED tag.

    ``close_only=True`` draws only the close: ESTABLISHED and the states after it
    (``CLOSE_STATES``).  ``path`` is a run's states in order, e.g.
    ``[step.client_state for step in pair.history]``: its arcs are drawn thick and
    numbered, the rest faded except the ``highlight`` states (a state the observer missed
    is filled in by the shortest route the table allows).  Returns the matplotlib Figure; ``fig.tcplearn_arcs`` lists
    the arcs drawn and ``fig.tcplearn_path`` the arcs of ``path``.
    """
    highlight = dict(highlight or {})
    shown = CLOSE_STATES if close_only else tuple(_POS)
    if title is None:
        title = ("The close in RFC 9293's state diagram (drawn from tcplearn.TRANSITIONS)" if close_only
                 else "RFC 9293 TCP state diagram (drawn from tcplearn.TRANSITIONS)")
    arcs = [(s, e, t) for s, e, t in TRANSITIONS.arcs()
            if (show_rst or e not in _RST_EVENTS) and s in shown and t in shown
            and not (close_only and s is TcpState.CLOSED)]
    path = list(path or [])
    if close_only:  # the opening, if the run's history has it, is not in this view
        while path and path[0] not in CLOSE_STATES or path[:1] == [TcpState.CLOSED]:
            path.pop(0)
    on_path = _path_arcs(path, arcs) if path else []
    path_states = {s for arc in on_path for s in (arc[0], arc[2])} | set(path[:1])
    fade = bool(path)

    fig = Figure(figsize=(12, 7.6) if close_only else (12, 12.2))  # not pyplot's: shown once
    ax = fig.subplots()
    ax.set_xlim(-2.7, 10.7)
    ax.set_ylim((-1.55, 5.5) if close_only else (-1.55, 10.6))
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(title, fontsize=12)
    boxes = {}
    for state in shown:
        if close_only and state is TcpState.CLOSED:
            continue
        boxes[(state, _POS[state])] = _box(ax, _POS[state], state, highlight.get(state),
                                           on_path=state in path_states,
                                           faded=fade and state not in path_states and state not in highlight)
    # the bottom CLOSED: the end of a close (highlighted, as the connection's last state)
    end_on_path = any(arc[2] is TcpState.CLOSED and _POS[arc[0]][1] < 5.5 for arc in on_path)
    boxes[(TcpState.CLOSED, _CLOSED_END)] = _box(
        ax, _CLOSED_END, TcpState.CLOSED, highlight.get(TcpState.CLOSED) if close_only else None,
        on_path=end_on_path, faded=fade and not end_on_path and not (close_only and TcpState.CLOSED in highlight))

    def box_at(state, xy):
        return next(b for (s, pos), b in boxes.items()
                    if s is state and abs(pos[0] - xy[0]) <= _BOX_W / 2 and abs(pos[1] - xy[1]) <= _BOX_H / 2)

    drawn, step_of = [], {arc: i for i, arc in enumerate(on_path)}
    stub_tags = {}
    for state, event, target in arcs:
        arc = (state, event, target)
        gid = f"arc:{state.name}:{event.name}:{target.name}"
        taken = arc in step_of
        color = "#000000" if taken else ("#bbbbbb" if fade else "#222222")
        width = 3.0 if taken else 1.3
        mark = f"{_PATH_MARK[step_of[arc] % len(_PATH_MARK)]} " if taken else ""
        if event in _RST_EVENTS and (state, event) not in _ARC:
            sx, sy = _where(state)
            dx, dy = _STUB_DIR[state]
            reach = (_BOX_W / 2 if dx else _BOX_H / 2) + _STUB_LEN
            off = (-0.09 if event is Event.ABORT else 0.09)
            px, py = -dy * off, dx * off  # parallel stubs, one per event
            arrow = FancyArrowPatch((sx + px, sy + py), (sx + dx * reach + px, sy + dy * reach + py),
                                    patchA=box_at(state, (sx, sy)), arrowstyle="-|>", mutation_scale=10,
                                    shrinkA=1, shrinkB=0, linestyle="-." if event is Event.ABORT else ":",
                                    color="#000000" if taken else "#888888", linewidth=2.2 if taken else 1.0,
                                    zorder=2, gid=gid + (":path" if taken else ""))
            ax.add_patch(arrow)
            drawn.append(arc)
            tag = stub_tags.get(state)
            text = (mark if taken else "") + "CLOSED"
            if tag is None:
                tx = sx + dx * (reach + 0.33)
                ty = sy + dy * (reach + 0.17)
                stub_tags[state] = ax.text(tx, ty, text, ha="center", va="center", fontsize=6.5,
                                           color="#555555" if not taken else "black", zorder=4,
                                           gid=f"tag:{state.name}:CLOSED",
                                           bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "#888888",
                                                 "lw": 0.6})
            elif taken:
                tag.set_text(text)
                tag.set_color("black")
            continue
        a, b, conn, label_at = _ARC[(state, event)]
        end = _where(target, target_of=state)
        if target is TcpState.CLOSED and end == _CLOSED_END:
            b = (b[0] - _POS[TcpState.CLOSED][0] + _CLOSED_END[0], b[1]) if b[1] > 5.5 else b
        arrow = FancyArrowPatch(a, b, patchA=box_at(state, _where(state)), patchB=box_at(target, end),
                                arrowstyle="-|>", mutation_scale=14 if taken else 12, connectionstyle=conn,
                                shrinkA=1, shrinkB=2, linestyle="-" if event.in_figure else "--",
                                color=color, linewidth=width, zorder=2.5 if taken else 2,
                                gid=gid + (":path" if taken else ""))
        ax.add_patch(arrow)
        drawn.append(arc)
        ax.text(*label_at, mark + _label_text(event), fontsize=8, ha="center", va="center",
                color="#999999" if fade and not taken else "#111111", zorder=4,
                fontweight="bold" if taken else "normal", gid=f"label:{state.name}:{event.name}:{target.name}",
                bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.9})

    from matplotlib.lines import Line2D

    kinds = [Line2D([], [], color="#222222", lw=1.3, label="arc of RFC 9293 Figure 5")]
    if any(not e.in_figure and e not in _RST_EVENTS for _, e, _ in drawn) or (show_rst and not close_only):
        kinds.append(Line2D([], [], color="#222222", lw=1.3, ls="--", label="arc from the RFC's text (§3.10.7.4)"))
    if show_rst:
        kinds += [Line2D([], [], color="#888888", lw=1.0, ls="-.", label="ABORT → CLOSED (§3.10.5)"),
                  Line2D([], [], color="#888888", lw=1.0, ls=":", label="rcv RST / x → CLOSED (§3.10.7.4)")]
    if on_path:
        kinds.append(Line2D([], [], color="black", lw=3.0, label="① ② …: one end's path in this run"))
    fig.legend(handles=kinds, loc="lower left", bbox_to_anchor=(0.02, 0.005), fontsize=8, frameon=False,
               ncol=2 if close_only else 1)
    fig.text(0.55, 0.012, _wrap(NOTATION, 70), ha="left", va="bottom", fontsize=8, color="#333333",
             gid="caption:notation")
    fig.subplots_adjust(left=0.01, right=0.99, top=0.95, bottom=0.15 if close_only else 0.1)
    fig.tcplearn_arcs = drawn  # what was drawn, for tests and curious readers
    fig.tcplearn_path = on_path
    return fig


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


# ---------------------------------------------------------------- the sequence diagram

_LANE = {"client": 0.0, "server": 1.0}


def _sequence_rows(history, segments_by_step, server_port) -> list[tuple]:
    """One row per segment (``("seg", sender, flags, detail, step index)``) and per step
    (``("step", step, step index)``), in order."""
    rows: list[tuple] = []
    for i, step in enumerate(history):
        if segments_by_step is not None:
            for seg in segments_by_step[i]:
                sender = "server" if seg.sport == server_port else "client"
                detail = f"seq={seg.seq} ack={seg.ack}" + (f" len={seg.length}" if seg.length else "")
                rows.append(("seg", sender, seg.flags, detail, i))
        else:
            for sender, flags in step.segments:
                rows.append(("seg", sender, "data" if flags == "DATA" else flags, "", i))
        rows.append(("step", step, i))
    return rows


def _draw_sequence(rows, *, skip=lambda row: False, xlim=(-0.75, 1.75), width: float = 9.5):
    """Draw ``rows`` (from ``_sequence_rows``): lanes, one arrow per segment (rows for
    which ``skip(row)`` is true are left empty, for the caller to draw), the states
    after each step.  Returns ``(fig, ax, number of arrows)``."""
    height = max(4.0, 0.42 * len(rows) + 1.2)
    fig = Figure(figsize=(width, height))
    ax = fig.subplots()
    ax.set_xlim(*xlim)
    ax.set_ylim(len(rows) + 0.2, -1.3)
    ax.set_axis_off()
    for name, x in _LANE.items():
        ax.plot([x, x], [-0.4, len(rows)], color="#444444", linewidth=1.2, zorder=1)
        ax.text(x, -0.7, name, ha="center", va="bottom", fontsize=11, fontweight="bold")
    n_arrows = 0
    for y, row in enumerate(rows):
        if row[0] == "gap":  # time passing, for the caller to annotate
            continue
        if row[0] == "seg":
            _, sender, flags, detail, _ = row
            if skip(row):
                continue
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
            ax.text(0.5, y + 0.35, who, ha="center", va="center", fontsize=8, style="italic", color="#333333",
                    zorder=4, bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
            for end, x, state in (("client", -0.05, step.client_state), ("server", 1.05, step.server_state)):
                style = STATE_STYLE[state]
                ax.text(x, y + 0.35, state.label, ha="right" if end == "client" else "left", va="center",
                        fontsize=8.5, fontweight="bold", color=style.text, zorder=4,
                        bbox={"boxstyle": "round,pad=0.25", "fc": style.color, "ec": "black", "lw": 0.6},
                        gid=f"state:{end}:{state.name}")
    return fig, ax, n_arrows


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
    fig, ax, n_arrows = _draw_sequence(_sequence_rows(history, segments_by_step, server_port))
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


def _polyline_distance(point, xs, ys) -> float:
    """Distance from ``point`` to the polyline through (xs, ys), all in one coordinate system."""
    import numpy as np

    p = np.asarray(point, dtype=float)
    pts = np.column_stack([xs, ys]).astype(float)
    if len(pts) == 1:
        return float(np.hypot(*(pts[0] - p)))
    a, b = pts[:-1], pts[1:]
    ab = b - a
    t = np.clip(((p - a) * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-12), 0, 1)
    return float(np.hypot(*(a + t[:, None] * ab - p).T).min())


def _label_clearance(anchor, lift: float, half: float, others, size) -> float:
    """How far a label ``half`` wide, centred ``lift`` above ``anchor``, and its anchor stay from
    the ``others`` polylines (all in inches); negative when the label would leave the axes."""
    import numpy as np

    (ax_, ay), (width, height) = anchor, size
    cy = ay + lift
    if not 0.15 <= cy <= height - 0.15 or not half + 0.05 <= ax_ <= width - half - 0.05:
        return -1.0
    points = [(lx, cy) for lx in np.linspace(ax_ - half, ax_ + half, 9)] + [anchor]
    return min((_polyline_distance(p, *o) for p in points for o in others), default=1.0) - 0.05 * abs(lift)


def myth_plot(table, fin_timeout: int):
    """The timers of ``timewait.myth_test``: an orphaned FIN-WAIT-2, a TIME-WAIT, and an
    orphaned FIN-WAIT-2 whose peer's FIN arrives midway.  Each reading is drawn in the
    style of the state it was in; each line is labelled at a point of its own, the one
    farthest from the other lines, with the label on the side away from them (the two
    TIME-WAIT lines run a couple of seconds apart)."""
    import numpy as np
    import pandas as pd

    table = pd.DataFrame(table)
    fig = Figure(figsize=(9, 4.6))
    ax = fig.subplots()
    series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in dict.fromkeys(table["socket"]):
        rows = table[(table["socket"] == name) & (table["state"] != "CLOSED")]
        if not len(rows):
            continue
        series[name] = (rows["t"].to_numpy(float), rows["timer_remaining"].to_numpy(float))
        parts = [part for _, part in rows.groupby((rows["state"] != rows["state"].shift()).cumsum())]
        # A socket that changes state (the third) is drawn with hollow, larger markers above the
        # others, so that its FIN-WAIT-2 stays visible where it runs along the first socket's.
        hollow = len(parts) > 1
        for part in parts:
            style = STATE_STYLE[TcpState[part["state"].iloc[0]]]
            ax.plot(part["t"], part["timer_remaining"], color=style.color, linestyle=style.linestyle,
                    marker=style.marker, markersize=9 if hollow else 5, zorder=3 if hollow else 2,
                    markerfacecolor="white" if hollow else style.color, markeredgewidth=1.4 if hollow else 1.0,
                    gid=f"timer:{name}:{part['state'].iloc[0]}")
        if hollow:  # the socket moved state: a step at the FIN, not a ramp
            a, b = parts[0].iloc[-1], parts[1].iloc[0]
            # the FIN-WAIT-2 timer, still falling, at the first TIME-WAIT reading: the foot of the step
            foot = max(0.0, a["timer_remaining"] - (b["t"] - a["t"]))
            ax.annotate("", xy=(b["t"], b["timer_remaining"]), xytext=(b["t"], foot),
                        arrowprops={"arrowstyle": "-|>", "linestyle": "-", "color": "#333333", "lw": 1.0,
                                    "shrinkA": 0, "shrinkB": 4}, gid="fin-arrives")
            ax.annotate("the peer's FIN arrives:\na fresh 60 s TIME-WAIT", (b["t"], (foot + b["timer_remaining"]) / 2),
                        xytext=(8, 0), textcoords="offset points", ha="left", va="center", fontsize=8,
                        gid="note:fin-arrives")
    t_max = max((xs.max() for xs, _ in series.values()), default=1.0)
    ax.set_xlim(-0.03 * t_max, t_max * 1.03)
    ax.set_ylim(0, 74)  # room above the 60 s lines for their labels
    ax.axhline(fin_timeout, color="#555555", linestyle=(0, (6, 3)), linewidth=1.0, zorder=1)

    # Place the labels in a space where one unit is the same length both ways: the axes' inches.
    bbox = ax.get_position()
    width, height = fig.get_figwidth() * bbox.width, fig.get_figheight() * bbox.height
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()

    def inches(xs, ys):
        return (np.asarray(xs) - x0) / (x1 - x0) * width, (np.asarray(ys) - y0) / (y1 - y0) * height

    scaled = {name: inches(*xy) for name, xy in series.items()}
    obstacles = dict(scaled)
    obstacles["tcp_fin_timeout"] = inches([x0, x1], [fin_timeout, fin_timeout])
    for name, (xs, ys) in series.items():
        sx, sy = scaled[name]
        others = [xy for other, xy in obstacles.items() if other != name]
        half = 0.03 * len(name)  # half the label's width, in inches (8 pt text)

        best, lift = max(((i, lift) for i in range(len(xs)) for lift in (0.25, 0.4, -0.25, -0.4)),
                         key=lambda c: _label_clearance((sx[c[0]], sy[c[0]]), c[1], half, others, (width, height)))
        ax.annotate(name, (xs[best], ys[best]), xytext=(0, lift * 72),
                    textcoords="offset points", ha="center", va="center", fontsize=8, gid=f"label:{name}",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
                    arrowprops={"arrowstyle": "-", "color": "#555555", "lw": 0.6, "shrinkA": 0, "shrinkB": 2})
        cy = sy[best] + lift
        obstacles[f"label:{name}"] = ([sx[best] - half, sx[best] + half], [cy, cy])
    handles = legend_handles([TcpState.FIN_WAIT_2, TcpState.TIME_WAIT])
    from matplotlib.lines import Line2D

    handles.append(Line2D([], [], color="#555555", linestyle=(0, (6, 3)), label=f"tcp_fin_timeout = {fin_timeout} s"))
    handles.append(Line2D([], [], color="#555555", linestyle="", marker="o", markerfacecolor="white",
                          markersize=7, label="hollow: the socket whose peer's FIN arrives"))
    ax.legend(handles=handles, loc="center right", fontsize=8)
    ax.set_xlabel("seconds since the three sockets were made")
    ax.set_ylabel("seconds left on the kernel's timer")
    ax.set_title("One setting, two timers: tcp_fin_timeout moves only the orphaned FIN-WAIT-2")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def simulation_diagram(sim):
    """A ``model`` simulation as a sequence diagram, titled as a simulation.

    For ``model.old_duplicate`` the delayed copy is one long arrow from the moment
    connection 1 sent it, across the close, to where it lands in connection 2 (or to the
    cross where it expires, MSL after it was sent), and the figure shows the numbers
    the model assumed: its MSL, TIME-WAIT = 2×MSL, and both connections' initial
    sequence numbers."""
    kind = "with" if sim.time_wait else "WITHOUT"
    title = f"Simulated, {kind} TIME-WAIT: {sim.name} (model, not measured)"
    facts = getattr(sim, "facts", {}) or {}
    if "old_seq" not in facts:
        return sequence_diagram(sim.steps, title=title)
    return _old_duplicate_diagram(sim, facts, title)


def _old_duplicate_diagram(sim, facts: dict, title: str):
    import dataclasses

    rows = _sequence_rows(sim.steps, None, None)
    # The delayed copy arrives at the server (its arrow ends there): label that step by the
    # server, whatever actor the model gave it.
    rows = [("step", dataclasses.replace(row[1], actor="server"), row[2])
            if row[0] == "step" and "delayed copy" in row[1].action and "arrives" in row[1].action else row
            for row in rows]
    close_row = next(y for y, row in enumerate(rows) if row[0] == "step" and row[2] == 2)
    if facts["time_wait_len"]:  # room to see the 2×MSL wait between the close and connection 2
        rows[close_row + 1:close_row + 1] = [("gap",)] * 4

    def is_copy(row):
        return row[0] == "seg" and "(old copy)" in row[2]

    fig, ax, n_arrows = _draw_sequence(rows, skip=is_copy, xlim=(-1.25, 2.45), width=11.5)
    seg_rows = [y for y, row in enumerate(rows) if row[0] == "seg"]
    step_row = {row[2]: y for y, row in enumerate(rows) if row[0] == "step"}
    msl, tw = facts["msl"], facts["time_wait_len"]
    sent = next(y for y in seg_rows if rows[y][2].startswith(f"data seq={facts['old_seq']}"))
    arrival = next((y for y, row in enumerate(rows) if is_copy(row)), None)
    red = "#b2182b"
    copy_flags = f"data seq={facts['old_seq']} (old copy)"
    if arrival is not None:  # it lands in connection 2: one long arrow across the close
        end = (1.0, arrival + 0.55)
        arrow = FancyArrowPatch((0.0, sent), end, arrowstyle="-|>", mutation_scale=15, color=red,
                                linestyle="--", linewidth=2.0, zorder=3,
                                gid=f"segment:{n_arrows}:client:{copy_flags}")
        ax.text(1.38, arrival + 0.75, f"the copy arrives at t={facts['arrives']:g} s: seq {facts['old_seq']}\n"
                "is inside connection 2's window,\nso it is accepted as new data", ha="left", va="center", fontsize=8,
                color=red, zorder=5, gid="note:arrival",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": red, "lw": 0.6})
        life_end = arrival + 0.55
    else:  # it expires MSL after it was sent, during TIME-WAIT, before connection 2 exists
        y_exp = close_row + 2.5
        end = (0.55, y_exp)
        arrow = FancyArrowPatch((0.0, sent), end, arrowstyle="-", color=red, linestyle="--", linewidth=2.0,
                                zorder=3, gid=f"segment:{n_arrows}:client:{copy_flags} (expired)")
        ax.text(*end, "✗", color=red, ha="center", va="center", fontsize=16, zorder=5)
        ax.text(0.62, y_exp, f"expires at t={facts['expires']:g} s (MSL after it was sent)", ha="left",
                va="center", fontsize=8, color=red, zorder=5, gid="note:expired",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": red, "lw": 0.6})
        life_end = y_exp
    ax.add_patch(arrow)
    fig.tcplearn_segments = n_arrows + 1
    ax.text(-0.08, sent + 1.0, f"a copy of '{facts['old_data']}'\nis delayed {facts['delay']:g} s\nin the network",
            ha="right", va="center", fontsize=8, color=red, style="italic",
            zorder=5, gid="note:delayed", bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none"})

    def bracket(x, y0, y1, text, gid, color):
        ax.plot([x + 0.04, x, x, x + 0.04], [y0, y0, y1, y1], color=color, linewidth=1.4, zorder=2,
                gid=f"bracket:{gid}")
        ax.text(x - 0.04, (y0 + y1) / 2, text, rotation=90, ha="right", va="center", fontsize=8.5,
                color=color, gid=gid)

    bracket(-0.62, sent, life_end, f"the copy's life ≤ MSL = {msl:g} s", "msl", red)
    if tw:
        style = STATE_STYLE[TcpState.TIME_WAIT]
        y0, y1 = close_row + 0.6, close_row + 5
        ax.plot([0, 0], [y0, y1], color=style.color, linewidth=7, alpha=0.9, zorder=1.5,
                solid_capstyle="butt", gid="time-wait-bar")
        ax.text(-0.08, (y0 + y1) / 2, f"the client holds\nTIME-WAIT for\n2×MSL = {tw:g} s", ha="right", va="center",
                fontsize=8, color="black", gid="note:time-wait")
        bracket(-0.95, y0, y1, f"TIME-WAIT = 2×MSL = {tw:g} s", "time-wait", "#6a3d62")
    isn_1, isn_2, window = facts["isn_1"], facts["isn_2"], facts["window"]
    # Both ISNs are the client's (the sender of the copy); the window that decides is the
    # server's receive window, which starts at the client's ISN + 1: both notes sit on the
    # server's side, where the copy lands, and say whose number each is.
    ax.text(1.38, step_row[0] + 0.35, f"connection 1: the client's ISN {isn_1},\n"
            f"so its data starts at seq {isn_1 + 1}", ha="left", va="center", fontsize=8.5, gid="isn:1")
    verdict = "holds" if facts["in_window"] else "does not hold"
    ax.text(1.38, step_row[3] + 0.35, f"connection 2: the client's ISN {isn_2};\nthe server's receive window "
            f"{isn_2 + 1}–{isn_2 + window}\n{verdict} seq {facts['old_seq']}",
            ha="left", va="center", fontsize=8.5, gid="isn:2")
    ax.set_title(title, fontsize=10)
    fig.text(0.5, 0.005, f"Model assumptions: MSL = {msl:g} s (RFC 9293 takes 2 min; Linux holds TIME-WAIT "
             f"60 s), ISNs {isn_1} and {isn_2} chosen close together, the bad case.  Rows are in order, "
             "not to scale.", ha="center", va="bottom", fontsize=8, color="#333333", gid="note:model")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


# ---------------------------------------------------------------- timeouts


_EVENT_STYLE = {  # event -> (marker, colour, size)
    "send": ("v", _OI["black"], 60), "data": ("o", _OI["green"], 45),
    "write": ("^", _OI["blue"], 45), "timeout": ("X", _OI["vermillion"], 110),
    "eof": ("s", _OI["black"], 60), "end": ("p", _OI["orange"], 60), "close": ("D", _OI["grey"], 55),
}
#: The legend's words for an event kind, where its name alone is not enough.
_EVENT_LABEL = {"data": "data (bytes received)", "send": "send (the server)", "write": "write (the client)",
                "timeout": "timeout", "eof": "eof (Python: recv returned b'')", "end": "end (Node: the peer's FIN)",
                "close": "close (the client closed its socket)"}
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
                      color=_EVENT_STYLE.get(k, ("o", _OI["grey"]))[1], label=_EVENT_LABEL.get(k, k)) for k in kinds]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=min(len(handles), 4),
              fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title or "Python settimeout vs Node setTimeout")
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
    if title is None:
        title = (f"Load: {result.connections} connections in {result.elapsed:.1f} s "
                 f"= {result.connections / max(result.elapsed, 1e-9):.0f}/s over the whole run")
        until = result.rate_until_first_error() if len(tl) else None
        if until is not None:
            title += (f"; {until:.0f}/s until the first {max(result.errors, key=result.errors.get)},"
                      f" by {result.first_error_at():.1f} s")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- a connect nobody answers (notebook 03)


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
        ax.scatter([a["after_s"]], [y], marker="X", s=120, color=_OI["vermillion"], zorder=4, gid=f"failed:{key}")
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


# ---------------------------------------------------------------- a silent peer (notebook 06)

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


def dead_peer_timeline(results, *, title: str | None = None, footnote: str | None = None):
    """Runs of ``dead_peer`` on one time axis, one lane each, from the moment the peer went silent.

    ``results`` is ``{"lane name": result}`` or a list of results (lanes named by
    ``dead_peer_lane``); a result may be a ``Result`` holding a ``DeadPeerResult``, and
    one holding nothing (a one-line notice) is left out.  Each lane draws the connection
    as a bar while the kernel keeps it, what the local end sent as captured (data, keepalive
    probes, the tail loss probe drawn apart from the timeout retransmissions, with every gap
    between resends written above them and the last wait before the kernel gave up, so the
    exponential backoff shows), after ``close()`` the orphan the kernel still holds (e.g.
    FIN-WAIT-1 retransmitting its FIN) as a hatched bar, what the program saw (Python's ``TimeoutError``,
    Node's ``'timeout'``), the moment the kernel gave up (a filled star) beside the moment
    its settings predict (a hollow one), or, when nothing noticed, "still ESTABLISHED".
    ``footnote`` is printed under the axis.  Artists carry gids (``segments:LANE:KIND``,
    ``events:LANE:EVENT``, ``gave-up:LANE``, ``predicted:LANE``, ``alive:LANE``, ``orphan:LANE``;
    texts ``gap:LANE``, ``wait:LANE``, ``still:LANE``)."""
    from matplotlib.lines import Line2D

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
            ax.barh(y, max(left_est) - est_end, left=est_end, height=0.3, color="none", edgecolor=_OI["grey"],
                    hatch="////", linewidth=0.8, zorder=1, gid=f"orphan:{name}")
            used.setdefault("orphan", ("orphan", _OI["grey"], 0, "after close(): held by the kernel (/proc)"))
        for kind in dict.fromkeys(s["kind"] for s in seen):
            marker, color, size, label = used.setdefault(kind, _DEAD_PEER_STYLE[kind])
            xs = [s["t"] for s in seen if s["kind"] == kind]
            ax.scatter(xs, [y] * len(xs), marker=marker, color=color, s=size, zorder=3, edgecolors="black",
                       linewidths=0.5, gid=f"segments:{name}:{kind}")
        sent = sorted(s["t"] for s in seen if s["kind"] in ("data", "tail loss probe", "retransmission"))
        for i, (a, b) in enumerate(zip(sent, sent[1:], strict=False)):
            # every gap between resends, staggered on two rows so the short first ones stay readable
            ax.text((a + b) / 2, y + (0.17 if i % 2 == 0 else 0.34), f"+{b - a:.2f}", ha="center", va="bottom",
                    fontsize=6.5, color=_OI["vermillion"], gid=f"gap:{name}")
        if sent and len(sent) > 1 and r.detected_after is not None:
            ax.text((sent[-1] + r.detected_after) / 2, y + 0.17, f"last wait +{r.detected_after - sent[-1]:.2f} s",
                    ha="center", va="bottom", fontsize=6.5, color="black", gid=f"wait:{name}")
        for kind in dict.fromkeys(e["event"] for e in events):
            marker, color, size, label = used.setdefault(kind, _DEAD_PEER_STYLE[kind])
            xs = [e["t"] for e in events if e["event"] == kind]
            ax.scatter(xs, [y] * len(xs), marker=marker, color=color, s=size, zorder=4, gid=f"events:{name}:{kind}")
        predicted = r.predicted.get("detected_after")
        if predicted is not None:
            used.setdefault("predicted", _PREDICTED)
            ax.scatter([predicted], [y - 0.28], marker="*", facecolors="none", edgecolors="black", s=160,
                       linewidths=0.9, zorder=4, gid=f"predicted:{name}")
        if r.detected_after is not None:
            used.setdefault("gave up", _GAVE_UP)
            ax.scatter([r.detected_after], [y], marker="*", color="black", s=220, zorder=5, gid=f"gave-up:{name}")
            ax.annotate(f"{r.error or 'noticed'} at {r.detected_after:.2f} s", (r.detected_after, y),
                        xytext=(8, -3), textcoords="offset points", fontsize=8, va="top")
        else:
            closed = any(s["kind"] == "fin" for s in seen)
            text = (f"nothing noticed: {r.final_state} until the program closed it" if closed
                    else f"nothing noticed: still {r.final_state} →")
            if closed and orphan_states:
                timers = sorted({row["timer"] for row in r.timeline_rows if row["state"] in orphan_states})
                text += (f";\nthen {', '.join(orphan_states).replace('_', '-')} (timer: {', '.join(timers)}), "
                         "held by the kernel")
            ax.annotate(text, (max([end] + left_est), y), xytext=(6, 0), textcoords="offset points", fontsize=8, va="center",
                        gid=f"still:{name}")
    ax.set_yticks(range(len(runs)), list(reversed(list(runs))), fontsize=9)
    ax.set_ylim(-0.7, len(runs) - 0.3)
    ax.set_xlim(-0.2, right * 1.25 + 0.5)
    ax.set_xlabel("seconds since the peer went silent (red numbers: seconds between resends)")
    ax.grid(axis="x", alpha=0.3)
    from matplotlib.patches import Patch

    handles = [Line2D([], [], color=STATE_STYLE[TcpState.ESTABLISHED].color, linewidth=7, alpha=0.3,
                      label="ESTABLISHED: the kernel keeps the connection")]
    for marker, color, _size, label in used.values():
        if marker == "orphan":
            handles.append(Patch(facecolor="none", edgecolor=color, hatch="////", label=label))
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
    return fig


def sources_remedy_plot(remedy, *, title: str | None = None):
    """A ``SourcesRemedy``: left, each run's connections so far (they stop where its
    four-tuples ran out); right, the rate each number of source addresses sustains without
    reuse (its four-tuples / TIME-WAIT), beside k times one source's."""
    fig = Figure(figsize=(10, 3.8))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    colours = [_OI["blue"], _OI["orange"], _OI["green"], _OI["purple"], _OI["sky"], _OI["vermillion"]]
    rates = remedy.rates()
    one = rates.get(1)
    for i, run in enumerate(remedy.runs):
        k, tl = run["k"], run["load"].timeline
        colour = colours[i % len(colours)]
        # the fewest sources on top: every run climbs the same line until its four-tuples run out
        left.plot(tl["t"], tl["connections"].cumsum(), color=colour, linewidth=2.2 if i == 0 else 1.6,
                  linestyle=("-", "--", "-.", ":")[i % 4], zorder=10 - i, gid=f"remedy:cumulative:{k}",
                  label=f"{k} source address{'es' if k > 1 else ''}: {run['load'].connections} connections")
        right.bar(i, rates[k], color=colour, gid=f"remedy:rate:{k}")
        right.text(i, rates[k] + 0.04 * max(rates.values()), f"{rates[k]:.1f}/s", ha="center", va="bottom",
                   fontsize=8)
    if one:
        right.plot(range(len(remedy.runs)), [run["k"] * one for run in remedy.runs], "k_", markersize=28,
                   markeredgewidth=1.5, label="k × one source", gid="remedy:k-fold")
        right.legend(loc="upper left", fontsize=8)
    left.set_xlabel("seconds since the load started")
    left.set_ylabel("connections made")
    left.set_ylim(bottom=0)
    left.legend(loc="upper left", fontsize=8)
    left.grid(alpha=0.3)
    left.set_title(f"At {remedy.rate:g}/s until connect() failed (EADDRNOTAVAIL)", fontsize=9)
    right.set_xticks(range(len(remedy.runs)), [str(run["k"]) for run in remedy.runs])
    right.set_xlabel("source addresses")
    right.set_ylabel("connections / s")
    right.set_ylim(0, max(rates.values()) * 1.25 if rates else 1)
    right.grid(axis="y", alpha=0.3)
    right.set_title(f"Sustainable without reuse: connections / {remedy.time_wait:g} s", fontsize=9)
    fig.suptitle(title or f"More four-tuples: {remedy.ports} ports per run, tcp_tw_reuse=0, one destination",
                 fontsize=10)
    fig.tight_layout()
    return fig
