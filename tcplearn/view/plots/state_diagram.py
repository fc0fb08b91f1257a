"""The RFC 9293 state diagram, drawn from ``TRANSITIONS`` and laid out as its Figure 5."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from ...base.states import TRANSITIONS, Event, TcpState
from .layout import _wrap
from .style import STATE_STYLE

__all__ = ["CLOSE_STATES", "NOTATION", "state_diagram"]

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
    (_S.CLOSED, _E.ACTIVE_OPEN): ((4.0, 10.15), (8.45, 6.6), "angle,angleA=0,angleB=90,rad=10",
                                  (9.45, 8.6)),
    (_S.SYN_SENT, _E.CLOSE_NO_TCB): ((7.65, 6.6), (4.0, 9.85), "angle,angleA=90,angleB=0,rad=10",
                                     (6.75, 9.2)),
    (_S.LISTEN, _E.RCV_SYN): ((3.6, 8.2), (0.3, 6.6), "arc3", (1.55, 7.75)),
    (_S.LISTEN, _E.SEND): ((4.4, 8.2), (7.3, 6.6), "arc3", (6.25, 7.85)),
    (_S.SYN_RECEIVED, _E.RCV_RST): ((-0.45, 6.6), (4.0, 8.35), "angle,angleA=90,angleB=180,rad=10",
                                    (0.9, 8.75)),
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
#: The arc labels' size in points: at the notebook's 90 dpi, 10 pt is 12.5 px a line.
_LABEL_PT = 10
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
    is filled in by the shortest route the table allows).  Returns the matplotlib Figure;
    ``fig.tcplearn_arcs`` lists the arcs drawn and ``fig.tcplearn_path`` the arcs of ``path``.
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
        on_path=end_on_path,
        faded=fade and not end_on_path and not (close_only and TcpState.CLOSED in highlight))

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
                tx = sx + dx * (reach + 0.45)
                ty = sy + dy * (reach + 0.19)
                stub_tags[state] = ax.text(tx, ty, text, ha="center", va="center", fontsize=9,
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
        ax.text(*label_at, mark + _label_text(event), fontsize=_LABEL_PT, ha="center", va="center",
                color="#999999" if fade and not taken else "#111111", zorder=4,
                fontweight="bold" if taken else "normal",
                gid=f"label:{state.name}:{event.name}:{target.name}",
                bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.9})

    from matplotlib.lines import Line2D

    kinds = [Line2D([], [], color="#222222", lw=1.3, label="arc of RFC 9293 Figure 5")]
    if any(not e.in_figure and e not in _RST_EVENTS for _, e, _ in drawn) or (show_rst and not close_only):
        kinds.append(Line2D([], [], color="#222222", lw=1.3, ls="--",
                            label="arc from the RFC's text (§3.10.7.4)"))
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
