"""``sysctl_playground()``: turn the TIME-WAIT knobs and see what each really does.

The controls drive the model (``tcplearn.model``) at once; "Run live" runs a bounded load
under this machine's own settings and overlays the measurement; "apply for this run"
runs that load in a private lab with the chosen values (no root, machine untouched), or
with ``sysctl.apply`` as root when no lab can start, and is disabled, with the reason,
otherwise.  Every callback returns its data and figure, so it can be tested without a
browser: set a control's ``.value`` and read ``playground.last``.
"""

from __future__ import annotations

from ..base import sysctl
from ..base.experiment import Where
from ..base.model import predict_settings
from ..base.progress import MIN_SECONDS
from ..base.states import TcpState
from ..experiments.knobs import machine_load, with_settings
from ..experiments.plateau import watch_plateau
from .plots import STATE_STYLE

__all__ = ["Playground", "sysctl_playground", "LIVE_MAX_DURATION"]

LIVE_MAX_DURATION = 10.0  # seconds: live runs from the playground stay short (Binder, 1 CPU)
CLOSERS = {
    "client closes first": "client",
    "server closes first": "server",
    "client closes, server never does (CLOSE-WAIT leak)": "leak",
}
BUCKET_CHOICES = (100, 1_000, 10_000, 65_536, 131_072, 262_144)
#: Round rates only, so the slider's readout and the model's notes say the same number.
RATE_CHOICES = (1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 300, 500, 1_000, 2_000, 3_000, 5_000, 10_000)
LEAK_OFF = ("Run live is off for the CLOSE-WAIT leak: a server that never closes is not something to leave "
            "running; notebook 01 shows one connection of it. The curves above are the model's.")


def _figure(prediction: dict, measured=None, title: str = "Predicted by the model"):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.5, 3.8))
    ax = fig.subplots()
    frame = prediction["frame"]
    for state in (TcpState.TIME_WAIT, TcpState.FIN_WAIT_2, TcpState.CLOSE_WAIT):
        if frame[state.name].max() > 0:
            style = STATE_STYLE[state]
            ax.plot(frame["t"], frame[state.name], color=style.color, linestyle="--",
                    label=f"{state.label} (model)", gid=f"model:{state.name}")
    if measured is not None and len(measured):
        style = STATE_STYLE[TcpState.TIME_WAIT]
        ax.plot(measured["t"], measured["TIME_WAIT"], color=style.color, linestyle="-", marker=style.marker,
                markersize=3, label="TIME-WAIT (measured)", gid="measured:TIME_WAIT")
    ax.set_xlabel("seconds")
    ax.set_ylabel("sockets")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    if ax.get_lines():
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def _live_figure(ran: dict, measured, title: str, *, chosen: dict | None = None, full: dict | None = None):
    """The live run over the model for the settings it ran under, zoomed to the run's own
    window (left); when the chosen controls differ, their model too, labelled; the full
    model curve for the chosen workload on the right."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.8))
    ax, ax_full = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    style = STATE_STYLE[TcpState.TIME_WAIT]
    counts = measured["TIME_WAIT"].clip(lower=0)  # the run's own sockets: never shifted, never negative
    ax.plot(measured["t"], counts, color=style.color, linestyle="-", marker=style.marker, markersize=3,
            label="TIME-WAIT (measured, this run's own)", gid="measured:TIME_WAIT")
    frame = ran["frame"]
    ax.plot(frame["t"], frame["TIME_WAIT"], color="black", linestyle="--",
            label="model, settings this run ran under", gid="model:TIME_WAIT")
    if chosen is not None:
        other = chosen["frame"]
        ax.plot(other["t"], other["TIME_WAIT"], color=style.color, linestyle=":",
                label="model, your chosen settings", gid="model-chosen:TIME_WAIT")
    end = float(measured["t"].max()) if len(measured) else float(frame["t"].max())
    ax.set_xlim(0, end * 1.02 + 0.1)
    top = max(float(counts.max()) if len(counts) else 0.0,
              float(frame[frame["t"] <= end]["TIME_WAIT"].max() or 0.0), 1.0)
    ax.set_ylim(0, top * 1.15)
    ax.set_xlabel("seconds since the load started")
    ax.set_ylabel("sockets")
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    if full is not None:
        f = full["frame"]
        ax_full.plot(f["t"], f["TIME_WAIT"], color=style.color, linestyle="--", gid="full-model:TIME_WAIT")
        ax_full.axvspan(0, end, color="#cccccc", alpha=0.4, label="the live window")
        ax_full.legend(loc="upper right", fontsize=8)
    ax_full.set_title("Model for your chosen workload, whole run", fontsize=10)
    ax_full.set_xlabel("seconds")
    ax_full.set_ylim(bottom=0)
    ax_full.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _rate_title(what: str, connections: int, seconds: float) -> str:
    return f"{what}: {connections} connections in {seconds:.1f} s = {connections / max(seconds, 1e-9):.0f}/s"


def _peak(t, counts) -> tuple[float, float]:
    """``(peak, by)``: the highest count and the first time it was within 5 % of it."""
    t, counts = list(t), list(counts)
    if not counts:
        return 0.0, 0.0
    top = max(counts)
    return float(top), float(next(x for x, c in zip(t, counts, strict=True) if c >= 0.95 * top))


def agreement(ran: dict, measured, end: float) -> dict:
    """The live run's TIME-WAIT peak and when it was reached, beside the model's for the
    settings the run ran under, both within the run's own ``end`` seconds."""
    frame = ran["frame"][ran["frame"]["t"] <= end + 1e-9]
    model_peak, model_by = _peak(frame["t"], frame["TIME_WAIT"])
    counts = measured["TIME_WAIT"].clip(lower=0) if len(measured) else measured["TIME_WAIT"]
    peak, by = _peak(measured["t"], counts)
    return {"measured": peak, "measured_by": by, "model": model_peak, "model_by": model_by}


class Playground:
    """The sysctl playground.  ``widget`` is what a notebook displays; ``controls`` maps
    names to ipywidgets; ``last`` holds the latest prediction (and live run)."""

    def __init__(self) -> None:
        import ipywidgets as w

        current = sysctl.read_all()
        self.current = current
        port_range = current.get("ip_local_port_range") or (32768, 60999)
        tw_reuse = current.get("tcp_tw_reuse")
        style = {"description_width": "150px"}

        # one layout each, shrinking with a narrow window (a 900 px one) instead of pushing past it:
        # a setting shares its row with the machine's value; a workload control has its row alone
        def layout():
            return w.Layout(flex="1 1 400px", min_width="380px", max_width="560px")

        def alone():
            return w.Layout(width="100%", max_width="560px")

        self.controls = {
            "tcp_fin_timeout": w.IntSlider(value=current.get("tcp_fin_timeout") or 60, min=1, max=120,
                                           description="tcp_fin_timeout (s)", continuous_update=False,
                                           style=style, layout=layout()),
            "tcp_tw_reuse": w.Dropdown(options=[("0: never", 0), ("1: yes", 1), ("2: loopback only", 2)],
                                       value=tw_reuse if tw_reuse in (0, 1, 2) else 2,
                                       description="tcp_tw_reuse", style=style, layout=layout()),
            "tcp_max_tw_buckets": w.SelectionSlider(
                options=sorted({*BUCKET_CHOICES, current.get("tcp_max_tw_buckets") or 131_072}),
                value=current.get("tcp_max_tw_buckets") or 131_072, description="tcp_max_tw_buckets",
                continuous_update=False, style=style, layout=layout()),
            "ip_local_port_range": w.IntRangeSlider(value=port_range, min=1024, max=65535,
                                                    description="ip_local_port_range",
                                                    continuous_update=False, style=style, layout=layout()),
            "rate": w.SelectionSlider(options=[(f"{r:,}", r) for r in RATE_CHOICES], value=200,
                                      description="connections / s", continuous_update=False, style=style,
                                      layout=alone()),
            "duration": w.IntSlider(value=90, min=1, max=300, description="load duration (s)",
                                    continuous_update=False, style=style, layout=alone()),
            "closer": w.Dropdown(options=list(CLOSERS.items()), value="client", description="who closes",
                                 style=style, layout=alone()),
            "bind_before_connect": w.Checkbox(value=False, description="bind() before connect()",
                                              style=style, layout=alone()),
        }
        self.summary = w.HTML()
        self.commands = w.HTML()
        self.plot = w.Output()
        self.status = w.HTML()
        self.progress = w.Output()  # a run's progress bar: here, not in JupyterLab's log console
        self.progress.add_class("tcplearn-progress")
        # where a plain load and a load with the chosen settings would run: the one ladder's answer
        live, apply = watch_plateau.plan(), with_settings.plan()
        self.live_why = live.why if live.where is not Where.LIVE else ""  # '' where loads run live
        self.run_button = w.Button(
            description="Show the recorded run" if self.live_why else "Run live (at most "
                                                                      f"{LIVE_MAX_DURATION:g} s)",
            button_style="info", icon="play", layout=w.Layout(width="auto", min_width="fit-content"))
        self.apply_toggle = w.Checkbox(value=False, description="apply the chosen values for this run",
                                       indent=False, layout=w.Layout(width="auto", min_width="fit-content"))
        self.apply_mode = apply.where.value if apply.where in (Where.LAB, Where.ROOT) else None
        if self.apply_mode is None:
            self.apply_toggle.disabled = True
            self.apply_reason = (f"Applying is off here: {self.live_why}; the button shows a load recorded "
                                 "on Linux." if self.live_why else f"Applying is off here: {apply.why}.")
        else:
            self.apply_reason = ("Ticked, the run applies your values inside a private lab: no root needed, "
                                 "this machine untouched." if apply.where is Where.LAB else
                                 "Ticked, the run applies your values on this machine as root (no lab here); "
                                 "they are restored after.")
        self.apply_note = w.HTML()
        self.last: dict = {}
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.apply_toggle.observe(lambda _: self._show_apply_note(), names="value")
        self._show_apply_note()
        self.run_button.on_click(lambda _: self.run_live())
        self.widget = w.VBox([
            w.HTML("<b>Kernel settings</b> (this machine's current values are shown beside the controls)"),
            *[w.HBox([self.controls[k], w.HTML(self._current_text(k), layout=w.Layout(flex="0 0 auto"))],
                     layout=w.Layout(flex_flow="row wrap", align_items="center"))
              for k in ("tcp_fin_timeout", "tcp_tw_reuse", "tcp_max_tw_buckets", "ip_local_port_range")],
            w.HTML("<b>Workload</b> (loopback)"),
            *[self.controls[k] for k in ("rate", "duration", "closer", "bind_before_connect")],
            self.plot, self.summary, self.commands,
            w.HBox([self.run_button, self.apply_toggle],
                   layout=w.Layout(flex_flow="row wrap", align_items="center", grid_gap="12px")),
            self.apply_note, self.status, self.progress,
        ], layout=w.Layout(max_width="100%"))
        self.widget.add_class("tcplearn-playground")
        self.update()

    def _repr_mimebundle_(self, **kwargs):
        # a notebook shows the controls when the Playground is a cell's value
        return self.widget._repr_mimebundle_(**kwargs)

    def _show_apply_note(self) -> None:
        # what "apply" will do, said only when it is ticked (or why it cannot be)
        if self.apply_mode is None:
            text = self.apply_reason
        elif self.apply_toggle.value:
            text = self.apply_reason
        else:
            text = ("Not ticked: Run live uses this machine's own settings (or, for a load too big to share "
                    "the machine, a private lab set like it).")
        self.apply_note.value = f"<i>{text}</i>"

    def _current_text(self, key: str) -> str:
        value = self.current.get(key)
        return f"&nbsp; now: <code>{value if value is not None else 'n/a'}</code>"

    def values(self) -> dict:
        """The chosen settings and workload."""
        v = {k: c.value for k, c in self.controls.items()}
        v["ip_local_port_range"] = tuple(v["ip_local_port_range"])
        return v

    def chosen_settings(self) -> dict:
        v = self.values()
        return {k: v[k] for k in ("tcp_fin_timeout", "tcp_tw_reuse", "tcp_max_tw_buckets",
                                  "ip_local_port_range")}

    def _on_change(self, _change) -> None:
        self.update()

    def update(self) -> dict:
        """Recompute the prediction for the current controls; returns ``self.last``."""
        from IPython.display import display

        v = self.values()
        names = ("tcp_fin_timeout", "tcp_tw_reuse", "tcp_max_tw_buckets", "ip_local_port_range", "rate",
                 "duration", "bind_before_connect")
        prediction = predict_settings(**{k: v[k] for k in names}, closer=v["closer"])
        figure = _figure(prediction)
        changed = {k: val for k, val in self.chosen_settings().items() if val != self.current.get(k)}
        self.last = {"prediction": prediction, "figure": figure, "values": v,
                     "commands": [sysctl.command(k, val) for k, val in changed.items()]}
        self.summary.value = "<ul>" + "".join(f"<li>{n}</li>" for n in prediction["notes"]) + "</ul>"
        self.commands.value = ("<b>To make these settings on a real Linux machine</b> (root; think twice):"
                               "<pre>" + "\n".join(self.last["commands"]) + "</pre>" if self.last["commands"]
                               else "<i>The chosen settings are this machine's own.</i>")
        self.run_button.disabled = v["closer"] == "leak"
        if v["closer"] == "leak":
            self.status.value = f"<i>{LEAK_OFF}</i>"
        elif LEAK_OFF in self.status.value:
            self.status.value = ""
        self.plot.clear_output(wait=True)
        with self.plot:
            display(figure)
        return self.last

    def run_live(self) -> dict:
        """Run a bounded load for the chosen workload (at most ``LIVE_MAX_DURATION`` s) and
        overlay the measured TIME-WAIT count; with "apply" on, under the chosen settings.
        Where nothing can be observed live (macOS, Windows), overlay the load recorded on
        Linux instead (``last["recorded"]`` holds its note)."""
        from IPython.display import display

        if self.live_why:
            return self._show_recorded()
        v = self.values()
        if v["closer"] == "leak":
            raise ValueError("the CLOSE-WAIT leak has no live run: a server that never closes is not "
                             "something to leave running; notebook 01 shows one connection of it")
        duration = min(float(v["duration"]), LIVE_MAX_DURATION)
        kwargs = dict(rate=v["rate"], duration=duration, closer=v["closer"],
                      bind_before_connect=v["bind_before_connect"], sample_interval=0.25,
                      progress=duration > MIN_SECONDS)
        applying = self.apply_toggle.value and self.apply_mode is not None
        self.status.value = (f"<i>Running a {duration:g} s load at {v['rate']:g}/s"
                             f"{' with your values' if applying else ''}…</i>")
        machine = {k: self.current.get(k) for k in self.chosen_settings() if self.current.get(k) is not None}
        ran_under = self.chosen_settings() if applying else {**self.chosen_settings(), **machine}
        self.progress.clear_output()
        error: BaseException | None = None
        with self.progress:  # the bar goes into the playground (a callback's output has no cell)
            try:
                if applying:
                    ran = with_settings(ran_under, **kwargs)
                else:
                    # on the machine, or (too big to share it) in a lab set like it: the ladder's choice
                    ran = machine_load(**kwargs)
            # raised below, outside the Output, which would eat it
            except BaseException as exc:  # noqa: BLE001
                error = exc
        if error is None and ran.value is None:
            error = RuntimeError(ran.note)
        if error is not None:
            self.status.value = f"<b>The run failed:</b> {type(error).__name__}: {error}"
            raise error
        result, where = ran.value, ran.note
        self.last["live"] = result
        self.last["ran_under"] = ran_under
        predict_keys = ("tcp_fin_timeout", "tcp_tw_reuse", "tcp_max_tw_buckets", "ip_local_port_range")
        # the workload as chosen (rate) and run (duration): a load whose ports ran out achieves less
        # than it asked for, and the model knows why; fed the achieved rate it would not
        workload = dict(rate=v["rate"], duration=duration, closer=v["closer"],
                        bind_before_connect=v["bind_before_connect"])
        model_ran = predict_settings(**{k: ran_under[k] for k in predict_keys}, **workload)
        chosen = None
        if any(ran_under[k] != self.chosen_settings()[k] for k in predict_keys):
            chosen = predict_settings(**self.chosen_settings(), **workload)
        self.last["ran_prediction"], self.last["chosen_prediction"] = model_ran, chosen
        self.last["figure"] = _live_figure(model_ran, result.samples,
                                           _rate_title("This run", result.connections, result.elapsed),
                                           chosen=chosen, full=self.last["prediction"])
        end = float(result.samples["t"].max()) if len(result.samples) else duration
        agree = self.last["agreement"] = agreement(model_ran, result.samples, end)
        errors = ", ".join(f"{k} {n}" for k, n in sorted(result.errors.items())) or "no errors"
        self.status.value = (
            f"{where} {result.connections} connections in {result.elapsed:.1f} s, {errors}.<br>"
            f"<span class='tcplearn-agreement'>Measured: a TIME-WAIT peak of {agree['measured']:.0f}, "
            f"reached by {agree['measured_by']:.1f} s; the model for the settings it ran under: "
            f"{agree['model']:.0f}, by {agree['model_by']:.1f} s.</span>")
        self.plot.clear_output(wait=True)
        with self.plot:
            display(self.last["figure"])
        return self.last

    def _show_recorded(self) -> dict:
        from IPython.display import display

        run = watch_plateau(rate=200, progress=False)  # the recorded run, here
        measured = run.samples[["t", "TIME_WAIT"]].copy()  # the run's own sockets (recorded in a lab)
        self.last["recorded"] = run.note
        self.last["figure"] = _figure(self.last["prediction"], measured.clip(lower=0),
                                      title=_rate_title("Model (dashed) and a recorded Linux run (solid)",
                                                        run.result.connections, run.result.elapsed))
        self.status.value = run.note
        self.plot.clear_output(wait=True)
        with self.plot:
            display(self.last["figure"])
        return self.last


def sysctl_playground() -> Playground:
    """The playground, ready to display: ``tcplearn.widgets.sysctl_playground()`` in a cell."""
    return Playground()

