"""Sequence diagrams: the two ends' timelines, one arrow per segment, the states after each step."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from .style import STATE_STYLE

__all__ = ["sequence_diagram"]

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
