"""The model layer: pure functions, no sockets.

Why TIME-WAIT lasts 2×MSL, as two small simulations (RFC 9293 §3.6.1; the Linux
kernel's own comment in ``tcp_minisocks.c`` gives the same two purposes):

1. the last ACK is lost, the peer retransmits its FIN, and only an end still in
   TIME-WAIT can answer it properly;
2. an old duplicate segment from an earlier connection on the same four addresses and
   ports arrives during a new one, and is accepted as data unless TIME-WAIT kept the
   new connection from starting until every old segment had expired.

Each returns a ``Simulation``: ``steps`` (drawable with ``plots.sequence_diagram``) and
an ``outcome`` sentence computed from the simulation, not written in advance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .states import Event, TcpState, next_state

__all__ = ["SimStep", "Simulation", "lost_last_ack", "old_duplicate"]


@dataclass(frozen=True)
class SimStep:
    """One step of a simulation, shaped like ``close.Step`` so it draws the same way.
    A segment whose flags end in ``"(lost)"`` never arrives."""

    actor: str
    action: str
    segments: tuple[tuple[str, str], ...]
    client_state: TcpState
    server_state: TcpState


@dataclass
class Simulation:
    name: str
    time_wait: bool
    steps: list[SimStep] = field(default_factory=list)
    outcome: str = ""
    data_delivered: list[str] = field(default_factory=list)

    @property
    def history(self) -> list[SimStep]:
        return self.steps


def lost_last_ack(time_wait: bool = True) -> Simulation:
    """The client closes first; its final ACK is lost; the server retransmits its FIN.

    With TIME-WAIT the client still knows the connection, re-sends the ACK, and the server
    closes cleanly.  Without it, the client has forgotten the connection, so the
    retransmitted FIN meets nothing and is answered with RST: the server ends in error.
    """
    sim = Simulation("lost last ACK", time_wait)
    c = s = TcpState.ESTABLISHED
    sim.steps.append(SimStep("both", "connection open", (), c, s))
    c = next_state(next_state(c, Event.CLOSE), Event.RCV_ACK_OF_FIN)
    s = next_state(s, Event.RCV_FIN)
    sim.steps.append(SimStep("client", "close()", (("client", "FIN"), ("server", "ACK")), c, s))
    s = next_state(s, Event.CLOSE)
    c = next_state(c, Event.RCV_FIN)
    if not time_wait:
        c = TcpState.CLOSED  # an end that skips TIME-WAIT forgets the connection at once
    sim.steps.append(SimStep("server", "close()", (("server", "FIN"), ("client", "ACK (lost)")), c, s))
    if c is TcpState.TIME_WAIT:
        s = next_state(s, Event.RCV_ACK_OF_FIN)
        sim.steps.append(SimStep("server", "retransmission timer fires",
                                 (("server", "FIN (again)"), ("client", "ACK")), c, s))
        c = next_state(c, Event.TIMEOUT_2MSL)
        sim.steps.append(SimStep("client", "2×MSL later", (), c, s))
        sim.outcome = "The client, still in TIME-WAIT, answered the repeated FIN: both ends closed cleanly."
    else:
        s = next_state(s, Event.RCV_RST)
        sim.steps.append(SimStep("server", "retransmission timer fires",
                                 (("server", "FIN (again)"), ("client", "RST")), c, s))
        sim.outcome = ("The client had already forgotten the connection, so it answered the repeated FIN "
                       "with RST: the server's close ended in a reset, not cleanly.")
    return sim


def old_duplicate(time_wait: bool = True, *, msl: float = 2.0, delay: float = 1.5,
                  window: int = 65535) -> Simulation:
    """A data segment of connection 1 is delayed ``delay`` seconds in the network (at most
    MSL, by the definition of MSL); connection 1 closes and a new connection 2 on the same
    four addresses and ports is opened as soon as allowed.

    With TIME-WAIT the client's end blocks the same four-tuple for 2×MSL, so connection 2
    starts only after the old segment has expired.  Without it, connection 2 starts at
    once, and the old segment arrives during it; if its sequence number falls inside the
    receiver's window (here connection 2 happens to start its numbers close to
    connection 1's), it is accepted as connection 2's data.
    """
    if not 0 < delay <= msl:
        raise ValueError(f"delay must be in (0, msl={msl}]: no segment outlives the MSL, got {delay}")
    sim = Simulation("old duplicate", time_wait)
    E, CL = TcpState.ESTABLISHED, TcpState.CLOSED
    sent_at, old_seq, old_data = 0.0, 1001, "OLD"
    sim.steps.append(SimStep("both", "connection 1 open", (), E, E))
    sim.steps.append(SimStep("client", f"sends '{old_data}' (seq {old_seq}); a copy is delayed {delay:g} s",
                             (("client", f"data seq={old_seq}"), ("server", "ACK")), E, E))
    close_at = 0.1
    sim.steps.append(SimStep("both", "connection 1 closes (client first)",
                             (("client", "FIN"), ("server", "ACK"), ("server", "FIN"), ("client", "ACK")),
                             TcpState.TIME_WAIT if time_wait else CL, CL))
    start_2 = close_at + (2 * msl if time_wait else 0.0)
    arrives, expires = sent_at + delay, sent_at + msl
    sim.steps.append(SimStep("both", f"connection 2 opens at t={start_2:g} s (same ports)",
                             (("client", "SYN"), ("server", "SYN,ACK"), ("client", "ACK")), E, E))
    isn_2 = 900  # connection 2's initial sequence number: near connection 1's, the bad case
    rcv_nxt = isn_2 + 1
    if arrives < start_2 or arrives > expires:
        sim.steps.append(SimStep("both", f"the old copy expired at t={expires:g} s, before connection 2",
                                 (), E, E))
        sim.outcome = (f"The delayed copy could only live until t={expires:g} s (MSL); connection 2 began at "
                       f"t={start_2:g} s, so nothing old could reach it.")
    elif rcv_nxt <= old_seq < rcv_nxt + window:
        sim.steps.append(SimStep("client", f"t={arrives:g} s: the delayed copy of '{old_data}' arrives",
                                 (("client", f"data seq={old_seq} (old copy)"), ("server", "ACK")), E, E))
        sim.data_delivered.append(old_data)
        sim.outcome = (f"Connection 2 began at t={start_2:g} s, the old copy arrived at t={arrives:g} s with "
                       f"sequence number {old_seq}, inside connection 2's window: '{old_data}' was delivered "
                       "to the new connection's program as if it were new data.")
    else:
        sim.outcome = "The old copy arrived during connection 2 but outside its window, and was dropped."
    return sim
