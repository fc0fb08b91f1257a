"""Another process's socket, seen from outside: find its descriptor by the socket's inode,
duplicate it into this process (``pidfd_open`` + ``pidfd_getfd``, Linux 5.6+), and read its
options with ``getsockopt`` on the bare descriptor.

Used to check what Node really set on its own socket (``SO_RCVTIMEO`` after
``setTimeout``, the keepalive options after ``setKeepAlive``).  Duplicating another
process's descriptor needs ptrace rights over it (root, CAP_SYS_PTRACE, or a parent over
its own child under Yama's ptrace_scope 1)."""

from __future__ import annotations

import os
import struct
import sys
from typing import Any

__all__ = ["SYS_PIDFD_GETFD", "pidfd_getfd", "socket_fd_of", "getsockopt_int", "getsockopt_timeval"]

SYS_PIDFD_GETFD = 438  # one number on every architecture (the unified syscall table, Linux >= 5.6)
_TIMEVAL = struct.Struct("ll")  # struct timeval on 64-bit Linux: tv_sec, tv_usec
_INT = struct.Struct("i")


def _libc() -> Any:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def pidfd_getfd(pid: int, targetfd: int) -> int:
    """A duplicate, in this process, of descriptor ``targetfd`` of process ``pid``: it refers
    to the same open socket, so its options are that socket's.  Close it when done.  Raises
    ``OSError`` (EPERM without ptrace rights over ``pid``, ENOSYS before Linux 5.6)."""
    import ctypes

    if not sys.platform.startswith("linux") or not hasattr(os, "pidfd_open"):
        raise OSError(f"pidfd_open/pidfd_getfd are Linux-only (this is {sys.platform})")
    pidfd = os.pidfd_open(pid)
    try:
        fd = _libc().syscall(ctypes.c_long(SYS_PIDFD_GETFD), ctypes.c_int(pidfd), ctypes.c_int(targetfd),
                             ctypes.c_uint(0))
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"pidfd_getfd(pid {pid}, fd {targetfd}): {os.strerror(err)}")
        return int(fd)
    finally:
        os.close(pidfd)


def socket_fd_of(pid: int, inode: int) -> int:
    """The descriptor number under which process ``pid`` holds the socket with ``inode``
    (``/proc/PID/fd/N`` links to ``socket:[INODE]``); ``LookupError`` if it holds none."""
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}") == f"socket:[{inode}]":
                return int(name)
        except OSError:
            continue
    raise LookupError(f"process {pid} holds no descriptor for socket inode {inode}")


def _getsockopt(fd: int, level: int, option: int, size: int) -> bytes:
    # Through libc on the bare descriptor: wrapping someone else's socket in socket.socket
    # could change its blocking mode when a default timeout is set.
    import ctypes

    buf = ctypes.create_string_buffer(size)
    length = ctypes.c_uint32(size)
    if _libc().getsockopt(fd, level, option, buf, ctypes.byref(length)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"getsockopt: {os.strerror(err)}")
    return buf.raw[:size]


def getsockopt_int(fd: int, level: int, option: int) -> int:
    """An integer socket option of descriptor ``fd`` (e.g. ``TCP_KEEPIDLE``)."""
    value: int = _INT.unpack(_getsockopt(fd, level, option, _INT.size))[0]
    return value


def getsockopt_timeval(fd: int, option: int) -> float:
    """A ``SOL_SOCKET`` struct-timeval option of ``fd`` (``SO_RCVTIMEO``, ``SO_SNDTIMEO``), in seconds."""
    import socket

    sec, usec = _TIMEVAL.unpack(_getsockopt(fd, socket.SOL_SOCKET, option, _TIMEVAL.size))
    return float(sec + usec / 1e6)
