"""Enter a fresh user + network namespace from a single-threaded process, and bring up ``lo``.

An unprivileged user may create a user namespace, map their own uid to 0 inside it and
then hold CAP_NET_ADMIN over a network namespace created with it: its own loopback,
its own per-namespace ``net.ipv4`` settings, AF_PACKET capture on its own ``lo``.
``unshare(CLONE_NEWUSER)`` is refused to a multithreaded process, so only a freshly
forked child calls ``enter()``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import sys

from ..util import system_name

__all__ = ["enter", "enter_beside", "why_blocked", "NamespaceError"]

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
PR_SET_PDEATHSIG = 1


class NamespaceError(OSError):
    """The namespace could not be created or set up; ``str()`` says why in one sentence."""


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def why_blocked(err: int | None = None) -> str:
    """One plain sentence saying why user namespaces are unavailable here.

    Looks at the known switches first; ``err`` is the errno ``unshare`` failed with.
    """
    if not sys.platform.startswith("linux"):
        return f"private labs need Linux namespaces, and this is {system_name()}"
    if _read_int("/proc/sys/user/max_user_namespaces") == 0:
        return ("unprivileged user namespaces are disabled here "
                "(user.max_user_namespaces=0), so a private lab cannot start")
    if _read_int("/proc/sys/kernel/unprivileged_userns_clone") == 0 and os.geteuid() != 0:
        return ("unprivileged user namespaces are disabled here "
                "(kernel.unprivileged_userns_clone=0), so a private lab cannot start")
    if _read_int("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == 1 and os.geteuid() != 0:
        return ("Ubuntu's AppArmor policy restricts unprivileged user namespaces "
                "(kernel.apparmor_restrict_unprivileged_userns=1), so a private lab cannot start")
    if err == errno.ENOSPC:
        return "the limit on user namespaces is used up here (ENOSPC)"
    if err == errno.EPERM:
        return ("creating a user namespace is refused here (EPERM), most likely by the "
                "container's seccomp policy, as on some JupyterHub and Binder deployments")
    if err == errno.EINVAL:
        return "this kernel does not support user or network namespaces (EINVAL)"
    return f"creating a user + network namespace failed ({os.strerror(err) if err else 'unknown error'})"


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def enter() -> None:
    """Move the calling (single-threaded) process into a new user + network namespace,
    become uid 0 there, and bring ``lo`` up.  Raises ``NamespaceError`` with the reason."""
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        raise NamespaceError(why_blocked(ctypes.get_errno()))
    try:
        # setgroups must be denied before an unprivileged process may write gid_map.
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")
    except OSError as exc:
        raise NamespaceError(f"could not map this user into the lab's namespace: {exc.strerror}") from exc
    _loopback_up()


def enter_beside(pid: int) -> None:
    """Move the calling (single-threaded) process into the user namespace of lab process
    ``pid`` and a network namespace of its own there: a second host of the same lab, with
    its own ``lo`` (up), settings and socket table.

    Its creator, in the parent user namespace with the owner's uid, holds every capability
    in that user namespace (user_namespaces(7), "Capabilities"), so ``setns`` needs no root."""
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY)
    except OSError as exc:
        raise NamespaceError(f"could not open the lab's user namespace: {exc.strerror}") from exc
    try:
        if libc.setns(fd, CLONE_NEWUSER) != 0:
            raise NamespaceError("could not join the lab's user namespace "
                                 f"({os.strerror(ctypes.get_errno())})")
    finally:
        os.close(fd)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise NamespaceError(f"could not create the second host's network namespace "
                             f"({os.strerror(ctypes.get_errno())})")
    _loopback_up()


def _loopback_up() -> None:
    import fcntl  # POSIX only: imported here so that tcplearn still imports on Windows

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            ifr = struct.pack("16sh", b"lo", 0)
            flags = struct.unpack("16sh", fcntl.ioctl(s, SIOCGIFFLAGS, ifr))[1]
            fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))
    except OSError as exc:
        raise NamespaceError(f"could not bring up the lab's loopback: {exc.strerror}") from exc


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent thread exits."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
    except OSError:
        pass
