"""Tells a running IPython how to show each experiment's result, without importing the view.

``register()`` names the result types and the ``tcplearn.view.show`` function for each, and
the functions that draw every table (a DataFrame) whole;
IPython imports nothing until a result is shown, so ``import tcplearn`` stays fast (no
matplotlib until the first figure)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

from ..base.experiment import _ON_REGISTER, REGISTRY, Experiment

__all__ = ["register", "shown", "OTHERS", "TABLES"]

#: Values no experiment returns (the load generator's, a TIME-WAIT socket's cost): (module,
#: class) -> the ``tcplearn.view.show`` function that displays it, or ``"module:function"``
#: for one in another view module.  An experiment's own value is shown by the function its
#: registration names (``@experiment(show=...)``), so adding one touches nothing here.
OTHERS = {
    ("tcplearn.experiments.load", "LoadResult"): "show_load",
    ("tcplearn.base.tw_cost", "TimeWaitCost"): "show_time_wait_cost",
}


def _key(exp: Experiment) -> tuple[str, str] | None:
    kind = exp.value_type
    return (kind.__module__, kind.__qualname__) if exp.show and kind is not None else None


def shown() -> dict[tuple[str, str], str]:
    """Every value type a notebook shows, and the view function that shows it: ``OTHERS``
    and each registered experiment's value type with its ``show``."""
    table = dict(OTHERS)
    for exp in REGISTRY.values():
        key = _key(exp)
        if key is not None:
            table[key] = exp.show  # type: ignore[assignment]
    return table


def _lazy(name: str) -> Callable[[object], None]:
    module, _, function = name.rpartition(":")

    def show(obj: object) -> None:
        getattr(importlib.import_module(module or "tcplearn.view.show"), function)(obj)

    return show


#: (module, class) -> the ``tcplearn.view.show`` functions that draw it as ``text/html`` and
#: ``text/plain``: every table a notebook shows, whole (none of its cells cut at 50 characters).
#: (pandas 3 names the class's module "pandas", older pandas "pandas.core.frame": both are named.)
TABLES = {("pandas", "DataFrame"): ("table_html", "table_text"),
          ("pandas.core.frame", "DataFrame"): ("table_html", "table_text")}


def _lazy_format(function: str) -> Callable[..., object]:
    def format(*args: object) -> object:
        return getattr(importlib.import_module("tcplearn.view.show"), function)(*args)

    return format


def register() -> None:
    """Register the display functions with the running IPython shell, if there is one
    (IPython is never imported here: outside a notebook there is nothing to register)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return
    formatter = shell.display_formatter.ipython_display_formatter
    for (module, cls), name in shown().items():
        formatter.for_type_by_name(module, cls, _lazy(name))

    def later(exp: Experiment) -> None:  # an experiment registered after import (a notebook's own)
        key = _key(exp)
        if key is not None:
            formatter.for_type_by_name(*key, _lazy(exp.show))  # type: ignore[arg-type]

    if not any(getattr(h, "__qualname__", "").startswith("register.") for h in _ON_REGISTER):
        _ON_REGISTER.append(later)
    formatters = shell.display_formatter.formatters
    for (module, cls), (html, text) in TABLES.items():
        formatters["text/html"].for_type_by_name(module, cls, _lazy_format(html))
        formatters["text/plain"].for_type_by_name(module, cls, _lazy_format(text))
