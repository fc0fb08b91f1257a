"""``doctor()``: what this machine offers the series, and what will be live here.

The "what will be live here" table is drawn from the experiment registry and the one
ladder (``tcplearn.base.experiment``): a row per registered experiment, saying where it
would run now and why not better, so the table and the code cannot drift apart."""

from __future__ import annotations

import html
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field

from . import experiments  # noqa: F401 - importing the experiments registers them
from .base import observe, sysctl
from .base.experiment import REGISTRY, Need, Where, node_executable
from .base.lab import lab_available, two_host_lab_available

__all__ = ["doctor", "Report", "Check", "on_binder", "node_executable", "live_table"]


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, whether it holds, and the detail."""

    name: str
    ok: bool | None  # None: informational
    detail: str


@dataclass
class Report:
    """The environment check.  ``checks`` are the facts; ``live`` says, per part of the
    series, whether it runs live here and how (``"live"``, ``"lab"``, ``"model"`` …)."""

    checks: list[Check] = field(default_factory=list)
    live: list[tuple[str, str, str]] = field(default_factory=list)

    def check(self, name: str) -> Check:
        """The check called ``name``; ``KeyError`` if there is none."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_frame(self):
        """The checks as a pandas DataFrame (columns: check, ok, detail)."""
        import pandas as pd

        return pd.DataFrame([(c.name, c.ok, c.detail) for c in self.checks],
                            columns=["check", "ok", "detail"])

    def __str__(self) -> str:
        mark = {True: "yes", False: "NO ", None: "   "}
        width = max(len(c.name) for c in self.checks)
        lines = ["tcplearn doctor — this machine", ""]
        lines += [f"  {mark[c.ok]}  {c.name:<{width}}  {c.detail}" for c in self.checks]
        lines += ["", "What will be live here:"]
        part_width = max((len(part) for part, _, _ in self.live), default=0)
        lines += [f"  {part:<{part_width}}  {how:<8} {why}" for part, how, why in self.live]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        # The word beside each sign: a browser without an emoji font, or a screen reader, still tells them
        # apart.
        icon = {True: "✅ yes", False: "❌ no", None: "ℹ️ info"}
        rows = "".join(
            f"<tr><td>{icon[c.ok]}</td><td>{html.escape(c.name)}</td>"
            f"<td style='text-align:left'>{html.escape(c.detail)}</td></tr>"
            for c in self.checks
        )
        live = "".join(
            f"<tr><td style='text-align:left'>{html.escape(p)}</td><td><b>{html.escape(h)}</b></td>"
            f"<td style='text-align:left'>{html.escape(w)}</td></tr>"
            for p, h, w in self.live
        )
        return (
            "<h4>This machine</h4><table><tr><th></th><th>check</th><th>detail</th></tr>"
            f"{rows}</table><h4>What will be live here</h4>"
            "<table><tr><th>notebook and experiment</th><th>runs</th><th>why</th></tr>"
            f"{live}</table>"
        )


def on_binder() -> bool:
    """True inside a mybinder.org / BinderHub session (it sets ``BINDER_*`` variables)."""
    return any(k in os.environ for k in ("BINDER_LAUNCH_HOST", "BINDER_REQUEST",
                                         "BINDER_REPO_URL", "BINDER_SERVICE_HOST"))


def _node_version(path: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or out.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"fails to run: {exc}"


def doctor() -> Report:
    """Check this machine and say which parts of the series run live here.

    Looks at the OS and kernel, root or not, ``/proc/net/tcp``, the observation
    backends, which teardown sysctls are readable, Node.js, Binder and the private
    lab.  Nothing is changed.  Display it in a notebook or ``print`` it.
    """
    r = Report()
    system = platform.system()
    linux = system == "Linux"
    r.checks.append(Check("operating system", None, f"{system} {platform.release()}"))
    r.checks.append(Check("python", None, sys.version.split()[0]))
    root = sysctl.is_root()
    lab_ok, lab_why = lab_available()
    r.checks.append(Check("root", None, "running as root" if root else _NOT_ROOT[lab_ok]))
    proc_ok, proc_why = observe._procfs_ok()
    r.checks.append(Check("/proc/net/tcp readable", proc_ok, "yes" if proc_ok else proc_why))
    try:
        info = observe.backend()
        r.checks.append(Check("observation backend", True, str(info)))
    except RuntimeError as exc:
        info = None
        r.checks.append(Check("observation backend", False, str(exc)))
    values = sysctl.read_all()
    readable = [k for k, v in values.items() if v is not None]
    missing = [k for k, v in values.items() if v is None]
    detail = f"{len(readable)} of {len(values)} readable"
    if missing:
        detail += f"; absent: {', '.join(missing)}"
    r.checks.append(Check("teardown sysctls", bool(readable) if linux else None, detail))
    if values.get("tcp_fin_timeout") is not None:
        r.checks.append(Check("tcp_fin_timeout", None,
                              f"{values['tcp_fin_timeout']} s (orphaned FIN-WAIT-2 only)"))
    node = node_executable()
    r.checks.append(Check("Node.js", node is not None,
                          f"{_node_version(node)} at {node}" if node
                          else "not found (notebook 03 shows the emulation only)"))
    binder = on_binder()
    r.checks.append(Check("Binder", None, "this is a Binder session" if binder else "not Binder"))
    r.checks.append(Check("private network lab", lab_ok, lab_why))
    if lab_ok:  # two hosts need one lab first; else the line above says why there is none
        hosts_ok, hosts_why = two_host_lab_available()
        r.checks.append(Check("two-host lab", hosts_ok, hosts_why))
    r.live = live_table()
    return r


#: The root line when not root: informational, since the series never needs root, only says what root would
#: add.
_NOT_ROOT = {
    True: "not root (not needed: the private lab changes settings and captures packets without it)",
    False: "not root (not needed: with no private lab here, the parts that change settings show runs "
           "recorded in a Linux lab; as root they would run live)",
}

_WHY = {Where.LIVE: "on this machine, read from its kernel",
        Where.LAB: "in a private lab: no root, the machine untouched",
        Where.ROOT: "on this machine as root (settings restored afterwards)"}


def _plans(exp) -> list:
    """The ladder's plan for each call the notebook makes (the experiment's own needs when it
    records none): a call's arguments can add needs (a ``Rule``), so each is asked."""
    if not exp.calls:
        return [exp.plan()]
    return [exp.plan(exp.arguments(*c.args, **c.kwargs)) for c in exp.calls]


def live_table() -> list[tuple[str, str, str]]:
    """A row per registered experiment: ``(notebook and title, where it runs here, why)``,
    from the ladder itself (``Experiment.plan()`` for each call its notebook makes, so the
    table says what those calls will do)."""
    rows = []
    for exp in REGISTRY.values():
        plans = list(dict.fromkeys(_plans(exp)))  # distinct, in call order
        wheres, whys = [], []
        for plan in plans:
            why = plan.why or _WHY.get(plan.where, "")
            if plan.where is Where.LAB and plan.hosts == 2:
                why = "between the two hosts of a private lab: no root, the machine untouched"
            if plan.where is Where.LIVE and plan.why:
                why = f"live, without {', '.join(n.value for n in exp.wants - exp.needs)}: {plan.why}"
            elif plan.where is Where.RECORDED:
                why = f"a run recorded in a Linux lab ({plan.why})"
            elif plan.reason:
                why = f"{why} ({_first_sentence(plan.reason)})"
            if len(plans) > 1:
                calls = [c for c, p in zip(exp.calls, _plans(exp), strict=True) if p == plan]
                why = f"{', '.join(dict.fromkeys(_label(exp, c) for c in calls))}: {why}"
            wheres.append(plan.where.value)
            whys.append(why)
        why = "; ".join(whys)
        if Need.NODE in exp.wants and node_executable() is None:
            why += "; no Node.js here, so its Python emulation stands in"
        rows.append((f"{exp.notebook} {exp.title}", " / ".join(dict.fromkeys(wheres)), why))
    return sorted(rows, key=lambda row: row[0][:2])


def _label(exp, call) -> str:
    """How a row names one of its calls: its method (``dead_peer("retransmissions")``'s first
    argument), else the experiment, marked when it runs between hosts."""
    if call.args and isinstance(call.args[0], str):
        return call.args[0]
    return f"{exp.name}(between_hosts=True)" if call.kwargs.get("between_hosts") else exp.name


def _first_sentence(text: str) -> str:
    return text.split(". ")[0].rstrip(".")
