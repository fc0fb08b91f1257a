"""Recorded Linux runs, for machines where live is impossible (macOS, Windows, no /proc).

Each trace is a plain-text JSON file in ``tcplearn/traces/``: ``meta`` (what was run, the
kernel version, the kernel settings it ran under, the date, tcplearn's version), and
``rows`` (a time series: the TIME-WAIT countdown, the load plateau) or ``runs`` (the
results of single calls as the notebooks make them, keyed by ``key(function, *args)``).
They are produced by ``python -m tcplearn.traces record``, which anyone can rerun on a
Linux machine where a private lab can start.  ``why_not_live()`` decides, in one place,
when an experiment replays its recording instead; the replay always says so in one line.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass, field
from importlib import resources

from ._util import system_name

__all__ = ["Trace", "Recorded", "load", "names", "record", "note", "why_not_live", "key", "recorded_run"]

TRACES = ("time_wait_countdown", "plateau", "close_scenarios", "time_wait_experiments", "load_runs",
          "one_connection")


@dataclass
class Trace:
    """A recorded run: ``meta`` (dict), ``frame`` (a DataFrame of its rows, if it has
    rows) and ``runs`` (recorded results of single calls, keyed by ``key(...)``)."""

    name: str
    meta: dict
    frame: object
    runs: dict = field(default_factory=dict)

    @property
    def note(self) -> str:
        return note(self)


class Recorded:
    """A recorded result shown in place of a live one: ``value`` (what the live call would
    have returned) under its one-line ``note``."""

    def __init__(self, value, note: str):
        self.value, self.note = value, note

    def __repr__(self) -> str:
        return f"{self.note}\n{self.value!r}"

    def _ipython_display_(self) -> None:
        from IPython.display import Markdown, display

        display(Markdown(f"> {self.note}"))
        display(self.value)


def names() -> tuple[str, ...]:
    """The traces shipped with tcplearn."""
    return tuple(n for n in TRACES if (resources.files("tcplearn") / "traces" / f"{n}.json").is_file())


def load(name: str) -> Trace:
    """A shipped trace by name; ``ValueError`` lists the names there are."""
    import pandas as pd

    path = resources.files("tcplearn") / "traces" / f"{name}.json"
    if name not in TRACES or not path.is_file():
        raise ValueError(f"no recorded trace {name!r}: there are {', '.join(names()) or 'none'}")
    data = json.loads(path.read_text())
    return Trace(name, data["meta"], pd.DataFrame(data.get("rows", [])), data.get("runs", {}))


def key(function: str, *args, **kwargs) -> str:
    """How a recorded call is looked up: the function's name and its arguments, keyword
    order ignored (``progress`` never changes a result)."""
    kwargs.pop("progress", None)
    return f"{function}{json.dumps(_plain([list(args), kwargs]), sort_keys=True)}"


def _plain(value):
    """``value`` with every number a float (``duration=1`` and ``1.0`` are one call) and
    every tuple a list; booleans stay booleans."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    raise TypeError(f"a recorded call's arguments are numbers, strings, lists and dicts, not {value!r}")


def recorded_run(trace_name: str, function: str, *args, **kwargs):
    """``(trace, recorded result)`` for this exact call, or ``(trace, None)`` when it was
    not recorded (the trace's ``runs`` say which calls were)."""
    trace = load(trace_name)
    run = trace.runs.get(key(function, *args, **kwargs))
    if run is None:
        return trace, None
    return Trace(trace.name, {**trace.meta, "what": run["what"]}, trace.frame, trace.runs), run["result"]


def why_not_live() -> str:
    """Why the kernel experiments cannot run live here, in one phrase, or ``""`` when they
    can: they need Linux and a backend that sees the whole TCP table with its timers
    (``/proc/net/tcp`` or sock_diag netlink), which macOS, Windows and psutil lack."""
    from .observe import backend

    if not sys.platform.startswith("linux"):
        return f"{system_name()} has no Linux TCP table with timers"
    try:
        info = backend()
    except RuntimeError as exc:
        return str(exc)
    if not info.live_timers:
        return f"the {info.listing} backend cannot see the kernel's whole TCP table and its timers"
    return ""


def note(trace: Trace, why: str | None = None) -> str:
    """The one line a notebook shows above a recorded run; ``why`` says why live is
    impossible here (default: ``why_not_live()``)."""
    m = trace.meta
    why = why or why_not_live() or "asked for the recording"
    # a lab run names the settings it changed in its "what"; the others are the machine's
    changed = [k for k in _SHOWN if f"{k}=" in m["what"]]
    settings = ", ".join(f"{k}={m['settings'].get(k)}" for k in _SHOWN if k not in changed)
    return (f"Live is impossible here ({why}), so this is a recorded run: {m['what']}, on Linux "
            f"{m['kernel']} on {m['date']} ({'other ' if changed else ''}kernel settings: {settings}).")


_SHOWN = ("tcp_fin_timeout", "tcp_tw_reuse", "tcp_max_tw_buckets", "ip_local_port_range")


# ---------------------------------------------------------------- recording


def _meta(what: str) -> dict:
    from . import __version__, sysctl
    from .timewait import kernel_hz

    return {"what": what, "kernel": platform.release(), "hz": kernel_hz(), "settings":
            {k: (list(v) if isinstance(v, tuple) else v) for k, v in sysctl.read_all().items()},
            "date": time.strftime("%Y-%m-%d"), "tcplearn": __version__, "python": platform.python_version()}


def _write(path, name: str, meta: dict, frame=None, runs: dict | None = None) -> None:
    data: dict = {"meta": meta}
    if frame is not None:
        data["rows"] = _rows(frame)
    if runs is not None:
        data["runs"] = runs
    (path / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")


def _rows(frame) -> list[dict]:
    return json.loads(frame.to_json(orient="records", double_precision=4))


class _Runs(dict):
    """Recorded single calls: ``add(what, result, function, *args, **kwargs)``."""

    def add(self, what: str, result, function: str, *args, **kwargs) -> None:
        self[key(function, *args, **kwargs)] = {"what": what, "result": result}


#: The loads notebook 04 runs with changed settings, as ``with_settings(sysctls, **kwargs)``.
NOTEBOOK_LOADS = (
    ({"ip_local_port_range": (40000, 40199), "tcp_tw_reuse": 0}, dict(rate=100, duration=4)),
    ({"ip_local_port_range": (40000, 40199), "tcp_tw_reuse": 1}, dict(rate=100, duration=4)),
    ({"ip_local_port_range": (40000, 40199)}, dict(rate=100, duration=4, bind_before_connect=True)),
    ({"tcp_max_tw_buckets": 100}, dict(rate=500, duration=2, sample_interval=0.1)),
)


def _record_single_runs(path) -> None:
    """The single experiments of notebooks 00, 01, 02 and 04, each as the notebook calls it."""
    from .close import SCENARIOS, run_scenario
    from .load import time_wait_by_closer, with_settings
    from .timewait import fin_wait_2_vs_setting, myth_test, server_restart
    from .tour import capture_one_connection

    close = _Runs()
    for name in SCENARIOS:
        close.add(f"the '{name}' scenario in a private lab, its segments captured on the lab's loopback",
                  run_scenario(name).to_record(), "run_scenario", name)
    _write(path, "close_scenarios", _meta("the close scenarios of notebook 01"), runs=close)

    tw = _Runs()
    table, _ = myth_test(5, progress=False, watch=7.0)
    tw.add("tcp_fin_timeout=5 in a private lab; an orphaned FIN-WAIT-2, a TIME-WAIT and an orphaned "
           "FIN-WAIT-2 whose peer closes at 2 s, their kernel timers read every half second",
           _rows(table), "myth_demo", fin_timeout=5)
    tw.add("an orphaned and a half-closed FIN-WAIT-2, their kernel timers beside tcp_fin_timeout",
           _rows(fin_wait_2_vs_setting()), "fin_wait_2_vs_setting")
    for reuse in (False, True):
        for old in (False, True):
            tw.add(f"a server restarted on its port while its TIME-WAIT remains (SO_REUSEADDR: new server "
                   f"{'on' if reuse else 'off'}, old server {'on' if old else 'off'})",
                   server_restart(reuse, old_server_reuse_address=old), "server_restart", reuse,
                   old_server_reuse_address=old)
    _write(path, "time_wait_experiments", _meta("the TIME-WAIT experiments of notebook 02"), runs=tw)

    loads = _Runs()
    loads.add("two 1 s loads at 300 connections/s, client closing first, then server closing first, "
              "and where their TIME-WAIT sockets were", time_wait_by_closer(), "time_wait_by_closer",
              rate=300, duration=1.0)
    for sysctls, kwargs in NOTEBOOK_LOADS:
        shown = ", ".join(f"{k}={v}" for k, v in sysctls.items())
        loads.add(f"a load ({', '.join(f'{k}={v}' for k, v in kwargs.items())}) in a private lab with {shown}",
                  with_settings(sysctls, progress=False, **kwargs).to_record(), "with_settings", sysctls, **kwargs)
    _write(path, "load_runs", _meta("the loads of notebook 04"), runs=loads)

    one = _Runs()
    one.add("one loopback connection opened and closed in a private lab, captured on its loopback",
            _rows(capture_one_connection()), "capture_one_connection")
    _write(path, "one_connection", _meta("one captured connection"), runs=one)


def record(directory: str | None = None) -> list[str]:
    """Record every trace on this (Linux) machine into ``directory`` (default: the package's
    ``traces`` folder).  Needs a private lab (or root).  Takes about three minutes."""
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from .lab import lab_available
    from .load import watch_plateau
    from .timewait import sample_countdown

    why = why_not_live()
    if why:
        raise RuntimeError(f"traces are recorded where everything runs live, not here: {why}")
    lab_ok, lab_why = lab_available()
    if not lab_ok:
        raise RuntimeError(f"traces are recorded in private labs: {lab_why}")
    path = Path(directory) if directory else Path(str(resources.files("tcplearn") / "traces"))
    path.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(2) as pool:  # both at once: the countdown is idle waiting
        countdown = pool.submit(sample_countdown, 75.0, 1.0, progress=False)
        plateau = pool.submit(watch_plateau, 200, 70.0, 65.0, progress=False)
        cd, pl = countdown.result(), plateau.result()
    _write(path, "time_wait_countdown",
           _meta("one TIME-WAIT socket's kernel timer, read every second until it left the table"), cd)
    frame = pl.samples[["t", "TIME_WAIT", "ESTABLISHED", "FIN_WAIT_2"]].copy()
    frame["model"] = list(pl.model.set_index("t")["TIME_WAIT"].reindex(frame["t"], method="nearest"))
    meta = _meta(f"a client-closes load at {pl.result.rate:.0f} connections/s for {pl.result.elapsed:.0f} s, "
                 "then its drain, counted every second")
    meta.update({"rate": pl.result.rate, "load_seconds": pl.result.elapsed, "reuse": pl.reuse})
    _write(path, "plateau", meta, frame)
    # after the plateau, whose TIME-WAIT count on this machine these loads would disturb
    _record_single_runs(path)
    return [str(path / f"{n}.json") for n in TRACES]


if __name__ == "__main__":
    if sys.argv[1:] != ["record"]:
        sys.exit("usage: python -m tcplearn.traces record")
    for written in record():
        print("wrote", written)
