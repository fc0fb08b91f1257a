"""``run_load``: a bounded loopback load generator that churns short TCP connections.

Safe by construction: targets must be loopback (127.0.0.0/8 or ::1); rate, count and
duration are capped (``MAX_RATE``, ``MAX_COUNT``, ``MAX_DURATION``); concurrency is
capped by the free file descriptors (RLIMIT_NOFILE); every thread, socket and the
server process it starts are cleaned up, also on errors and KeyboardInterrupt.

A run is ``LoadRun.start()`` / ``poll()`` / ``finish()``, so a caller can watch it with a
progress bar, in this process or inside a private lab's worker (``run_load(lab=...)``).
"""

from __future__ import annotations

import errno as errno_mod
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from ..base import model, sysctl
from ..base.experiment import Call, Need, Place, Where, experiment
from ..base.kernel import fast_mode, fd_headroom, netstat, timer_slack
from ..base.lab import in_lab, lab_available, runner
from ..base.observe import count_states, sockets
from ..base.observe.netlink import local_ports_in_use, sockstat_tw
from ..base.observe.sampler import StateSampler
from ..base.states import TcpState
from ..base.util import is_loopback, loopback_host

__all__ = ["run_load", "LoadResult", "LoadRun", "netstat", "with_settings", "time_wait_by_side",
           "time_wait_by_closer", "watch_plateau", "PlateauRun", "MAX_RATE", "MAX_COUNT", "MAX_DURATION",
           "MAX_SOURCES", "MAX_CONCURRENCY", "SHARE", "Machine", "machine_now", "running_loads",
           "HostShareError", "host_share_check", "Interference", "sources_remedy", "SourcesRemedy"]

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

    def first_error_at(self) -> float | None:
        """Seconds into the run when the first connection failed (None if none did)."""
        failed = self.timeline[self.timeline["errors"] > 0] if len(self.timeline) else self.timeline
        return float(failed["t"].min()) - BIN if len(failed) else None

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
                "target": list(self.target), "interference": self.interference}

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
        the rate the load ran at before, e.g., the ports ran out."""
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


# ---------------------------------------------------------------- sharing the machine
#
# Every count a load reports is its own: the sampler counts only sockets with the load's
# server port at one end (filtered inside the kernel), which catches both sides, since a
# client's TIME-WAIT has the server port as its remote port.  What else the machine holds
# is read beside it, named in the result's note, and used to bound loads on the machine.

#: The share of what is free that one load on the machine (not in a lab) may take: of the
#: free TIME-WAIT slots (tcp_max_tw_buckets minus every TIME-WAIT socket present) and of
#: the free ephemeral ports (ip_local_port_range minus the ports sockets hold).  A load
#: that would take more runs in a private lab, or is refused.  A lab is yours alone.
SHARE = 0.25
_REGISTRY = "tcplearn-load/"  # abstract unix socket names: one per running load, per network namespace


def running_loads() -> list[tuple[int, int]]:
    """``(pid, server port)`` of every tcplearn load running in this network namespace.
    Each load binds an abstract unix socket named after it (these are per namespace and
    vanish with the process, even when it is killed); ``/proc/net/unix`` lists them."""
    found = []
    try:
        with open("/proc/net/unix") as f:
            for line in f:
                name = line.rsplit(None, 1)[-1] if line.count(" ") >= 7 else ""
                if name.startswith("@" + _REGISTRY):
                    pid, port = name[1 + len(_REGISTRY):].split("/")[:2]
                    found.append((int(pid), int(port)))
    except (OSError, ValueError):
        return []
    return sorted(set(found))


def _register(port: int) -> socket.socket | None:
    if not hasattr(socket, "AF_UNIX") or not sys.platform.startswith("linux"):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(f"\0{_REGISTRY}{os.getpid()}/{port}")
    except OSError:
        sock.close()
        return None
    return sock


@dataclass
class Machine:
    """What this network namespace holds now: every TIME-WAIT socket (the kernel's own
    count), its cap, the ephemeral port range, the ports in use, and the tcplearn loads."""

    time_wait: int | None
    tw_cap: int | None
    port_range: tuple | None
    ports_in_use: int | None
    loads: list

    @property
    def ports(self) -> int | None:
        return model.ports_in_range(self.port_range) if self.port_range else None

    @property
    def free_tw(self) -> int | None:
        return None if self.tw_cap is None or self.time_wait is None else max(0, self.tw_cap - self.time_wait)

    @property
    def free_ports(self) -> int | None:
        return None if self.ports is None or self.ports_in_use is None else max(0, self.ports - self.ports_in_use)


def machine_now() -> Machine:
    """Read ``Machine`` from the kernel (a few milliseconds)."""
    port_range = sysctl.read("ip_local_port_range")
    try:
        in_use = local_ports_in_use(*port_range) if port_range else None
    except OSError:
        in_use = None
    return Machine(sockstat_tw(), sysctl.read("tcp_max_tw_buckets"), tuple(port_range) if port_range else None,
                   in_use, running_loads())


class HostShareError(ValueError):
    """A load too big to share this machine with others (see ``SHARE``)."""


def _need(settings: dict, ports: int) -> tuple[float, float]:
    """TIME-WAIT sockets and ephemeral ports a load would hold at its peak (the model)."""
    rate = settings.get("rate") or 20_000.0  # as fast as possible: ~14k-20k/s measured (facts M5)
    duration = settings.get("duration") or 5.0
    total = rate * duration if settings.get("count") is None else min(settings["count"], rate * duration)
    window = min(total, rate * min(duration, 61.0))  # what is still in TIME-WAIT at the peak
    if settings.get("closer", "client") == "server":
        return window, 0.0
    tw_reuse = sysctl.read("tcp_tw_reuse")
    reuse = tw_reuse is not None and model.reuse_applies(
        tw_reuse, loopback=True, bind_before_connect=settings.get("bind_before_connect", False))
    sources = settings.get("sources") or 1
    per_source = window / sources
    held = sources * (model.distinct_ports(per_source, ports) if reuse else min(per_source, ports))
    return held, min(float(ports), held)


def host_share_check(settings: dict, machine: Machine | None = None) -> Machine:
    """Refuse (``HostShareError``, a ``ValueError``) a load on this machine that would hold
    more than ``SHARE`` of its free TIME-WAIT slots or of its free ephemeral ports.
    Returns what it read."""
    machine = machine or machine_now()
    if machine.ports is None:
        return machine
    tw_need, port_need = _need(settings, machine.ports)
    problems = []
    if machine.free_tw is not None and tw_need > SHARE * machine.free_tw:
        problems.append(f"about {tw_need:,.0f} TIME-WAIT sockets, more than {SHARE:.0%} of the "
                        f"{machine.free_tw:,} free slots (tcp_max_tw_buckets = {machine.tw_cap:,}, "
                        f"{machine.time_wait:,} held now)")
    if machine.free_ports is not None and port_need > SHARE * machine.free_ports:
        low, high = machine.port_range
        problems.append(f"about {port_need:,.0f} ephemeral ports, more than {SHARE:.0%} of the "
                        f"{machine.free_ports:,} free ones (ip_local_port_range {low}-{high}, "
                        f"{machine.ports_in_use:,} in use now)")
    if problems:
        raise HostShareError(
            "This load would hold " + " and ".join(problems) + ". Other programs and other learners share this "
            f"machine's table and ports, so a load here takes at most {SHARE:.0%} of what is free. Run it in a "
            "private lab (run_load(..., lab=tcplearn.PrivateLab()) inside `with`, or watch_plateau, which moves "
            "there by itself when a lab can start), or lower the rate or the duration.")
    return machine


@dataclass
class Interference:
    """What else the machine held while a load ran, read before and during it."""

    port: int = 0                      # the load's server port: its own sockets have it at one end
    tw_cap: int | None = None          # tcp_max_tw_buckets
    foreign_tw_before: int = 0         # TIME-WAIT sockets of other programs when it started
    foreign_tw_max: int = 0            # ... at most, while it ran
    machine_tw_max: int = 0            # every TIME-WAIT socket in the namespace, at most
    ports: int | None = None           # ephemeral ports in the range
    ports_in_use_before: int | None = None
    other_loads: list = field(default_factory=list)   # server ports of other tcplearn loads seen
    overflow: int = 0                  # TCPTimeWaitOverflow growth (a machine-wide kernel counter)
    own_peak: int = 0                  # the load's own TIME-WAIT peak

    def to_record(self) -> dict:
        from dataclasses import asdict

        return asdict(self)

    @property
    def free_slots(self) -> int | None:
        """TIME-WAIT slots left for this load: the cap less other programs' TIME-WAIT."""
        return None if self.tw_cap is None else max(0, self.tw_cap - self.foreign_tw_max)

    @property
    def at_cap(self) -> bool:
        return self.tw_cap is not None and self.machine_tw_max >= 0.98 * self.tw_cap

    def sentence(self) -> str:
        """One sentence a learner understands, or "" when nothing else mattered."""
        parts = []
        if self.at_cap:
            lost = f" {self.overflow:,} closes got no TIME-WAIT (TCPTimeWaitOverflow)" if self.overflow else \
                " closes beyond it got no TIME-WAIT"
            parts.append(f"the machine held {self.machine_tw_max:,} TIME-WAIT sockets, the kernel's cap "
                         f"(tcp_max_tw_buckets = {self.tw_cap:,}), {self.foreign_tw_max:,} of them other programs', "
                         f"so{lost} and the model is capped at the {self.free_slots:,} slots left")
        elif self.tw_cap and self.foreign_tw_max >= 0.5 * self.tw_cap:
            parts.append(f"other programs held {self.foreign_tw_max:,} TIME-WAIT sockets, near the kernel's cap "
                         f"(tcp_max_tw_buckets = {self.tw_cap:,}); the model is capped at the "
                         f"{self.free_slots:,} slots left")
        elif self.foreign_tw_max >= max(100, 0.05 * self.own_peak):
            parts.append(f"other programs held up to {self.foreign_tw_max:,} TIME-WAIT sockets on this machine, "
                         "which are not counted here")
        if self.ports and self.ports_in_use_before is not None and self.ports_in_use_before >= 0.5 * self.ports:
            parts.append(f"{self.ports_in_use_before:,} of the {self.ports:,} ephemeral ports were already in use")
        if self.other_loads:
            n = len(self.other_loads)
            parts.append(f"{n} other tcplearn load{'s' if n > 1 else ''} ran at the same time (server port"
                         f"{'s' if n > 1 else ''} {', '.join(map(str, self.other_loads))}), not counted here")
        if not parts:
            return ""
        text = "; ".join(parts)
        return (f"While this load ran, {text}. Every count shown is this load's own (sockets with its server "
                f"port {self.port} at one end).")


class LoadRun:
    """One bounded run; see ``run_load`` for the arguments."""

    def __init__(self, *, rate=None, duration=5.0, count=None, closer="client", concurrency=None,
                 sources=1, bind_before_connect=False, family=socket.AF_INET, target=None,
                 sample_interval=None):
        if sample_interval is not None and not 0.01 <= sample_interval <= 10:
            raise ValueError(f"sample_interval must be 0.01-10 s or None; got {sample_interval!r}")
        self.sample_interval = sample_interval
        self._sampler = None
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float))
                                 or not 0 < rate <= MAX_RATE):
            raise ValueError(f"rate must be a number of connections per second in (0, {MAX_RATE}], "
                             f"or None for as fast as possible; got {rate!r}")
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not 0 < duration <= MAX_DURATION:
            raise ValueError(f"duration must be seconds in (0, {MAX_DURATION:g}]; got {duration!r}")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= MAX_COUNT):
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
            if not is_loopback(host):
                raise ValueError(f"target {host!r} refused: load goes to loopback only (127.0.0.0/8 or ::1)")
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
                self._server = subprocess.Popen(
                    [sys.executable, "-m", "tcplearn.experiments.loadserver", "--host", host, "--closer", s["closer"]],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                line = self._server.stdout.readline()
                if not line.startswith("PORT "):
                    raise RuntimeError(f"the load's server did not start: {line!r}")
                self.target = (host, int(line.split()[1]))
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
        samples = None
        if self._sampler is not None:
            samples = self._sampler.frame()
            samples["t"] -= self._t0 - self._sampler._t0  # on the load's clock
        after = netstat()
        self._note_loads(running_loads())
        interference = self._interference(samples, after)
        return LoadResult(total, total / elapsed, errors, elapsed, timeline, dict(self.settings),
                          self._before, after, self.stopped_because or "finished", samples,
                          tuple(self.target), interference.to_record())

    def _interference(self, samples, after: dict) -> Interference:
        m = self._machine or Machine(None, None, None, None, [])
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
        return Interference(port=self.target[1], tw_cap=m.tw_cap, foreign_tw_before=before,
                            foreign_tw_max=max(before, *foreign), machine_tw_max=max(machine_max, before),
                            ports=m.ports, ports_in_use_before=m.ports_in_use,
                            other_loads=sorted(self._other_loads), overflow=max(0, delta), own_peak=own_peak)

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
            try:
                server.stdin.close()
                server.wait(timeout=3)
            except (OSError, subprocess.TimeoutExpired):
                server.kill()
                server.wait()
            finally:
                server.stdout.close()

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
                        # choose the source address only; let connect() pick the port (facts L26)
                        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                    sock.bind((src, 0))
                sock.connect(target)
                if closer == "server":
                    sock.settimeout(5)
                    sock.recv(1)  # the server closes first: wait for its FIN
            except OSError as exc:
                ok = False
                name = errno_mod.errorcode.get(exc.errno, type(exc).__name__) if exc.errno else type(exc).__name__
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


def run_load(*, rate: float | None = None, duration: float = 5.0, count: int | None = None,
             closer: str = "client", concurrency: int | None = None, sources: int = 1,
             bind_before_connect: bool = False, family: int = socket.AF_INET,
             target: tuple[str, int] | None = None, progress: bool = True, lab=None,
             sample_interval: float | None = None) -> LoadResult:
    """Churn short loopback connections for ``duration`` seconds (or ``count`` connections).

    ``rate=None`` means as fast as it can; ``target=None`` starts a server of its own (in a
    child process); ``closer`` says which side closes first and so holds TIME-WAIT;
    ``sources`` spreads connections over 127.0.0.1..N; ``bind_before_connect`` binds to
    port 0 before connecting, which changes how ports are chosen.  ``lab`` runs it inside
    a ``PrivateLab`` (the progress bar stays here); ``sample_interval`` also counts the
    load's own sockets (its server port at either end) every so many seconds while it runs
    (``LoadResult.samples``).  Returns a ``LoadResult``; its ``note`` names what else the
    machine held (``Interference``).  Ctrl-C stops the run cleanly and re-raises.

    On the machine itself (no lab) a load may hold at most ``SHARE`` of the free TIME-WAIT
    slots and free ephemeral ports; a bigger one is refused with ``HostShareError`` (a
    ``ValueError``) naming the numbers.
    """
    from tqdm.auto import tqdm

    settings = dict(rate=rate, duration=duration, count=count, closer=closer, concurrency=concurrency,
                    sources=sources, bind_before_connect=bind_before_connect, family=family, target=target,
                    sample_interval=sample_interval)
    LoadRun(**settings)  # validate here, before anything starts (also for a lab run)
    if lab is None and not in_lab():
        host_share_check(settings)  # a machine others share: bounded (a lab is the learner's own)
    call = runner(lab)
    ident = call(_start_remote, settings)
    total = count if count is not None else duration
    bar = tqdm(total=total, unit="conn" if count else "s", desc="load", disable=not progress, leave=False)
    try:
        while True:
            status = call(_poll_remote, ident)
            bar.n = min(total, status["connections"] if count else round(status["elapsed"], 1))
            bar.set_postfix(conn=status["connections"], err=status["errors"], refresh=False)
            bar.refresh()
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
    bar.close()
    return call(_finish_remote, ident)


def _shown(sysctls: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sysctls.items())


def _check_with_settings(sysctls: dict, **load_kwargs) -> None:
    if not isinstance(sysctls, dict) or not sysctls:
        raise ValueError(f"sysctls must be a non-empty dict of settings, e.g. {{'tcp_tw_reuse': 0}}; got {sysctls!r}")
    for name, value in sysctls.items():
        sysctl.validate(name, value)
    LoadRun(**{k: v for k, v in load_kwargs.items() if k not in ("progress", "lab")})


#: The loads notebook 04 runs with changed settings, as ``with_settings(sysctls, **kwargs)``.
NOTEBOOK_LOADS = (
    ({"ip_local_port_range": (40000, 40199), "tcp_tw_reuse": 0}, dict(rate=100, duration=4)),
    ({"ip_local_port_range": (40000, 40199), "tcp_tw_reuse": 1}, dict(rate=100, duration=4)),
    ({"ip_local_port_range": (40000, 40199)}, dict(rate=100, duration=4, bind_before_connect=True)),
    ({"tcp_max_tw_buckets": 100}, dict(rate=500, duration=2, sample_interval=0.1)),
)


@experiment(
    notebook="04", title="loads under changed kernel settings (ports, reuse, the TIME-WAIT cap)",
    needs=[Need.KERNEL, Need.SETTINGS], check=_check_with_settings,
    calls=[Call((sysctls,), kwargs, f"a load ({', '.join(f'{k}={v}' for k, v in kwargs.items())}) in a private "
                                    f"lab with {_shown(sysctls)}")
           for sysctls, kwargs in NOTEBOOK_LOADS],
    to_record=LoadResult.to_record, from_record=LoadResult.from_record,
    notes={Where.LAB: lambda why, a: f"Ran in your private lab with {_shown(a['sysctls'])} (this machine's "
                                     "settings untouched).",
           Where.ROOT: lambda why, a: f"No private lab ({why}); ran on this machine as root with "
                                      f"{_shown(a['sysctls'])}, then restored it."})
def with_settings(place: Place, sysctls: dict, **load_kwargs) -> LoadResult:
    """Run a load (``run_load``'s keywords) with kernel settings changed for it: in a private
    lab (no root, machine untouched), else as root with ``sysctl.apply`` (restored
    afterwards), else the same call recorded in a Linux lab.  A ``LoadResult``."""
    with place.settings(**sysctls):
        return run_load(lab=place.lab, **load_kwargs)


def time_wait_by_side(result: LoadResult) -> dict[str, int]:
    """TIME-WAIT sockets now held by each side of a load's connections: the server side
    (local port = the target's port) and the client side."""
    port = result.target[1]
    sides = {"server side": 0, "client side": 0}
    for s in sockets(port=port, states=TcpState.TIME_WAIT):
        sides["server side" if s.local_port == port else "client side"] += 1
    return sides


@experiment(notebook="04", title="who holds TIME-WAIT: client-closes and server-closes loads",
            needs=[Need.KERNEL],
            calls=[Call((), {"rate": 300, "duration": 1.0},
                        "two 1 s loads at 300 connections/s, client closing first, then server closing first, "
                        "and where their TIME-WAIT sockets were")])
def time_wait_by_closer(place: Place, rate: float = 300, duration: float = 1.0) -> dict[str, dict[str, int]]:
    """Two short loads, one where the client closes first and one where the server does,
    each followed by ``time_wait_by_side``: which side holds the TIME-WAIT sockets."""
    runs = {name: run_load(rate=rate, duration=duration, closer=closer, progress=False)
            for name, closer in (("client closes first", "client"), ("server closes first", "server"))}
    return {name: time_wait_by_side(result) for name, result in runs.items()}


class PlateauRun:
    """A load at a steady rate, then the drain after it: the load's own measured counts and
    the model (capped at the TIME-WAIT slots other programs left free)."""

    def __init__(self, result: LoadResult, samples, model, time_wait: float, reuse: bool = False,
                 interference: dict | None = None, model_cap: int | None = None, where_note: str = ""):
        self.result, self.samples, self.model, self.time_wait = result, samples, model, time_wait
        self.reuse = reuse
        self.interference = interference or {}
        self.model_cap = model_cap      # the fewest TIME-WAIT slots left free for this load, if it mattered
        self.where_note = where_note    # why it ran in a lab, when it moved there

    def measured_peak(self) -> int:
        return int(self.samples["TIME_WAIT"].max())

    def predicted_peak(self) -> float:
        return float(self.model["TIME_WAIT"].max())

    @property
    def note(self) -> str:
        """Where it ran when it moved to a lab, and what else the machine held."""
        text = Interference(**self.interference).sentence() if self.interference else ""
        return " ".join(t for t in (self.where_note, text) if t)

    def to_record(self) -> dict:
        """Plain data for the recordings: the counts beside the model, and the load."""
        import json

        frame = self.samples[["t", "TIME_WAIT", "ESTABLISHED", "FIN_WAIT_2"]].copy()
        frame["model"] = list(self.model.set_index("t")["TIME_WAIT"].reindex(frame["t"], method="nearest"))
        return {"rows": json.loads(frame.to_json(orient="records", double_precision=4)),
                "rate": self.result.rate, "load_seconds": self.result.elapsed, "reuse": self.reuse,
                "time_wait": self.time_wait, "interference": self.interference, "model_cap": self.model_cap}

    @classmethod
    def from_record(cls, record: dict, arguments: dict | None = None) -> PlateauRun:
        import pandas as pd

        frame = pd.DataFrame(record["rows"])
        result = LoadResult(int(record["rate"] * record["load_seconds"]), record["rate"], {},
                            record["load_seconds"], pd.DataFrame(columns=["t", "connections", "errors"]))
        model_frame = pd.DataFrame({"t": frame["t"], "TIME_WAIT": frame["model"]})
        return cls(result, frame, model_frame, record.get("time_wait", 60.0), record.get("reuse", False),
                   record.get("interference") or {}, record.get("model_cap"))


def _check_plateau(rate: float = 200, duration: float | None = None, drain: float | None = None) -> None:
    LoadRun(rate=rate, duration=duration or 1.0)
    if drain is not None and not 0 <= drain <= MAX_DURATION:
        raise ValueError(f"drain must be seconds in [0, {MAX_DURATION:g}]; got {drain!r}")


_samplers: dict[int, StateSampler] = {}


def _sampler_start(port: int, interval: float) -> int:
    sampler = StateSampler(interval, port=port, machine_tw=True).__enter__()
    _samplers[id(sampler)] = sampler
    return id(sampler)


def _sampler_finish(ident: int):
    sampler = _samplers.pop(ident)
    sampler.__exit__(None, None, None)
    return sampler.frame()


def _drain(call, port: int, seconds: float, interval: float, progress: bool):
    """Count the load's own sockets for ``seconds`` after it (in the lab or here), with progress."""
    from tqdm.auto import tqdm

    ident = call(_sampler_start, port, interval)
    bar = tqdm(total=round(seconds), unit="s", desc="draining", disable=not progress, leave=False)
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(min(0.25, max(0.0, end - time.monotonic())))
            bar.n = round(seconds - max(0.0, end - time.monotonic()))
            bar.refresh()
    finally:
        bar.close()
        frame = call(_sampler_finish, ident)
    return frame


def _machine_settings() -> dict:
    """The machine's settings that shape a plateau, to mirror in a lab."""
    wanted = {k: sysctl.read(k) for k in ("tcp_tw_reuse", "ip_local_port_range", "tcp_tw_reuse_delay")}
    return {k: v for k, v in wanted.items() if v is not None}


@experiment(notebook="04", title="TIME-WAIT during and after a steady load, beside the model",
            needs=[Need.KERNEL], check=_check_plateau, concurrent=True,
            calls=[Call((), {"rate": 200}, "a client-closes load at 200 connections/s for 70 s, then its drain, "
                                           "counted every second")],
            to_record=PlateauRun.to_record, from_record=PlateauRun.from_record)
def watch_plateau(place: Place, rate: float = 200, duration: float | None = None, drain: float | None = None,
                  *, progress: bool = True) -> PlateauRun:
    """Run a client-closes load at ``rate`` for ``duration`` s (default 70; 3 in fast mode),
    counting its own sockets (its server port at either end) every second, then keep
    counting for ``drain`` s (default 65; 2 in fast mode) while they expire.  A
    ``PlateauRun`` with the model's prediction for the same achieved rate and duration,
    capped at the TIME-WAIT slots other programs left free.  In fast mode nothing the load
    made can expire within the run, so measurement and model compare like with like.

    On the machine, a load bigger than ``SHARE`` of what is free runs in a private lab
    with the machine's port range and reuse settings (the note says so), else the same
    call recorded in a Linux lab is shown, else it is refused (``HostShareError``)."""
    import contextlib

    import numpy as np
    import pandas as pd

    from ..base.experiment import Result
    from ..base.lab import PrivateLab

    fast = fast_mode()
    asked = {"rate": rate, "duration": duration, "drain": drain}
    duration = (3.0 if fast else 70.0) if duration is None else duration
    drain = (2.0 if fast else 65.0) if drain is None else drain
    interval = 0.25 if fast else 1.0
    where, where_note = place.where, ""
    with contextlib.ExitStack() as stack:
        lab = place.lab
        if lab is None and not in_lab():
            try:
                host_share_check(dict(rate=rate, duration=duration))
            except HostShareError as exc:
                ok, why = lab_available()
                if not ok:
                    replay = watch_plateau.replay(asked, f"{exc} No private lab can start here ({why})")
                    if replay.where is Where.RECORDED:
                        return replay
                    raise HostShareError(f"{exc} No private lab can start here ({why}).") from None
                lab = stack.enter_context(PrivateLab())
                mirrored = lab.sysctl(**_machine_settings())
                where = Where.LAB
                where_note = (f"Ran in your private lab, which is yours alone, with this machine's "
                              f"{_shown(mirrored)}: on the machine itself it would have held "
                              f"{str(exc).removeprefix('This load would hold ').split('. ')[0]}.")
        call = runner(lab)
        result = run_load(rate=rate, duration=duration, sample_interval=interval, progress=progress, lab=lab)
        after = _drain(call, result.target[1], drain, interval, progress)
        reuse, ports = call(_kernel_reuse)
    after["t"] += result.elapsed
    samples = pd.concat([result.samples, after], ignore_index=True)
    # TIME-WAIT lasts 60 s plus, on average, half a timer-wheel slot (notebook 02); whether
    # connect() may reuse TIME-WAIT ports, and how many ports there are, is read from the kernel
    time_wait = 60.0 + timer_slack()[1] / 2
    predicted = model.predict_counts(result.rate, result.elapsed, time_wait=time_wait,
                                     until=samples["t"].max(), step=interval, reuse=reuse, ports=ports)
    interference = Interference(**result.interference) if result.interference else Interference()
    model_cap = None
    if "machine_tw" in samples and interference.tw_cap:
        own = samples["TIME_WAIT"] + samples["FIN_WAIT_2"]
        foreign = (samples["machine_tw"].fillna(0) - own).clip(lower=0)
        interference.foreign_tw_max = max(interference.foreign_tw_max, int(foreign.max()))
        interference.machine_tw_max = max(interference.machine_tw_max, int(samples["machine_tw"].max()))
        free = (interference.tw_cap - foreign).clip(lower=0)
        # never more TIME-WAIT than the slots the cap leaves this load at that moment
        limit = np.interp(predicted["t"], samples["t"], free)
        if (predicted["TIME_WAIT"] > limit).any():
            model_cap = int(free.min())
        predicted["TIME_WAIT"] = np.minimum(predicted["TIME_WAIT"], limit)
    run = PlateauRun(result, samples, predicted, time_wait, reuse, interference.to_record(), model_cap,
                     where_note)
    if run.note or where is not place.where:
        return Result(run, where, run.note)
    return run


def _kernel_reuse() -> tuple[bool, int | None]:
    """Whether connect() on loopback may reuse TIME-WAIT ports here, and the port count."""
    tw_reuse, port_range = sysctl.read("tcp_tw_reuse"), sysctl.read("ip_local_port_range")
    ports = model.ports_in_range(port_range) if port_range else None
    return (tw_reuse is not None and ports is not None and model.reuse_applies(tw_reuse, loopback=True)), ports


# ---------------------------------------------------------------- the remedy: more four-tuples
#
# A TIME-WAIT socket blocks its four-tuple, not its port: connect() takes a port when the
# four-tuple (source address, source port, destination address, destination port) is free
# (tcp-facts.md L20).  So a client with k source addresses has k times the four-tuples
# towards one destination, and k times the rate it can sustain without reuse.

REMEDY_BASE_PORT = 40000


@dataclass
class SourcesRemedy:
    """Loads from 1, 2, … source addresses towards one server port, each with a fresh
    ``ports``-port ``ip_local_port_range`` and ``tcp_tw_reuse=0``, run until ``connect()``
    failed.  ``runs``: one dict per k (``k``, ``port_range``, ``load``: its ``LoadResult``)."""

    rate: float
    ports: int
    runs: list
    time_wait: float = 60.0  # TCP_TIMEWAIT_LEN (tcp-facts.md L1): how long each four-tuple stays blocked

    def four_tuples(self) -> dict[int, int]:
        """Connections made per k before the ports ran out: the four-tuples there were."""
        return {run["k"]: run["load"].connections for run in self.runs}

    def rates(self) -> dict[int, float]:
        """The rate each k sustains without reuse: its four-tuples / the TIME-WAIT length."""
        return {k: n / self.time_wait for k, n in self.four_tuples().items()}

    def growth(self) -> dict[int, float]:
        """Each k's sustainable rate over one source's (1.0 for k=1)."""
        rates = self.rates()
        one = rates.get(1) or float("nan")
        return {k: r / one for k, r in rates.items()}

    def table(self):
        import pandas as pd

        growth = self.growth()
        rows = []
        for run in self.runs:
            load, k = run["load"], run["k"]
            first, before = load.first_error_at(), load.rate_until_first_error()
            rows.append({
                "source addresses": k,
                "ip_local_port_range": f"{run['port_range'][0]}-{run['port_range'][1]}",
                "connections before connect() failed": load.connections,
                "first failure at (s, 0.1 s bins)": None if first is None else round(first, 1),
                "errors": ", ".join(f"{e}: {n}" for e, n in sorted(load.errors.items())) or "none",
                "rate until then (/s)": None if before is None else round(before),
                f"sustainable rate (/s) = connections / {self.time_wait:g} s": round(
                    load.connections / self.time_wait, 2),
                "× one source": round(growth[k], 2),
            })
        return pd.DataFrame(rows)

    def to_record(self) -> dict:
        return {"rate": self.rate, "ports": self.ports, "time_wait": self.time_wait,
                "runs": [{"k": r["k"], "port_range": list(r["port_range"]), "load": r["load"].to_record()}
                         for r in self.runs]}

    @classmethod
    def from_record(cls, record: dict, arguments: dict | None = None) -> SourcesRemedy:
        runs = [{"k": r["k"], "port_range": tuple(r["port_range"]), "load": LoadResult.from_record(r["load"])}
                for r in record["runs"]]
        return cls(record["rate"], record["ports"], runs, record.get("time_wait", 60.0))


def _remedy_ranges(k_values, ports: int) -> list[tuple[int, int]]:
    """A fresh port range per run, side by side from 40000, so that one run's TIME-WAIT
    sockets never hold ports of the next."""
    return [(REMEDY_BASE_PORT + i * ports, REMEDY_BASE_PORT + (i + 1) * ports - 1) for i in range(len(k_values))]


def _check_remedy(k_values=(1, 2, 4), rate: float = 400, ports: int = 200) -> None:
    if (not isinstance(k_values, (tuple, list)) or not k_values
            or not all(isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= MAX_SOURCES for k in k_values)
            or len(set(k_values)) != len(k_values) or 1 not in k_values):
        raise ValueError(f"k_values must be distinct numbers of source addresses from 1 to {MAX_SOURCES}, "
                         f"including 1 (what the others are measured against); got {k_values!r}")
    if isinstance(ports, bool) or not isinstance(ports, int) or not 20 <= ports <= 2000:
        raise ValueError(f"ports must be an int from 20 to 2000 (each run's port range); got {ports!r}")
    if _remedy_ranges(k_values, ports)[-1][1] > 65535:
        raise ValueError(f"{len(k_values)} ranges of {ports} ports from {REMEDY_BASE_PORT} do not fit below 65536")
    if rate is None:
        raise ValueError("rate must be a number of connections per second: the remedy is measured at one rate")
    LoadRun(rate=rate, duration=1.0)
    for k in k_values:
        if _remedy_duration(k, rate, ports) > MAX_DURATION:
            raise ValueError(f"{k} sources × {ports} ports at {rate}/s would run longer than {MAX_DURATION:g} s: "
                             "raise the rate or lower ports")


def _remedy_duration(k: int, rate: float, ports: int) -> float:
    """Long enough for k sources to use up their four-tuples, and half a second of failures."""
    return ports * k / rate + 0.5


@experiment(
    notebook="04", title="the remedy: more source addresses, more four-tuples, a k-fold sustainable rate",
    needs=[Need.KERNEL, Need.SETTINGS], check=_check_remedy,
    calls=[Call((), {"k_values": (1, 2, 4)},
                "loads at 400 connections/s from 1, 2 and 4 source addresses (127.0.0.1-4) to one server port, "
                "each with tcp_tw_reuse=0 and a fresh 200-port ip_local_port_range=40000-40199, 40200-40399, "
                "40400-40599, until connect() failed, in a private lab")],
    to_record=SourcesRemedy.to_record, from_record=SourcesRemedy.from_record,
    notes={Where.LAB: lambda why, a: "Ran in your private lab with tcp_tw_reuse=0 and a fresh "
                                     f"{a['ports']}-port ip_local_port_range for each run (this machine's "
                                     "settings untouched).",
           Where.ROOT: lambda why, a: f"No private lab ({why}); ran on this machine as root with tcp_tw_reuse=0 "
                                      f"and a {a['ports']}-port ip_local_port_range per run, then restored them."})
def sources_remedy(place: Place, k_values=(1, 2, 4), rate: float = 400, ports: int = 200, *,
                   progress: bool = True) -> SourcesRemedy:
    """Bernat's first remedy for port exhaustion, measured: more four-tuples.  For each k in
    ``k_values``, a load at ``rate`` connections/s from k source addresses (127.0.0.1 … k,
    chosen with ``IP_BIND_ADDRESS_NO_PORT``) to one server port, with ``tcp_tw_reuse=0`` and a
    fresh ``ports``-port ``ip_local_port_range`` (side by side from 40000, so no run's
    TIME-WAIT sockets hold the next one's ports), until ``connect()`` fails.  The
    connections each k made are its four-tuples; divided by the 60 s they stay in TIME-WAIT
    they give the rate it sustains.  A ``SourcesRemedy``."""
    runs = []
    for k, port_range in zip(k_values, _remedy_ranges(k_values, ports), strict=True):
        with place.settings(ip_local_port_range=port_range, tcp_tw_reuse=0):
            load = run_load(rate=rate, duration=_remedy_duration(k, rate, ports), sources=k,
                            progress=progress, lab=place.lab)
        runs.append({"k": k, "port_range": tuple(port_range), "load": load})
    return SourcesRemedy(rate, ports, runs)
