"""tcplearn: how TCP connections end, shown with real sockets on your own machine.

The public API, re-exported here and stable:

* ``TcpState``, ``Event``, ``TRANSITIONS`` — the vocabulary and the RFC 9293 table;
* ``TcpSocket``, ``parse_proc_net_tcp`` — the kernel's TCP table as records;
* ``sockets()``, ``count_states()``, ``backend()`` — live observation;
* ``doctor()`` — what this machine offers the series;
* ``sysctl`` — read, validate, and (as root, restored afterwards) apply settings;
* ``PrivateLab``, ``lab_available()``, ``LabUnavailable`` — experiments in a private
  user + network namespace: real knobs and real packets without root.
"""

from __future__ import annotations

from . import sysctl, tour
from .doctor import doctor
from .lab import LabUnavailable, PrivateLab, Segment, lab_available
from .observe import (
    BackendInfo,
    TcpSocket,
    backend,
    count_states,
    parse_proc_net_tcp,
    set_backend,
    sockets,
)
from .states import TRANSITIONS, Event, TcpState

__version__ = "0.1.0"

__all__ = [
    "TcpState", "Event", "TRANSITIONS",
    "TcpSocket", "parse_proc_net_tcp",
    "sockets", "count_states", "backend", "set_backend", "BackendInfo",
    "doctor", "sysctl", "tour",
    "PrivateLab", "LabUnavailable", "lab_available", "Segment",
]
