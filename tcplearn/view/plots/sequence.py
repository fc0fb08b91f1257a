"""Sequence diagrams: the two ends' timelines, one arrow per segment, the states after each step."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from .style import STATE_STYLE

__all__ = ["sequence_diagram"]

_LANE = {"client": 0.0, "server": 1.0}


def _captured_cross(a, b) -> bool:
    """Whether captured segment ``b``, the next one the other way, was sent before ``a`` arrived:
    ``a`` takes sequence space (a SYN, a FIN, data) and ``b`` does not acknowledge it yet.
    (Relative numbers: ``b.ack`` counts in ``a``'s sender's sequence space.)"""
    space = a.length + ("SYN" in a.flags) + ("FIN" in a.flags)
    return space > 0 and "ACK" in b.flags and b.ack < a.seq + space


def _predicted_cross(a: tuple[str, str], b: tuple[str, str]) -> bool:
    """Whether two segments RFC 9293's logic (``rfc.predict``) sends one after the other are in
    flight together: a FIN (or SYN) each way, the second sent on its end's own call, before the
    first arrived (a FIN answering one is sent with its ACK: "FIN,ACK")."""
    return a[0] != b[0] and a[1] == b[1] and a[1] in ("FIN", "SYN")


def _sequence_rows(history, segments_by_step, server_port) -> list[tuple]:
    """One row per segment (``("seg", sender, flags, detail, step index, crosses)``) and per
    step (``("step", step, step index)``), in order.  ``crosses`` is true when the segment and
    the next one, the other way in the same step, were in flight together (each sent before
    the other arrived, as in a simultaneous close): they are drawn as crossing arrows."""
    rows: list[tuple] = []
    for i, step in enumerate(history):
        if segments_by_step is not None:
            segs = list(segments_by_step[i])
            for k, seg in enumerate(segs):
                sender = "server" if seg.sport == server_port else "client"
                detail = f"seq={seg.seq} ack={seg.ack}" + (f" len={seg.length}" if seg.length else "")
                nxt = segs[k + 1] if k + 1 < len(segs) else None
                crosses = (nxt is not None and (nxt.sport == server_port) != (sender == "server")
                           and _captured_cross(seg, nxt))
                rows.append(("seg", sender, seg.flags, detail, i, crosses))
        else:
            segs = list(step.segments)
            for k, (sender, flags) in enumerate(segs):
                crosses = k + 1 < len(segs) and _predicted_cross(segs[k], segs[k + 1])
                rows.append(("seg", sender, "data" if flags == "DATA" else flags, "", i, crosses))
        rows.append(("step", step, i))
    _unpair(rows)
    return rows


def _unpair(rows: list[tuple]) -> None:
    """Crossings come in pairs: a segment crossed by the one before it does not also cross the
    next (three FINs in a row would otherwise chain)."""
    for y in range(1, len(rows)):
        if rows[y][0] == "seg" and rows[y][5] and rows[y - 1][0] == "seg" and rows[y - 1][5]:
            rows[y] = (*rows[y][:5], False)


def _draw_sequence(rows, *, skip=lambda row: False, xlim=(-0.75, 1.75), width: float = 9.5):
    """Draw ``rows`` (from ``_sequence_rows``): lanes, one arrow per segment (rows for
    which ``skip(row)`` is true are left empty, for the caller to draw), the states
    after each step.  Two segments in flight together cross: each from its row to below the
    second's (``fig.tcplearn_crossing`` lists their arrows' numbers, in pairs).  Returns
    ``(fig, ax, number of arrows)``."""
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
    fig.tcplearn_crossing = []
    for y, row in enumerate(rows):
        if row[0] == "gap":  # time passing, for the caller to annotate
            continue
        if row[0] == "seg":
            _, sender, flags, detail, _, crosses = row
            if skip(row):
                continue
            second = y > 0 and rows[y - 1][0] == "seg" and rows[y - 1][5]
            if crosses or second:
                n_arrows += _crossing_arrow(ax, y, row, n_arrows, first=crosses)
                if second:
                    fig.tcplearn_crossing.append((n_arrows - 2, n_arrows - 1))
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


def _crossing_arrow(ax, y: int, row: tuple, n: int, *, first: bool) -> int:
    """One of two crossing arrows: the first from its row ``y``, the second from the row above
    its own (both sent before either arrived), each ending below the second's row, its label on
    its own half of the gap.  Returns 1 (the arrows drawn)."""
    _, sender, flags, detail, _, _ = row
    top = y if first else y - 1
    x0 = _LANE[sender]
    x1 = 1.0 - x0
    drop = 1.55  # from the first row to where a lone arrow of the second row would end
    ax.add_patch(FancyArrowPatch((x0, top), (x1, top + drop), arrowstyle="-|>", mutation_scale=13,
                                 color="#b2182b" if "RST" in flags else "#222222", linewidth=1.4, zorder=2,
                                 gid=f"segment:{n}:{sender}:{flags}"))
    lx = 0.25 if x0 == 0 else 0.75  # a quarter of the way along: on the line, clear of the crossing
    ax.text(lx, top + 0.25 * drop - 0.05, flags + (f"  {detail}" if detail else ""), ha="center", va="center",
            fontsize=8.5, zorder=4, gid=f"label:crossing:{sender}",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.9})
    if not first:
        ax.text(1.08, top + drop / 2, "crossed: each was sent\nbefore the other arrived", ha="left",
                va="center", fontsize=8, style="italic", color="#333333", gid="note:crossing")
    return 1


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
