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
from ..base.states import TcpState
from ..experiments.load import run_load, watch_plateau, with_settings
from .plots import STATE_STYLE

__all__ = ["Playground", "sysctl_playground", "LIVE_MAX_DURATION"]

LIVE_MAX_DURATION = 10.0  # seconds: live runs from the playground stay short (Binder, 1 CPU)
CLOSERS = {
    "client closes first": "client",
    "server closes first": "server",
    "client closes, server never does (CLOSE-WAIT leak)": "leak",
}
BUCKET_CHOICES = (100, 1_000, 10_000, 65_536, 131_072, 262_144)


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


class Playground:
    """The sysctl playground.  ``widget`` is what a notebook displays; ``controls`` maps
    names to ipywidgets; ``last`` holds the latest prediction (and live run)."""

    def __init__(self) -> None:
        import ipywidgets as w

        current = sysctl.read_all()
        self.current = current
        port_range = current.get("ip_local_port_range") or (32768, 60999)
        style = {"description_width": "170px"}
        layout = w.Layout(width="560px")
        self.controls = {
            "tcp_fin_timeout": w.IntSlider(value=current.get("tcp_fin_timeout") or 60, min=1, max=120,
                                           description="tcp_fin_timeout (s)", continuous_update=False,
                                           style=style, layout=layout),
            "tcp_tw_reuse": w.Dropdown(options=[("0: never", 0), ("1: yes", 1), ("2: loopback only", 2)],
                                       value=current.get("tcp_tw_reuse") if current.get("tcp_tw_reuse") in (0, 1, 2)
                                       else 2, description="tcp_tw_reuse", style=style, layout=layout),
            "tcp_max_tw_buckets": w.SelectionSlider(
                options=sorted({*BUCKET_CHOICES, current.get("tcp_max_tw_buckets") or 131_072}),
                value=current.get("tcp_max_tw_buckets") or 131_072, description="tcp_max_tw_buckets",
                continuous_update=False, style=style, layout=layout),
            "ip_local_port_range": w.IntRangeSlider(value=port_range, min=1024, max=65535,
                                                    description="ip_local_port_range", continuous_update=False,
                                                    style=style, layout=layout),
            "rate": w.FloatLogSlider(value=200, base=10, min=0, max=4, description="connections / s",
                                     continuous_update=False, style=style, layout=layout),
            "duration": w.IntSlider(value=90, min=1, max=300, description="load duration (s)",
                                    continuous_update=False, style=style, layout=layout),
            "closer": w.Dropdown(options=list(CLOSERS.items()), value="client", description="who closes",
                                 style=style, layout=layout),
            "bind_before_connect": w.Checkbox(value=False, description="bind() before connect()",
                                              style=style, layout=layout),
        }
        self.summary = w.HTML()
        self.commands = w.HTML()
        self.plot = w.Output()
        self.status = w.HTML()
        # where a plain load and a load with the chosen settings would run: the one ladder's answer
        live, apply = watch_plateau.plan(), with_settings.plan()
        self.live_why = live.why if live.where is not Where.LIVE else ""  # '' where loads run live
        self.run_button = w.Button(description="Show the recorded run" if self.live_why else "Run live (10 s max)",
                                   button_style="info", icon="play")
        self.apply_toggle = w.Checkbox(value=False, description="apply the chosen values for this run")
        self.apply_mode = apply.where.value if apply.where in (Where.LAB, Where.ROOT) else None
        if self.apply_mode is None:
            self.apply_toggle.disabled = True
            self.apply_reason = (f"Applying is off here: {self.live_why}; the button shows a load recorded on Linux."
                                 if self.live_why else f"Applying is off here: {apply.why}.")
        else:
            self.apply_reason = ("Applied inside a private lab: no root needed, this machine untouched."
                                 if apply.where is Where.LAB else
                                 "No lab here: applied on this machine as root, restored after.")
        self.last: dict = {}
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.run_button.on_click(lambda _: self.run_live())
        self.widget = w.VBox([
            w.HTML("<b>Kernel settings</b> (this machine's current values are shown beside the controls)"),
            *[w.HBox([self.controls[k], w.HTML(self._current_text(k))])
              for k in ("tcp_fin_timeout", "tcp_tw_reuse", "tcp_max_tw_buckets", "ip_local_port_range")],
            w.HTML("<b>Workload</b> (loopback)"),
            *[self.controls[k] for k in ("rate", "duration", "closer", "bind_before_connect")],
            self.plot, self.summary, self.commands,
            w.HBox([self.run_button, self.apply_toggle]), w.HTML(f"<i>{self.apply_reason}</i>"), self.status,
        ])
        self.update()

    def _repr_mimebundle_(self, **kwargs):
        # a notebook shows the controls when the Playground is a cell's value
        return self.widget._repr_mimebundle_(**kwargs)

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
        return {k: v[k] for k in ("tcp_fin_timeout", "tcp_tw_reuse", "tcp_max_tw_buckets", "ip_local_port_range")}

    def _on_change(self, _change) -> None:
        self.update()

    def update(self) -> dict:
        """Recompute the prediction for the current controls; returns ``self.last``."""
        from IPython.display import display

        v = self.values()
        prediction = predict_settings(**{k: v[k] for k in ("tcp_fin_timeout", "tcp_tw_reuse", "tcp_max_tw_buckets",
                                                   "ip_local_port_range", "rate", "duration",
                                                   "bind_before_connect")}, closer=v["closer"])
        figure = _figure(prediction)
        changed = {k: val for k, val in self.chosen_settings().items() if val != self.current.get(k)}
        self.last = {"prediction": prediction, "figure": figure, "values": v,
                     "commands": [sysctl.command(k, val) for k, val in changed.items()]}
        self.summary.value = "<ul>" + "".join(f"<li>{n}</li>" for n in prediction["notes"]) + "</ul>"
        self.commands.value = ("<b>To make these settings on a real Linux machine</b> (root; think twice):<pre>"
                               + "\n".join(self.last["commands"]) + "</pre>" if self.last["commands"] else
                               "<i>The chosen settings are this machine's own.</i>")
        self.run_button.disabled = v["closer"] == "leak"
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
            raise ValueError("the CLOSE-WAIT leak has no live run: a server that never closes is not something "
                             "to leave running; notebook 01 shows one connection of it")
        duration = min(float(v["duration"]), LIVE_MAX_DURATION)
        kwargs = dict(rate=v["rate"], duration=duration, closer=v["closer"],
                      bind_before_connect=v["bind_before_connect"], sample_interval=0.25, progress=True)
        self.status.value = "<i>running…</i>"
        if self.apply_toggle.value and self.apply_mode is not None:
            applied = with_settings(self.chosen_settings(), **kwargs)
            result, where = applied.value, applied.note
        else:
            result = run_load(**kwargs)
            where = "Ran on this machine with its own settings (apply is off)."
        measured = result.samples.copy()
        measured["TIME_WAIT"] -= measured["TIME_WAIT"].iloc[0]  # this run's sockets only
        self.last["live"] = result
        self.last["figure"] = _figure(self.last["prediction"], measured,
                                      title=f"Model (dashed) and this run (solid): {result.rate:.0f}/s achieved")
        errors = ", ".join(f"{k} {n}" for k, n in sorted(result.errors.items())) or "no errors"
        self.status.value = f"{where} {result.connections} connections, {errors}."
        self.plot.clear_output(wait=True)
        with self.plot:
            display(self.last["figure"])
        return self.last


    def _show_recorded(self) -> dict:
        from IPython.display import display

        run = watch_plateau(rate=200, progress=False)  # the recorded run, here
        measured = run.samples[["t", "TIME_WAIT"]].copy()
        measured["TIME_WAIT"] -= measured["TIME_WAIT"].iloc[0]
        self.last["recorded"] = run.note
        self.last["figure"] = _figure(self.last["prediction"], measured,
                                      title=f"Model (dashed) and a recorded Linux run (solid): "
                                            f"{run.result.rate:.0f}/s for {run.result.elapsed:.0f} s")
        self.status.value = run.note
        self.plot.clear_output(wait=True)
        with self.plot:
            display(self.last["figure"])
        return self.last


def sysctl_playground() -> Playground:
    """The playground, ready to display: ``tcplearn.widgets.sysctl_playground()`` in a cell."""
    return Playground()

