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

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .states import Event, TcpState, next_state
from .sysctl import validate

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SimStep", "Simulation", "lost_last_ack", "old_duplicate", "time_wait_plateau", "reuse_applies",
           "sustainable_rate", "ports_in_range", "exhaustion_time", "predict_counts", "leak_counts",
           "predict_settings",
           "distinct_ports", "WALK_ADVANCE"]


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
    #: The numbers the simulation assumed and computed (MSL, times, sequence numbers), so a
    #: figure can show them rather than leave them implicit.
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def history(self) -> list[SimStep]:
        return self.steps


def lost_last_ack(time_wait: bool = True) -> Simulation:
    """The client closes first; its final ACK is lost; the server retransmits its FIN.

    With TIME-WAIT the client still knows the connection, re-sends the ACK, and the server
    closes cleanly.  Without it, the client has forgotten the connection, so the
    retransmitted FIN meets nothing and is answered with RST, which ends the server's
    connection.  Here the server's program has already called ``close()``, so no program
    sees an error: only the wire (a capture) shows the RST.  A server that keeps its socket
    (``shutdown``) reads ``ECONNRESET`` from it, as ``tcplearn.lost_last_ack`` measures.
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
                       "with RST, and the server's kernel dropped the connection on it.  Its program had "
                       "already closed the socket, so no program saw an error: only a capture shows the RST.")
    return sim


def old_duplicate(time_wait: bool = True, *, msl: float = 2.0, delay: float = 1.5,
                  window: int = 65535, new_bytes: int = 100, server_isn_2: int = 5000) -> Simulation:
    """A data segment of connection 1 is delayed ``delay`` seconds in the network (at most
    MSL, by the definition of MSL); connection 1 closes and a new connection 2 on the same
    four addresses and ports is opened as soon as allowed, and its client sends its first
    ``new_bytes`` bytes.

    With TIME-WAIT the client's end blocks the same four-tuple for 2×MSL, so connection 2
    starts only after the old segment has expired.  Without it, the old segment arrives
    during connection 2 and the server checks it as RFC 9293 §3.10.7.4 orders:

    * its sequence number against the receive window: the client's ISNs are 1000 and 900,
      so after connection 2's first 100 bytes the server expects byte 1001 next, the old
      segment's first byte (the bad case).  A segment that starts later inside the window
      is only queued out of order, its bytes held until the ones before them arrive
      (``new_bytes`` < 100); one that ends before it is a duplicate;
    * its ACK field against what connection 2's server has sent: the copy acknowledges
      ``server ISN 1 + 1`` = 5001.  Connection 2's server has sent nothing but its SYN, so it
      accepts exactly ``server_isn_2 + 1``: with the default ``server_isn_2`` = 5000 the old
      number is the very one it expects (the case ``tcplearn.old_duplicate(ack="fitted")``
      makes by hand).  A lower one is refused as Linux refuses it (``tcp_ack()``: behind
      ``snd_una`` by more than the bytes acknowledged so far, none; RFC 5961 §5.2), a higher
      one acknowledges data never sent (RFC 9293 §3.10.7.4): dropped, answered by an ACK.

    ``data_delivered`` lists what connection 2's program reads of the old segment.
    """
    if not 0 < delay <= msl:
        raise ValueError(f"delay must be in (0, msl={msl}]: no segment outlives the MSL, got {delay}")
    if isinstance(new_bytes, bool) or not isinstance(new_bytes, int) or not 0 <= new_bytes <= window:
        raise ValueError(f"new_bytes={new_bytes!r}: expected a whole number of bytes from 0 to the window, "
                         f"{window}")
    sim = Simulation("old duplicate", time_wait)
    E, CL = TcpState.ESTABLISHED, TcpState.CLOSED
    isn_1, server_isn_1 = 1000, 5000  # connection 1's ISNs; the client's first data byte is isn_1 + 1
    sent_at, old_seq, old_data = 0.0, isn_1 + 1, "OLD"
    old_ack = server_isn_1 + 1  # the server had sent no data: the copy acknowledges its SYN
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
    isn_2 = 900  # connection 2's client ISN: near connection 1's, the bad case
    rcv_nxt = isn_2 + 1 + new_bytes  # the byte connection 2's server expects next
    snd_una = server_isn_2 + 1       # what it has sent: its SYN only
    if new_bytes:
        sim.steps.append(SimStep("client", f"sends {new_bytes} bytes (seq {isn_2 + 1}–{isn_2 + new_bytes})",
                                 (("client", f"data seq={isn_2 + 1}"), ("server", "ACK")), E, E))
    old_end = old_seq + len(old_data)
    if old_end <= rcv_nxt:
        verdict = "duplicate"
    elif not rcv_nxt <= old_seq < rcv_nxt + window:
        verdict = "outside"
    elif old_seq > rcv_nxt:
        verdict = "out of order"
    else:
        verdict = "next"
    ack_ok = old_ack == snd_una
    sim.facts = {"msl": msl, "delay": delay, "sent_at": sent_at, "arrives": arrives, "expires": expires,
                 "close_at": close_at, "start_2": start_2, "time_wait_len": 2 * msl if time_wait else 0.0,
                 "isn_1": isn_1, "isn_2": isn_2, "old_seq": old_seq, "old_data": old_data, "window": window,
                 "new_bytes": new_bytes, "rcv_nxt": rcv_nxt,
                 "in_window": rcv_nxt <= old_seq < rcv_nxt + window,
                 "seq_verdict": verdict, "server_isn_1": server_isn_1, "server_isn_2": server_isn_2,
                 "old_ack": old_ack, "snd_una": snd_una, "ack_ok": ack_ok,
                 "delivered": False}
    if arrives < start_2 or arrives > expires:
        sim.steps.append(SimStep("both", f"the old copy expired at t={expires:g} s, before connection 2",
                                 (), E, E))
        sim.outcome = (f"The delayed copy could only live until t={expires:g} s (MSL); connection 2 began at "
                       f"t={start_2:g} s, so nothing old could reach it.")
        return sim
    head = (f"Connection 2 began at t={start_2:g} s and the old copy arrived at t={arrives:g} s, with "
            f"sequence number {old_seq} and ACK {old_ack}")
    if verdict in ("duplicate", "outside"):
        reply = f"ACK {rcv_nxt}"
        sim.outcome = (f"{head}: " + ("its bytes were ones connection 2 had already received"
                                      if verdict == "duplicate" else "outside connection 2's window")
                       + f", so the server dropped it and answered with {reply}.")
    elif not ack_ok:
        why = ("acknowledges data connection 2's server never sent" if old_ack > snd_una else
               f"lies behind connection 2's snd_una {snd_una}")
        reply = f"ACK {rcv_nxt}"
        sim.outcome = (f"{head}: the sequence number was in the window, but the ACK {why}, so the server "
                       f"dropped it and answered with {reply}: nothing old was read.")
    elif verdict == "out of order":
        reply = f"ACK {rcv_nxt} (out of order)"
        sim.outcome = (f"{head}: inside connection 2's window but after byte {rcv_nxt}, the next one its "
                       "server expects, so it was queued out of order and not yet read.  It reaches the "
                       f"program only if connection 2's own bytes stop before {old_end}, and then in place "
                       f"of the client's own (Linux keeps the bytes that arrive in order, tcp_ofo_queue()).")
    else:
        reply = f"ACK {old_end}"
        sim.data_delivered.append(old_data)
        sim.facts["delivered"] = True
        sim.outcome = (f"{head}: {old_seq} was the very byte connection 2's server expected next (after its "
                       f"{new_bytes} bytes) and {old_ack} the very ACK it could accept, so '{old_data}' was "
                       "read by connection 2's program as its bytes "
                       f"{new_bytes + 1}–{new_bytes + len(old_data)}; the client's own bytes for those "
                       "numbers are dropped as duplicates when they come.")
    sim.steps.append(SimStep("client", f"t={arrives:g} s: the delayed copy of '{old_data}' arrives",
                             (("client", f"data seq={old_seq} ack={old_ack} (old copy)"), ("server", reply)),
                             E, E))
    return sim


# ---------------------------------------------------------------- TIME-WAIT under load
#
# Sources: TIME-WAIT is held by the side that closes first (RFC 9293 §3.6) for
# TCP_TIMEWAIT_LEN = 60 s on Linux, plus up to one timer-wheel slot (measured in notebook
# 02); beyond tcp_max_tw_buckets a closing socket gets no TIME-WAIT (ip-sysctl.rst,
# tcp_minisocks.c).  A client port in TIME-WAIT cannot be reused towards the same
# destination unless tcp_tw_reuse applies (1, or 2 on loopback), which it does for plain
# connect() but not after bind() to port 0 (inet_hashtables.c; measured here).  So one
# destination sustains ports / TIME-WAIT connections per second (Bernat: ~470/s with
# 28,232 ports and 60 s).


def time_wait_plateau(rate: float, *, time_wait: float = 60.0, max_tw_buckets: int | None = None,
                      ports: int | None = None, reuse: bool = False) -> float:
    """TIME-WAIT sockets held in the steady state.

    Without reuse: ``rate × time_wait`` (each connection leaves one), capped by
    ``tcp_max_tw_buckets``.  With TIME-WAIT reuse (``reuse=True``, e.g. the default
    ``tcp_tw_reuse=2`` on loopback) ``connect()`` takes a port whose TIME-WAIT is older
    than a second as readily as a free one, so the TIME-WAIT sockets are the *distinct*
    ports used in the last ``time_wait`` seconds (``distinct_ports``): about 8,700 at 200/s
    with the default 28,232 ports, where a random choice of port would give 8,100.
    """
    return _held(rate, time_wait, time_wait, max_tw_buckets, ports, reuse)


#: How far ``connect()``'s port search moves on after each success, in ports of the scanned
#: parity, when its first candidate was free: ``table_perturb[index] += max(i, random(8) * 2) + 2``
#: with ``i = 0`` (``__inet_hash_connect()`` in ``net/ipv4/inet_hashtables.c``), so 1 + a uniform 0..7 steps
#: of 2 ports.
WALK_ADVANCE = 1 + 3.5


def distinct_ports(n: float, ports: int, *, walk: bool = True) -> float:
    """Expected number of distinct ports after ``n`` ``connect()`` calls to one destination
    that may each reuse a TIME-WAIT port (``tcp_tw_reuse``), with ``ports`` in the range.

    The search scans ports of one parity (``H = ports / 2`` of them).  ``walk=True`` follows
    the kernel (``__inet_hash_connect()``, ``net/ipv4/inet_hashtables.c``): it starts where the last search
    ended and moves on by
    ``WALK_ADVANCE`` = 4.5 of those ports on average, so it sweeps the range in passes of
    ``H / 4.5`` connections, each pass touching a given port with probability ``p = 1/4.5``.
    After ``k`` whole passes and a fraction ``f`` of the next, a port is still untouched
    with probability ``(1 − p)^k × (1 − p f)``.  ``walk=False`` is the random-choice
    (coupon-collector) estimate ``H (1 − e^(−n/H))``, which undercounts: at 200/s for 60 s
    with 28,232 ports it gives 8,100 where Linux 6.18 holds 8,800 (notebook 04).
    """
    if ports <= 0:
        raise ValueError(f"ports must be positive, got {ports!r}")
    half = ports / 2
    if n <= 0:
        return 0.0
    if not walk:
        return half * (1 - math.exp(-n / half))
    p = 1 / WALK_ADVANCE
    passes = n / (p * half)  # each pass of the range takes half × p connections
    k = math.floor(passes)
    return half * (1 - (1 - p) ** k * (1 - p * (passes - k)))


def _held(rate: float, window: float, time_wait: float, max_tw_buckets: int | None, ports: int | None,
          reuse: bool) -> float:
    n = rate * window
    if reuse:
        if not ports:
            raise ValueError("with reuse the model needs the number of ports (ip_local_port_range)")
        n = distinct_ports(n, ports)
    elif ports is not None:
        n = min(n, ports)  # no reuse: a destination cannot hold more than one per port
    return min(n, max_tw_buckets) if max_tw_buckets is not None else n


def reuse_applies(tw_reuse: int, *, loopback: bool = True, bind_before_connect: bool = False) -> bool:
    """Whether ``connect()`` may take a port still in TIME-WAIT: ``tcp_tw_reuse`` 1, or 2 for
    loopback, and only for plain ``connect()`` (not after ``bind()`` to port 0)."""
    if tw_reuse not in (0, 1, 2):
        raise ValueError(f"tcp_tw_reuse is 0, 1 or 2, got {tw_reuse!r}")
    return not bind_before_connect and (tw_reuse == 1 or (tw_reuse == 2 and loopback))


def sustainable_rate(ports: int, *, time_wait: float = 60.0, reuse: bool = False,
                     reuse_delay: float = 1.0) -> float:
    """Connections per second one client can keep opening to one destination when it closes
    first: ``ports / time_wait``, or ``ports / reuse_delay`` when TIME-WAIT reuse applies."""
    if ports <= 0:
        raise ValueError(f"ports must be positive, got {ports!r}")
    return ports / (reuse_delay if reuse else time_wait)


def ports_in_range(port_range: tuple[int, int]) -> int:
    """How many ephemeral ports ``ip_local_port_range`` gives (inclusive)."""
    low, high = port_range
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"port range must satisfy 1 <= low <= high <= 65535, got {port_range!r}")
    return high - low + 1


def exhaustion_time(rate: float, ports: int, *, time_wait: float = 60.0, reuse: bool = False,
                    reuse_delay: float = 1.0) -> float | None:
    """Seconds after the start when ``connect()`` begins to fail with EADDRNOTAVAIL, or
    ``None`` when ``rate`` is sustainable."""
    if rate <= sustainable_rate(ports, time_wait=time_wait, reuse=reuse, reuse_delay=reuse_delay):
        return None
    return ports / rate


#: The model's time resolution for loads whose ports run out (seconds).
_DT = 0.05


def _port_limited(rate: float, duration: float, hold: float, ports: int, cap: float,
                  until: float) -> tuple[list[float], list[float]]:
    """Connections that hold their client port for ``hold`` seconds after they close (a
    TIME-WAIT no ``tcp_tw_reuse`` may take, or an orphaned FIN-WAIT-2), at ``rate`` for
    ``duration`` s: ``(held, made)`` per ``_DT`` step up to ``until``.  A ``connect()`` finds
    a port only while fewer than ``ports`` are held (else EADDRNOTAVAIL, and the load goes
    on trying at its rate), so the count climbs to ``ports``, stays while the load runs,
    and falls ``hold`` s after the last connection that got a port, not ``hold`` s after
    the load ends.  A close beyond ``cap`` (``tcp_max_tw_buckets``) holds nothing."""
    steps = int(round(until / _DT)) + 1
    lag = max(1, int(round(hold / _DT)))
    entered = [0.0] * steps
    held_now, made_total = 0.0, 0.0
    held, made = [], []
    for i in range(steps):
        if i >= lag:
            held_now -= entered[i - lag]  # these reach the end of their hold: the port is free
        t = i * _DT
        if 0 < t <= duration + 1e-9:
            got = min(rate * _DT, max(0.0, ports - held_now))
            entered[i] = min(got, max(0.0, cap - held_now))
            held_now += entered[i]
            made_total += got
        held.append(held_now)
        made.append(made_total)
    return held, made


def _sample(values: list[float], t: float) -> float:
    return values[min(len(values) - 1, int(round(t / _DT)))]


def predict_counts(rate: float, duration: float, *, time_wait: float = 60.0,
                   max_tw_buckets: int | None = None, closer: str = "client", until: float | None = None,
                   step: float = 0.5, ports: int | None = None, reuse: bool = False) -> pd.DataFrame:
    """Predicted TIME-WAIT count over time for a load at ``rate`` for ``duration`` seconds.

    With reuse, or with no port limit (``ports=None``, e.g. the server's side), the
    TIME-WAIT sockets at time t come from the connections closed during the last
    ``time_wait`` seconds, a window of ``w = min(t, duration) − max(0, t − time_wait)``
    seconds of load, and ``time_wait_plateau``'s formula is applied to that window.  A
    client without reuse and with ``ports`` runs out of them when ``rate × time_wait``
    exceeds ``ports``: then only a port whose TIME-WAIT has ended can take a new
    connection, which ``_port_limited`` follows step by step (at 100/s with 200 ports and
    a 10 s load: 200 after 2 s, falling 60–62 s after the start, when the first 200 end).
    Returns a DataFrame (t, TIME_WAIT, side) up to ``until`` (default duration + time_wait).
    """
    import pandas as pd

    if closer not in ("client", "server"):
        raise ValueError(f"closer must be 'client' or 'server', got {closer!r}")
    until = duration + time_wait if until is None else until
    times = [i * step for i in range(int(until / step) + 1)]
    if closer == "client" and ports is not None and not reuse:
        cap = math.inf if max_tw_buckets is None else max_tw_buckets
        held, _ = _port_limited(rate, duration, time_wait, ports, cap, until)
        counts = [_sample(held, t) for t in times]
    else:
        counts = [_held(rate, max(0.0, min(t, duration) - max(0.0, t - time_wait)), time_wait, max_tw_buckets,
                        ports, reuse) for t in times]
    frame: pd.DataFrame = pd.DataFrame({"t": times, "TIME_WAIT": counts, "side": closer})
    return frame


def _ports_touched(made: float, held: float, ports: int) -> float:
    """How many distinct client ports ``made`` connections have used when ``held`` of them
    at a time keep theirs busy: the first ``held`` all differ; after that each takes a free
    port, and when ``connect()``'s choice among the free ones is taken as uniform an
    untouched port is hit with probability (untouched / free).  ``connect()`` scans the
    ports of one parity first (``__inet_hash_connect()``, ``net/ipv4/inet_hashtables.c``),
    so the pool is half the range until the busy ports fill that half."""
    pool = ports / 2 if held < ports / 2 else ports
    held = min(held, pool)
    if made <= held:
        return made
    if pool - held <= 0:
        return pool
    return pool - (pool - held) * math.exp(-(made - held) / (pool - held))


def leak_counts(rate: float, duration: float, times: list[float], *, fin_timeout: float,
                max_tw_buckets: int | None = None,
                ports: int | None = None) -> tuple[list[float], list[float]]:
    """The CLOSE-WAIT leak: clients close at ``rate`` for ``duration`` s and the server never
    does.  Returns ``(FIN_WAIT_2, CLOSE_WAIT)`` counts at ``times``.

    Each orphaned FIN-WAIT-2 lives ``fin_timeout`` s (a timewait mini-socket, so it counts
    against ``max_tw_buckets``: ``tcp_time_wait()`` in ``net/ipv4/tcp_minisocks.c``), and
    keeps its client port from ``connect()`` meanwhile, whatever ``tcp_tw_reuse`` says
    (measured on Linux 6.18 in a lab, ``tests/test_widgets.py``).  Each CLOSE-WAIT lives as
    long as the server holds it, but a later connection from the same client port ends it
    (the count stays one per port: measured likewise), so with ``ports`` the CLOSE-WAIT
    count is the distinct ports used (``_ports_touched``), never more than ``ports``.
    """
    cap = math.inf if max_tw_buckets is None else max_tw_buckets
    if ports is None:
        held = [rate * max(0.0, min(t, duration) - max(0.0, t - fin_timeout)) for t in times]
        return [min(h, cap) for h in held], [rate * min(t, duration) for t in times]
    until = max(times) if times else 0.0
    held, made = _port_limited(rate, duration, fin_timeout, ports, cap, until)
    steady = min(rate * fin_timeout, ports, cap)
    fin_wait_2 = [_sample(held, t) for t in times]
    close_wait = [_ports_touched(_sample(made, t), steady, ports) for t in times]
    return fin_wait_2, close_wait


def _ports(n: int) -> str:
    return "1 port" if n == 1 else f"{n:,} ports"


def predict_settings(*, tcp_fin_timeout: int, tcp_tw_reuse: int, tcp_max_tw_buckets: int,
            ip_local_port_range: tuple[int, int], rate: float, duration: float, closer: str,
            bind_before_connect: bool, time_wait: float = 60.0) -> dict[str, Any]:
    """What the model says for these settings and this workload, over loopback.

    Returns ``{"frame": DataFrame (t, TIME_WAIT, FIN_WAIT_2, CLOSE_WAIT), "plateau",
    "sustainable_rate", "exhaustion_at", "reuse", "notes": [sentences]}``.
    """
    import pandas as pd

    for name, value in (("tcp_fin_timeout", tcp_fin_timeout), ("tcp_tw_reuse", tcp_tw_reuse),
                        ("tcp_max_tw_buckets", tcp_max_tw_buckets),
                        ("ip_local_port_range", ip_local_port_range)):
        validate(name, value)
    if closer not in ("client", "server", "leak"):
        raise ValueError(f"closer must be client, server or leak; got {closer!r}")
    ports = ports_in_range(ip_local_port_range)
    reuse = reuse_applies(tcp_tw_reuse, loopback=True, bind_before_connect=bind_before_connect)
    notes = []
    step = max(0.5, (duration + time_wait) / 200)
    if closer == "client":
        tw = predict_counts(rate, duration, time_wait=time_wait, max_tw_buckets=tcp_max_tw_buckets,
                                  ports=ports, reuse=reuse, step=step)["TIME_WAIT"]
    elif closer == "server":
        tw = predict_counts(rate, duration, time_wait=time_wait, max_tw_buckets=tcp_max_tw_buckets,
                                  closer="server", step=step)["TIME_WAIT"]
        notes.append("The server closes first, so the TIME-WAIT sockets are on the server: client-side "
                     "port limits and tcp_tw_reuse do not apply to them.")
    else:
        tw = None
    times = [i * step for i in range(int((duration + time_wait) / step) + 1)]
    frame = pd.DataFrame({"t": times})
    frame["TIME_WAIT"] = list(tw) if tw is not None else 0.0
    if closer == "leak":
        frame["FIN_WAIT_2"], frame["CLOSE_WAIT"] = leak_counts(rate, duration, times,
                                                               fin_timeout=tcp_fin_timeout,
                                                               max_tw_buckets=tcp_max_tw_buckets, ports=ports)
        notes.append(f"Orphaned FIN-WAIT-2 sockets live tcp_fin_timeout = {tcp_fin_timeout} s; the server's "
                     "CLOSE-WAIT sockets stay until the program closes them: here, never.")
        notes.append(f"At most one CLOSE-WAIT per client port ({_ports(ports)}): a new connection from a "
                     "port ends the CLOSE-WAIT the server still held for it.")
        if rate * min(tcp_fin_timeout, duration) > ports:
            notes.append(f"At {rate:g}/s the orphaned FIN-WAIT-2 sockets hold all {_ports(ports)} after "
                         f"{ports / rate:.3g} s: connect() then fails with EADDRNOTAVAIL until one ends, "
                         "tcp_tw_reuse or not.")
    else:
        frame["FIN_WAIT_2"] = 0.0
        frame["CLOSE_WAIT"] = 0.0
        notes.append(f"tcp_fin_timeout = {tcp_fin_timeout} s changes nothing here: no FIN-WAIT-2 is orphaned "
                     "in this workload, and TIME-WAIT stays 60 s whatever it is.")
    sustainable = sustainable_rate(ports, time_wait=time_wait, reuse=reuse)
    exhaustion = (exhaustion_time(rate, ports, time_wait=time_wait, reuse=reuse) if closer == "client"
                  else None)
    if closer == "client":
        if reuse:
            notes.append(f"tcp_tw_reuse = {tcp_tw_reuse} lets connect() reuse TIME-WAIT ports after 1 s here "
                         "(loopback), so one destination sustains about ports / 1 s.")
        else:
            why = ("bind() before connect() picks the port first, so reuse never applies"
                   if bind_before_connect and tcp_tw_reuse else f"tcp_tw_reuse = {tcp_tw_reuse}: no reuse")
            notes.append(f"{why}: one destination sustains about ports / 60 s = {sustainable:.3g} "
                         "connections/s.")
        if exhaustion is not None:
            runs_out = "the only port runs out" if ports == 1 else f"the {_ports(ports)} run out"
            notes.append(f"At {rate:g}/s {runs_out} after {exhaustion:.3g} s: connect() then "
                         + ("fails with EADDRINUSE at bind()." if bind_before_connect
                            else "fails with EADDRNOTAVAIL."))
    if frame["TIME_WAIT"].max() >= tcp_max_tw_buckets:
        notes.append(f"TIME-WAIT is capped at tcp_max_tw_buckets = {tcp_max_tw_buckets}; further closes get "
                     "no TIME-WAIT at all (TCPTimeWaitOverflow).")
    return {"frame": frame, "plateau": float(frame["TIME_WAIT"].max()), "sustainable_rate": sustainable,
            "exhaustion_at": exhaustion, "reuse": reuse, "notes": notes}
