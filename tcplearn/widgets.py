"""``sysctl_playground()``: turn the TIME-WAIT knobs and see what each really does.

The controls drive the model (``tcplearn.model``) at once; "Run live" runs a bounded load
under this machine's own settings and overlays the measurement; "apply for this run"
runs that load in a private lab with the chosen values (no root, machine untouched), or
with ``sysctl.apply`` as root when no lab can start, and is disabled, with the reason,
otherwise.  Every callback returns its data and figure, so it can be tested without a
browser: set a control's ``.value`` and read ``playground.last``.
"""

from __future__ import annotations

from . import model, sysctl
from .states import TcpState

__all__ = ["Playground", "sysctl_playground", "predict", "LIVE_MAX_DURATION"]

LIVE_MAX_DURATION = 10.0  # seconds: live runs from the playground stay short (Binder, 1 CPU)
CLOSERS = {
    "client closes first": "client",
    "server closes first": "server",
    "client closes, server never does (CLOSE-WAIT leak)": "leak",
}
BUCKET_CHOICES = (100, 1_000, 10_000, 65_536, 131_072, 262_144)


def predict(*, tcp_fin_timeout: int, tcp_tw_reuse: int, tcp_max_tw_buckets: int,
            ip_local_port_range: tuple[int, int], rate: float, duration: float, closer: str,
            bind_before_connect: bool, time_wait: float = 60.0) -> dict:
    """What the model says for these settings and this workload, over loopback.

    Returns ``{"frame": DataFrame (t, TIME_WAIT, FIN_WAIT_2, CLOSE_WAIT), "plateau",
    "sustainable_rate", "exhaustion_at", "reuse", "notes": [sentences]}``.
    """
    import pandas as pd

    for name, value in (("tcp_fin_timeout", tcp_fin_timeout), ("tcp_tw_reuse", tcp_tw_reuse),
                        ("tcp_max_tw_buckets", tcp_max_tw_buckets), ("ip_local_port_range", ip_local_port_range)):
        sysctl.validate(name, value)
    if closer not in ("client", "server", "leak"):
        raise ValueError(f"closer must be client, server or leak; got {closer!r}")
    ports = model.ports_in_range(ip_local_port_range)
    reuse = model.reuse_applies(tcp_tw_reuse, loopback=True, bind_before_connect=bind_before_connect)
    notes = []
    step = max(0.5, (duration + time_wait) / 200)
    if closer == "client":
        tw = model.predict_counts(rate, duration, time_wait=time_wait, max_tw_buckets=tcp_max_tw_buckets,
                                  ports=ports, reuse=reuse, step=step)["TIME_WAIT"]
    elif closer == "server":
        tw = model.predict_counts(rate, duration, time_wait=time_wait, max_tw_buckets=tcp_max_tw_buckets,
                                  closer="server", step=step)["TIME_WAIT"]
        notes.append("The server closes first, so the TIME-WAIT sockets are on the server: client-side "
                     "port limits and tcp_tw_reuse do not apply to them.")
    else:
        tw = None
    times = [i * step for i in range(int((duration + time_wait) / step) + 1)]
    frame = pd.DataFrame({"t": times})
    frame["TIME_WAIT"] = list(tw) if tw is not None else 0.0
    if closer == "leak":
        # orphaned FIN-WAIT-2 lives tcp_fin_timeout s (and counts against tcp_max_tw_buckets,
        # being a timewait mini-socket); CLOSE-WAIT lives as long as the server holds it
        held = [rate * max(0.0, min(t, duration) - max(0.0, t - tcp_fin_timeout)) for t in times]
        frame["FIN_WAIT_2"] = [min(h, tcp_max_tw_buckets) for h in held]
        frame["CLOSE_WAIT"] = [rate * min(t, duration) for t in times]
        notes.append(f"Orphaned FIN-WAIT-2 sockets live tcp_fin_timeout = {tcp_fin_timeout} s; the server's "
                     "CLOSE-WAIT sockets stay until the program closes them: here, never.")
    else:
        frame["FIN_WAIT_2"] = 0.0
        frame["CLOSE_WAIT"] = 0.0
        notes.append(f"tcp_fin_timeout = {tcp_fin_timeout} s changes nothing here: no FIN-WAIT-2 is orphaned "
                     "in this workload, and TIME-WAIT stays 60 s whatever it is.")
    sustainable = model.sustainable_rate(ports, time_wait=time_wait, reuse=reuse)
    exhaustion = model.exhaustion_time(rate, ports, time_wait=time_wait, reuse=reuse) if closer == "client" else None
    if closer == "client":
        if reuse:
            notes.append(f"tcp_tw_reuse = {tcp_tw_reuse} lets connect() reuse TIME-WAIT ports after 1 s here "
                         "(loopback), so one destination sustains about ports / 1 s.")
        else:
            why = ("bind() before connect() picks the port first, so reuse never applies"
                   if bind_before_connect and tcp_tw_reuse else f"tcp_tw_reuse = {tcp_tw_reuse}: no reuse")
            notes.append(f"{why}: one destination sustains about ports / 60 s = {sustainable:.0f} connections/s.")
        if exhaustion is not None:
            notes.append(f"At {rate:g}/s the {ports} ports run out after {exhaustion:.1f} s: connect() then "
                         + ("fails with EADDRINUSE at bind()." if bind_before_connect else "fails with EADDRNOTAVAIL."))
    if frame["TIME_WAIT"].max() >= tcp_max_tw_buckets:
        notes.append(f"TIME-WAIT is capped at tcp_max_tw_buckets = {tcp_max_tw_buckets}; further closes get no "
                     "TIME-WAIT at all (TCPTimeWaitOverflow).")
    return {"frame": frame, "plateau": float(frame["TIME_WAIT"].max()), "sustainable_rate": sustainable,
            "exhaustion_at": exhaustion, "reuse": reuse, "notes": notes}


def _figure(prediction: dict, measured=None, title: str = "Predicted by the model"):
    from matplotlib.figure import Figure

    from .plots import STATE_STYLE

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

        from .lab import lab_available

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
        from .traces import why_not_live

        self.live_why = why_not_live()  # '' where loads can be run and observed live
        self.run_button = w.Button(description="Show the recorded run" if self.live_why else "Run live (10 s max)",
                                   button_style="info", icon="play")
        self.apply_toggle = w.Checkbox(value=False, description="apply the chosen values for this run")
        lab_ok, why = lab_available()
        root = sysctl.is_root()
        self.apply_mode = None if self.live_why else "lab" if lab_ok else "root" if root else None
        if self.apply_mode is None:
            self.apply_toggle.disabled = True
            self.apply_reason = (f"Applying is off here: {self.live_why}; the button shows a load recorded on Linux."
                                 if self.live_why else f"Applying is off here: {why}, and you are not root.")
        else:
            self.apply_reason = ("Applied inside a private lab: no root needed, this machine untouched."
                                 if lab_ok else "No lab here: applied on this machine as root, restored after.")
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
        prediction = predict(**{k: v[k] for k in ("tcp_fin_timeout", "tcp_tw_reuse", "tcp_max_tw_buckets",
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

        from .load import run_load, with_settings

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
            result = with_settings(self.chosen_settings(), **kwargs)
            where = result.note
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

        from .load import watch_plateau

        run = watch_plateau(progress=False)  # the recorded run, here
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

