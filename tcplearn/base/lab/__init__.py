"""``PrivateLab``: run experiments inside a private user + network namespace.

Inside the lab you are root over a network of your own: its loopback, its own copies of
the per-namespace ``net.ipv4`` settings, packet capture on its ``lo``.  The machine's
real settings stay untouched and no root is needed.  The calling process (a Jupyter
kernel, say) never changes namespace: a forked worker does, and runs the experiment
functions you hand it.
"""

from __future__ import annotations

import io
import os
import pickle
import select
import signal
import socket
import struct
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from .. import sysctl as _sysctl
from ..util import per_process
from .namespace import NamespaceError, die_with_parent, enter, why_blocked
from .pcap import write_pcap
from .segments import Segment, parse_frame, relative

__all__ = ["PrivateLab", "LabUnavailable", "lab_available", "in_lab", "Segment", "parse_frame", "relative",
           "write_pcap"]

T = TypeVar("T")
_LEN = struct.Struct("!Q")
START_TIMEOUT = 10.0


class LabUnavailable(RuntimeError):
    """A private lab cannot start here; ``str()`` is the reason in one sentence."""


class LabError(RuntimeError):
    """An experiment raised inside the lab; the message carries its traceback."""


def _send(sock: socket.socket, obj: object) -> None:
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


def _recv(sock: socket.socket) -> Any:
    (n,) = _LEN.unpack(_recv_exact(sock, _LEN.size))
    return pickle.loads(_recv_exact(sock, n))


# ---------------------------------------------------------------- the worker side


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


def in_lab() -> bool:
    """True in a lab's worker process (inside its private namespaces)."""
    return _IN_LAB


def _worker_main(chan: socket.socket) -> None:
    global _IN_LAB
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    _close_inherited(chan.fileno())
    try:
        enter()
    except NamespaceError as exc:
        _send(chan, ("failed", str(exc)))
        return
    _IN_LAB = True
    _send(chan, ("ready", os.getpid()))
    while True:
        try:
            msg = _recv(chan)
        except EOFError:
            return
        except Exception as exc:  # noqa: BLE001 - e.g. a function the worker cannot find
            _send(chan, ("err", LabError(
                f"the lab could not load what was sent ({exc}). The lab is a copy of this "
                "process made when it started: define lab functions before 'with PrivateLab()', "
                "or import them from a module"), "", ""))
            continue
        if msg[0] == "stop":
            return
        out = io.StringIO()
        sys.stdout = sys.stderr = out
        reply: tuple[Any, ...]  # ("ok", value, output) or ("err", exception, output, traceback)
        try:
            if msg[0] == "run":
                _, fn, args, kwargs, capture = msg
                reply = ("ok", _run_in_lab(fn, args, kwargs, capture), out.getvalue())
            elif msg[0] == "sysctl":
                for short, value in msg[1]:
                    _sysctl.write_raw(_sysctl.SETTINGS[short], value)
                reply = ("ok", {short: _sysctl.read(short) for short, _ in msg[1]}, "")
            else:
                reply = ("err", RuntimeError(f"unknown lab message {msg[0]!r}"), "", "")
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the caller
            reply = ("err", exc, out.getvalue(), traceback.format_exc())
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        try:
            _send(chan, reply)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            _send(chan, ("err", LabError(f"the lab's result could not be sent back: {exc}"),
                         out.getvalue(), ""))


def _run_in_lab(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], capture: bool) -> Any:
    if not capture:
        return fn(*args, **kwargs)
    from .capture import Capture

    with Capture("lo") as cap:
        result = fn(*args, **kwargs)
        cap.settle()
    return result, cap.segments


# ---------------------------------------------------------------- the caller side


class PrivateLab:
    """A private network lab: ``with tcplearn.PrivateLab() as lab: lab.run(fn)``.

    Starting it raises ``LabUnavailable`` with the reason when user namespaces are
    blocked here.  Leaving the ``with`` block kills the worker and, with it, the
    namespace, also after an exception or KeyboardInterrupt.
    """

    def __init__(self) -> None:
        self._pid: int | None = None
        self._chan: socket.socket | None = None
        self.settings: dict[str, object] = {}

    @property
    def pid(self) -> int | None:
        """The worker's process id (its ``/proc/<pid>/net/tcp`` is the lab's table)."""
        return self._pid

    def __enter__(self) -> PrivateLab:
        if not sys.platform.startswith("linux"):
            raise LabUnavailable(why_blocked())
        parent, child = socket.socketpair()
        with warnings.catch_warnings():
            # Python 3.12+ warns about fork() in a threaded process; the child only runs
            # our own loop, which takes no lock another thread could hold.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                parent.close()
                _worker_main(child)
            except BaseException:  # noqa: BLE001
                code = 1
            finally:
                os._exit(code)
        child.close()
        self._pid, self._chan = pid, parent
        try:
            ready, _, _ = select.select([parent], [], [], START_TIMEOUT)
            if not ready:
                raise LabUnavailable(f"the lab worker did not start within {START_TIMEOUT:g} s")
            status, detail = _recv(parent)
        except BaseException:
            self._shutdown()
            raise
        if status != "ready":
            self._shutdown()
            raise LabUnavailable(detail)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._shutdown()

    def close(self) -> None:
        """Stop the worker and discard the namespace (what leaving ``with`` does)."""
        self._shutdown()

    def _shutdown(self, graceful: bool = True) -> None:
        chan, pid = self._chan, self._pid
        self._chan = self._pid = None
        if chan is not None:
            if graceful:
                try:
                    _send(chan, ("stop",))
                except OSError:
                    graceful = False
            chan.close()
        if pid is None:
            return
        deadline = time.monotonic() + (2.0 if graceful else 0.0)
        while time.monotonic() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
            time.sleep(0.005)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)

    def _call(self, msg: tuple[Any, ...]) -> Any:
        if self._chan is None:
            raise RuntimeError("this PrivateLab is not running: use it inside 'with PrivateLab() as lab:'")
        try:
            _send(self._chan, msg)
            reply = _recv(self._chan)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise TypeError(
                f"could not send this to the lab: {exc}. Lab functions and their arguments "
                "must be picklable (module-level functions, plain data)"
            ) from exc
        except BaseException:
            # Interrupted or the worker died mid-call: the channel's state is unknown,
            # and the experiment may still be running, so stop the worker at once.
            self._shutdown(graceful=False)
            raise
        if reply[0] == "ok":
            if reply[2]:
                print(reply[2], end="")
            return reply[1]
        _, error, output, tb = reply
        if output:
            print(output, end="")
        if tb and hasattr(error, "add_note"):  # Python 3.11+
            error.add_note(f"(raised inside the private lab)\n{tb}")
        raise error

    def run(self, fn: Callable[..., T], *args: Any, capture: bool = False, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` inside the lab and return its result.

        With ``capture=True`` returns ``(result, segments)``: the TCP segments seen on
        the lab's ``lo`` while ``fn`` ran, as ``Segment`` records with relative seq/ack
        (each keeps its frame's bytes: ``write_pcap(segments, "x.pcap")`` saves them).
        ``fn`` and its result must be picklable.  Whatever ``fn`` prints is shown here.
        """
        return self._call(("run", fn, args, kwargs, bool(capture)))

    def sysctl(self, **values: object) -> dict[str, object]:
        """Set per-namespace settings inside the lab, e.g. ``lab.sysctl(tcp_fin_timeout=5)``.

        Validated with the same allow-list and ranges as ``tcplearn.sysctl``; a setting
        that is global rather than per-namespace is refused.  The host is untouched.
        Returns the values the lab's kernel now reports.
        """
        if not values:
            raise ValueError("lab.sysctl() needs at least one setting, e.g. tcp_fin_timeout=5")
        checked = []
        for name, value in values.items():
            setting, norm = _sysctl.validate(name, value)
            if not setting.per_netns:
                raise _sysctl.SysctlError(
                    f"{setting.name} is global, not per network namespace: a lab cannot change it"
                )
            checked.append((setting.short, norm))
        now: dict[str, object] = self._call(("sysctl", checked))
        self.settings.update(now)
        return now

    def read_sysctl(self, name: str) -> object:
        """A known setting's value as the lab's kernel reports it (``None`` if absent there)."""
        return self.run(_sysctl.read, _sysctl.setting(name).short)


@per_process
def lab_available() -> tuple[bool, str]:
    """Whether a private lab can start here, and if not, why (one plain sentence).

    Tries once per process by starting and stopping a lab (~20 ms).
    """
    try:
        with PrivateLab():
            pass
    except LabUnavailable as exc:
        return False, str(exc)
    return True, "user + network namespaces work here: real knobs and packets, no root"

