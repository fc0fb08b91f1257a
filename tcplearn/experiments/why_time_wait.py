"""Why TIME-WAIT exists, shown with the real kernel: the lost last ACK and TIME-WAIT
assassination (notebook 02).  The old duplicate is in ``old_duplicate``.

``lost_last_ack(time_wait=True)``: the client closes first, the server reads EOF and sends
its own FIN with ``shutdown(SHUT_WR)`` (its socket stays open, so its error can be read).
Just before that FIN goes out the server's socket is made deaf with the drop-all socket
filter of notebook 06 (``dead_peer.silence``): the client's last ACK is captured on its way
and then dropped, and the server sits in LAST-ACK retransmitting its FIN.  After
``retransmissions`` retransmissions the filter comes off and the next answer is heard.
With TIME-WAIT (the default) each FIN draws an ACK from the client's TIME-WAIT socket and
the server ends CLOSED with no error.  With ``time_wait=False`` the lab's
``tcp_max_tw_buckets`` is 0, so the kernel keeps no TIME-WAIT (``tcp_time_wait()`` in
``net/ipv4/tcp_minisocks.c`` counts ``TCPTimeWaitOverflow`` and destroys the socket): the
next FIN meets an RST, and the server's socket ends with ``ECONNRESET``.

``time_wait_assassination(rfc1337=0)``: after a normal close the client holds TIME-WAIT.
The captured copy of its own last ACK is delivered again to the server, which has no
connection any more and answers with an RST whose sequence number is the ACK's
acknowledgment number: exactly the number the TIME-WAIT socket expects next.  With
``tcp_rfc1337=0`` (Linux's default) that RST kills TIME-WAIT at once, the hazard RFC 1337
calls H3; with 1 the TIME-WAIT socket survives (``tcp_timewait_state_process()``).

Each needs a private lab or root: kernel settings, a capture, the socket filter and a raw
socket.  Everything runs on the lab's loopback and is closed before the call returns.
"""

from __future__ import annotations

import errno
import select
import socket
import time
from dataclasses import dataclass

from ..base.experiment import Call, Need, Place, Where, experiment
from ..base.lab import Segment
from .tools import counters, inject
from .tools.captures import Captured, joined, of_connection
from .tools.records import Recorded
from .tools.silence import silence, unsilence
from .tools.sockets import pair, poll, read_eof, tcp_info
from .tools.sockets import rows as connection_rows

__all__ = ["lost_last_ack", "LostLastAck", "time_wait_assassination", "TimeWaitAssassination",
           "MAX_RETRANSMISSIONS"]

#: The most retransmitted FINs ``lost_last_ack`` lets go unanswered: with the kernel's RTO
#: doubling from 200 ms, four take about 3 s, and each one more doubles the wait.
MAX_RETRANSMISSIONS = 4


def _answer(seg: Segment | None) -> str | None:
    if seg is None:
        return None
    return "RST" if seg.has("RST") else "ACK" if seg.has("ACK") else seg.flags


# ---------------------------------------------------------------- the lost last ACK


@dataclass
class LostLastAck(Captured, Recorded):
    """One lost-last-ACK run, measured.

    ``fins`` has one entry per FIN the server sent, the original first: its time ``t`` (s
    since the capture began), what the client's kernel sent back (``answer``: ``"ACK"`` or
    ``"RST"``, from the capture) and whether the server ``heard`` it (it was deaf until the
    filter came off).  ``passive_error`` is the server socket's ``SO_ERROR`` at the end
    (``"ECONNRESET"``, or ``None`` for none); ``server_states`` the states its socket went
    through (``TCP_INFO``); ``client_while_lost`` the client's rows in the kernel's table
    while its last ACK was being lost (TIME-WAIT, or nothing); ``counters`` the ``TcpExt``
    counters the run changed."""

    time_wait: bool
    retransmissions: int
    server_port: int
    client_port: int
    fins: list[dict]
    passive_error: str | None
    server_states: list[str]
    client_while_lost: list[dict]
    counters: dict[str, int]
    captured: list[Segment]

    @property
    def answers(self) -> list[str | None]:
        """What each *retransmitted* FIN drew from the client, in order: "ACK" or "RST"."""
        return [f["answer"] for f in self.fins[1:]]

    @property
    def client_state_while_lost(self) -> str | None:
        """The client's state while its last ACK was lost: "TIME_WAIT", or None (no socket)."""
        return self.client_while_lost[0]["state"] if self.client_while_lost else None


def _lose_last_ack(retransmissions: int, time_wait: bool) -> dict:
    """Runs where the experiment runs (in the lab): the close, the deaf server, the end."""
    listener, client, server = pair()
    server_port, client_port = listener.getsockname()[1], client.getsockname()[1]
    counted = counters.snapshot()
    states: list[str] = []

    def seen(state: str) -> None:
        if not states or states[-1] != state:
            states.append(state)

    try:
        client.shutdown(socket.SHUT_WR)                  # the client closes first: FIN
        read_eof(server, "the server")
        poll(lambda: tcp_info(client)[0] == "FIN_WAIT_2", what="the client's FIN to be ACKed")
        seen(tcp_info(server)[0])                       # CLOSE_WAIT
        silence(server)                                  # from now on, nothing reaches the server
        server.shutdown(socket.SHUT_WR)                  # its FIN: LAST-ACK
        seen(tcp_info(server)[0])
        # The client's kernel has the FIN and has answered (its ACK is lost on the way) once
        # it holds TIME-WAIT, or, without TIME-WAIT, once it has no socket at all.
        if time_wait:
            lost = poll(lambda: [r for r in connection_rows(server_port, client_port)
                                  if r["end"] == "client" and r["state"] == "TIME_WAIT"],
                         what="the client's TIME-WAIT")
        else:
            poll(lambda: not [r for r in connection_rows(server_port, client_port) if r["end"] == "client"],
                  what="the client's socket to be destroyed")
            lost = []

        def retransmitted():
            state, total = tcp_info(server)
            seen(state)
            return total >= retransmissions

        poll(retransmitted, what=f"{retransmissions} retransmissions of the server's FIN")
        heard_from = time.time_ns()
        unsilence(server)

        def closed():
            state = tcp_info(server)[0]
            seen(state)
            return state == "CLOSED"

        poll(closed, what="the server's socket to close")
        err = server.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    finally:
        unsilence(server)
        for sock in (client, server, listener):
            sock.close()
    return {"server_port": server_port, "client_port": client_port, "heard_from_ns": heard_from,
            "passive_error": errno.errorcode.get(err, str(err)) if err else None, "server_states": states,
            "client_while_lost": lost, "counters": counters.delta(counted)}


def _fins(segments: list[Segment], server_port: int, heard_from_ns: int) -> list[dict]:
    out = []
    for i, seg in enumerate(segments):
        if seg.sport == server_port and seg.has("FIN"):
            reply = next((s for s in segments[i + 1:] if s.dport == server_port), None)
            out.append({"t": round(seg.t, 6), "answer": _answer(reply),
                        "heard": reply is not None and reply.stamp_ns >= heard_from_ns})
    return out


def _check_lost(time_wait: bool = True, retransmissions: int = 2) -> None:
    if not isinstance(time_wait, bool):
        raise ValueError(f"time_wait={time_wait!r}: expected True (the kernel keeps TIME-WAIT) or False")
    if isinstance(retransmissions, bool) or not isinstance(retransmissions, int) \
            or not 0 <= retransmissions <= MAX_RETRANSMISSIONS:
        raise ValueError(f"retransmissions={retransmissions!r}: expected a whole number from 0 to "
                         f"{MAX_RETRANSMISSIONS} (how many retransmitted FINs find the server still deaf)")


@experiment(notebook="02", title="the lost last ACK, with and without TIME-WAIT",
            needs=[Need.KERNEL, Need.SETTINGS, Need.CAPTURE], check=_check_lost,
            calls=[Call((), {"time_wait": True}, "the server's FIN retransmitted while its ACKs are lost, "
                                                 "the client in TIME-WAIT, in a private lab"),
                   Call((), {"time_wait": False}, "the same with tcp_max_tw_buckets=0 (no TIME-WAIT), in a "
                                                  "private lab")],
            notes={Where.LAB: "Ran in your private lab: a real close whose last ACK was lost, captured on "
                              "its loopback (this machine's settings untouched)."},
            show="tcplearn.view.why:show_lost_last_ack")
def lost_last_ack(place: Place, time_wait: bool = True, retransmissions: int = 2) -> LostLastAck:
    """Lose the client's last ACK and watch the server retransmit its FIN: with TIME-WAIT
    the client answers each with an ACK and the server closes cleanly; with
    ``time_wait=False`` (``tcp_max_tw_buckets=0``) each meets an RST and the server's socket
    ends with ECONNRESET.  ``retransmissions`` (0 to 4) retransmitted FINs go unheard before
    the server hears again.  A ``LostLastAck``: ``answers``, ``passive_error``,
    ``server_states``, ``client_state_while_lost``, ``counters``, ``segments()``."""
    with place.settings(**({} if time_wait else {"tcp_max_tw_buckets": 0})):
        run, captured = place.capture(_lose_last_ack, retransmissions, time_wait)
    segments = of_connection(captured, run["server_port"], run["client_port"])
    return LostLastAck(time_wait, retransmissions, run["server_port"], run["client_port"],
                       _fins(segments, run["server_port"], run["heard_from_ns"]), run["passive_error"],
                       run["server_states"], run["client_while_lost"], run["counters"], segments)


# ---------------------------------------------------------------- TIME-WAIT assassination


@dataclass
class TimeWaitAssassination(Captured, Recorded):
    """One assassination attempt, measured.

    ``rows_before``/``rows_after`` are the connection's rows in the kernel's table before
    the duplicate ACK was delivered and after the server's RST came back; the client's
    TIME-WAIT ``time_wait_survived`` or not.  ``rst_seq`` is the RST's (relative) sequence
    number and ``time_wait_expects`` the number the TIME-WAIT socket expected next (the
    acknowledgment number of its last ACK); ``captured[replayed]`` is the duplicate ACK;
    ``counters`` the ``TcpExt`` counters the replay changed, ``tcp_counters`` the ``Tcp``
    ones (``/proc/net/snmp``: ``InSegs``, ``OutSegs``, ``OutRsts``)."""

    rfc1337: int
    server_port: int
    client_port: int
    rows_before: list[dict]
    rows_after: list[dict]
    time_wait_survived: bool
    rst_seq: int | None
    time_wait_expects: int
    counters: dict[str, int]
    tcp_counters: dict[str, int]
    captured: list[Segment]
    replayed: int


def _close_into_time_wait() -> dict:
    """A normal close, client first; the server's port is then closed too (no listener)."""
    listener, client, server = pair()
    server_port, client_port = listener.getsockname()[1], client.getsockname()[1]
    try:
        client.shutdown(socket.SHUT_WR)
        read_eof(server, "the server")
        server.close()
        read_eof(client, "the client")

        def time_wait_alone():  # the client in TIME-WAIT, the server's end gone
            now = connection_rows(server_port, client_port)
            alone = now and all(r["end"] == "client" and r["state"] == "TIME_WAIT" for r in now)
            return now if alone else []

        before = poll(time_wait_alone, what="the client's TIME-WAIT")
    finally:
        server.close()
        client.close()
        listener.close()
    return {"server_port": server_port, "client_port": client_port, "rows": before}


def _replay_last_ack(packet: bytes, server_port: int, client_port: int) -> dict:
    """Deliver the copy, then wait for the server's RST to have reached the TIME-WAIT socket."""
    before = counters.snapshot()
    inject.inject(packet)
    # The copy arrives (InSegs +1), the server's kernel answers it with an RST (OutRsts +1),
    # and the RST arrives (InSegs +2): only then has the TIME-WAIT socket seen it.
    counters.wait_for(before, lambda d: d.get("OutRsts", 0) >= 1 and d.get("InSegs", 0) >= 2)

    def time_wait_rows():
        return [r for r in connection_rows(server_port, client_port) if r["state"] == "TIME_WAIT"]

    deadline = time.monotonic() + 0.1
    while time_wait_rows() and time.monotonic() < deadline:  # a killed TIME-WAIT leaves at once
        select.select([], [], [], 0.005)
    now = counters.snapshot()
    return {"rows": connection_rows(server_port, client_port), "counters": counters.delta(before, now),
            "tcp": counters.delta(before, now, table="Tcp")}


def _check_rfc1337(rfc1337: int = 0) -> None:
    if isinstance(rfc1337, bool) or rfc1337 not in (0, 1):
        raise ValueError(f"rfc1337={rfc1337!r}: net.ipv4.tcp_rfc1337 is 0 (Linux's default: an RST may end "
                         "TIME-WAIT) or 1 (TIME-WAIT ignores it)")


@experiment(notebook="02", title="TIME-WAIT assassination by an RST (tcp_rfc1337)",
            needs=[Need.KERNEL, Need.SETTINGS, Need.CAPTURE], check=_check_rfc1337,
            calls=[Call((), {"rfc1337": 0}, "a duplicate of the last ACK draws an RST into TIME-WAIT, "
                                            "tcp_rfc1337=0, in a private lab"),
                   Call((), {"rfc1337": 1}, "the same with tcp_rfc1337=1, in a private lab")],
            notes={Where.LAB: "Ran in your private lab: a real TIME-WAIT, a real duplicate delivered with a "
                              "raw socket, captured on its loopback (this machine's settings untouched)."},
            show="tcplearn.view.why:show_assassination")
def time_wait_assassination(place: Place, rfc1337: int = 0) -> TimeWaitAssassination:
    """Deliver a copy of the client's last ACK after a normal close: the server answers
    with an RST that lands exactly in the client's TIME-WAIT.  With ``tcp_rfc1337=0``
    (the default) TIME-WAIT dies; with 1 it survives.  A ``TimeWaitAssassination``:
    ``time_wait_survived``, ``rows_before``/``rows_after``, ``rst_seq``, ``segments()``."""
    with place.settings(tcp_rfc1337=rfc1337):
        closed, first = place.capture(_close_into_time_wait)
        sport, cport = closed["server_port"], closed["client_port"]
        first = of_connection(first, sport, cport)
        server_fin = max(i for i, s in enumerate(first) if s.sport == sport and s.has("FIN"))
        last_ack = next(s for s in first[server_fin + 1:] if s.sport == cport and s.flags == "ACK")
        replay, second = place.capture(_replay_last_ack, inject.packet(last_ack.frame), sport, cport)
    second = of_connection(second, sport, cport)
    segments = joined(first, second)
    replayed = len(first)  # the copy is the first segment of the second capture
    rst = next((s for s in segments[replayed:] if s.sport == sport and s.has("RST")), None)
    survived = any(r["end"] == "client" and r["state"] == "TIME_WAIT" for r in replay["rows"])
    return TimeWaitAssassination(rfc1337, sport, cport, closed["rows"], replay["rows"], survived,
                                 rst.seq if rst else None, segments[replayed].ack, replay["counters"],
                                 replay["tcp"], segments, replayed)
