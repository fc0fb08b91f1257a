"""The recorder: ``python -m tcplearn.traces record`` runs every call the notebooks make of
every registered experiment, live in private labs, and writes one recording per
experiment to ``tcplearn/recordings/`` (the store, ``tcplearn.base.recordings``).

It sits at the top: it imports the experiments (through ``tcplearn.experiments``) and
nothing imports it.  Anyone can rerun it on Linux where a private lab can start; it takes
about three minutes (the TIME-WAIT countdown and the plateau wait on the kernel's timers,
side by side).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

from . import __version__, experiments  # noqa: F401 - importing experiments registers them
from .base import kernel, recordings, sysctl
from .base.experiment import REGISTRY, Experiment, Where
from .base.lab import lab_available

__all__ = ["record", "record_experiment", "recordable"]


def recordable() -> list[Experiment]:
    """The registered experiments whose calls are recorded, in registration order."""
    return [exp for exp in REGISTRY.values() if exp.calls]


def _meta() -> dict:
    return {"kernel": platform.release(), "hz": kernel.kernel_hz(), "settings":
            {k: (list(v) if isinstance(v, tuple) else v) for k, v in sysctl.read_all().items()},
            "date": time.strftime("%Y-%m-%d"), "tcplearn": __version__, "python": platform.python_version()}


def record_experiment(exp: Experiment, directory: str | Path) -> Path:
    """Run each of ``exp``'s recorded calls live (in a lab when it changes settings or
    captures, else on this machine) and write its recording; returns the file's path."""
    runs = {}
    for c in exp.calls:
        arguments = exp.arguments(*c.args, **c.kwargs)
        plan = exp.plan(arguments)  # the call's own needs (a Rule may send it to a lab)
        if plan.where not in (Where.LAB, Where.LIVE):
            raise RuntimeError(f"{exp.name} is recorded in a private lab or live, not {plan.where}: "
                               f"{plan.why}")
        result = exp.run_at(plan, *c.args, **{**c.kwargs, **_quiet(exp)})
        data = exp.to_record(result.value) if exp.to_record else result.value
        runs[recordings.key(exp.name, arguments)] = {"what": c.what, "result": data}
    return recordings.write(directory, exp.name, _meta(), runs)


def _quiet(exp: Experiment) -> dict:
    return {"progress": False} if "progress" in exp.signature.parameters else {}


def record(directory: str | Path | None = None) -> list[Path]:
    """Record every recordable experiment on this (Linux) machine into ``directory``
    (default: the package's ``recordings`` folder).  Needs a private lab."""
    why = kernel.why_not_live()
    if why:
        raise RuntimeError(f"recordings are made where everything runs live, not here: {why}")
    ok, lab_why = lab_available()
    if not ok:
        raise RuntimeError(f"recordings are made in private labs: {lab_why}")
    os.environ.pop("TCPLEARN_FAST", None)  # a recording is the whole measurement, never the fast one
    path = Path(directory) if directory else Path(str(resources.files("tcplearn") / recordings.FOLDER))
    path.mkdir(parents=True, exist_ok=True)
    todo = recordable()
    # The long ones wait on the kernel's timers, mostly idle: side by side, before the others,
    # whose loads would disturb the plateau's TIME-WAIT count on this machine.
    slow = [exp for exp in todo if exp.concurrent]
    with ThreadPoolExecutor(max(1, len(slow))) as pool:
        written = list(pool.map(lambda exp: record_experiment(exp, path), slow))
    written += [record_experiment(exp, path) for exp in todo if not exp.concurrent]
    return written


if __name__ == "__main__":
    if sys.argv[1:] != ["record"]:
        sys.exit("usage: python -m tcplearn.traces record")
    for name in record():
        print("wrote", name)
