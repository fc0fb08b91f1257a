"""tcplearn: how TCP connections end, shown with real sockets on your own machine.

The public API, re-exported here and stable (``__all__``):

* ``TcpState``, ``Event``, ``TRANSITIONS`` — the vocabulary and the RFC 9293 table;
* ``TcpSocket``, ``parse_proc_net_tcp``, ``sockets()``, ``count_states()``, ``backend()``,
  ``sample_states()``, ``StateSampler`` — the kernel's TCP table, read live;
* ``sysctl``, ``model``, ``plots`` — settings, the model, the figures;
* ``PrivateLab``, ``lab_available()``, ``LabUnavailable``, ``Segment``, ``write_pcap`` — the
  private lab and its captures (a pcap file Wireshark and tcpdump read);
* ``time_wait_size()``, ``time_wait_cost()`` — what a TIME-WAIT mini-socket costs, from the kernel;
* ``doctor()`` — what this machine offers the series and where each experiment runs;
* the experiments, each returning a ``Result`` (value, ``where`` it ran, one-line ``note``):
  ``first_look``, ``lab_side_by_side``, ``capture_one_connection`` (00), ``run_scenario``
  and ``ConnectionPair`` (01), ``sample_countdown``, ``measure_time_wait``, ``summarize``,
  ``fin_wait_2_vs_setting``,
  ``myth_demo``, ``server_restart``, ``os_defaults``, and why TIME-WAIT exists:
  ``lost_last_ack``, ``old_duplicate``, ``time_wait_assassination`` (02), ``compare``, ``TrickleServer``
  (03), ``run_load``, ``LoadResult``, ``watch_plateau``, ``time_wait_by_closer``,
  ``with_settings``, ``sources_remedy`` (04, 05), ``sysctl_playground`` (05), ``dead_peer`` and
  ``retransmission_schedule`` (which timeout notices a vanished peer).

Layers (``docs/architecture.md``): ``tcplearn.base`` knows TCP and the machine,
``tcplearn.experiments`` registers the experiments, ``tcplearn.view`` draws them.
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import experiments  # noqa: F401 - imports every experiment module: the registry is complete
from .base import model, sysctl
from .base.experiment import REGISTRY, Result, Where
from .base.lab import LabUnavailable, PrivateLab, Segment, lab_available, write_pcap
from .base.observe import (
    BackendInfo,
    TcpSocket,
    backend,
    count_states,
    parse_proc_net_tcp,
    set_backend,
    sockets,
)
from .base.observe.sampler import StateSampler, sample_states
from .base.states import TRANSITIONS, Event, TcpState
from .base.tw_cost import time_wait_cost, time_wait_size
from .doctor import doctor
from .experiments.close import SCENARIOS, ConnectionPair, save_pcap
from .experiments.connect import syn_schedule
from .experiments.dead_peer import retransmission_schedule
from .experiments.load import LoadResult, run_load
from .experiments.start_here import first_look
from .experiments.timewait import os_defaults, summarize
from .experiments.tools.trickle import TrickleServer
from .view import display as _display

_display.register()  # how a notebook shows each result; matplotlib is imported only when one is


def _registered() -> dict[str, object]:
    """Every registered experiment by its name, and the class each returns by its own."""
    names: dict[str, object] = {}
    for exp in REGISTRY.values():
        names[exp.name] = exp
        if exp.value_type is not None:
            names[exp.value_type.__name__] = exp.value_type
    return names


# The experiments are exported from the registry: registering one is all it takes.
globals().update(_registered())


def __getattr__(name: str):
    found = _registered().get(name)  # one registered after import (a notebook's own)
    if found is not None:
        return found
    # The view is imported on first use, so that ``import tcplearn`` stays fast (no matplotlib,
    # no ipywidgets) for scripts and the command line.
    if name == "plots":
        from .view import plots

        return plots
    if name == "sysctl_playground":
        from .view.widgets import sysctl_playground

        return sysctl_playground
    raise AttributeError(f"module 'tcplearn' has no attribute {name!r}")

__all__ = [
    "TcpState", "Event", "TRANSITIONS",
    "TcpSocket", "parse_proc_net_tcp", "sockets", "count_states", "backend", "set_backend", "BackendInfo",
    "sample_states", "StateSampler",
    "sysctl", "model", "plots",
    "PrivateLab", "LabUnavailable", "lab_available", "Segment", "write_pcap", "time_wait_size",
    "time_wait_cost",
    "doctor", "Result", "Where", "REGISTRY",
    "first_look", "SCENARIOS", "ConnectionPair", "save_pcap", "summarize", "os_defaults", "TrickleServer",
    "run_load", "LoadResult", "sysctl_playground", "retransmission_schedule", "syn_schedule",
    *(name for name in _registered() if name != "LoadResult"),  # the experiments and their values
]
