"""IPython startup file: make this Linux kernel process look like a learner's Mac.

Copied into ``$IPYTHONDIR/profile_default/startup/`` by ``tests/test_fallbacks.py`` so that
every notebook runs with what tcplearn would find on macOS without root: no ``/proc``
or ``/sys``, no ``AF_NETLINK``/``AF_PACKET``, ``sys.platform == "darwin"``, and psutil's
system-wide connection list refused (macOS needs root for it; a process still sees its own
connections; psutil itself keeps reading /proc, standing in for macOS's
own process APIs).  The sockets underneath are still Linux's: this checks tcplearn's choices and
fallbacks, not macOS's TCP.
"""

import builtins
import io
import os
import platform
import socket
import sys

import psutil  # the real (Linux) psutil is imported before the platform changes

_real_open, _real_os_open, _real_stat, _real_listdir, _real_scandir = (
    builtins.open, os.open, os.stat, os.listdir, os.scandir)


def _hidden(path) -> bool:
    try:
        text = os.fsdecode(path)
    except TypeError:
        return False  # a file descriptor
    return text in ("/proc", "/sys") or text.startswith(("/proc/", "/sys/"))


def _missing(path):
    return FileNotFoundError(2, "No such file or directory (simulated macOS)", os.fsdecode(path))


def _guard(real):
    def guarded(path, *args, **kwargs):
        # psutil stands in for macOS's own process APIs, so it keeps its Linux sources
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if _hidden(path) and not caller.startswith("psutil"):
            raise _missing(path)
        return real(path, *args, **kwargs)
    return guarded


builtins.open = io.open = _guard(_real_open)
os.open, os.stat, os.listdir = _guard(_real_os_open), _guard(_real_stat), _guard(_real_listdir)
os.scandir = _guard(_real_scandir)
for _name in ("AF_NETLINK", "AF_PACKET"):
    if hasattr(socket, _name):
        delattr(socket, _name)


def _refused(*args, **kwargs):
    raise psutil.AccessDenied(msg="simulated macOS: a system-wide list needs root")


psutil.net_connections = _refused
sys.platform = "darwin"
platform.system = lambda: "Darwin"
platform.release = lambda: "23.6.0"
