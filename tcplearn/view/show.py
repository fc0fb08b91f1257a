"""How a notebook shows each experiment's result: data in, figure and table out.

The result objects hold data only; ``tcplearn.view.display`` tells IPython to call these
functions when a cell's value is a result, so it shows its table and figure.  The same
functions serve tests and anyone's own layout.
"""

from __future__ import annotations

import re

from ..base.states import TcpState
from ..experiments.close import CloseRun
from ..experiments.connect import ConnectTimeoutResult
from ..experiments.load import LoadResult
from ..experiments.plateau import PlateauRun
from ..experiments.remedy import SourcesRemedy
from ..experiments.start_here import CapturedConnection
from ..experiments.timeouts import Comparison
from ..experiments.timewait import MythResult
from . import plots

__all__ = ["show_close_run", "show_load", "plateau_figure", "show_plateau", "show_myth",
           "show_comparison", "comparison_figure", "show_captured", "show_connect_timeout",
           "show_dead_peer", "dead_peer_table", "dead_peer_summary", "load_summary", "show_sources_remedy",
           "time_wait_cost_text", "show_time_wait_cost", "table_html", "table_text"]


# ---------------------------------------------------------------- every table, whole
#
# pandas cuts a cell's text at ``display.max_colwidth`` (50 characters) with "...", and the
# series' tables carry sentences a notebook tells the learner to read (02's sources, 01's
# "Linux differs", 06's "what"): IPython shows every DataFrame through these two, so no cell
# is cut.  Rows are still elided past ``display.max_rows``, as pandas does.

#: A cell longer than this is a sentence: it wraps, left-aligned, in a column wide enough to read.
LONG_CELL = 40
_CELL = re.compile(r"<(td|th)>([^<]*)</(?:td|th)>")
_LONG_STYLE = "text-align: left; white-space: normal; overflow-wrap: anywhere"


def table_html(frame) -> str | None:
    """``frame``'s HTML as pandas draws it, with no cell cut, and every cell longer than
    ``LONG_CELL`` characters wrapping, left-aligned, by an inline style (so it holds in
    JupyterLab, in a static HTML export and wherever a page's own style sheet is missing).
    ``None`` where pandas would draw no HTML (``display.notebook_repr_html`` off)."""
    import pandas as pd

    with pd.option_context("display.max_colwidth", None):
        html = frame._repr_html_()
    if html is None:
        return None

    def wrap(m: re.Match) -> str:
        tag, text = m.group(1), m.group(2)
        return f'<{tag} style="{_LONG_STYLE}">{text}</{tag}>' if len(text) > LONG_CELL else m.group(0)

    return _CELL.sub(wrap, html)


def table_text(frame, printer, cycle: bool) -> None:
    """``frame`` as plain text (a terminal, a text export) with no cell cut."""
    import pandas as pd

    with pd.option_context("display.max_colwidth", None):
        printer.text(repr(frame))


def _display(*objs) -> None:
    from IPython.display import display

    for obj in objs:
        display(obj)


def _md(text: str):
    from IPython.display import Markdown

    return Markdown(text)


def show_close_run(run: CloseRun) -> None:
    """The steps with both ends' kernel states, then the sequence diagram."""
    _display(run.table(), plots.sequence_diagram(run))


def show_load(result: LoadResult) -> None:
    """The load's timeline, the TIME-WAIT count during it when sampled, and one line of totals."""
    objs = [plots.load_plot(result)]
    if result.samples is not None and len(result.samples):
        objs.append(plots.counts_plot(result.samples, states=[TcpState.TIME_WAIT],
                                      title="TIME-WAIT during the run (kernel counts)"))
    objs.append(_md(load_summary(result)))
    _display(*objs)


def plateau_figure(run: PlateauRun):
    """Measured TIME-WAIT during and after the load, beside the model and, for a load that ran a
    TIME-WAIT's 60 s or longer, the plateau it would reach if no TIME-WAIT port were reused (its
    rate × 60 s; a shorter load never gets there, and the line would only flatten its curve)."""
    reaches = run.result.elapsed >= 60
    return plots.counts_plot(run.samples, model=run.model, states=[TcpState.TIME_WAIT],
                             load_window=(0, run.result.elapsed),
                             reference=(run.result.rate * 60, "no reuse: rate × 60 s") if reaches else None,
                             title="TIME-WAIT during and after a steady load: measured vs model")


def show_plateau(run: PlateauRun) -> None:
    """The plateau figure and one paragraph comparing measured and predicted peaks."""
    _display(plateau_figure(run), _md(
        f"Load: {run.result.rate:.0f} connections/s for {run.result.elapsed:.1f} s. TIME-WAIT peak: "
        f"**{run.measured_peak()} measured**, {run.predicted_peak():.0f} predicted "
        f"(model: TIME-WAIT lasting {run.time_wait:.1f} s on average here; "
        + ("with `tcp_tw_reuse` letting `connect()` reuse TIME-WAIT ports on loopback, so only the "
           "distinct ports of the last minute stay in TIME-WAIT)." if run.reuse else
           "no reuse, so every connection of the last minute stays in TIME-WAIT).")))


def show_myth(result: MythResult) -> None:
    """The three sockets' timers on one axis."""
    _display(plots.myth_plot(result.table, result.fin_timeout))


def comparison_figure(comparison: Comparison):
    """The lanes on one time axis, titled with the schedule that was run."""
    return plots.timeout_timeline(comparison.lanes, title=comparison.title or None)


def show_comparison(comparison: Comparison) -> None:
    """Which client saw what, on one time axis, then the counts per client."""
    _display(_md(f"> {comparison.note}"), comparison_figure(comparison), comparison.table())


def show_captured(capture: CapturedConnection) -> None:
    """The captured segments, one row each."""
    _display(capture.table())


def show_connect_timeout(result: ConnectTimeoutResult) -> None:
    """Both attempts' SYNs and failures on one axis, the table, and the kernel's rule beside it."""
    p = result.predicted
    syns = ", ".join(f"{t:g}" for t in p["syns"])
    linear = result.tcp_syn_linear_timeouts
    _display(plots.syn_timeline(result), result.table(), _md(
        f"Read where it ran: `tcp_syn_retries={result.tcp_syn_retries}`, `tcp_syn_linear_timeouts="
        f"{linear if linear is not None else 'absent (an older kernel)'}`. The kernel's rule for these "
        f"predicts SYNs at {syns} s and `ETIMEDOUT` at **{p['gives_up']:g} s** (`tcplearn.syn_schedule`)."))


def dead_peer_table(result):
    """What happened in one ``dead_peer`` run, in time order: what the local end sent (as
    captured) and what the program saw, after the handshake."""
    import pandas as pd

    probes = set(result.loss_probes())

    def what(s: dict) -> str:
        kind = ("tail loss probe (a retransmission before any timeout)"
                if s["kind"] == "retransmission" and s["t"] in probes else s["kind"])
        return f"sent: {kind} ({s['flags']})"

    rows = [{"t (s)": round(s["t"], 3), "seen by": "capture", "what": what(s)}
            for s in result.segments or () if s["from"] == "local" and s["kind"] not in ("handshake", "ack")]
    rows += [{"t (s)": round(e["t"], 3), "seen by": "the program", "what": e["event"]}
             for e in result.events if e["event"] not in ("connected", "close")]
    return pd.DataFrame(sorted(rows, key=lambda row: row["t (s)"]), columns=["t (s)", "seen by", "what"])


def dead_peer_summary(result) -> str:
    """One paragraph: what noticed, when, against what the settings predict, and the
    kernel's timer for this connection as ``/proc/net/tcp`` showed it meanwhile."""
    if result.detected_after is not None:
        text = (f"**Noticed after {result.detected_after:.2f} s: `{result.error}`**; the connection is now "
                f"{result.final_state}.")
    else:
        watched = max((row["t"] for row in result.timeline_rows), default=0.0)
        closed = [s["t"] for s in result.segments or () if s["from"] == "local" and s["kind"] == "fin"]
        text = (f"**Nothing noticed**; the connection was {result.final_state} until the program itself "
                f"closed it at {closed[0]:.2f} s." if closed else
                f"**Nothing noticed** in {watched:.1f} s; the connection is still {result.final_state}.")
    predicted = result.predicted.get("detected_after")
    if predicted is not None:
        text += f" The settings predict {predicted:g} s."
    alive = [row for row in result.timeline_rows if row["state"] == "ESTABLISHED"]
    timers = list(dict.fromkeys(row["timer"] for row in alive))
    if alive:
        text += (f" Kernel timer meanwhile (`/proc/net/tcp`): {', '.join(timers)}; retransmissions counted: "
                 f"{max(row['retrnsmt'] for row in alive)}, "
                 f"unanswered probes: {max(row['timeout'] for row in alive)}.")
    return f"{text}  \n{result.how}"


def show_dead_peer(result) -> None:
    """One run of ``dead_peer``: the summary, then what happened in time order."""
    _display(_md(dead_peer_summary(result)), dead_peer_table(result))


def load_summary(result: LoadResult) -> str:
    """The line of totals under a load's plot.  When connections failed, the rate until the
    first failure too (as the plot's title), since the rate over the whole run mixes the
    time before with the time after."""
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(result.errors.items())) or "none"
    delta = ", ".join(f"{k} +{v}" for k, v in result.netstat_delta().items())
    until = result.rate_until_first_error()
    if until is None:
        rate = f"**{result.rate:.0f}/s**"
    else:
        first = max(result.errors, key=result.errors.get)
        rate = (f"{result.rate:.0f}/s over the whole run; **{until:.0f}/s until the first {first}**, by "
                f"{result.first_error_at():.1f} s (within the 0.1 s before)")
    # TcpExt counters are per network namespace: a lab's are the load's own, the machine's count every program
    own = (result.interference or {}).get("counters_own")
    whose = ("" if own is None else " (your lab's, this load's own)" if own
             else " (the machine's, every program's)")
    return (f"**{result.connections}** connections in {result.elapsed:.1f} s ({rate}); errors: {errors}; "
            f"kernel counters{whose}: {delta}.")


def show_sources_remedy(remedy: SourcesRemedy) -> None:
    """Each run's connections until its four-tuples ran out, the rates they sustain, the table."""
    growth = remedy.growth()
    fold = ", ".join(f"{k}: ×{g:.2f}" for k, g in growth.items() if k != 1)
    _display(plots.sources_remedy_plot(remedy), remedy.table(), _md(
        f"Sustainable rate without reuse, relative to one source address: {fold} "
        f"(connections made before `connect()` failed, divided by the {remedy.time_wait:g} s each four-tuple "
        "stays in TIME-WAIT)."))


def _size_of(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} bytes"


def time_wait_cost_text(cost: dict) -> str:
    """One paragraph: the cost of ``cost['count']`` TIME-WAIT sockets, and where the size came from."""
    per, count = cost["bytes_per_socket"], cost["count"]
    if per is None:
        return (f"The size of a TIME-WAIT mini-socket is unknown here: {cost['where']}. "
                f"{count:,} of them cost an unknown amount of memory.")
    head = f"**{count:,} TIME-WAIT sockets × {per} bytes = {_size_of(cost['bytes'])}** of kernel memory."
    if cost["source"] == "sysfs":
        where = (f"The size is your kernel's own (Linux {cost['kernel']}), read from `{cost['where']}`: "
                 f"the `{cost['cache']}` slab cache holds one `struct tcp_timewait_sock` of "
                 f"{cost['object_size']} bytes in a slot of {per} bytes"
                 + (" (SLUB merged it with caches of a like size, so the object size may be the largest of "
                    "theirs)." if cost.get("merged") else "."))
    elif cost["source"] == "slabinfo":
        where = (f"The size is your kernel's own (Linux {cost['kernel']}): the slot size of the "
                 f"`{cost['cache']}` slab cache in `{cost['where']}`.")
    else:
        where = (f"The size is a sourced figure, **not your kernel's** "
                 f"(neither `/sys/kernel/slab/{cost['cache']}` nor `/proc/slabinfo` can be read here): "
                 f"{cost['where']}; {cost['kernel']}.")
    memory = ""
    if cost.get("mem_total") and cost["bytes"] is not None:
        memory = (f" That is {100 * cost['bytes'] / cost['mem_total']:.3g} % of this machine's "
                  f"{_size_of(cost['mem_total'])} of memory (`MemTotal` in `/proc/meminfo`).")
    return f"{head} {where}{memory}"


def show_time_wait_cost(cost: dict) -> None:
    """``time_wait_cost``'s answer (a ``TimeWaitCost``) as one paragraph."""
    _display(_md(time_wait_cost_text(cost)))
