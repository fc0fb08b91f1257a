"""Sharing one machine: what is free on it, which other tcplearn loads run, and what else
its TCP table holds, so that every load counts only its own sockets, names the
interference in one sentence, and takes no more than its share."""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass, field

from ..base import model, sysctl
from ..base.observe.netlink import local_ports_in_use, sockstat_tw

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
        return (None if self.ports is None or self.ports_in_use is None
                else max(0, self.ports - self.ports_in_use))


def machine_now() -> Machine:
    """Read ``Machine`` from the kernel (a few milliseconds)."""
    port_range = sysctl.read("ip_local_port_range")
    try:
        in_use = local_ports_in_use(*port_range) if port_range else None
    except OSError:
        in_use = None
    return Machine(sockstat_tw(), sysctl.read("tcp_max_tw_buckets"),
                   tuple(port_range) if port_range else None,
                   in_use, running_loads())


class HostShareError(ValueError):
    """A load too big to share this machine with others (see ``SHARE``).  ``held`` is the
    sentence that says what it would hold, for a caller (the command line) that names its
    own way to a private lab."""

    def __init__(self, message: str, held: str = ""):
        super().__init__(message)
        self.held = held


def _need(settings: dict, ports: int) -> tuple[float, float]:
    """TIME-WAIT sockets and ephemeral ports a load would hold at its peak (the model)."""
    # as fast as possible: ~14k-20k/s measured (measured: 14k-20k/s on loopback, benchmarks/bench_load.py)
    rate = settings.get("rate") or 20_000.0
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
        held = ("This load would hold " + " and ".join(problems) + ". Other programs and other learners "
                "share "
                f"this machine's table and ports, so a load here takes at most {SHARE:.0%} of what is free.")
        raise HostShareError(
            held + " Run it in a private lab (run_load(..., lab=lab) inside `with tcplearn.PrivateLab() as "
            "lab:`, "
            "or watch_plateau, which moves there by itself when a lab can start), or lower the rate or the "
            "duration.", held)
    return machine


def exceeds_share(settings: dict) -> str:
    """Why a load of these ``run_load`` settings would not fit this machine's share (the
    ``HostShareError`` sentence), or "" when it fits or runs inside a lab already.  The
    ladder asks this before anything runs (a ``Rule``): a load that does not fit goes to a
    private lab."""
    from ..base.lab import in_lab

    if in_lab():
        return ""
    try:
        host_share_check(settings)
    except HostShareError as exc:
        return str(exc)
    return ""


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
    recycled: int = 0                  # TcpExt TWRecycled growth: connects that took over a port in TIME-WAIT
    recycled_expected: int | None = 0  # ... as many as the model's port search expects (None: not known)
    reuse_possible: bool = False       # the load's client closes first and tcp_tw_reuse lets it reuse
    counters_own: bool = False         # in a lab the kernel's counters are the learner's own
    made: int = 0                      # the load's connections (0: not recorded)
    own_taken: int | None = None       # at most this many of them took over one of its own TIME-WAIT ports,
    #                                    from its own sockets: made - its TIME-WAIT (None: not known)

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

    def own_recycled(self) -> int | None:
        """How many of the load's own connects took over one of its TIME-WAIT ports, at most:
        in a lab TcpExt TWRecycled is the load's own (the namespace is); on the machine it
        counts every program, so no more of it than the load's own sockets show is the
        load's; never more than the load made.  ``None`` where it cannot be told."""
        if self.counters_own:
            own = self.recycled
        elif self.own_taken is not None:
            own = min(self.recycled, self.own_taken)
        else:
            return None
        return min(own, self.made) if self.made else own

    def _taken_over(self) -> list[str]:
        """The sentence on TIME-WAIT ports taken over beyond the model's port search, if any."""
        if not self.reuse_possible or self.recycled_expected is None:
            return []
        expected = self.recycled_expected
        noticeable = max(5, 0.02 * max(self.own_peak, 1))
        own = self.own_recycled()
        if own is not None and own - expected > noticeable:
            # measured (Linux 6.18): the port search may jump once by thousands of ports and,
            # a thousand connections later, meet the load's own ports still in TIME-WAIT
            extra = own - expected
            if self.counters_own:
                many, how = f"{own:,}", "counted by TcpExt TWRecycled in your lab, whose counters are yours"
            else:
                many, how = f"up to {own:,}", (
                    f"its own sockets show it: {self.made:,} connections made, at most {own:,} of their "
                    "TIME-WAIT sockets gone; TcpExt TWRecycled, which counts every program on the machine, "
                    f"rose by {self.recycled:,}")
            return [f"{many} of this load's connections took over a port it had used, still in TIME-WAIT "
                    f"(tcp_tw_reuse; {how}), {extra:,} more than the model's port search expects; each ended "
                    f"that TIME-WAIT early, so this load's count can sit up to {extra:,} below the model"]
        if not self.counters_own and self.recycled - expected > noticeable:
            mine = "" if own is None \
                else "; its own sockets show that none of them was this load's" if not own \
                else f"; its own sockets show that at most {own:,} of them were this load's"
            return ["TcpExt TWRecycled, which counts every program on the machine, rose by "
                    f"{self.recycled:,} (connections taking over a port still in TIME-WAIT, "
                    f"tcp_tw_reuse){mine}"]
        return []

    def sentence(self) -> str:
        """One sentence a learner understands, or "" when nothing else mattered."""
        parts = []
        if self.at_cap:
            lost = f" {self.overflow:,} closes got no TIME-WAIT (TCPTimeWaitOverflow)" if self.overflow else \
                " closes beyond it got no TIME-WAIT"
            parts.append(f"the machine held {self.machine_tw_max:,} TIME-WAIT sockets, the kernel's cap "
                         f"(tcp_max_tw_buckets = {self.tw_cap:,}), {self.foreign_tw_max:,} of them other "
                         f"programs', so{lost} and the model is capped at the {self.free_slots:,} slots left")
        elif self.tw_cap and self.foreign_tw_max >= 0.5 * self.tw_cap:
            parts.append(f"other programs held {self.foreign_tw_max:,} TIME-WAIT sockets, near the kernel's "
                         f"cap (tcp_max_tw_buckets = {self.tw_cap:,}); the model is capped at the "
                         f"{self.free_slots:,} slots left")
        elif self.foreign_tw_max >= max(100, 0.05 * self.own_peak):
            parts.append(f"other programs held up to {self.foreign_tw_max:,} TIME-WAIT sockets on this "
                         "machine, which are not counted here")
        if (self.ports and self.ports_in_use_before is not None
                and self.ports_in_use_before >= 0.5 * self.ports):
            parts.append(f"{self.ports_in_use_before:,} of the {self.ports:,} ephemeral ports were already "
                         "in use")
        parts += self._taken_over()
        if self.other_loads:
            n = len(self.other_loads)
            parts.append(f"{n} other tcplearn load{'s' if n > 1 else ''} ran at the same time (server port"
                         f"{'s' if n > 1 else ''} {', '.join(map(str, self.other_loads))}), not counted here")
        if not parts:
            return ""
        text = "; ".join(parts)
        return (f"While this load ran, {text}. Every count shown is this load's own (sockets with its server "
                f"port {self.port} at one end).")
