"""How notebook 02 shows why TIME-WAIT exists: tables and sequence diagrams drawn from the
captured segments of ``lost_last_ack``, ``old_duplicate`` and ``time_wait_assassination``.

Data in, tables and a Figure out.  The diagram has two lanes (client, server) and one arrow
per captured segment, in capture order, its time on the left; a segment the deaf server
never heard is dashed with a cross, the segment delivered again is drawn in its own colour
and labelled "replayed".  ``tcplearn.view.display`` names the ``show_*`` functions for
IPython, so a notebook cell that returns one of these results shows all of it.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from ..base.lab import Segment
from ..experiments.old_duplicate import ISN_HZ, OldDuplicate
from ..experiments.why_time_wait import LostLastAck, TimeWaitAssassination
from .show import _display, _md  # one way to hand IPython what a cell shows

__all__ = ["why_diagram", "counters_table", "lost_last_ack_table", "old_duplicate_table",
           "old_duplicates_table",
           "show_old_duplicates",
           "assassination_table", "show_lost_last_ack", "show_old_duplicate", "show_assassination",
           "COUNTER_MEANING", "TCP_MEANING"]

#: What the TcpExt counters these runs move count (names as in /proc/net/netstat; the
#: kernel's list is ``include/uapi/linux/snmp.h``).
COUNTER_MEANING = {
    "TCPTimeWaitOverflow": "closes that got no TIME-WAIT socket (tcp_max_tw_buckets reached)",
    "TW": "the kernel's TIME-WAIT count",
    "TCPChallengeACK": "challenge ACKs sent (RFC 5961)",
    "TCPACKSkippedChallenge": "challenge ACKs not sent (rate limit)",
    "PAWSEstab": "segments dropped by PAWS on established connections (RFC 7323)",
    "TCPDSACKOldSent": "D-SACKs sent for data received before",
    "TCPLossProbes": "tail loss probes sent",
    "TCPTimeouts": "retransmission timeouts",
}
#: The RFC 4022 ``Tcp`` counters of /proc/net/snmp these runs read.
TCP_MEANING = {"InSegs": "segments received", "OutSegs": "segments sent", "OutRsts": "RSTs sent"}
_REPLAYED = "#D55E00"   # Okabe-Ito vermillion
_RST = "#b2182b"
_LANE = {"client": 0.0, "server": 1.0}


def _signed(n: int) -> int:
    return n - 2**32 if n >= 2**31 else n


def _label(seg: Segment) -> str:
    text = f"{seg.flags}  seq={_signed(seg.seq)}"
    if seg.has("ACK"):
        text += f" ack={_signed(seg.ack)}"
    return text + (f" len={seg.length}" if seg.length else "")


def why_diagram(segments: list[Segment], server_port: int, *, replayed: int | None = None,
                unheard: set[int] | frozenset = frozenset(), notes: dict[int, str] | None = None,
                skip: tuple[int, int] | None = None, title: str | None = None) -> Figure:
    """A two-lane sequence diagram of ``segments``, one arrow each, in order.

    ``replayed`` is the index of the segment delivered again (drawn in its own colour,
    labelled "replayed"), ``unheard`` the indices of segments the receiver's socket never
    saw (dashed, a cross), ``notes`` a line of text to show above a segment's arrow, and
    (``len(segments)``: below the last), and
    ``skip`` a ``(start, stop)`` range of indices drawn as one line saying how many were
    left out.  Sequence numbers are relative to each side's ISN; the replayed segment's
    are relative to the *new* connection's, so a negative number lies before it.
    Returns the Figure (arrows carry ``gid="segment:<index>:<kind>"``)."""
    rows: list[tuple] = []
    for i, seg in enumerate(segments):
        if skip and skip[0] <= i < skip[1]:
            if i == skip[0]:
                rows.append(("text", f"… {skip[1] - skip[0]} more segments like these …"))
            continue
        if notes and i in notes:
            rows.append(("text", notes[i]))
        rows.append(("seg", i, seg))
    if notes and len(segments) in notes:
        rows.append(("text", notes[len(segments)]))
    height = max(3.0, 0.4 * len(rows) + 1.3)
    fig = Figure(figsize=(9.5, height))
    ax = fig.subplots()
    ax.set_xlim(-0.95, 1.55)
    ax.set_ylim(len(rows) + 0.2, -1.4)
    ax.set_axis_off()
    client_port = next((s.sport if s.dport == server_port else s.dport for s in segments), None)
    for name, x in _LANE.items():
        ax.plot([x, x], [-0.4, len(rows)], color="#444444", linewidth=1.2, zorder=1)
        port = server_port if name == "server" else client_port
        ax.text(x, -0.75, f"{name} :{port}", ha="center", va="bottom", fontsize=10.5, fontweight="bold")
    ax.text(-0.72, -0.75, "t (ms)", ha="right", va="bottom", fontsize=9, color="#555555")
    for y, row in enumerate(rows):
        if row[0] == "text":
            ax.text(0.5, y + 0.3, row[1], ha="center", va="center", fontsize=8.5, style="italic",
                    color="#333333", zorder=4)
            continue
        _, i, seg = row
        sender = "server" if seg.sport == server_port else "client"
        x0 = _LANE[sender]
        x1 = 1.0 - x0
        kind = ("replayed" if i == replayed else "unheard" if i in unheard
                else "rst" if seg.has("RST") else "segment")
        color = {"replayed": _REPLAYED, "unheard": "#888888", "rst": _RST}.get(kind, "#222222")
        ax.add_patch(FancyArrowPatch((x0, y), (x1, y + 0.5), arrowstyle="-|>", mutation_scale=13, color=color,
                                     linestyle="--" if kind == "unheard" else "-",
                                     linewidth=2.4 if kind == "replayed" else 1.3, zorder=2,
                                     gid=f"segment:{i}:{kind}"))
        if kind == "unheard":
            ax.text(x1 + (0.04 if x1 > 0.5 else -0.04), y + 0.5, "✗", color=_RST, ha="center", va="center",
                    fontsize=13, zorder=5)
        label = _label(seg)
        if kind == "replayed":
            label = "replayed: " + label
        elif kind == "unheard":
            label += "  (not heard)"
        ax.text(0.5, y + 0.2, label, ha="center", va="center", fontsize=8.2, zorder=4,
                color=_REPLAYED if kind == "replayed" else "black",
                fontweight="bold" if kind == "replayed" else "normal",
                bbox={"boxstyle": "round,pad=0.12", "fc": "white", "ec": "none", "alpha": 0.9})
        ax.text(-0.72, y + 0.2, f"{seg.t * 1000:.1f}", ha="right", va="center", fontsize=8, color="#555555")
    ax.set_title(title or "Segments as captured on the loopback (seq/ack relative to each side's ISN)",
                 fontsize=10)
    fig.tcplearn_segments = sum(1 for r in rows if r[0] == "seg")
    fig.tight_layout()
    return fig


def counters_table(changed: dict[str, int], tcp: dict[str, int] | None = None):
    """The counters a run changed, with what each counts (a DataFrame): ``TcpExt`` ones
    (``/proc/net/netstat``), then, when given, ``Tcp`` ones (``/proc/net/snmp``)."""
    import pandas as pd

    order = sorted(changed, key=lambda n: (n not in COUNTER_MEANING, n))
    rows = [{"counter": f"TcpExt {n}", "change": changed[n], "counts": COUNTER_MEANING.get(n, "")}
            for n in order]
    rows += [{"counter": f"Tcp {n}", "change": v, "counts": TCP_MEANING.get(n, "")}
             for n, v in (tcp or {}).items()]
    return pd.DataFrame(rows, columns=["counter", "change", "counts"])


# ---------------------------------------------------------------- the lost last ACK


def _lost_marks(run: LostLastAck) -> tuple[set[int], dict[int, str]]:
    """Which client segments the deaf server never heard, and where the filter came off."""
    segs, unheard, notes = run.captured, set(), {}
    fins = iter(run.fins)
    for i, seg in enumerate(segs):
        if seg.sport == run.server_port and seg.has("FIN"):
            fin = next(fins, None)
            reply = next((j for j in range(i + 1, len(segs)) if segs[j].dport == run.server_port), None)
            if fin is None or reply is None:
                continue
            if not fin["heard"]:
                unheard.add(reply)
            elif not notes:
                notes[reply] = "the filter comes off: the server hears again"
    first_fin = next((i for i, s in enumerate(segs) if s.sport == run.server_port and s.has("FIN")), None)
    if first_fin is not None:
        notes.setdefault(first_fin, "the server's socket is made deaf; it sends its FIN")
    return unheard, notes


def lost_last_ack_table(run: LostLastAck):
    """One row per FIN the server sent: when, what the client answered, whether it was heard."""
    import pandas as pd

    return pd.DataFrame([{"t (ms)": round(f["t"] * 1000, 1),
                          "server sent": "FIN" if i == 0 else f"FIN, retransmission {i}",
                          "client answered": f["answer"], "heard by the server": f["heard"]}
                         for i, f in enumerate(run.fins)])


def lost_last_ack_summary(run: LostLastAck) -> str:
    client = run.client_state_while_lost or "no socket at all (the kernel destroyed it)"
    error = f"`{run.passive_error}`" if run.passive_error else "none (`SO_ERROR` 0)"
    return (f"**{'With' if run.time_wait else 'Without'} TIME-WAIT.** While its last ACK was lost the client "
            f"held **{client}**; the server went {' → '.join(run.server_states)}. Its retransmitted FINs "
            f"drew: **{', '.join(a or '(nothing)' for a in run.answers)}**. The server's socket error at the "
            f"end: **{error}**.")


def show_lost_last_ack(run: LostLastAck) -> None:
    """The summary, the FINs and their answers, the counters, the diagram."""
    unheard, notes = _lost_marks(run)
    _display(_md(lost_last_ack_summary(run)), lost_last_ack_table(run), counters_table(run.counters),
             why_diagram(run.captured, run.server_port, unheard=unheard, notes=notes))


# ---------------------------------------------------------------- the old duplicate


def old_duplicate_table(run: OldDuplicate):
    """The numbers that decide it: the ISN clock, where the copy lands, what got through."""
    import pandas as pd

    rows = [
        ("old connection moved (each way)",
         f"{run.old_bytes_moved:,} bytes in {run.old_seconds * 1000:.0f} ms"),
        ("ISN of the old / the new connection (client)", f"{run.isn_old:,} / {run.isn_new:,}"),
        ("the ISN clock moved", f"{run.isn_distance:,} in {run.isn_gap_s * 1000:.1f} ms "
                                f"({run.isn_rate / 1e6:.3f} million/s; one per 64 ns is {ISN_HZ / 1e6:g})"),
        ("the old bytes reached the new connection's first byte", run.in_reach),
        ("the copy starts, from the new rcv_nxt",
         f"{run.replayed_offset:+,} bytes ({run.replayed_length:,} long)"),
        ("its ACK, from the new snd_una",
         f"{run.ack_offset:+,}" + (" (fitted)" if run.ack == "fitted" else "")),
        ("timestamps (PAWS)", "on" if run.timestamps else "off"),
        ("the new reader got", f"{run.old_bytes_delivered:,} bytes"
                               + (f": {run.delivered[:24]!r}…" if run.delivered else "")),
        ("stopped by", run.stopped_by or "nothing"),
    ]
    return pd.DataFrame(rows, columns=["measured", "value"])


def _old_skip(run: OldDuplicate) -> tuple[int, int] | None:
    """The old connection's bulk, left out of the diagram: from its 6th segment to its close."""
    segs = run.captured
    close = next((i for i, s in enumerate(segs) if s.sport == run.client_port and s.has("FIN")), len(segs))
    return (5, close - 1) if close - 1 - 5 > 2 else None


def show_old_duplicate(run: OldDuplicate) -> None:
    """The numbers, the counters, the diagram (the old connection's bulk left out)."""
    new_syn = max((i for i, s in enumerate(run.captured) if s.flags == "SYN"), default=None)
    notes = {run.replayed: "an old segment is delivered again"}
    cleanup = next((i for i, s in enumerate(run.captured) if i > run.replayed and s.has("RST")), None)
    if cleanup is not None:
        notes[cleanup] = "the experiment ends the new connection (an RST each way)"
    if new_syn is not None:
        notes[new_syn] = "no TIME-WAIT: a new connection on the same four-tuple"
    _display(old_duplicate_table(run), counters_table(run.counters),
             why_diagram(run.captured, run.server_port, replayed=run.replayed, notes=notes,
                         skip=_old_skip(run)))


def old_duplicates_table(runs: dict):
    """Several ``old_duplicate`` runs side by side, one row each (``runs``: a label -> a
    ``Result`` or an ``OldDuplicate``): where it ran, what the copy had going for it, what
    the new reader got, who stopped it, and the counter that says so."""
    import pandas as pd

    rows = []
    for label, result in runs.items():
        run = getattr(result, "value", result)
        # the counter that names the check which stopped the copy (none when it got through)
        telling = {k: v for k, v in run.counters.items()
                   if run.stopped_by and k in ("PAWSEstab", "TCPChallengeACK", "TCPACKSkippedChallenge")}
        rows.append({"run": label, "ran": str(getattr(result, "where", "")),
                     "old bytes reached the new window": run.in_reach,
                     "copy's ACK from snd_una": run.ack_offset, "timestamps": run.timestamps,
                     "new reader got (bytes)": run.old_bytes_delivered,
                     "stopped by": run.stopped_by or "nothing",
                     "counter": ", ".join(f"{k} +{v}" for k, v in telling.items()) or "-"})
    return pd.DataFrame(rows)


def show_old_duplicates(runs: dict) -> None:
    """Each run's one-line note (where it ran), then ``old_duplicates_table``."""
    notes = {label: r.note for label, r in runs.items() if getattr(r, "note", "")}
    if len(set(notes.values())) == 1 and len(notes) == len(runs):  # one place for all: one line
        notes = [f"> {next(iter(notes.values()))}"]
    else:
        notes = [f"> {label}: {note}" for label, note in notes.items()]
    _display(*([_md("\n\n".join(notes))] if notes else []), old_duplicates_table(runs))


# ---------------------------------------------------------------- TIME-WAIT assassination


def assassination_table(run: TimeWaitAssassination):
    """The connection's rows in the kernel's table before the duplicate and after the RST."""
    import pandas as pd

    rows = [{"when": when, "end": r["end"], "state": r["state"], "timer left (s)": r["timer_s"]}
            for when, rs in (("before", run.rows_before), ("after the RST", run.rows_after)) for r in rs]
    if not run.rows_after:
        rows.append({"when": "after the RST", "end": "client", "state": "(gone)", "timer left (s)": None})
    return pd.DataFrame(rows, columns=["when", "end", "state", "timer left (s)"])


def show_assassination(run: TimeWaitAssassination) -> None:
    """The summary, the rows before and after, the diagram."""
    fate = "**survived**" if run.time_wait_survived else "**was killed at once**"
    match = (("exactly" if run.rst_seq == run.time_wait_expects else "not") if run.rst_seq is not None
             else "no RST:")
    _display(_md(f"`tcp_rfc1337={run.rfc1337}`: the RST's sequence number was {run.rst_seq}, {match} the "
                 f"{run.time_wait_expects} the TIME-WAIT socket expected; TIME-WAIT {fate}."),
             assassination_table(run), counters_table(run.counters, run.tcp_counters),
             why_diagram(run.captured, run.server_port, replayed=run.replayed,
                         notes={run.replayed: "a copy of the client's last ACK reaches the server again",
                                len(run.captured): "the client's TIME-WAIT "
                                + ("survives" if run.time_wait_survived else "is gone")}))
