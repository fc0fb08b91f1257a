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

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import kernel, recordings, sysctl
from .place import _CANNOT, Call, Need, Place, Plan, Result, Rule, Where, capture_works, node_executable

__all__ = ["Where", "Need", "Rule", "BETWEEN_HOSTS", "Call", "Result", "Plan", "Place", "Experiment",
           "experiment", "REGISTRY",
           "node_executable", "capture_works"]

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
    # the view function that shows a value: "show_x" (view/show.py) or "module:function"
    show: str | None = None

    def __repr__(self) -> str:
        return (f"<tcplearn experiment {self.name}{self.public_signature} (notebook {self.notebook}): "
                f"{self.title}>")

    @property
    def value_type(self) -> type | None:
        """The class the body returns (its return annotation), or ``None`` when that is not
        a class of tcplearn's own: what exports and the display learn from the registry."""
        import typing

        try:
            hint = typing.get_type_hints(self.body).get("return")
        except (NameError, TypeError):
            return None
        own = isinstance(hint, type) and hint.__module__.startswith("tcplearn.")
        return hint if own else None

    @property
    def signature(self) -> inspect.Signature:
        params = list(inspect.signature(self.body).parameters.values())[1:]  # without place
        return inspect.Signature(params)

    @property
    def public_signature(self) -> inspect.Signature:
        """What ``help()`` and a notebook show: the body's parameters without ``place``, and
        ``lab``, which every experiment takes (a ``PrivateLab`` the caller holds: run there)."""
        params = list(self.signature.parameters.values())
        lab = inspect.Parameter("lab", inspect.Parameter.KEYWORD_ONLY, default=None)
        at = next((i for i, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD), len(params))
        return inspect.Signature([*params[:at], lab, *params[at:]])

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

    def __call__(self, *args: Any, lab: Any = None, **kwargs: Any) -> Result:
        """The ladder decides where the call runs, unless the caller holds a ``lab``
        (``with tcplearn.PrivateLab() as lab: exp(..., lab=lab)``): then it runs in that
        lab, whatever the ladder would choose."""
        arguments = self.arguments(*args, **kwargs)
        if self.check is not None:
            self.check(**arguments)
        if lab is not None:
            return self.run_at(Plan(Where.LAB, capture=True), *args, lab=lab, **kwargs)
        plan = self.plan(arguments)
        if plan.where in (Where.LIVE, Where.LAB, Where.ROOT):
            return self.run_at(plan, *args, **kwargs)
        return self.replay(arguments, plan.why)

    def run_at(self, plan: Plan, *args: Any, lab: Any = None, **kwargs: Any) -> Result:
        """Run the body on ``plan``'s rung (a lab is started and stopped around it, set
        like this machine where the plan says so; or the caller's own ``lab``, as it is)."""
        from .lab import PrivateLab

        arguments = self.arguments(*args, **kwargs)
        note, link = None, ""
        if lab is not None:
            value = self.body(Place(Where.LAB, lab), *args, **kwargs)
        elif plan.where is Where.LAB:
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
#: Called with each experiment registered later (the display registers its ``show`` this way).
_ON_REGISTER: list[Callable[[Experiment], None]] = []


def experiment(*, notebook: str, title: str, needs=(), wants=(), calls=(), notes=None,
               to_record=None, from_record=None, model=None, check=None, concurrent=False,
               ignore=("progress",), rules=(), remark=None,
               show=None) -> Callable[[Callable[..., Any]], Experiment]:
    """Register ``body(place, *args, **kwargs)`` as an experiment; the decorated name becomes
    the public call, which applies the ladder and returns a ``Result``.  Registration is all
    it takes: ``tcplearn`` exports the name and the class the body returns, a notebook shows
    that class with the view function ``show`` names, ``doctor()`` gives it a row, and the
    recorder records its ``calls``."""

    def register(body: Callable[..., Any]) -> Experiment:
        exp = Experiment(body.__name__, notebook, title, body, frozenset(needs), frozenset(wants),
                         tuple(calls), dict(notes or {}), to_record, from_record, model, check, concurrent,
                         tuple(ignore), tuple(rules), remark, show)
        # A value class that knows how to record itself (``to_record()``, ``from_record(record,
        # arguments)``, e.g. the ``Recorded`` mixin over its fields) needs no hook here.
        kind = exp.value_type
        if exp.to_record is None and kind is not None and hasattr(kind, "to_record"):
            exp.to_record = kind.to_record
        if exp.from_record is None and kind is not None and hasattr(kind, "from_record"):
            exp.from_record = kind.from_record
        known = REGISTRY.get(exp.name)
        if known is not None and known.body.__module__ != body.__module__:
            raise ValueError(f"an experiment named {exp.name!r} is registered already, by "
                             f"{known.body.__module__}")
        # the same module again (importlib.reload in a notebook) replaces its own registration
        for c in exp.calls:
            exp.arguments(*c.args, **c.kwargs)  # a recorded call must fit the body
        functools.update_wrapper(exp, body)  # type: ignore[arg-type]
        exp.__signature__ = exp.public_signature  # what help() and a notebook show: no place
        REGISTRY[exp.name] = exp
        for hook in _ON_REGISTER:
            hook(exp)
        return exp

    return register
