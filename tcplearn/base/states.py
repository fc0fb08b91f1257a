"""The one vocabulary of TCP states, and the RFC 9293 state machine as data.

Every other module speaks ``TcpState``: the /proc parser, the netlink and psutil
backends, the plots and the model.  ``TRANSITIONS`` is the state machine of
RFC 9293 as a table; the state diagram is drawn from it and live observations are
checked against it, so the picture and the tests cannot drift from each other.

This module knows nothing about sockets or the kernel; it is pure data.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType

__all__ = ["TcpState", "Event", "TRANSITIONS", "TransitionTable", "next_state", "reachable"]


class TcpState(enum.Enum):
    """A TCP connection state.

    The value is the kernel's own number (``include/net/tcp_states.h``), which is also
    the ``st`` column of ``/proc/net/tcp`` in hex.  Each member carries its RFC 9293
    name (``"FIN-WAIT-2"``), the label ``ss`` prints (``"FIN-WAIT-2"``, ``"ESTAB"``)
    and the kernel's macro name (``"TCP_FIN_WAIT2"``).

    ``CLOSED`` is RFC 9293's "fictional" state (no TCB).  Linux calls it ``TCP_CLOSE``
    (code 7) and shows it for sockets that are closed but still hashed.  The two
    Linux-only states never appear under their own code in ``/proc/net/tcp``:
    ``NEW_SYN_RECV`` is printed as ``03`` (SYN-RECEIVED), and ``BOUND_INACTIVE`` is
    only dumped by sock_diag when asked for by name.
    """

    ESTABLISHED = 1
    SYN_SENT = 2
    SYN_RECEIVED = 3
    FIN_WAIT_1 = 4
    FIN_WAIT_2 = 5
    TIME_WAIT = 6
    CLOSED = 7
    CLOSE_WAIT = 8
    LAST_ACK = 9
    LISTEN = 10
    CLOSING = 11
    NEW_SYN_RECV = 12
    BOUND_INACTIVE = 13

    @property
    def code(self) -> int:
        """The Linux state number (``/proc/net/tcp`` ``st``, sock_diag ``idiag_state``)."""
        return self.value

    @property
    def proc_hex(self) -> str:
        """The two-digit hex code as ``/proc/net/tcp`` prints it, e.g. ``"06"``."""
        return f"{self.value:02X}"

    @property
    def rfc_name(self) -> str | None:
        """The RFC 9293 name (``"FIN-WAIT-2"``), or ``None`` for a Linux-only state."""
        return _RFC_NAMES.get(self)

    @property
    def ss_name(self) -> str:
        """The label ``ss`` prints for this state (``"ESTAB"``, ``"TIME-WAIT"``, ``"UNCONN"``)."""
        return _SS_NAMES[self]

    @property
    def linux_name(self) -> str:
        """The kernel's macro name, e.g. ``"TCP_FIN_WAIT2"``."""
        return _LINUX_NAMES[self]

    @property
    def is_rfc(self) -> bool:
        """True for the eleven states of RFC 9293, false for Linux-only ones."""
        return self in _RFC_NAMES

    @property
    def label(self) -> str:
        """A short human label: the RFC name where there is one, else the kernel's."""
        return self.rfc_name or self.linux_name

    @classmethod
    def rfc_states(cls) -> tuple[TcpState, ...]:
        """The eleven RFC 9293 states in the kernel's numeric order."""
        return tuple(s for s in cls if s.is_rfc)

    @classmethod
    def from_code(cls, code: int | str) -> TcpState:
        """The state for a kernel code given as int or hex string (``6``, ``"06"``, ``"0A"``).

        Raises ``ValueError`` naming the code and the accepted range when it is unknown.
        """
        try:
            number = int(code, 16) if isinstance(code, str) else int(code)
            return cls(number)
        except (ValueError, TypeError):
            raise ValueError(
                f"unknown TCP state code {code!r}: expected 1-13 (hex '01'-'0D')"
            ) from None

    @classmethod
    def from_name(cls, name: str) -> TcpState:
        """The state for any of its names: RFC (``"FIN-WAIT-2"``), ``ss`` (``"ESTAB"``),
        kernel (``"TCP_FIN_WAIT2"``, ``"FIN_WAIT2"``) or member (``"FIN_WAIT_2"``);
        case-insensitive.  Raises ``ValueError`` listing the accepted names."""
        key = name.strip().upper().replace("-", "_")
        found = _BY_NAME.get(key)
        if found is None:
            accepted = ", ".join(s.rfc_name or s.name for s in cls)
            raise ValueError(f"unknown TCP state name {name!r}: expected one of {accepted}")
        return found

    def __str__(self) -> str:
        return self.label

    def __lt__(self, other: object) -> bool:
        # Ordered by kernel code, so tables and legends sort the same way everywhere.
        if isinstance(other, TcpState):
            return self.value < other.value
        return NotImplemented


_RFC_NAMES = {
    TcpState.ESTABLISHED: "ESTABLISHED",
    TcpState.SYN_SENT: "SYN-SENT",
    TcpState.SYN_RECEIVED: "SYN-RECEIVED",
    TcpState.FIN_WAIT_1: "FIN-WAIT-1",
    TcpState.FIN_WAIT_2: "FIN-WAIT-2",
    TcpState.TIME_WAIT: "TIME-WAIT",
    TcpState.CLOSED: "CLOSED",
    TcpState.CLOSE_WAIT: "CLOSE-WAIT",
    TcpState.LAST_ACK: "LAST-ACK",
    TcpState.LISTEN: "LISTEN",
    TcpState.CLOSING: "CLOSING",
}

# iproute2 misc/ss.c sstate_name[]; ss has no name for the internal states.
_SS_NAMES = {
    TcpState.ESTABLISHED: "ESTAB",
    TcpState.SYN_SENT: "SYN-SENT",
    TcpState.SYN_RECEIVED: "SYN-RECV",
    TcpState.FIN_WAIT_1: "FIN-WAIT-1",
    TcpState.FIN_WAIT_2: "FIN-WAIT-2",
    TcpState.TIME_WAIT: "TIME-WAIT",
    TcpState.CLOSED: "UNCONN",
    TcpState.CLOSE_WAIT: "CLOSE-WAIT",
    TcpState.LAST_ACK: "LAST-ACK",
    TcpState.LISTEN: "LISTEN",
    TcpState.CLOSING: "CLOSING",
    TcpState.NEW_SYN_RECV: "UNDEF",
    TcpState.BOUND_INACTIVE: "UNDEF",
}

_LINUX_NAMES = {
    TcpState.ESTABLISHED: "TCP_ESTABLISHED",
    TcpState.SYN_SENT: "TCP_SYN_SENT",
    TcpState.SYN_RECEIVED: "TCP_SYN_RECV",
    TcpState.FIN_WAIT_1: "TCP_FIN_WAIT1",
    TcpState.FIN_WAIT_2: "TCP_FIN_WAIT2",
    TcpState.TIME_WAIT: "TCP_TIME_WAIT",
    TcpState.CLOSED: "TCP_CLOSE",
    TcpState.CLOSE_WAIT: "TCP_CLOSE_WAIT",
    TcpState.LAST_ACK: "TCP_LAST_ACK",
    TcpState.LISTEN: "TCP_LISTEN",
    TcpState.CLOSING: "TCP_CLOSING",
    TcpState.NEW_SYN_RECV: "TCP_NEW_SYN_RECV",
    TcpState.BOUND_INACTIVE: "TCP_BOUND_INACTIVE",
}


def _names_index() -> dict[str, TcpState]:
    index: dict[str, TcpState] = {}
    for state in TcpState:
        names = [state.name, state.linux_name, state.linux_name.removeprefix("TCP_")]
        if state.rfc_name:
            names.append(state.rfc_name)
        if state.ss_name != "UNDEF":
            names.append(state.ss_name)
        for name in names:
            index[name.upper().replace("-", "_")] = state
    return index


_BY_NAME = _names_index()


class Event(enum.Enum):
    """What makes a TCP endpoint change state, worded as RFC 9293 Figure 5 labels its arcs.

    The value is the arc label: the event, then after ``/`` what the endpoint sends.
    """

    PASSIVE_OPEN = "passive OPEN / create TCB"
    ACTIVE_OPEN = "active OPEN / snd SYN"
    SEND = "SEND / snd SYN"
    CLOSE_NO_TCB = "CLOSE / delete TCB"
    RCV_SYN = "rcv SYN / snd SYN,ACK"
    RCV_SYN_ACK = "rcv SYN,ACK / snd ACK"
    RCV_ACK_OF_SYN = "rcv ACK of SYN / x"
    CLOSE = "CLOSE / snd FIN"
    RCV_FIN = "rcv FIN / snd ACK"
    RCV_ACK_OF_FIN = "rcv ACK of FIN / x"
    RCV_FIN_ACK = "rcv FIN,ACK of FIN / snd ACK"
    TIMEOUT_2MSL = "Timeout=2MSL / delete TCB"
    ABORT = "ABORT / snd RST"
    RCV_RST = "rcv RST / x"

    @property
    def sends(self) -> tuple[str, ...]:
        """The segment flags this event makes the endpoint send, e.g. ``("FIN",)``."""
        _, _, action = self.value.partition(" / ")
        if action.startswith("snd "):
            return tuple(action.removeprefix("snd ").split(","))
        return ()

    @property
    def in_figure(self) -> bool:
        """True if RFC 9293 Figure 5 draws this arc; false for arcs taken from the text."""
        return self not in (Event.RCV_FIN_ACK, Event.ABORT, Event.RCV_RST)


_S, _E = TcpState, Event

# The states RFC 9293 calls synchronized (§3.5.2).  An ABORT call closes each of them
# (§3.10.5); it sends an RST only from the first four: in CLOSING, LAST-ACK and TIME-WAIT
# our FIN has gone already, so the TCB is just deleted (``ABORT_SENDS_RST``).
_SYNCHRONIZED = (
    _S.ESTABLISHED, _S.FIN_WAIT_1, _S.FIN_WAIT_2, _S.CLOSE_WAIT,
    _S.CLOSING, _S.LAST_ACK, _S.TIME_WAIT,
)

_TABLE: dict[TcpState, dict[Event, TcpState]] = {
    _S.CLOSED: {_E.PASSIVE_OPEN: _S.LISTEN, _E.ACTIVE_OPEN: _S.SYN_SENT},
    _S.LISTEN: {
        _E.RCV_SYN: _S.SYN_RECEIVED,
        _E.SEND: _S.SYN_SENT,
        _E.CLOSE_NO_TCB: _S.CLOSED,
    },
    _S.SYN_SENT: {
        _E.RCV_SYN: _S.SYN_RECEIVED,
        _E.RCV_SYN_ACK: _S.ESTABLISHED,
        _E.CLOSE_NO_TCB: _S.CLOSED,
        _E.RCV_RST: _S.CLOSED,
    },
    _S.SYN_RECEIVED: {
        _E.RCV_ACK_OF_SYN: _S.ESTABLISHED,
        _E.CLOSE: _S.FIN_WAIT_1,
        # §3.10.7.4: a passively opened connection returns to LISTEN on RST.
        _E.RCV_RST: _S.LISTEN,
    },
    _S.ESTABLISHED: {_E.CLOSE: _S.FIN_WAIT_1, _E.RCV_FIN: _S.CLOSE_WAIT},
    _S.FIN_WAIT_1: {
        _E.RCV_ACK_OF_FIN: _S.FIN_WAIT_2,
        _E.RCV_FIN: _S.CLOSING,
        # §3.10.7.4, FIN bit processing: "If our FIN has been ACKed (perhaps in this
        # segment), then enter TIME-WAIT".  The figure omits this arc.
        _E.RCV_FIN_ACK: _S.TIME_WAIT,
    },
    _S.FIN_WAIT_2: {_E.RCV_FIN: _S.TIME_WAIT},
    _S.CLOSE_WAIT: {_E.CLOSE: _S.LAST_ACK},
    _S.CLOSING: {_E.RCV_ACK_OF_FIN: _S.TIME_WAIT},
    _S.LAST_ACK: {_E.RCV_ACK_OF_FIN: _S.CLOSED},
    _S.TIME_WAIT: {_E.TIMEOUT_2MSL: _S.CLOSED},
}

for _state in _SYNCHRONIZED:
    _TABLE[_state].setdefault(_E.ABORT, _S.CLOSED)
    # §3.10.7.4: in TIME-WAIT an RST closes the connection too (the "TIME-WAIT
    # assassination" of RFC 1337; Linux ignores it only with tcp_rfc1337=1).
    _TABLE[_state].setdefault(_E.RCV_RST, _S.CLOSED)

#: The states from which an ABORT call sends an RST (RFC 9293 §3.10.5).
ABORT_SENDS_RST = frozenset({_S.ESTABLISHED, _S.FIN_WAIT_1, _S.FIN_WAIT_2, _S.CLOSE_WAIT})


class TransitionTable(Mapping[TcpState, Mapping[Event, TcpState]]):
    """RFC 9293's TCP state machine as data: ``TRANSITIONS[state][event] -> next state``.

    Convention: RFC 9293 Figure 5 (section 3.3.2), with the arcs the figure leaves out
    taken from the text: ABORT and "rcv RST" from every synchronized state (sections 3.10.5
    and 3.10.7.4; an ABORT sends its RST only from ``ABORT_SENDS_RST``), SYN-RECEIVED back to LISTEN on RST,
    and FIN-WAIT-1
    straight to TIME-WAIT when one segment carries the peer's FIN and the ACK of ours
    (section 3.10.7.4).  Only the eleven RFC states appear; ``Event.in_figure`` tells
    which arcs the figure draws.  Read-only.
    """

    def __init__(self, table: dict[TcpState, dict[Event, TcpState]]):
        self._table = {s: MappingProxyType(dict(a)) for s, a in table.items()}

    def __getitem__(self, state: TcpState) -> Mapping[Event, TcpState]:
        return self._table[state]

    def __iter__(self) -> Iterator[TcpState]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def arcs(self) -> list[tuple[TcpState, Event, TcpState]]:
        """Every transition as ``(state, event, next_state)``, in table order."""
        return [(s, e, t) for s, arcs in self._table.items() for e, t in arcs.items()]

    def __repr__(self) -> str:
        return f"<TransitionTable: {len(self.arcs())} arcs over {len(self)} states>"


TRANSITIONS = TransitionTable(_TABLE)


def next_state(state: TcpState, event: Event) -> TcpState:
    """The state ``event`` leads to from ``state`` per ``TRANSITIONS``.

    Raises ``ValueError`` naming both when the table has no such arc.
    """
    try:
        return TRANSITIONS[state][event]
    except KeyError:
        allowed = ", ".join(e.name for e in TRANSITIONS.get(state, {})) or "none"
        raise ValueError(
            f"RFC 9293 has no transition from {state.label} on {event.name}; "
            f"events allowed there: {allowed}"
        ) from None


def reachable(start: TcpState, end: TcpState, *, via: Iterable[Event] | None = None) -> bool:
    """True if ``end`` can follow ``start`` through zero or more arcs of ``TRANSITIONS``.

    Kernel state changes faster than any observer polls, so a live observation may
    skip intermediate states (ESTABLISHED straight to FIN-WAIT-2); this is the check
    such an observation must pass.  One connection ends at CLOSED, so the search does
    not continue past CLOSED into a new connection (unless it starts there).  ``via``
    restricts the arcs to those events.
    """
    allowed = set(via) if via is not None else set(Event)
    seen, frontier = {start}, [start]
    while frontier:
        state = frontier.pop()
        if state == end:
            return True
        if state is TcpState.CLOSED and state is not start:
            continue
        for event, target in TRANSITIONS.get(state, {}).items():
            if event in allowed and target not in seen:
                seen.add(target)
                frontier.append(target)
    return False
