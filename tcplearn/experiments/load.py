"""``run_load``: a bounded loopback load generator that churns short TCP connections.

Safe by construction: targets must be loopback (127.0.0.0/8 or ::1) or a host of the lab the
load runs in (``lab.hosts.check_target``); rate, count and
duration are capped (``MAX_RATE``, ``MAX_COUNT``, ``MAX_DURATION``); concurrency is
capped by the free file descriptors (RLIMIT_NOFILE); every thread, socket and the
server process it starts are cleaned up, also on errors and KeyboardInterrupt.

A run is ``LoadRun.start()`` / ``poll()`` / ``finish()``, so a caller can watch it with a
progress bar, in this process or inside a private lab's worker (``run_load(lab=...)``), or from
a two-host lab's client to a server on its server host (``run_load(lab=..., between_hosts=True)``).
"""

from __future__ import annotations

import errno as errno_mod
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from ..base import model, sysctl
from ..base.experiment import Place
from ..base.kernel import fd_headroom, netstat
from ..base.lab import PrivateLab, in_lab
from ..base.lab.hosts import check_target
from ..base.observe import count_states
from ..base.observe.netlink import sockstat_tw
from ..base.observe.sampler import StateSampler
from ..base.states import TcpState
from ..base.util import is_loopback, loopback_host
from .sharing import (
    SHARE,
    HostShareError,
    Interference,
    Machine,
    _register,
    host_share_check,
    machine_now,
    running_loads,
)

__all__ = ["run_load", "LoadResult", "LoadRun", "netstat", "MAX_RATE", "MAX_COUNT", "MAX_DURATION",
           "MAX_SOURCES", "MAX_CONCURRENCY", "SHARE", "HostShareError"]

MAX_RATE = 50_000         # connections per second
MAX_COUNT = 2_000_000     # connections per run
MAX_DURATION = 300.0      # seconds per run
MAX_SOURCES = 16          # source addresses 127.0.0.1 .. 127.0.0.16
MAX_CONCURRENCY = 64      # client threads
IP_BIND_ADDRESS_NO_PORT = 24
BIN = 0.1                 # timeline resolution, seconds
STOP_ON = {"ECONNREFUSED", "EMFILE", "ENFILE"}  # nothing more can succeed after these


@dataclass
class LoadResult:
    """What a load run did: ``connections`` completed, achieved ``rate`` per second, errors
    by errno name, ``elapsed`` seconds, and a ``timeline`` DataFrame (per 0.1 s: t,
    connections, errors).  ``netstat_before``/``after`` are the kernel's TcpExt counters."""

    connections: int
    rate: float
    errors: dict[str, int]
    elapsed: float
    timeline: object
    settings: dict = field(default_factory=dict)
    netstat_before: dict = field(default_factory=dict)
    netstat_after: dict = field(default_factory=dict)
    stopped_because: str = ""
    samples: object = None          # DataFrame of state counts during the run, if sampled
    target: tuple = ()              # (host, port) the load connected to
    interference: dict = field(default_factory=dict)  # what else the machine held (Interference.to_record)
    #: distinct client (address, port) pairs its connections used: with one server port, its
    #: distinct four-tuples (0 where a recording predates the count)
    four_tuples: int = 0
    #: those (address, port) pairs themselves, for telling the load's sockets from others on the
    #: same ports (not recorded)
    clients: frozenset = field(default=frozenset(), repr=False)

    def first_error_at(self) -> float | None:
        """By when the first connection had failed, in seconds into the run (None if none did): the
        end of the first 0.1 s timeline bin with a failure, so the failure fell in the 0.1 s before
        it.  The timeline and its plot label each bin by its end too, so the successes' curve
        flattens where this says."""
        failed = self.timeline[self.timeline["errors"] > 0] if len(self.timeline) else self.timeline
        return float(failed["t"].min()) if len(failed) else None

    def to_record(self) -> dict:
        """Plain JSON-able data, from which ``from_record`` rebuilds this result (traces)."""
        import json

        def rows(frame):
            return None if frame is None else json.loads(frame.to_json(orient="records", double_precision=4))

        keep = ("TW", "TWRecycled", "TCPTimeWaitOverflow")
        return {"connections": self.connections, "rate": self.rate, "errors": self.errors,
                "elapsed": self.elapsed, "timeline": rows(self.timeline), "settings": self.settings,
                "netstat_before": {k: self.netstat_before.get(k, 0) for k in keep},
                "netstat_after": {k: self.netstat_after.get(k, 0) for k in keep},
                "stopped_because": self.stopped_because, "samples": rows(self.samples),
                "target": list(self.target), "interference": self.interference,
                "four_tuples": self.four_tuples}

    @classmethod
    def from_record(cls, record: dict, arguments: dict | None = None) -> LoadResult:
        """A ``LoadResult`` from ``to_record()`` data."""
        import pandas as pd

        frames = {k: None if record[k] is None else pd.DataFrame(record[k]) for k in ("timeline", "samples")}
        return cls(**{**record, **frames, "target": tuple(record["target"])})

    @property
    def note(self) -> str:
        """One sentence on what else the machine held while this load ran ("" if nothing)."""
        return Interference(**self.interference).sentence() if self.interference else ""

    def rate_until_first_error(self) -> float | None:
        """Connections per second from the start until the first failure (None if none failed):
        the rate the load ran at before, e.g., the ports ran out.  Counts the connections made up
        to the end of the bin that held the first failure, over that time."""
        first = self.first_error_at() if len(self.timeline) else None
        if first is None or not self.errors or first <= 0:
            return None
        tl = self.timeline
        return int(tl[tl["t"] <= first + 1e-9]["connections"].sum()) / first

    def netstat_delta(self, *names: str) -> dict[str, int]:
        """How much each TcpExt counter grew during the run (default: TW, TWRecycled,
        TCPTimeWaitOverflow)."""
        names = names or ("TW", "TWRecycled", "TCPTimeWaitOverflow")
        return {n: self.netstat_after.get(n, 0) - self.netstat_before.get(n, 0) for n in names}


class LoadRun:
    """One bounded run; see ``run_load`` for the arguments."""

    def __init__(self, *, rate=None, duration=5.0, count=None, closer="client", concurrency=None,
                 sources=1, bind_before_connect=False, family=socket.AF_INET, target=None,
                 sample_interval=None, lab=None):
        if sample_interval is not None and not 0.01 <= sample_interval <= 10:
            raise ValueError(f"sample_interval must be 0.01-10 s or None; got {sample_interval!r}")
        self.sample_interval = sample_interval
        self._sampler = None
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float))
                                 or not 0 < rate <= MAX_RATE):
            raise ValueError(f"rate must be a number of connections per second in (0, {MAX_RATE}], "
                             f"or None for as fast as possible; got {rate!r}")
        if (isinstance(duration, bool) or not isinstance(duration, (int, float))
                or not 0 < duration <= MAX_DURATION):
            raise ValueError(f"duration must be seconds in (0, {MAX_DURATION:g}]; got {duration!r}")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                                  or not 0 < count <= MAX_COUNT):
            raise ValueError(f"count must be an int in [1, {MAX_COUNT}] or None; got {count!r}")
        if closer not in ("client", "server"):
            raise ValueError(f"closer must be 'client' or 'server'; got {closer!r}")
        if family not in (socket.AF_INET, socket.AF_INET6):
            raise ValueError(f"family must be socket.AF_INET or socket.AF_INET6; got {family!r}")
        if not isinstance(sources, int) or not 1 <= sources <= MAX_SOURCES:
            raise ValueError(f"sources must be an int from 1 to {MAX_SOURCES}; got {sources!r}")
        if sources > 1 and family == socket.AF_INET6:
            raise ValueError("several sources need IPv4 (127.0.0.x); IPv6 has only one loopback address, ::1")
        if target is not None:
            host, port = target
            check_target(host, lab)  # loopback, or a host of the lab it runs in: nowhere else
            if not isinstance(port, int) or not 1 <= port <= 65535:
                raise ValueError(f"target port must be 1-65535; got {port!r}")
        headroom = fd_headroom()
        if concurrency is None:
            concurrency = 1  # measured: a second client thread only adds GIL contention (bench_load.py)
        if not isinstance(concurrency, int) or not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be an int from 1 to {MAX_CONCURRENCY}; got {concurrency!r}")
        if concurrency > headroom:
            raise ValueError(f"concurrency {concurrency} needs more file descriptors than the {headroom} "
                             "free under RLIMIT_NOFILE")
        self.settings = dict(rate=rate, duration=float(duration), count=count, closer=closer,
                             concurrency=concurrency, sources=sources,
                             bind_before_connect=bool(bind_before_connect), family=family, target=target)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: subprocess.Popen | None = None
        self._done = [0] * concurrency
        self._bins: list[dict[int, list[int]]] = [{} for _ in range(concurrency)]
        self._errors: list[dict[str, int]] = [{} for _ in range(concurrency)]
        # each worker's client (address, port) pairs: at most the port range per source address
        self._clients: list[set[tuple]] = [set() for _ in range(concurrency)]
        self._t0 = 0.0
        self._t_end = 0.0
        self._finished_at = 0.0  # when the last worker stopped (the run's real end)
        self.stopped_because = ""
        self._before: dict = {}
        self._machine: Machine | None = None
        self._registration: socket.socket | None = None
        self._other_loads: set[int] = set()
        self._loads_checked = 0.0

    # -- lifecycle

    def start(self) -> LoadRun:
        s = self.settings
        try:
            if s["target"] is None:
                host = loopback_host(s["family"])
                self._server, port = _start_server(host, s["closer"])
                self.target = (host, port)
            else:
                self.target = tuple(s["target"])
            self._machine = machine_now()
            self._note_loads(self._machine.loads)
            self._registration = _register(self.target[1])
            self._before = netstat()
            if self.sample_interval:
                # this load's own sockets only (its server port at either end), and the namespace's total
                self._sampler = StateSampler(self.sample_interval, port=self.target[1],
                                             machine_tw=True).__enter__()
            self._t0 = time.monotonic()
            self._t_end = self._t0 + s["duration"]
            for i in range(s["concurrency"]):
                th = threading.Thread(target=self._worker, args=(i,), name=f"tcplearn-load-{i}", daemon=True)
                th.start()
                self._threads.append(th)
        except BaseException:
            self._cleanup()
            raise
        return self

    def poll(self) -> dict:
        """Progress so far: elapsed seconds, connections, errors, and whether it is done."""
        done = not any(th.is_alive() for th in self._threads)
        if time.monotonic() - self._loads_checked >= 1.0:
            self._loads_checked = time.monotonic()
            self._note_loads(running_loads())
        return {"elapsed": time.monotonic() - self._t0, "connections": sum(self._done),
                "errors": sum(sum(e.values()) for e in self._errors), "done": done}

    def _note_loads(self, loads) -> None:
        mine = self.target[1]
        self._other_loads.update(port for _pid, port in loads if port != mine)

    def stop(self, reason: str = "stopped") -> None:
        if not self.stopped_because:
            self.stopped_because = reason
        self._stop.set()

    def finish(self) -> LoadResult:
        """Wait for the workers, stop the server, and return the result."""
        import pandas as pd

        try:
            for th in self._threads:
                th.join()
        finally:
            self._cleanup()
        elapsed = max(1e-9, min(self._finished_at or time.monotonic(), self._t_end) - self._t0)
        errors: dict[str, int] = {}
        for e in self._errors:
            for k, v in e.items():
                errors[k] = errors.get(k, 0) + v
        merged: dict[int, list[int]] = {}
        for bins in self._bins:
            for b, (ok, bad) in bins.items():
                m = merged.setdefault(b, [0, 0])
                m[0] += ok
                m[1] += bad
        last = max(merged) if merged else 0
        timeline = pd.DataFrame([{"t": round((b + 1) * BIN, 3), "connections": merged.get(b, [0, 0])[0],
                                  "errors": merged.get(b, [0, 0])[1]} for b in range(last + 1)])
        total = sum(self._done)
        clients = set().union(*self._clients)
        samples = None
        if self._sampler is not None:
            samples = self._sampler.frame()
            samples["t"] -= self._t0 - self._sampler._t0  # on the load's clock
        after = netstat()
        self._note_loads(running_loads())
        interference = self._interference(samples, after, total, elapsed)
        return LoadResult(total, total / elapsed, errors, elapsed, timeline, dict(self.settings),
                          self._before, after, self.stopped_because or "finished", samples,
                          tuple(self.target), interference.to_record(), len(clients), frozenset(clients))

    def _reuse_possible(self) -> bool:
        """Whether a later connect() of this load may take over one of its TIME-WAIT ports: its
        client closes first and ``tcp_tw_reuse`` applies to its plain connects (on loopback, or
        to another host of a lab, where 2 does not apply)."""
        s = self.settings
        tw_reuse = sysctl.read("tcp_tw_reuse")
        # before start() the target is the one it will have: the given one, else loopback
        planned = s["target"] or (loopback_host(s["family"]),)
        host = self.target[0] if hasattr(self, "target") else planned[0]
        return s["closer"] == "client" and tw_reuse is not None and \
            model.reuse_applies(tw_reuse, loopback=is_loopback(host),
                                bind_before_connect=s["bind_before_connect"])

    def _expected_recycles(self, made: int, elapsed: float) -> int | None:
        """How many of ``made`` connects the model's port search expects to take over a port still
        in TIME-WAIT: ``n − distinct_ports(n)`` while nothing has expired (a run within one
        TIME-WAIT, 60 s).  ``None`` for a longer run: there expiry and reuse mix, and the
        model's plateau (notebook 04) is the comparison, not this count."""
        port_range = sysctl.read("ip_local_port_range")
        if not made or port_range is None or not self._reuse_possible():
            return 0
        if elapsed > 60.0:
            return None
        walks = self.settings["sources"]  # one port search per source address
        return max(0, round(made - walks * model.distinct_ports(made / walks,
                                                                model.ports_in_range(port_range))))

    def _interference(self, samples, after: dict, made: int, elapsed: float) -> Interference:
        m = self._machine or Machine(None, None, None, None, [])
        within_one_time_wait = time.monotonic() - self._t0 < 60.0  # TIME-WAIT is never shorter (notebook 02)
        own_now = count_states(port=self.target[1])
        own_tw_now = own_now[TcpState.TIME_WAIT] + own_now[TcpState.FIN_WAIT_2]
        machine_end = sockstat_tw() or 0
        foreign = [max(0, machine_end - own_tw_now)]
        machine_max, own_peak = machine_end, own_now[TcpState.TIME_WAIT]
        if samples is not None and len(samples) and "machine_tw" in samples:
            mt = samples["machine_tw"].fillna(0)
            own = samples["TIME_WAIT"] + samples["FIN_WAIT_2"]
            foreign.append(int((mt - own).clip(lower=0).max()))
            machine_max = max(machine_max, int(mt.max()))
            own_peak = max(own_peak, int(samples["TIME_WAIT"].max()))
        before = m.time_wait or 0
        delta = after.get("TCPTimeWaitOverflow", 0) - self._before.get("TCPTimeWaitOverflow", 0)
        # How many of its own TIME-WAIT sockets its later connects took over, from its own sockets
        # (TWRecycled counts the whole namespace): within one TIME-WAIT none has expired, so every
        # connection of a client-closes load still holds one, unless a later connect took its port
        # over (or an RST ended it, or the full table gave it none: this is an upper bound).
        own_taken = None
        if self._reuse_possible() and within_one_time_wait:
            own_taken = max(0, made - max(own_tw_now, own_peak) - max(0, delta))
        return Interference(port=self.target[1], tw_cap=m.tw_cap, foreign_tw_before=before,
                            foreign_tw_max=max(before, *foreign), machine_tw_max=max(machine_max, before),
                            ports=m.ports, ports_in_use_before=m.ports_in_use,
                            other_loads=sorted(self._other_loads), overflow=max(0, delta), own_peak=own_peak,
                            recycled=max(0, after.get("TWRecycled", 0) - self._before.get("TWRecycled", 0)),
                            recycled_expected=self._expected_recycles(made, elapsed),
                            reuse_possible=self._reuse_possible(), counters_own=in_lab(), made=made,
                            own_taken=own_taken)

    def _cleanup(self) -> None:
        self._stop.set()
        if self._registration is not None:
            self._registration.close()
            self._registration = None
        for th in self._threads:
            th.join(timeout=10)
        if self._sampler is not None:
            self._sampler.__exit__(None, None, None)
        if self._server is not None:
            server, self._server = self._server, None
            _stop_server(server)

    # -- the client threads

    def _worker(self, index: int) -> None:
        s = self.settings
        rate = s["rate"] / s["concurrency"] if s["rate"] else None
        count = s["count"]
        target, family, closer = self.target, s["family"], s["closer"]
        sources = [f"127.0.0.{i + 1}" for i in range(s["sources"])] if s["sources"] > 1 else None
        bind_first = s["bind_before_connect"]
        bins, errors = self._bins[index], self._errors[index]
        t0, end, stop = self._t0, self._t_end, self._stop
        next_at = t0 + index / (s["rate"] or 1e9)
        n = 0
        while not stop.is_set():
            now = time.monotonic()
            if now >= end:
                break
            if count is not None and sum(self._done) >= count:
                break
            if rate is not None:
                if now < next_at:
                    time.sleep(min(next_at - now, end - now))
                    continue
                next_at += 1.0 / rate
                if next_at < now - 1.0:  # fell far behind: do not burst to catch up
                    next_at = now
            sock = socket.socket(family, socket.SOCK_STREAM)
            ok = True
            try:
                if sources is not None or bind_first:
                    src = sources[n % len(sources)] if sources else loopback_host(family)
                    if not bind_first:
                        # choose the source address only; let connect() pick the port (ip-sysctl.rst,
                        # ``ip_autobind_reuse``: IP_BIND_ADDRESS_NO_PORT is the preferred solution)
                        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                    sock.bind((src, 0))
                sock.connect(target)
                self._clients[index].add(sock.getsockname()[:2])
                if closer == "server":
                    sock.settimeout(5)
                    sock.recv(1)  # the server closes first: wait for its FIN
            except OSError as exc:
                ok = False
                name = (errno_mod.errorcode.get(exc.errno, type(exc).__name__) if exc.errno
                        else type(exc).__name__)
                errors[name] = errors.get(name, 0) + 1
                if name in STOP_ON:
                    self.stop(f"{name}: {exc.strerror}")
                elif rate is None:
                    time.sleep(0.0005)  # do not spin on a failing connect
            finally:
                sock.close()
            n += 1
            b = int((time.monotonic() - t0) / BIN)
            slot = bins.get(b)
            if slot is None:
                slot = bins[b] = [0, 0]
            if ok:
                slot[0] += 1
                self._done[index] += 1
            else:
                slot[1] += 1
        self._finished_at = max(self._finished_at, time.monotonic())


def _start_server(host: str, closer: str) -> tuple[subprocess.Popen, int]:
    """The load's own server (``loadserver``, a child process) listening on ``host``, and its port."""
    server = subprocess.Popen(
        [sys.executable, "-m", "tcplearn.experiments.loadserver", "--host", host, "--closer", closer],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the load's server did not start: {line!r}")
    except BaseException:
        _stop_server(server)
        raise
    return server, int(line.split()[1])


def _stop_server(server: subprocess.Popen) -> None:
    try:
        server.stdin.close()  # the server stops when its stdin closes
        server.wait(timeout=3)
    except (OSError, subprocess.TimeoutExpired):
        server.kill()
        server.wait()
    finally:
        server.stdout.close()


# ---------------------------------------------------------------- the public call

_runs: dict[int, LoadRun] = {}


def _start_remote(settings: dict) -> int:
    run = LoadRun(**settings).start()
    _runs[id(run)] = run
    return id(run)


def _poll_remote(ident: int) -> dict:
    return _runs[ident].poll()


def _stop_remote(ident: int) -> None:
    _runs[ident].stop("interrupted")


def _finish_remote(ident: int) -> LoadResult:
    return _runs.pop(ident).finish()


_servers: dict[int, subprocess.Popen] = {}  # a two-host lab's server host: its load servers by port


def _serve_remote(host: str, closer: str) -> int:
    server, port = _start_server(host, closer)
    _servers[port] = server
    return port


def _unserve_remote(port: int) -> None:
    server = _servers.pop(port, None)
    if server is not None:
        _stop_server(server)


def run_load(*, rate: float | None = None, duration: float = 5.0, count: int | None = None,
             closer: str = "client", concurrency: int | None = None, sources: int = 1,
             bind_before_connect: bool = False, family: int = socket.AF_INET,
             target: tuple[str, int] | None = None, progress: bool = True, lab=None,
             sample_interval: float | None = None, between_hosts: bool = False) -> LoadResult:
    """Churn short loopback connections for ``duration`` seconds (or ``count`` connections).

    ``rate=None`` means as fast as it can; ``target=None`` starts a server of its own (in a
    child process); ``closer`` says which side closes first and so holds TIME-WAIT;
    ``sources`` spreads connections over 127.0.0.1..N; ``bind_before_connect`` binds to
    port 0 before connecting, which changes how ports are chosen.  ``lab`` runs it inside
    a ``PrivateLab`` (the progress bar stays here); ``sample_interval`` also counts the
    load's own sockets (its server port at either end) every so many seconds while it runs
    (``LoadResult.samples``).  Returns a ``LoadResult``; its ``note`` names what else the
    machine held (``Interference``).  Ctrl-C stops the run cleanly and re-raises.

    ``between_hosts=True`` needs ``lab`` to be a ``PrivateLab(hosts=2)``: the server runs on
    its server host, the load on its client host, across the link, so that none of
    loopback's exemptions (``tcp_tw_reuse=2``) apply; ``samples`` and the counters are then
    the client's.  Targets are loopback or that lab's hosts, and nothing else.

    On the machine itself (no lab) a load may hold at most ``SHARE`` of the free TIME-WAIT
    slots and free ephemeral ports; a bigger one is refused with ``HostShareError`` (a
    ``ValueError``) naming the numbers.
    """

    settings = dict(rate=rate, duration=duration, count=count, closer=closer, concurrency=concurrency,
                    sources=sources, bind_before_connect=bind_before_connect, family=family, target=target,
                    sample_interval=sample_interval)
    LoadRun(**settings, lab=lab)  # validate here, before anything starts (also for a lab run)
    if between_hosts is not False and between_hosts is not True:
        raise ValueError(f"between_hosts must be True or False; got {between_hosts!r}")
    if between_hosts:
        if not isinstance(lab, PrivateLab) or lab.host_count != 2:
            raise ValueError("between_hosts=True needs lab=PrivateLab(hosts=2) (its client loads its "
                             f"server); got lab={lab!r}")
        if target is not None or family != socket.AF_INET or sources != 1:
            raise ValueError("between_hosts=True starts its own server on the lab's server host over IPv4 "
                             "from the client's one address: leave target, family and sources at their "
                             "defaults")
        port = lab.run(_serve_remote, lab.address("server"), closer, host="server")
        try:
            return _drive(Place.of(lab, "client").call, {**settings, "target": (lab.address("server"), port)},
                          count, duration, progress)
        finally:
            if lab.pids:  # an interrupted call stops the lab's workers, and with them this server
                lab.run(_unserve_remote, port, host="server")
    if lab is None and not in_lab():
        host_share_check(settings)  # a machine others share: bounded (a lab is the learner's own)
    return _drive(Place.of(lab).call, settings, count, duration, progress)


def _drive(call, settings: dict, count: int | None, duration: float, progress: bool) -> LoadResult:
    """Start the run through ``call`` (here or in a lab's host), show its progress, finish it."""
    from ..base.progress import Progress

    ident = call(_start_remote, settings)
    total = count if count is not None else duration
    bar = Progress(total, "load", unit="conn" if count else "s", enabled=progress)
    try:
        while True:
            status = call(_poll_remote, ident)
            bar.to(status["connections"] if count else status["elapsed"], conn=status["connections"],
                   err=status["errors"])
            if status["done"]:
                break
            time.sleep(0.2)
    except BaseException:
        try:
            call(_stop_remote, ident)
            call(_finish_remote, ident)
        finally:
            bar.close()
        raise
    bar.done()
    bar.close()
    return call(_finish_remote, ident)
