"""A lab host's worker: a forked process inside the lab's namespaces that runs what it is sent.

One worker per host.  The first enters a fresh user + network namespace; a second host's
worker joins that user namespace and makes a network namespace of its own beside it
(``namespace.enter_beside``).  Each answers messages on its own socket pair to the caller:
``run`` (a function, optionally captured), ``sysctl``, ``link`` / ``configure`` (the wire
between hosts), ``capture_start`` / ``capture_stop`` (a capture while another host runs).
"""

from __future__ import annotations

import io
import os
import pickle
import signal
import socket
import struct
import sys
import traceback
from collections.abc import Callable
from typing import Any

from .. import sysctl as _sysctl
from . import hosts as _hosts
from .namespace import NamespaceError, die_with_parent, enter, enter_beside

__all__ = ["in_lab", "host_name", "send", "recv", "worker_main", "LabError"]

_LEN = struct.Struct("!Q")


class LabError(RuntimeError):
    """An experiment raised inside the lab; the message carries its traceback."""


def send(sock: socket.socket, obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_LEN.pack(len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("the lab worker went away")
        buf += chunk
    return bytes(buf)


def recv(sock: socket.socket) -> Any:
    (n,) = _LEN.unpack(_recv_exact(sock, _LEN.size))
    return pickle.loads(_recv_exact(sock, n))


def _close_inherited(keep: int) -> None:
    # A forked copy of a host socket would keep it open and swallow its FIN when the
    # parent closes it: close every descriptor but stdio and our channel.
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd > 2 and fd != keep:
            try:
                os.close(fd)
            except OSError:
                pass


_IN_LAB = False
_HOST: str | None = None
_capture: Any = None  # a Capture running while another host runs an experiment


def in_lab() -> bool:
    """True in a lab's worker process (inside its private namespaces)."""
    return _IN_LAB


def host_name() -> str | None:
    """In a two-host lab's worker, the name of the host it is ("client" or "server"); else None."""
    return _HOST


def worker_main(chan: socket.socket, host: str | None = None, beside: int | None = None,
                addresses: frozenset[str] = frozenset()) -> None:
    """The worker's life: enter the namespaces (beside lab process ``beside`` for a second
    host), say "ready", then answer messages until "stop" or the caller goes away."""
    global _IN_LAB, _HOST
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    _close_inherited(chan.fileno())
    try:
        if beside is None:
            enter()
        else:
            enter_beside(beside)
    except NamespaceError as exc:
        send(chan, ("failed", str(exc)))
        return
    _IN_LAB, _HOST = True, host
    _hosts.set_own_addresses(addresses)
    send(chan, ("ready", os.getpid()))
    while True:
        try:
            msg = recv(chan)
        except EOFError:
            return
        except Exception as exc:  # noqa: BLE001 - e.g. a function the worker cannot find
            send(chan, ("err", LabError(
                f"the lab could not load what was sent ({exc}). The lab is a copy of this "
                "process made when it started: define lab functions before 'with PrivateLab()', "
                "or import them from a module"), "", ""))
            continue
        if msg[0] == "stop":
            _stop_capture()
            return
        out = io.StringIO()
        sys.stdout = sys.stderr = out
        reply: tuple[Any, ...]  # ("ok", value, output) or ("err", exception, output, traceback)
        try:
            reply = ("ok", _handle(msg), out.getvalue())
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the caller
            reply = ("err", exc, out.getvalue(), traceback.format_exc())
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        try:
            send(chan, reply)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            send(chan, ("err", LabError(f"the lab's result could not be sent back: {exc}"),
                        out.getvalue(), ""))


def _handle(msg: tuple[Any, ...]) -> Any:
    global _capture
    kind = msg[0]
    if kind == "run":
        _, fn, args, kwargs, interface = msg
        return _run_in_lab(fn, args, kwargs, interface)
    if kind == "sysctl":
        for short, value in msg[1]:
            _sysctl.write_raw(_sysctl.SETTINGS[short], value)
        return {short: _sysctl.read(short) for short, _ in msg[1]}
    from . import link

    if kind == "link":  # the client's worker makes the cable, its far end in the server's namespace
        link.create_veth(msg[1])
        return None
    if kind == "configure":  # each host addresses and raises its own end
        link.configure(msg[1], msg[2])
        return link.netem_missing() if msg[3] else None
    if kind == "capture_start":
        from .capture import Capture

        _stop_capture()
        _capture = Capture(msg[1]).__enter__()
        return None
    if kind == "capture_stop":
        cap, _capture = _capture, None
        if cap is None:
            raise RuntimeError("no capture is running on this host")
        cap.settle()
        cap.__exit__(None, None, None)
        return cap.segments
    raise RuntimeError(f"unknown lab message {kind!r}")


def _stop_capture() -> None:
    global _capture
    cap, _capture = _capture, None
    if cap is not None:
        cap.__exit__(None, None, None)


def _run_in_lab(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                interface: str | None) -> Any:
    if interface is None:
        return fn(*args, **kwargs)
    from .capture import Capture

    with Capture(interface) as cap:
        result = fn(*args, **kwargs)
        cap.settle()
    return result, cap.segments
