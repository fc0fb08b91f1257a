"""What RFC 9293 predicts for a close, and whether an observed history obeys it.

Pure logic over ``states.TRANSITIONS``: no sockets.  ``predict`` says which segments an
action sends and which states follow; ``check_history`` lists every observed change of
state the table cannot explain.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise
from typing import Any, cast

from .states import ABORT_SENDS_RST, TRANSITIONS, Event, TcpState, next_state, reachable

__all__ = ["ENDS", "predict", "check_history"]

#: The two ends of a connection, as the RFC logic names them.
ENDS = ("client", "server")
_ENDS = ENDS

_FLAG_OF_EVENT = {Event.CLOSE: "FIN", Event.ABORT: "RST"}


def predict(states: dict[str, TcpState],
            actions: list[tuple[str, Event | str]]) -> tuple[dict[str, TcpState], list[tuple[str, str]]]:
    """What RFC 9293 says follows from ``actions`` taken at once by ``states``' ends.

    ``actions`` are ``(end, Event.CLOSE | Event.ABORT | "DATA")``.  Segments are
    delivered in the order they are sent; every FIN and data segment is acknowledged
    at once (as Linux does on loopback).  Returns ``(final states, segments)`` with
    segments as ``(sender, flags)``.
    """
    states = dict(states)
    segments: list[tuple[str, str]] = []
    in_flight: list[tuple[str, str]] = []
    for end, action in actions:
        if action == "DATA":
            in_flight.append((end, "DATA"))
            continue
        action = cast(Event, action)  # CLOSE or ABORT: "DATA" went on above
        before = states[end]
        states[end] = next_state(before, action)
        if action is Event.ABORT and before not in ABORT_SENDS_RST:
            continue  # §3.10.5: from CLOSING, LAST-ACK or TIME-WAIT the TCB is deleted, nothing is sent
        in_flight.append((end, _FLAG_OF_EVENT[action]))
    while in_flight:
        sender, flags = in_flight.pop(0)
        segments.append((sender, flags))
        receiver = _ENDS[1 - _ENDS.index(sender)]
        here = states[receiver]
        if here is TcpState.CLOSED:
            continue  # nobody there: Linux would answer with RST, which the pair never provokes
        if flags == "RST":
            if Event.RCV_RST in TRANSITIONS.get(here, {}):
                states[receiver] = next_state(here, Event.RCV_RST)
            continue
        if flags == "FIN":
            states[receiver] = next_state(here, Event.RCV_FIN)
            in_flight.append((receiver, "ACK"))
        elif flags == "DATA":
            in_flight.append((receiver, "ACK"))
        elif flags == "ACK" and Event.RCV_ACK_OF_FIN in TRANSITIONS.get(here, {}) and \
                here in (TcpState.FIN_WAIT_1, TcpState.CLOSING, TcpState.LAST_ACK):
            states[receiver] = next_state(here, Event.RCV_ACK_OF_FIN)
    return states, segments



def check_history(history: Iterable[Any]) -> list[str]:
    """Every observed change of either end's state that ``TRANSITIONS`` cannot explain.

    A poll may miss states held only briefly, so a change passes when the new state is
    reachable from the old one through the table (``states.reachable``).  A step in which
    nobody acted (``actor == "nobody"``: a wait) can only move an end by a timer, and the
    close has one timer in RFC 9293: TIME-WAIT's 2MSL.  Any other change during a wait is
    listed too (with the step's ``differs`` note, if it has one).  Returns human-readable
    differences; an empty list means the kernel behaved as RFC 9293 says.
    """
    problems = []
    for before, after in pairwise(history):
        waited = getattr(after, "actor", None) == "nobody"
        for i, end in enumerate(_ENDS):
            points = [before.states[i], *(pair[i] for pair in after.trail), after.states[i]]
            for a, b in pairwise(points):
                if a == b:
                    continue
                if not reachable(a, b):
                    problems.append(f"{end}: {a.label} -> {b.label} during {after.action!r}")
                elif waited and (a, b) != (TcpState.TIME_WAIT, TcpState.CLOSED):
                    why = getattr(after, "differs", "")
                    problems.append(f"{end}: {a.label} -> {b.label} during {after.action!r}, with nobody "
                                    f"acting: RFC 9293 has no timer for this" + (f" ({why})" if why else ""))
    return problems
