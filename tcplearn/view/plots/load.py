"""Figures of a load (notebook 04): state counts over time, connections and errors per second, and
more source addresses as the remedy for running out of four-tuples."""

from __future__ import annotations

from matplotlib.figure import Figure

from ...base.states import TcpState
from .layout import legend_in_empty_spot
from .style import _OI, STATE_STYLE

__all__ = ["counts_plot", "load_plot", "sources_remedy_plot"]


def counts_plot(samples, *, model=None, states=None, title: str = "TCP states over time (kernel counts)",
                load_window: tuple[float, float] | None = None,
                reference: tuple[float, str] | None = None):
    """Per-state counts over time from ``sample_states`` / ``StateSampler`` (each state in its
    fixed style), with a model's prediction (``model.predict_counts``) overlaid when given.

    ``load_window`` shades when the load ran; ``reference=(value, label)`` draws a horizontal
    line at ``value`` (gid ``reference``), named with its value in the legend, e.g. the
    plateau without reuse, ``(rate * 60, "no reuse: rate × 60 s")``.  The legend sits where
    it covers no line.  Returns the Figure."""
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
    if reference is not None:
        value, label = reference
        ax.axhline(value, color=_OI["blue"], linestyle="-.", linewidth=1.2, zorder=1.5,
                   label=f"{label} = {value:,.0f}", gid="reference")
    ax.set_xlabel("seconds")
    ax.set_ylabel("sockets")
    ax.set_ylim(bottom=0)
    if reference is not None:  # the line inside the frame, with room above it
        ax.set_ylim(top=max(ax.get_ylim()[1], reference[0] * 1.1))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    legend_in_empty_spot(ax, fontsize=8)
    return fig


def load_plot(result, *, title: str | None = None):
    """A ``LoadResult``'s timeline: completed connections and errors per second (the legend where
    it covers neither line).  Returns the Figure."""
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
    ax.grid(alpha=0.3)
    fig.tight_layout()
    legend_in_empty_spot(ax, fontsize=8)
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
