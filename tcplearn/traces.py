"""Recorded Linux runs, for machines where live is impossible (macOS, Windows, no /proc).

Each trace is a plain-text JSON file in ``tcplearn/traces/``: ``meta`` (what was run, the
kernel version, the kernel settings it ran under, the date, tcplearn's version) and
``rows`` (the measurements).  They are produced by ``python -m tcplearn.traces record``,
which anyone can rerun on a Linux machine; notebooks fall back to them and say so.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass
from importlib import resources

__all__ = ["Trace", "load", "names", "record", "note"]

TRACES = ("time_wait_countdown", "plateau")


@dataclass
class Trace:
    """A recorded run: ``meta`` (dict) and ``frame`` (a DataFrame of its rows)."""

    name: str
    meta: dict
    frame: object

    @property
    def note(self) -> str:
        return note(self)


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
    return Trace(name, data["meta"], pd.DataFrame(data["rows"]))


def note(trace: Trace) -> str:
    """The one line a notebook shows above a recorded run."""
    m = trace.meta
    return (f"Live is impossible here ({_why_not_live()}), so this is a recorded run: {m['what']}, on Linux "
            f"{m['kernel']} on {m['date']} (kernel settings: {_short(m['settings'])}).")


def _why_not_live() -> str:
    from .observe import backend

    if not sys.platform.startswith("linux"):
        return f"{platform.system()} has no Linux TCP table with timers"
    try:
        info = backend()
    except RuntimeError as exc:
        return str(exc)
    return f"the {info.listing} backend cannot see the kernel's timers"


def _short(settings: dict) -> str:
    keep = ("tcp_fin_timeout", "tcp_tw_reuse", "tcp_max_tw_buckets", "ip_local_port_range")
    return ", ".join(f"{k}={settings.get(k)}" for k in keep)


# ---------------------------------------------------------------- recording


def _meta(what: str) -> dict:
    from . import __version__, sysctl
    from .timewait import kernel_hz

    return {"what": what, "kernel": platform.release(), "hz": kernel_hz(), "settings":
            {k: (list(v) if isinstance(v, tuple) else v) for k, v in sysctl.read_all().items()},
            "date": time.strftime("%Y-%m-%d"), "tcplearn": __version__, "python": platform.python_version()}


def _write(path, name: str, meta: dict, frame) -> None:
    rows = json.loads(frame.to_json(orient="records", double_precision=4))
    (path / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


def record(directory: str | None = None) -> list[str]:
    """Record every trace on this (Linux) machine into ``directory`` (default: the package's
    ``traces`` folder).  Takes about two and a half minutes."""
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from .load import watch_plateau
    from .timewait import sample_countdown

    if not sys.platform.startswith("linux"):
        raise RuntimeError("traces are recorded on Linux")
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
    return [str(path / f"{n}.json") for n in TRACES]


if __name__ == "__main__":
    if sys.argv[1:] != ["record"]:
        sys.exit("usage: python -m tcplearn.traces record")
    for written in record():
        print("wrote", written)
