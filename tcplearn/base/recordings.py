"""The store of recorded Linux runs: data and I/O only, no experiment in it.

One plain-text JSON file per experiment in ``tcplearn/recordings/``: ``meta`` (the kernel
version, its CONFIG_HZ, the kernel settings it ran under, the date, tcplearn's version)
and ``runs``: the results of the calls the notebooks make, each under ``key(experiment,
arguments)`` with a sentence saying what was run.  ``python -m tcplearn.traces record``
writes them; ``tcplearn.base.experiment`` replays them where live is impossible.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["Recording", "Run", "names", "load", "key", "find", "note", "write", "FOLDER", "SHOWN"]

#: The package folder that holds the recordings.
FOLDER = "recordings"
#: The settings a recorded run's note names.
SHOWN = ("tcp_fin_timeout", "tcp_tw_reuse", "tcp_max_tw_buckets", "ip_local_port_range")


@dataclass(frozen=True)
class Run:
    """One recorded call: ``what`` was run, its plain-data ``result``, and the recording's
    ``meta`` (kernel, date, settings)."""

    what: str
    result: object
    meta: dict[str, Any]


@dataclass
class Recording:
    """One experiment's recorded runs: ``meta`` and ``runs`` (key -> {"what", "result"})."""

    name: str
    meta: dict[str, Any]
    runs: dict[str, Any] = field(default_factory=dict)


def _folder() -> Path:
    return Path(str(resources.files("tcplearn") / FOLDER))


def names() -> tuple[str, ...]:
    """The recordings shipped with tcplearn (one per experiment that has one)."""
    return tuple(sorted(p.stem for p in _folder().glob("*.json")))


def load(name: str, directory: str | Path | None = None) -> Recording:
    """A recording by name; ``ValueError`` lists the names there are."""
    path = Path(directory or _folder()) / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"no recording {name!r}: there are {', '.join(names()) or 'none'}")
    data = json.loads(path.read_text())
    return Recording(name, data["meta"], data.get("runs", {}))


def key(experiment: str, arguments: dict[str, Any]) -> str:
    """How a recorded call is looked up: the experiment's name and its bound arguments
    (defaults filled in), keyword order ignored, every number a float."""
    return f"{experiment}{json.dumps(_plain(arguments), sort_keys=True)}"


def _plain(value: Any) -> Any:
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


def find(name: str, experiment: str, arguments: dict[str, Any]) -> Run | None:
    """The recorded run of this exact call, or ``None`` when it was not recorded (or the
    experiment has no recording at all)."""
    try:
        recording = load(name)
    except ValueError:
        return None
    run = recording.runs.get(key(experiment, arguments))
    return None if run is None else Run(run["what"], run["result"], recording.meta)


def note(run: Run, why: str) -> str:
    """The one line a notebook shows above a recorded run; ``why`` says why live is
    impossible here.  A lab run names the settings it changed in its ``what``; the note
    lists the machine's settings only for the others."""
    m = run.meta
    changed = [k for k in SHOWN if f"{k}=" in run.what]
    settings = ", ".join(f"{k}={m['settings'].get(k)}" for k in SHOWN if k not in changed)
    return (f"Live is impossible here ({why}), so this is a recorded run: {run.what}, on Linux "
            f"{m['kernel']} on {m['date']} ({'other ' if changed else ''}kernel settings: {settings}).")


def write(directory: str | Path, name: str, meta: dict[str, Any], runs: dict[str, Any]) -> Path:
    """Write one recording as JSON; returns its path."""
    path = Path(directory) / f"{name}.json"
    path.write_text(json.dumps({"meta": meta, "runs": runs}, indent=1) + "\n")
    return path
