"""The remedy the series recommends, measured (notebook 04): more four-tuples, i.e. more
source addresses towards one destination, multiply the rate a client can sustain
without TIME-WAIT reuse."""

from __future__ import annotations

from dataclasses import dataclass

from ..base.experiment import Call, Need, Place, Where, experiment
from .load import MAX_DURATION, MAX_SOURCES, LoadResult, LoadRun, run_load

__all__ = ["sources_remedy", "SourcesRemedy"]


# ---------------------------------------------------------------- the remedy: more four-tuples
#
# A TIME-WAIT socket blocks its four-tuple, not its port: connect() takes a port when the
# four-tuple (source address, source port, destination address, destination port) is free
# (net/ipv4/inet_hashtables.c, __inet_hash_connect).  So a client with k source addresses has k times the
# four-tuples
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
    time_wait: float = 60.0  # TCP_TIMEWAIT_LEN (include/net/tcp.h): how long each four-tuple stays blocked

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
                "first failure by (s; within the 0.1 s before)": None if first is None else round(first, 1),
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
    return [(REMEDY_BASE_PORT + i * ports, REMEDY_BASE_PORT + (i + 1) * ports - 1)
            for i in range(len(k_values))]


def _check_remedy(k_values=(1, 2, 4), rate: float = 400, ports: int = 200) -> None:
    if (not isinstance(k_values, (tuple, list)) or not k_values
            or not all(isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= MAX_SOURCES
                       for k in k_values)
            or len(set(k_values)) != len(k_values) or 1 not in k_values):
        raise ValueError(f"k_values must be distinct numbers of source addresses from 1 to {MAX_SOURCES}, "
                         f"including 1 (what the others are measured against); got {k_values!r}")
    if isinstance(ports, bool) or not isinstance(ports, int) or not 20 <= ports <= 2000:
        raise ValueError(f"ports must be an int from 20 to 2000 (each run's port range); got {ports!r}")
    if _remedy_ranges(k_values, ports)[-1][1] > 65535:
        raise ValueError(f"{len(k_values)} ranges of {ports} ports from {REMEDY_BASE_PORT} do not fit below "
                         "65536")
    if rate is None:
        raise ValueError("rate must be a number of connections per second: the remedy is measured at one "
                         "rate")
    LoadRun(rate=rate, duration=1.0)
    for k in k_values:
        if _remedy_duration(k, rate, ports) > MAX_DURATION:
            raise ValueError(f"{k} sources × {ports} ports at {rate}/s would run longer than "
                             f"{MAX_DURATION:g} s: raise the rate or lower ports")


def _remedy_duration(k: int, rate: float, ports: int) -> float:
    """Long enough for k sources to use up their four-tuples, and half a second of failures."""
    return ports * k / rate + 0.5


@experiment(
    notebook="04", title="the remedy: more source addresses, more four-tuples, a k-fold sustainable rate",
    needs=[Need.KERNEL, Need.SETTINGS], check=_check_remedy,
    calls=[Call((), {"k_values": (1, 2, 4)},
                "loads at 400 connections/s from 1, 2 and 4 source addresses (127.0.0.1-4) to one server "
                "port, each with tcp_tw_reuse=0 and a fresh 200-port ip_local_port_range=40000-40199, "
                "40200-40399, 40400-40599, until connect() failed, in a private lab")],
    notes={Where.LAB: lambda why, a: "Ran in your private lab with tcp_tw_reuse=0 and a fresh "
                                     f"{a['ports']}-port ip_local_port_range for each run (this machine's "
                                     "settings untouched).",
           Where.ROOT: lambda why, a: f"No private lab ({why}); ran on this machine as root with "
                                      f"tcp_tw_reuse=0 and a {a['ports']}-port ip_local_port_range per run, "
                                      "then restored them."},
            show="show_sources_remedy")
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
