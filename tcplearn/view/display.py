"""Tells a running IPython how to show each experiment's result, without importing the view.

``register()`` names the result types and the ``tcplearn.view.show`` function for each, and
the functions that draw every table (a DataFrame) whole;
IPython imports nothing until a result is shown, so ``import tcplearn`` stays fast (no
matplotlib until the first figure)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

__all__ = ["register", "SHOWN", "TABLES"]

#: (module, class) -> the ``tcplearn.view.show`` function that displays it, or
#: ``"module:function"`` for one in another view module.
SHOWN = {
    ("tcplearn.experiments.close", "CloseRun"): "show_close_run",
    ("tcplearn.experiments.load", "LoadResult"): "show_load",
    ("tcplearn.experiments.plateau", "PlateauRun"): "show_plateau",
    ("tcplearn.experiments.timewait", "MythResult"): "show_myth",
    ("tcplearn.experiments.timeouts", "Comparison"): "show_comparison",
    ("tcplearn.experiments.start_here", "CapturedConnection"): "show_captured",
    ("tcplearn.experiments.connect", "ConnectTimeoutResult"): "show_connect_timeout",
    ("tcplearn.experiments.dead_peer", "DeadPeerResult"): "show_dead_peer",
    ("tcplearn.experiments.remedy", "SourcesRemedy"): "show_sources_remedy",
    ("tcplearn.base.tw_cost", "TimeWaitCost"): "show_time_wait_cost",
    ("tcplearn.experiments.why_time_wait", "LostLastAck"): "tcplearn.view.why:show_lost_last_ack",
    ("tcplearn.experiments.why_time_wait", "TimeWaitAssassination"): "tcplearn.view.why:show_assassination",
    ("tcplearn.experiments.old_duplicate", "OldDuplicate"): "tcplearn.view.why:show_old_duplicate",
}


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
    for (module, cls), name in SHOWN.items():
        formatter.for_type_by_name(module, cls, _lazy(name))
    formatters = shell.display_formatter.formatters
    for (module, cls), (html, text) in TABLES.items():
        formatters["text/html"].for_type_by_name(module, cls, _lazy_format(html))
        formatters["text/plain"].for_type_by_name(module, cls, _lazy_format(text))
