"""A small sock_diag (``NETLINK_SOCK_DIAG``) client for TCP, written with ``struct``.

Why not pyroute2: its ``DiagSocket`` decodes every message into Python objects and was
measured ~65x slower than this client on a dump of tens of thousands of sockets
(``benchmarks/README.md``).  Counting needs one byte per socket, so this client asks
the kernel to do the filtering (``idiag_states`` bitmask and, for ``port=``, an
``INET_DIAG_REQ_BYTECODE`` program) and then reads the state bytes of fixed-size
messages with a single strided slice instead of a Python loop per socket.

Layouts (``include/uapi/linux/netlink.h``, ``include/uapi/linux/inet_diag.h``, ``sock_diag.h``)::

    nlmsghdr        u32 len, u16 type, u16 flags, u32 seq, u32 pid        16 bytes
    inet_diag_req_v2 u8 family, u8 protocol, u8 ext, u8 pad, u32 states,
                     inet_diag_sockid                                       56 bytes
    inet_diag_sockid be16 sport, be16 dport, be32 src[4], be32 dst[4],
                     u32 if, u32 cookie[2]                                  48 bytes
    inet_diag_msg   u8 family, u8 state, u8 timer, u8 retrans, sockid,
                     u32 expires (ms), u32 rqueue, u32 wqueue, u32 uid, u32 inode   72 bytes
"""

from __future__ import annotations

import ipaddress
import itertools
import socket
import struct
from collections.abc import Iterator

from ..states import TcpState
from ..util import per_process
from .tcpsocket import TcpSocket

__all__ = ["NetlinkUnavailable", "dump_counts", "dump_sockets", "dump_raw", "available", "sockstat_tw",
           "local_ports_in_use"]

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
TCPDIAG_GETSOCK = 18  # the older request: its dump covers both families in one walk (AF_UNSPEC)
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_BC_JMP = 1
INET_DIAG_BC_S_EQ = 11  # enum order in inet_diag.h: NOP JMP S_GE S_LE D_GE D_LE AUTO S_COND
INET_DIAG_BC_D_EQ = 12  # D_COND DEV_COND MARK_COND S_EQ D_EQ CGROUP_COND

_NLMSGHDR = struct.Struct("=IHHII")
_REQ = struct.Struct("=BBBxI")  # followed by a 48-byte inet_diag_sockid
# struct inet_diag_req (compat): family, src_len, dst_len, ext, sockid (48), states, dbs
_REQ_COMPAT = struct.Struct("=BBBB48sII")
_MSG = struct.Struct("=BBBB2s2s16s16sIQIIIII")  # inet_diag_msg, 72 bytes
_MSG_SIZE = _NLMSGHDR.size + _MSG.size  # 88: a message with no attributes
_STATE_OFFSET = _NLMSGHDR.size + 1
_ALL_STATES = 0xFFFFFFFF & ~(1 << TcpState.BOUND_INACTIVE.value)
_RECV_SIZE = 1 << 16  # the kernel fills at most ~32 KiB per dump chunk
_seq = itertools.count(1)

# inet_diag_msg.idiag_timer (ss's tmr_name): 0 off, 1 on, 2 keepalive, 3 timewait, 4 persist.
_TIMERS = {0: "off", 1: "retransmit", 2: "keepalive", 3: "timewait", 4: "probe"}
_STATE_BY_CODE = {s.value: s for s in TcpState}


class NetlinkUnavailable(OSError):
    """sock_diag cannot be used here (not Linux, or the socket/dump was refused)."""


@per_process
def available() -> tuple[bool, str]:
    """Whether a sock_diag TCP dump works here, and why not if it does not (probed once
    per process; a forked lab worker probes again in its own namespace)."""
    if not hasattr(socket, "AF_NETLINK"):
        return False, "no AF_NETLINK on this platform"
    try:
        for _ in dump_raw(socket.AF_INET, states=1 << TcpState.LISTEN.value):
            pass
    except OSError as exc:
        return False, f"sock_diag dump refused: {exc}"
    return True, "sock_diag TCP dump works"


def _port_bytecode(port: int) -> bytes:
    # inet_diag_bc_run accepts a socket iff the program lands exactly on its end, and the
    # kernel's audit requires every jump target to lie on the chain of "yes" jumps:
    #   @0  S_EQ port  yes -> @8 (JMP), no -> @12 (D_EQ)
    #   @8  JMP        always takes "no" -> @20, the end: accept
    #   @12 D_EQ port  yes -> @20 (accept), no -> @24, past the end: reject
    op = struct.Struct("=BBH")
    prog = (
        op.pack(INET_DIAG_BC_S_EQ, 8, 12) + op.pack(0, 0, port)
        + op.pack(INET_DIAG_BC_JMP, 4, 12)
        + op.pack(INET_DIAG_BC_D_EQ, 8, 12) + op.pack(0, 0, port)
    )
    return struct.pack("=HH", 4 + len(prog), INET_DIAG_REQ_BYTECODE) + prog


def _request(family: int, states: int, port: int | None, seq: int) -> bytes:
    if family == socket.AF_UNSPEC:
        # The kernel runs this request with sdiag_family = AF_UNSPEC ("compatibility" in
        # inet_diag_dump_compat): IPv4 and IPv6 sockets come from a single walk of the
        # shared TCP hash table, instead of one walk per family.
        body = _REQ_COMPAT.pack(socket.AF_INET, 0, 0, 0, bytes(48), states, 0)
        if port is not None:
            body += _port_bytecode(port)
        return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), TCPDIAG_GETSOCK,
                              NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body
    body = _REQ.pack(family, socket.IPPROTO_TCP, 0, states) + bytes(48)
    if port is not None:
        body += _port_bytecode(port)
    header = _NLMSGHDR.pack(
        _NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0
    )
    return header + body


def dump_raw(family: int, *, states: int = _ALL_STATES, port: int | None = None) -> Iterator[bytes]:
    """Yield the raw chunks (``bytes``) of one sock_diag dump, minus the DONE message.

    Every chunk holds whole netlink messages.  Raises ``NetlinkUnavailable`` when the
    kernel refuses the request (e.g. a seccomp policy or a kernel without inet_diag).
    """
    if port is not None and not 0 <= port <= 0xFFFF:
        raise ValueError(f"port must be 0-65535, got {port!r}")
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                             NETLINK_SOCK_DIAG)
    except (OSError, AttributeError) as exc:
        raise NetlinkUnavailable(f"cannot open a sock_diag netlink socket: {exc}") from exc
    with sock:
        seq = next(_seq)
        sock.sendall(_request(family, states, port, seq))
        buf = bytearray(_RECV_SIZE)
        view = memoryview(buf)
        while True:
            n = sock.recv_into(buf)
            chunk = bytes(view[:n])
            end = _find_done(chunk)
            if end is None:
                yield chunk
                continue
            if end:
                yield chunk[:end]
            return


def _find_done(chunk: bytes) -> int | None:
    """Offset of an NLMSG_DONE in ``chunk`` (None if absent); raises on NLMSG_ERROR."""
    # DONE and ERROR only ever come last in a dump chunk, so look at the tail first.
    if len(chunk) >= _MSG_SIZE and len(chunk) % _MSG_SIZE == 0 and _uniform(chunk):
        return None
    offset = 0
    while offset + _NLMSGHDR.size <= len(chunk):
        length, mtype, _, _, _ = _NLMSGHDR.unpack_from(chunk, offset)
        if mtype == NLMSG_DONE:
            return offset
        if mtype == NLMSG_ERROR:
            (errno,) = struct.unpack_from("=i", chunk, offset + _NLMSGHDR.size)
            raise NetlinkUnavailable(-errno, f"sock_diag dump failed: errno {-errno}")
        if length < _NLMSGHDR.size:
            raise NetlinkUnavailable(f"malformed netlink message of length {length}")
        offset += (length + 3) & ~3
    return None


# An attribute-free socket message's length and type: the one-walk (compat) request is
# answered with its own type, TCPDIAG_GETSOCK, the per-family one with SOCK_DIAG_BY_FAMILY.
_UNIFORM_HEADERS = frozenset(struct.pack("=IH", _MSG_SIZE, t) for t in (SOCK_DIAG_BY_FAMILY, TCPDIAG_GETSOCK))


def _uniform(chunk: bytes) -> bool:
    """True if ``chunk`` is only 88-byte socket messages (no attributes, no DONE)."""
    header = chunk[:6]
    if header not in _UNIFORM_HEADERS:
        return False
    n = len(chunk) // _MSG_SIZE
    # Check each of the first six header bytes (length and type) with one slice each.
    return all(chunk[i::_MSG_SIZE].count(header[i]) == n for i in range(len(header)))


_FW2 = TcpState.FIN_WAIT_2.value
_TIMEWAIT_TIMER = 3  # idiag_timer of a timewait mini-socket


def _walk_count(chunk: bytes, tally: list[int]) -> int:
    """Add a chunk's states to ``tally``; return how many FIN-WAIT-2 *mini-sockets* it held."""
    if len(chunk) % _MSG_SIZE == 0 and _uniform(chunk):
        # Only attribute-free 88-byte messages: state and timer bytes sit at fixed strides.
        states = chunk[_STATE_OFFSET::_MSG_SIZE]
        for code in set(states):
            tally[code] += states.count(code)
        if _FW2 not in states:
            return 0
        timers = chunk[_STATE_OFFSET + 1::_MSG_SIZE]
        return sum(1 for st, tm in zip(states, timers, strict=True) if st == _FW2 and tm == _TIMEWAIT_TIMER)
    mini = 0
    offset = 0
    while offset < len(chunk):
        length = _NLMSGHDR.unpack_from(chunk, offset)[0]
        state = chunk[offset + _STATE_OFFSET]
        tally[state] += 1
        if state == _FW2 and chunk[offset + _STATE_OFFSET + 1] == _TIMEWAIT_TIMER:
            mini += 1
        offset += (length + 3) & ~3
    return mini


def _walks(families: tuple[int, ...]) -> tuple[int, ...]:
    """The dumps to request: one AF_UNSPEC dump covers IPv4 and IPv6 together."""
    if set(families) == {socket.AF_INET, socket.AF_INET6} and _compat_ok():
        return (socket.AF_UNSPEC,)
    return tuple(families)


@per_process
def _compat_ok() -> bool:
    """Whether this kernel answers the one-walk request (probed once per process)."""
    try:
        for _ in dump_raw(socket.AF_UNSPEC, states=1 << TcpState.LISTEN.value):
            pass
    except OSError:
        return False
    return True


def sockstat_tw(proc_root: str = "/proc") -> int | None:
    """The ``tw`` field of ``/proc/net/sockstat``: the kernel's own count of timewait
    mini-sockets in this namespace (TIME-WAIT plus orphaned FIN-WAIT-2; ``sockstat_seq_show()`` in
    ``net/ipv4/proc.c``)."""
    try:
        with open(f"{proc_root}/net/sockstat") as f:
            for line in f:
                if line.startswith("TCP:"):
                    fields = line.split()
                    return int(fields[fields.index("tw") + 1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def dump_counts(
    families: tuple[int, ...] = (socket.AF_INET, socket.AF_INET6),
    *,
    port: int | None = None,
    time_wait_from_sockstat: bool = False,
) -> dict[TcpState, int]:
    """Count sockets per state with sock_diag; every ``TcpState`` is a key.

    TIME-WAIT mini-sockets carry no attributes, so their messages are 88 bytes each: a
    chunk made only of those is counted with one strided slice.  With
    ``time_wait_from_sockstat`` (all families, no port) the kernel does not even send
    them: every other state is dumped, and TIME-WAIT is the kernel's own ``tw`` counter
    less the FIN-WAIT-2 mini-sockets that counter also includes.
    """
    tally = [0] * 16
    states = _ALL_STATES & ~(1 << TcpState.TIME_WAIT.value) if time_wait_from_sockstat else _ALL_STATES
    tw_total = sockstat_tw() if time_wait_from_sockstat else None
    if time_wait_from_sockstat and tw_total is None:
        raise NetlinkUnavailable("no tw field in /proc/net/sockstat")
    mini = 0
    for family in _walks(families):
        for chunk in dump_raw(family, port=port, states=states):
            mini += _walk_count(chunk, tally)
    if tw_total is not None:
        tally[TcpState.TIME_WAIT.value] = max(0, tw_total - mini)
    return {state: tally[state.value] for state in TcpState}


def dump_sockets(
    families: tuple[int, ...] = (socket.AF_INET, socket.AF_INET6),
    *,
    port: int | None = None,
    states: int = _ALL_STATES,
) -> list[TcpSocket]:
    """Every TCP socket sock_diag reports, as ``TcpSocket`` records.

    ``timer_remaining`` comes from ``idiag_expires``, which the kernel fills in
    milliseconds (``jiffies_delta_to_msecs``); the tests cross-check it against /proc.
    """
    out: list[TcpSocket] = []
    for family in _walks(families):
        for chunk in dump_raw(family, port=port, states=states):
            offset = 0
            while offset < len(chunk):
                length = _NLMSGHDR.unpack_from(chunk, offset)[0]
                out.append(_decode(chunk, offset + _NLMSGHDR.size))
                offset += (length + 3) & ~3
    return out


def _decode(chunk: bytes, offset: int) -> TcpSocket:
    (fam, state, timer, retrans, sport, dport, src, dst, _if, _cookie,
     expires, rqueue, wqueue, uid, inode) = _MSG.unpack_from(chunk, offset)
    local: ipaddress.IPv4Address | ipaddress.IPv6Address
    remote: ipaddress.IPv4Address | ipaddress.IPv6Address
    if fam == socket.AF_INET:
        local, remote = ipaddress.IPv4Address(src[:4]), ipaddress.IPv4Address(dst[:4])
    else:
        local, remote = ipaddress.IPv6Address(src), ipaddress.IPv6Address(dst)
    timer_name = _TIMERS.get(timer, "off")
    return TcpSocket(
        family=fam,
        local_address=str(local),
        local_port=int.from_bytes(sport, "big"),
        remote_address=str(remote),
        remote_port=int.from_bytes(dport, "big"),
        state=_STATE_BY_CODE.get(state, TcpState.CLOSED),
        tx_queue=wqueue,
        rx_queue=rqueue,
        timer=timer_name,
        timer_remaining=expires / 1000 if timer_name != "off" else 0.0,
        retransmits=retrans,
        uid=uid,
        inode=inode,
    )


_SPORT_OFFSET = _NLMSGHDR.size + 4  # inet_diag_sockid.idiag_sport, big-endian


def local_ports_in_use(low: int, high: int) -> int:
    """How many distinct local ports from ``low`` to ``high`` (inclusive) TCP sockets of
    this namespace hold, in any state (TIME-WAIT included): the ephemeral ports that a
    ``bind()`` to port 0 cannot take now.  One sock_diag dump; attribute-free chunks are
    read with strided slices."""
    if not 0 <= low <= high <= 0xFFFF:
        raise ValueError(f"need 0 <= low <= high <= 65535, got {low!r}, {high!r}")
    seen: set[int] = set()
    for family in _walks((socket.AF_INET, socket.AF_INET6)):
        for chunk in dump_raw(family, states=_ALL_STATES):
            if len(chunk) % _MSG_SIZE == 0 and _uniform(chunk):
                hi, lo = chunk[_SPORT_OFFSET::_MSG_SIZE], chunk[_SPORT_OFFSET + 1::_MSG_SIZE]
                seen.update(a << 8 | b for a, b in zip(hi, lo, strict=True))
                continue
            offset = 0
            while offset < len(chunk):
                length = _NLMSGHDR.unpack_from(chunk, offset)[0]
                seen.add(int.from_bytes(chunk[offset + _SPORT_OFFSET:offset + _SPORT_OFFSET + 2], "big"))
                offset += (length + 3) & ~3
    return sum(1 for port in seen if low <= port <= high)
