"""TIME-WAIT figures (notebook 02): the kernel's countdown, the tcp_fin_timeout myth, and the
model's simulations (a lost last ACK, an old duplicate) as sequence diagrams."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from ...base.states import TcpState
from .layout import _label_clearance, legend_in_empty_spot
from .sequence import _draw_sequence, _sequence_rows, sequence_diagram
from .style import STATE_STYLE, legend_handles

__all__ = ["countdown_plot", "myth_plot", "simulation_diagram"]


def countdown_plot(countdown, title: str = "TIME-WAIT: the kernel's own timer, read live"):
    """The kernel's TIME-WAIT timer over time, from ``timewait.sample_countdown``; the legend sits
    where it covers no reading (a short run's readings run along the top)."""
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
    ax.grid(alpha=0.3)
    fig.tight_layout()
    legend_in_empty_spot(ax)
    return fig


def myth_plot(table, fin_timeout: int):
    """The timers of ``myth_demo``: an orphaned FIN-WAIT-2, a TIME-WAIT, and an
    orphaned FIN-WAIT-2 whose peer's FIN arrives midway.  Each reading is drawn in the
    style of the state it was in; each line is labelled at a point of its own, the one
    farthest from the other lines, with the label on the side away from them (the two
    TIME-WAIT lines run a couple of seconds apart).  The legend sits where it covers no line,
    label or note."""
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
                    markerfacecolor="white" if hollow else style.color,
                    markeredgewidth=1.4 if hollow else 1.0,
                    gid=f"timer:{name}:{part['state'].iloc[0]}")
        if hollow:  # the socket moved state: a step at the FIN, not a ramp
            a, b = parts[0].iloc[-1], parts[1].iloc[0]
            # the FIN-WAIT-2 timer, still falling, at the first TIME-WAIT reading: the foot of the step
            foot = max(0.0, a["timer_remaining"] - (b["t"] - a["t"]))
            ax.annotate("", xy=(b["t"], b["timer_remaining"]), xytext=(b["t"], foot),
                        arrowprops={"arrowstyle": "-|>", "linestyle": "-", "color": "#333333", "lw": 1.0,
                                    "shrinkA": 0, "shrinkB": 4}, gid="fin-arrives")
            ax.annotate("the peer's FIN arrives:\na fresh 60 s TIME-WAIT",
                        (b["t"], (foot + b["timer_remaining"]) / 2),
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
                         key=lambda c: _label_clearance((sx[c[0]], sy[c[0]]), c[1], half, others,
                                                        (width, height)))
        ax.annotate(name, (xs[best], ys[best]), xytext=(0, lift * 72),
                    textcoords="offset points", ha="center", va="center", fontsize=8, gid=f"label:{name}",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
                    arrowprops={"arrowstyle": "-", "color": "#555555", "lw": 0.6, "shrinkA": 0, "shrinkB": 2})
        cy = sy[best] + lift
        obstacles[f"label:{name}"] = ([sx[best] - half, sx[best] + half], [cy, cy])
    handles = legend_handles([TcpState.FIN_WAIT_2, TcpState.TIME_WAIT])
    from matplotlib.lines import Line2D

    handles.append(Line2D([], [], color="#555555", linestyle=(0, (6, 3)),
                          label=f"tcp_fin_timeout = {fin_timeout} s"))
    handles.append(Line2D([], [], color="#555555", linestyle="", marker="o", markerfacecolor="white",
                          markersize=7, label="hollow: the socket whose peer's FIN arrives"))
    ax.set_xlabel("seconds since the three sockets were made")
    ax.set_ylabel("seconds left on the kernel's timer")
    ax.set_title("One setting, two timers: tcp_fin_timeout moves only the orphaned FIN-WAIT-2")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    # where it covers no line, label or the note on the FIN (a short run puts the FIN on the right)
    legend_in_empty_spot(ax, handles=handles, fontsize=8)
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


def _arrival_note(facts: dict) -> str:
    """What the server made of the copy, from the model's verdicts on its two numbers."""
    head = f"the copy arrives at t={facts['arrives']:g} s:\n"
    if facts["delivered"]:
        return (head + f"seq {facts['old_seq']} is the next byte expected\nand ACK {facts['old_ack']} the "
                "one "
                "accepted,\nso it is read as new data")
    if facts["seq_verdict"] == "out of order":
        return head + (f"seq {facts['old_seq']} is in the window but after\n{facts['rcv_nxt']}: "
                       "queued out of order")
    if facts["seq_verdict"] in ("duplicate", "outside"):
        return head + f"seq {facts['old_seq']}: {facts['seq_verdict']}, dropped"
    return head + f"ACK {facts['old_ack']} is not {facts['snd_una']}:\ndropped, answered by an ACK"


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
    copy_flags = f"data seq={facts['old_seq']} ack={facts['old_ack']} (old copy)"
    if arrival is not None:  # it lands in connection 2: one long arrow across the close
        end = (1.0, arrival + 0.55)
        arrow = FancyArrowPatch((0.0, sent), end, arrowstyle="-|>", mutation_scale=15, color=red,
                                linestyle="--", linewidth=2.0, zorder=3,
                                gid=f"segment:{n_arrows}:client:{copy_flags}")
        ax.text(1.38, arrival + 0.75,
                _arrival_note(facts),
                ha="left", va="center", fontsize=8, color=red, zorder=5, gid="note:arrival",
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
    ax.text(-0.08, sent + 1.0,
            f"a copy of '{facts['old_data']}'\nis delayed {facts['delay']:g} s\nin the network",
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
        ax.text(-0.08, (y0 + y1) / 2, f"the client holds\nTIME-WAIT for\n2×MSL = {tw:g} s", ha="right",
                va="center", fontsize=8, color="black", gid="note:time-wait")
        bracket(-0.95, y0, y1, f"TIME-WAIT = 2×MSL = {tw:g} s", "time-wait", "#6a3d62")
    isn_1, isn_2, window = facts["isn_1"], facts["isn_2"], facts["window"]
    # Both ISNs are the client's (the sender of the copy); the window that decides is the
    # server's receive window, which starts at the client's ISN + 1: both notes sit on the
    # server's side, where the copy lands, and say whose number each is.
    ax.text(1.38, step_row[0] + 0.35, f"connection 1: the client's ISN {isn_1}, the server's "
            f"{facts['server_isn_1']},\nso its data starts at seq {isn_1 + 1} with ACK {facts['old_ack']}",
            ha="left", va="center", fontsize=8.5, gid="isn:1")
    ax.text(1.38, step_row[3] + 0.35, f"connection 2: the client's ISN {isn_2}, the server's "
            f"{facts['server_isn_2']};\nafter {facts['new_bytes']} bytes the server expects seq "
            f"{facts['rcv_nxt']}\n(window {facts['rcv_nxt']}–{facts['rcv_nxt'] + window - 1}) and accepts "
            f"ACK {facts['snd_una']}",
            ha="left", va="center", fontsize=8.5, gid="isn:2")
    ax.set_title(title, fontsize=10)
    fig.text(0.5, 0.005, f"Model assumptions: MSL = {msl:g} s (RFC 9293 takes 2 min; Linux holds TIME-WAIT "
             "60 s); ISNs chosen so that the copy's seq and ACK both fit, the bad case.  Rows in order, not "
             "to scale.", ha="center", va="bottom", fontsize=8, color="#333333", gid="note:model")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig
