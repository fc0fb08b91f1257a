"""``PrivateLab``: run experiments inside a private user + network namespace.

Inside the lab you are root over a network of your own: its loopback, its own copies of
the per-namespace ``net.ipv4`` settings, packet capture on its ``lo``.  The machine's
real settings stay untouched and no root is needed.  The calling process (a Jupyter
kernel, say) never changes namespace: a forked worker does, and runs the experiment
functions you hand it.

``PrivateLab(hosts=2)`` makes two hosts, "client" and "server": two network namespaces in
the lab's user namespace, each with its own loopback, settings and socket table, joined by
one veth link (``link``) with addresses from 198.18.0.0/15 (``hosts``).
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import socket
import sys
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .. import sysctl as _sysctl
from ..util import per_process
from . import hosts as _hosts
from .link import LINK
from .namespace import why_blocked
from .pcap import write_pcap
from .segments import Segment, parse_frame, relative
from .worker import LabError, host_name, in_lab, recv, send, worker_main

__all__ = ["PrivateLab", "LabUnavailable", "LabError", "lab_available", "two_host_lab_available", "in_lab",
           "host_name", "Segment", "parse_frame", "relative", "write_pcap"]

if TYPE_CHECKING:  # only named in annotations: the lab imports the observers when asked
    from ..observe import TcpSocket
    from ..states import TcpState

T = TypeVar("T")
START_TIMEOUT = 10.0


class LabUnavailable(RuntimeError):
    """A private lab cannot start here; ``str()`` is the reason in one sentence."""


class PrivateLab:
    """A private network lab: ``with tcplearn.PrivateLab() as lab: lab.run(fn)``.

    ``hosts=2`` gives two hosts, "client" and "server", each its own network namespace,
    joined by one link: ``lab.address(host)``, ``lab.run(fn, host=...)``,
    ``lab.sysctl(host=..., ...)``, ``lab.sockets(host)``; ``lab.link_note`` says what the
    link is (no delay where the kernel has no netem).  Starting it raises ``LabUnavailable``
    with the reason when user namespaces (or, for two hosts, veth links) are blocked here.
    Leaving the ``with`` block kills every worker and, with them, the namespaces and the
    link, also after an exception or KeyboardInterrupt.
    """

    def __init__(self, hosts: int = 1) -> None:
        self.host_count = _hosts.check_hosts(hosts)
        self._workers: dict[str, tuple[int, socket.socket]] = {}  # host -> (pid, channel)
        self.settings: dict[str, object] = {}  # a single-host lab's settings as set
        self.host_settings: dict[str, dict[str, object]] = {h: {} for h in self.hosts}
        self.netem_missing = ""  # why the link has no delay ("" if netem works there)

    @property
    def hosts(self) -> tuple[str, ...]:
        """The hosts' names: ``("client", "server")`` in a two-host lab, ``()`` in a single-host one."""
        return _hosts.HOSTS if self.host_count == 2 else ()

    @property
    def addresses(self) -> dict[str, str]:
        """Each host's address on the link (empty for a single-host lab)."""
        return {h: _hosts.ADDRESSES[h] for h in self.hosts}

    def address(self, host: str) -> str:
        """``host``'s address on the link, in 198.18.0.0/15 (never one of the machine's)."""
        return _hosts.ADDRESSES[_hosts.check_host(host, self.host_count)]

    @property
    def link_note(self) -> str:
        """One sentence on the link between the hosts ("" for a single-host lab)."""
        if self.host_count == 1:
            return ""
        first = (f"client {self.address('client')} and server {self.address('server')} are joined by "
                 f"one link ({LINK} on each)")
        return f"{first}; no delay on the link: {self.netem_missing}" if self.netem_missing else \
            f"{first}; netem works on it here, so a delay or loss could be set"

    @property
    def pid(self) -> int | None:
        """The (first) worker's process id (its ``/proc/<pid>/net/tcp`` is the lab's table,
        or the client's in a two-host lab)."""
        return self._workers["client"][0] if "client" in self._workers else None

    @property
    def pids(self) -> dict[str, int]:
        """Each running worker's process id, by host ("client" alone in a single-host lab)."""
        return {h: pid for h, (pid, _) in self._workers.items()}

    def __enter__(self) -> PrivateLab:
        if not sys.platform.startswith("linux"):
            raise LabUnavailable(why_blocked())
        addresses = frozenset(self.addresses.values())
        try:
            first = self._fork("client", None, addresses)
            if self.host_count == 2:
                self._fork("server", first, addresses)
                self._link()
        except BaseException:
            self._shutdown()
            raise
        return self

    def _fork(self, host: str, beside: int | None, addresses: frozenset[str]) -> int:
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
                worker_main(child, host if self.host_count == 2 else None, beside, addresses)
            except BaseException:  # noqa: BLE001
                code = 1
            finally:
                os._exit(code)
        child.close()
        self._workers[host] = (pid, parent)
        ready, _, _ = select.select([parent], [], [], START_TIMEOUT)
        if not ready:
            raise LabUnavailable(f"the lab worker did not start within {START_TIMEOUT:g} s")
        status, detail = recv(parent)
        if status != "ready":
            raise LabUnavailable(detail)
        return pid

    def _link(self) -> None:
        try:
            self._call("client", ("link", self._workers["server"][0]))
            self.netem_missing = self._call("client", ("configure", self.address("client"), _hosts.PREFIX,
                                                       True))
            self._call("server", ("configure", self.address("server"), _hosts.PREFIX, False))
        except OSError as exc:
            raise LabUnavailable(f"a two-host lab cannot start here: {exc.strerror or exc}") from exc

    def __exit__(self, *exc_info: object) -> None:
        self._shutdown()

    def close(self) -> None:
        """Stop the workers and discard the namespaces and the link (what leaving ``with`` does)."""
        self._shutdown()

    def _shutdown(self, graceful: bool = True) -> None:
        workers, self._workers = self._workers, {}
        for _pid, chan in workers.values():
            if graceful:
                try:
                    send(chan, ("stop",))
                except OSError:
                    graceful = False
            chan.close()
        # The server's worker goes first: its namespace holds the link's far end.
        for pid, _ in reversed(list(workers.values())):
            deadline = time.monotonic() + (2.0 if graceful else 0.0)
            while time.monotonic() < deadline:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                time.sleep(0.002)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                os.waitpid(pid, 0)

    def _host(self, host: str | None) -> str:
        """The worker that serves ``host``: a single-host lab's one worker for ``None``; the
        client for ``None`` in a two-host lab."""
        return "client" if host is None else _hosts.check_host(host, self.host_count)

    def _call(self, host: str, msg: tuple[Any, ...]) -> Any:
        if host not in self._workers:
            raise RuntimeError("this PrivateLab is not running: use it inside 'with PrivateLab() as lab:'")
        chan = self._workers[host][1]
        try:
            send(chan, msg)
            reply = recv(chan)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise TypeError(
                f"could not send this to the lab: {exc}. Lab functions and their arguments "
                "must be picklable (module-level functions, plain data)"
            ) from exc
        except BaseException:
            # Interrupted or the worker died mid-call: the channel's state is unknown,
            # and the experiment may still be running, so stop the workers at once.
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

    def run(self, fn: Callable[..., T], *args: Any, capture: bool | str = False, host: str | None = None,
            **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` inside the lab and return its result.

        In a two-host lab ``host`` says where ("client" or "server"; the client when omitted).
        With ``capture=True`` returns ``(result, segments)``: the TCP segments seen while ``fn``
        ran, on the lab's ``lo`` (single host) or on that host's end of the link; a host's
        name (``capture="server"``) captures on that host's end instead.  ``Segment`` records
        have relative seq/ack and keep their frame's bytes (``write_pcap(segments, "x.pcap")``).
        ``fn`` and its result must be picklable.  Whatever ``fn`` prints is shown here.
        """
        where = self._host(host)
        if capture is False or capture is None:
            return self._call(where, ("run", fn, args, kwargs, None))
        if capture is True:
            return self._call(where, ("run", fn, args, kwargs, "lo" if self.host_count == 1 else LINK))
        if not isinstance(capture, str):
            raise TypeError(f"capture={capture!r} refused: expected True, False or a host's name")
        on = _hosts.check_host(capture, self.host_count)
        if on == where:
            return self._call(where, ("run", fn, args, kwargs, LINK))
        self._call(on, ("capture_start", LINK))
        try:
            result = self._call(where, ("run", fn, args, kwargs, None))
        finally:
            if on in self._workers:
                segments = self._call(on, ("capture_stop",))
        return result, segments

    def sysctl(self, host: str | None = None, **values: object) -> dict[str, object]:
        """Set per-namespace settings inside the lab, e.g. ``lab.sysctl(tcp_fin_timeout=5)``.

        In a two-host lab each host has its own: ``host="client"`` sets the client's, no
        ``host`` sets every host's.  Validated with the same allow-list and ranges as
        ``tcplearn.sysctl``; a setting that is global rather than per-namespace is refused.
        The machine is untouched.  Returns the values the (last) host's kernel now reports.
        """
        if not values:
            raise ValueError("lab.sysctl() needs at least one setting, e.g. tcp_fin_timeout=5")
        targets = list(self.hosts) if host is None and self.host_count == 2 else [self._host(host)]
        checked = []
        for name, value in values.items():
            setting, norm = _sysctl.validate(name, value)
            if not setting.per_netns:
                raise _sysctl.SysctlError(
                    f"{setting.name} is global, not per network namespace: a lab cannot change it"
                )
            checked.append((setting.short, norm))
        now: dict[str, object] = {}
        for target in targets:
            now = self._call(target, ("sysctl", checked))
            if self.host_count == 2:
                self.host_settings[target].update(now)
            else:
                self.settings.update(now)
        return now

    def read_sysctl(self, name: str, host: str | None = None) -> object:
        """A known setting's value as the lab's (or ``host``'s) kernel reports it
        (``None`` if absent there)."""
        return self.run(_sysctl.read, _sysctl.setting(name).short, host=host)

    def sockets(self, host: str | None = None, **filters: Any) -> list[TcpSocket]:
        """``tcplearn.sockets(**filters)`` read inside the lab, or on ``host``: that host's own
        socket table, so only its own end of each connection."""
        from ..observe import sockets

        rows: list[TcpSocket] = self.run(sockets, host=host, **filters)
        return rows

    def count_states(self, host: str | None = None, **filters: Any) -> dict[TcpState, int]:
        """``tcplearn.count_states(**filters)`` inside the lab, or on ``host`` (its own sockets only)."""
        from ..observe import count_states

        counts: dict[TcpState, int] = self.run(count_states, host=host, **filters)
        return counts


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


@per_process
def two_host_lab_available() -> tuple[bool, str]:
    """Whether a two-host lab can start here, and one sentence saying what its link is or
    why it cannot start (e.g. no delay on the link where the kernel has no netem)."""
    try:
        with PrivateLab(hosts=2) as lab:
            return True, f"two-host labs work here: {lab.link_note}"
    except LabUnavailable as exc:
        return False, str(exc)
