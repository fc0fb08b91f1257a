"""Silencing a peer: a drop-all socket filter that makes a TCP socket vanish like a pulled cable.

Measured on Linux 6.18: a classic BPF socket filter with one instruction (``BPF_RET|BPF_K
0``) attached with ``SO_ATTACH_FILTER`` drops every segment before TCP processes it, so
the socket neither ACKs nor resets; ``lo`` stays up and a capture still sees every probe
and retransmission.  On a TCP socket it needs ``CAP_NET_ADMIN`` (a private lab's, or
root).  Used by notebook 06's dead peer and notebook 03's silent listener.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct

__all__ = ["silence", "unsilence", "can_silence", "abort"]

SO_ATTACH_FILTER = 26
SO_DETACH_FILTER = 27
_DROP_ALL = struct.pack("HBBI", 0x06, 0, 0, 0)  # BPF_RET | BPF_K, k = 0: keep 0 bytes


def silence(sock: socket.socket) -> None:
    """Make ``sock`` deaf: attach a socket filter that drops every segment it receives.

    TCP runs the socket filter before it processes a segment, so the socket neither ACKs
    nor resets anything and sends nothing of its own accord: to its peer it has vanished
    like a pulled cable.  Needs ``CAP_NET_ADMIN`` over the socket's network namespace
    (a private lab's, or root); ``PermissionError`` otherwise."""
    buf = ctypes.create_string_buffer(_DROP_ALL, len(_DROP_ALL))
    prog = struct.pack("HL", 1, ctypes.addressof(buf))  # struct sock_fprog (the kernel copies it)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)
    except PermissionError as exc:
        raise PermissionError(exc.errno, _NEEDS_NET_ADMIN) from None


_NEEDS_NET_ADMIN = (
    "attaching a socket filter to a TCP socket needs CAP_NET_ADMIN on this kernel: run in a "
    "private lab (root over its own network, no real root needed) or as root")


def can_silence() -> bool:
    """Whether ``silence`` works here (tried on a fresh, unconnected TCP socket)."""
    with socket.socket() as probe:
        try:
            silence(probe)
        except PermissionError:
            return False
    return True


def unsilence(sock: socket.socket) -> None:
    """Remove the filter ``silence`` attached (no error if there is none)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


def _abort(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0): no FIN, no TIME-WAIT, nothing left behind."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()



abort = _abort
