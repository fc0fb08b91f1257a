"""The old duplicate, shown with the real kernel (notebook 02): what TIME-WAIT keeps out.

``old_duplicate(timestamps=False, ack="fitted")`` runs, in a private lab whose
``tcp_max_tw_buckets`` is 0 (so the kernel keeps no TIME-WAIT):

1. an *old* connection on a fixed four-tuple sends ``old_bytes`` each way, ping-pong
   chunks of ``b"OLD!"``, while the lab captures every segment (paced a little, so the
   capture keeps up: a packet socket's buffer is capped by ``net.core.rmem_max``);
2. it closes, client first; with no TIME-WAIT the four-tuple is free at once, and a *new*
   connection opens on it;
3. one captured data segment of the old connection whose sequence range covers the new
   server's ``rcv_nxt`` (the next byte it expects) is delivered again through a raw socket,
   its TCP checksum recomputed (``tools.inject``): the network's delayed duplicate;
4. the new server's reader shows what it got, and the ``TcpExt`` counters say who stopped
   the segment when nothing arrived.

What decides it, in the kernel's order (``tcp_validate_incoming()`` then ``tcp_ack()`` in
``net/ipv4/tcp_input.c``):

* the ISN clock: a new incarnation's initial sequence number is a keyed hash of the
  four-tuple plus the time in 64 ns units (``secure_tcp_seq()`` in
  ``net/core/secure_seq.c``, after RFC 6528), about 15.6 million a second.  An old
  segment lands in the new window only if the old connection moved more bytes than the
  clock advanced (``isn_distance``); a short old connection (small ``old_bytes``) stays
  behind it: "outside the window";
* PAWS (RFC 7323 §5): with ``timestamps=True`` the old segment's timestamp is older than
  the new connection's, and it is dropped (``PAWSEstab``);
* the ACK check (RFC 5961 §5): with ``ack="as sent"`` the old segment acknowledges a
  number behind the new ``snd_una``, and the kernel answers with a challenge ACK
  (``TCPChallengeACK``) and drops it;
* with ``ack="fitted"`` the copy's acknowledgment number is set to the value a segment
  of the new connection would carry at that moment (the new ``snd_una``): the one number
  a real network's stray duplicate would also have to get right, by chance.  Then nothing
  stops it: the new connection's application reads the old connection's bytes.
"""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass

from ..base.experiment import Call, Need, Place, Where, experiment
from ..base.lab import Segment
from .tools import counters, inject
from .tools.captures import Captured, joined, of_connection
from .tools.records import Recorded
from .tools.sockets import abort, pair, poll, read_eof, tcp_info

__all__ = ["old_duplicate", "OldDuplicate", "ACK_MODES", "PAYLOAD", "OLD_BYTES"]

#: How the copy's acknowledgment number is set: as the old connection sent it, or fitted
#: to the new connection's ``snd_una``.
ACK_MODES = ("as sent", "fitted")
#: The old connection's recognisable payload.
PAYLOAD = b"OLD!"
#: Bytes the old connection moves each way by default: at least ten times what the ISN
#: clock advances during the run on a 2-core machine (measured: 2 MiB in about 0.05 s).
OLD_BYTES = 2 * 2**20
OLD_BYTES_RANGE = (4096, 64 * 2**20)
CHUNK = 60000    # one segment on lo (MSS 65483): fewer frames for the capture to keep
PAUSE = 0.0005   # seconds after each ping-pong round: lets the capture thread drain
ISN_HZ = 1e9 / 64  # the ISN clock as Linux runs it (secure_seq.c: ns >> 6): one per 64 ns
ATTEMPTS = 3     # the capture may drop a segment; the run is repeated if it dropped the one needed
_HELD: dict[int, tuple[socket.socket, socket.socket, socket.socket]] = {}  # client port -> new connection


def _signed(n: int) -> int:
    n %= 2**32
    return n - 2**32 if n >= 2**31 else n


@dataclass
class OldDuplicate(Captured, Recorded):
    """One old-duplicate run, measured.

    The old connection moved ``old_bytes_moved`` each way in ``old_seconds``.  ISNs: the
    old and the new client's (absolute), ``isn_gap_s`` between their SYNs, ``isn_distance``
    how far the clock moved (``isn_rate`` per second).  ``in_reach``: the old stream's bytes
    reached the new ``rcv_nxt``.  The copy (``captured[replayed]``) started
    ``replayed_offset`` bytes from the new ``rcv_nxt`` (negative: before it) and held
    ``replayed_length`` bytes; its acknowledgment number lay ``ack_offset`` from the new
    ``snd_una`` (0 when fitted).  ``delivered`` is what the new reader got first (up to 64
    bytes; ``old_bytes_delivered`` in all), ``stopped_by`` who kept it out (None: nobody),
    ``counters`` the ``TcpExt`` counters the replay changed."""

    timestamps: bool
    ack: str
    old_bytes: int
    server_port: int
    client_port: int
    old_bytes_moved: int
    old_seconds: float
    isn_old: int
    isn_new: int
    isn_gap_s: float
    isn_distance: int
    isn_rate: float
    in_reach: bool
    replayed_offset: int
    replayed_length: int
    ack_offset: int
    delivered: bytes
    old_bytes_delivered: int
    stopped_by: str | None
    counters: dict[str, int]
    attempts: int
    captured: list[Segment]
    replayed: int


# ---------------------------------------------------------------- in the lab


def _old_then_new(old_bytes: int) -> dict:
    """The old connection, its close without TIME-WAIT, the new one on the same four-tuple
    (held open for ``_replay_and_read``)."""
    listener, client, server = pair(reuse=True)
    server_port, client_port = listener.getsockname()[1], client.getsockname()[1]
    # a short old connection sends one chunk of its own size: it moves old_bytes, not a whole CHUNK
    chunk = PAYLOAD * (min(CHUNK, old_bytes + len(PAYLOAD) - 1) // len(PAYLOAD))
    try:
        started, moved = time.monotonic(), 0
        while moved < old_bytes:  # ping-pong: each side sends a chunk, the other reads all of it
            for sender, receiver in ((client, server), (server, client)):
                sender.sendall(chunk)
                got = 0
                while got < len(chunk):
                    got += len(receiver.recv(len(chunk) - got))
            moved += len(chunk)
            # A pause lets the capture thread drain the packet socket, but only while the old
            # connection runs well ahead of the ISN clock: a loaded machine's longer sleeps
            # must not slow it below the clock, or no old byte would reach the new window.
            if moved > 2 * ISN_HZ * (time.monotonic() - started):
                time.sleep(PAUSE)
        seconds = time.monotonic() - started
        client.shutdown(socket.SHUT_WR)                  # the old client closes first
        read_eof(server, "the old server")
        server.shutdown(socket.SHUT_WR)
        read_eof(client, "the old client")
        # Both ends CLOSED, read from the sockets themselves (TCP_INFO): the kernel's table
        # is not walked, which takes tens of ms where the machine holds many sockets.
        poll(lambda: tcp_info(client)[0] == tcp_info(server)[0] == "CLOSED",
             what="the old connection to close without TIME-WAIT (is tcp_max_tw_buckets 0?)")
        client.close()
        server.close()
        time.sleep(10 * PAUSE)  # the capture drains the old connection's last frames first
        _, new_client, new_server = pair(client_port, listener=listener, reuse=True)
    except BaseException:
        for sock in (client, server, listener):
            abort(sock)
        raise
    _HELD[client_port] = (listener, new_client, new_server)
    return {"server_port": server_port, "client_port": client_port, "moved": moved, "seconds": seconds}


def _release(client_port: int) -> None:
    """Close the held new connection with RSTs (nothing stays in the table)."""
    for sock in _HELD.pop(client_port, ()):
        abort(sock)


def _replay_and_read(client_port: int, packet: bytes) -> dict:
    """Deliver the copy to the new connection and read what its server's application gets."""
    _, _, new_server = _HELD[client_port]
    try:
        before = counters.snapshot()
        inject.inject(packet)
        # The copy arrives (InSegs +1) and the server's kernel answers it, whatever it
        # decides (an ACK of new data, a challenge ACK, a duplicate ACK): OutSegs +1.
        counters.wait_for(before, lambda d: d.get("InSegs", 0) >= 1 and d.get("OutSegs", 0) >= 1)
        data = b""
        new_server.setblocking(False)
        while select.select([new_server], [], [], 0.05)[0]:  # until 50 ms pass with nothing new
            try:
                more = new_server.recv(1 << 20)
            except BlockingIOError:
                break
            if not more:
                break
            data += more
        return {"data": data, "counters": counters.delta(before)}
    finally:
        _release(client_port)


# ---------------------------------------------------------------- in the caller


def _choose(first: list[Segment], client_port: int, ack: str) -> dict | None:
    """From the first capture: the ISNs, and the old segment to replay with its ack
    (``None`` when the capture dropped a segment of either handshake)."""
    syns = [s for s in first if s.sport == client_port and s.flags == "SYN"]
    synacks = [s for s in first if s.dport == client_port and s.flags == "SYN,ACK"]
    if len(syns) < 2 or len(synacks) < 2:
        return None  # the capture dropped a handshake segment: the run is made again
    old_syn, new_syn = syns[0], syns[-1]
    isn_old, isn_new = inject.header(old_syn.frame).seq, inject.header(new_syn.frame).seq
    rcv_nxt = (isn_new + 1) % 2**32                              # the new server expects this byte
    snd_una = (inject.header(synacks[-1].frame).seq + 1) % 2**32  # and has this acknowledged
    old = [s for s in first[:first.index(new_syn)] if s.sport == client_port and s.length]
    if not old:
        return None

    def offset(s: Segment) -> int:  # where the segment starts, from rcv_nxt
        return _signed(inject.header(s.frame).seq - rcv_nxt)

    covering = [s for s in old if offset(s) <= 0 < offset(s) + s.length]
    # none covers: the one ending nearest below rcv_nxt (or the last), which the window refuses
    chosen = covering[0] if covering else max(old, key=lambda s: (offset(s) + s.length <= 0, offset(s)))
    head = inject.header(chosen.frame)
    return {"segment": chosen, "isn_old": isn_old, "isn_new": isn_new,
            "gap": (new_syn.stamp_ns - old_syn.stamp_ns) / 1e9, "offset": offset(chosen),
            "covering": bool(covering), "ack_offset": 0 if ack == "fitted" else _signed(head.ack - snd_una),
            "packet": inject.packet(chosen.frame, ack=snd_una if ack == "fitted" else None)}


def _stopped_by(delivered: int, changed: dict[str, int]) -> str | None:
    if delivered:
        return None
    if changed.get("PAWSEstab"):
        return "PAWS"
    if changed.get("TCPChallengeACK") or changed.get("TCPACKSkippedChallenge"):
        return "ACK check (RFC 5961)"
    return "outside the window"


def _check(timestamps: bool = False, ack: str = "fitted", old_bytes: int = OLD_BYTES) -> None:
    if not isinstance(timestamps, bool):
        raise ValueError(f"timestamps={timestamps!r}: expected True (tcp_timestamps=1, PAWS on) or False")
    if ack not in ACK_MODES:
        raise ValueError(f"unknown ack mode {ack!r}: expected one of {', '.join(map(repr, ACK_MODES))}")
    low, high = OLD_BYTES_RANGE
    if isinstance(old_bytes, bool) or not isinstance(old_bytes, int) or not low <= old_bytes <= high:
        raise ValueError(f"old_bytes={old_bytes!r}: expected a whole number of bytes from {low} to {high} "
                         "(what the old connection sends each way)")


_WHAT = "in a private lab with tcp_max_tw_buckets=0"


@experiment(notebook="02", title="an old duplicate delivered into a new connection on the same four-tuple",
            needs=[Need.KERNEL, Need.SETTINGS, Need.CAPTURE], check=_check,
            calls=[Call((), {"ack": "as sent"},
                        f"an old segment replayed as it was sent, timestamps off, {_WHAT}"),
                   Call((), {"ack": "fitted"},
                        f"the same with its ACK fitted to the new connection, {_WHAT}"),
                   Call((), {"timestamps": True}, f"the fitted copy with timestamps on (PAWS), {_WHAT}"),
                   Call((), {"old_bytes": 16384}, "a short old connection: its bytes stay behind the ISN "
                                                  f"clock, {_WHAT}")],
            notes={Where.LAB: "Ran in your private lab: a real old connection, a real new one on the same "
                              "four-tuple, a captured segment delivered again with a raw socket (this "
                              "machine's settings untouched)."},
            show="tcplearn.view.why:show_old_duplicate")
def old_duplicate(place: Place, timestamps: bool = False, ack: str = "fitted",
                  old_bytes: int = OLD_BYTES) -> OldDuplicate:
    """Deliver a captured segment of an old connection into a new one on the same
    four-tuple (no TIME-WAIT between them) and see what the new reader gets: the old bytes
    (``ack="fitted"``, timestamps off), or nothing because PAWS (``timestamps=True``), the
    ACK check (``ack="as sent"``) or the ISN clock (a small ``old_bytes``: at least 5 ms pass
    between the two connections, 78,000 steps of the clock) stopped it.  An
    ``OldDuplicate``: ``delivered``, ``old_bytes_delivered``, ``stopped_by``, ``counters``,
    the ISNs and their distance, ``segments()``."""
    with place.settings(tcp_max_tw_buckets=0, tcp_timestamps=int(timestamps)):
        for attempt in range(1, ATTEMPTS + 1):
            run, first = place.capture(_old_then_new, old_bytes)
            sport, cport = run["server_port"], run["client_port"]
            try:
                first = of_connection(first, sport, cport)
                chosen = _choose(first, cport, ack)
                if chosen is None:
                    continue
                reached = _signed(chosen["isn_new"] - chosen["isn_old"]) < run["moved"]
                if chosen["covering"] or not reached or attempt == ATTEMPTS:
                    outcome, second = place.capture(_replay_and_read, cport, chosen["packet"])
                    break
                # the old bytes reached rcv_nxt, but the capture dropped the segment covering it
            finally:
                place.call(_release, cport)  # the replay released it already; this covers errors
        else:
            raise RuntimeError(f"the capture dropped a handshake segment in each of {ATTEMPTS} runs: "
                               "the machine may be too busy, try again")
    second = of_connection(second, sport, cport)
    segments = joined(first, second)
    data = outcome["data"]
    distance = (chosen["isn_new"] - chosen["isn_old"]) % 2**32
    return OldDuplicate(timestamps, ack, old_bytes, sport, cport, run["moved"], round(run["seconds"], 6),
                        chosen["isn_old"], chosen["isn_new"], round(chosen["gap"], 6), distance,
                        round(distance / chosen["gap"]) if chosen["gap"] > 0 else 0.0, reached,
                        chosen["offset"], chosen["segment"].length, chosen["ack_offset"], data[:64],
                        len(data),
                        _stopped_by(len(data), outcome["counters"]), outcome["counters"], attempt, segments,
                        len(first))
