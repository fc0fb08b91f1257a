"""Where TIME-WAIT piles up under load (notebook 04): which side holds it, and the plateau
during and after a steady load beside the model.

Both run on one loopback by default, or with ``between_hosts=True`` from the client to the
server of a two-host private lab, where each host counts its own sockets and loopback's
exemption (``tcp_tw_reuse=2`` reuses TIME-WAIT ports for loopback only) is gone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..base import model, sysctl
from ..base.experiment import BETWEEN_HOSTS, Call, Need, Place, Rule, experiment
from ..base.kernel import fast_mode, timer_slack
from ..base.observe import sockets
from ..base.observe.sampler import StateSampler
from ..base.progress import progress as bar_for
from ..base.states import TcpState
from .load import MAX_DURATION, LoadResult, LoadRun, run_load
from .sharing import Interference, exceeds_share

__all__ = ["time_wait_by_side", "time_wait_by_closer", "PlateauRun", "watch_plateau"]


def _check_between_hosts(between_hosts: object) -> None:
    if between_hosts is not True and between_hosts is not False:
        raise ValueError(f"between_hosts must be True or False; got {between_hosts!r}")


def time_wait_by_side(result: LoadResult) -> dict[str, int]:
    """TIME-WAIT sockets now held by each side of a load's connections: the server side
    (local port = the target's port) and the client side.  Where the result knows its
    client addresses and ports (a live run), only sockets of its own four-tuples count:
    another load's clients may have taken this server's port for theirs."""
    port, mine = result.target[1], result.clients
    sides = {"server side": 0, "client side": 0}
    for s in sockets(port=port, states=TcpState.TIME_WAIT):
        server = s.local_port == port
        if mine and ((s.remote_address, s.remote_port) if server
                     else (s.local_address, s.local_port)) not in mine:
            continue
        sides["server side" if server else "client side"] += 1
    return sides


#: How long the last connections of a load may take to reach TIME-WAIT: a close on loopback
#: ends within milliseconds; a busy machine may delay the threads that finish it.
SETTLE_S = 2.0


def _sides_settled(result: LoadResult) -> dict[str, int]:
    """``time_wait_by_side`` once every connection of the load has closed (none left in the
    load's other states), polled with a deadline; with the connections made, the connects
    that failed and the distinct four-tuples the connections used, all the load's own."""
    port, deadline = result.target[1], time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        if not any(s.state is not TcpState.TIME_WAIT for s in sockets(port=port)
                   if s.state is not TcpState.LISTEN):
            break
        time.sleep(0.02)
    return {"connections made": result.connections, "connects failed": sum(result.errors.values()),
            "four-tuples used": result.four_tuples, **time_wait_by_side(result)}


#: The narrowed client port range of notebook 04's second call: fewer ports than connections.
NARROW_RANGE = (40000, 40199)


def _check_by_closer(rate: float = 300, duration: float = 1.0, port_range: tuple | None = None,
                     between_hosts: bool = False) -> None:
    LoadRun(rate=rate, duration=duration)
    if port_range is not None:
        sysctl.validate("ip_local_port_range", port_range)
    _check_between_hosts(between_hosts)


@experiment(notebook="04", title="who holds TIME-WAIT: client-closes and server-closes loads",
            needs=[Need.KERNEL], check=_check_by_closer,
            rules=[Rule(lambda a: "a narrowed ip_local_port_range would leave every other program on this "
                                  "machine short of ports, so tcplearn sets it only in a private lab"
                        if a.get("port_range") is not None else "", needs=(Need.LAB,)), BETWEEN_HOSTS],
            calls=[Call((), {"rate": 300, "duration": 1.0},
                        "two 1 s loads at 300 connections/s, client closing first, then server closing "
                        "first, and where their TIME-WAIT sockets were"),
                   Call((), {"rate": 400, "duration": 1.0, "port_range": NARROW_RANGE},
                        "the same two loads at 400 connections/s in a private lab whose ip_local_port_range "
                        "holds 200 ports"),
                   Call((), {"rate": 300, "duration": 1.0, "between_hosts": True},
                        "two 1 s loads at 300 connections/s from a private lab's client host to its server "
                        "host, client closing first, then server closing first, each host counting its own "
                        "TIME-WAIT")])
def time_wait_by_closer(place: Place, rate: float = 300, duration: float = 1.0,
                        port_range: tuple | None = None,
                        between_hosts: bool = False) -> dict[str, dict[str, int]]:
    """Two short loads, one where the client closes first and one where the server does
    (with ``port_range``: in a private lab whose ``ip_local_port_range`` it is).  For each,
    once its connections have closed: ``connections made``, ``connects failed``,
    ``four-tuples used`` (distinct client ports: a port used again is the same four-tuple
    again), and the TIME-WAIT sockets on the ``server side`` and the ``client side``.  One
    TIME-WAIT socket per four-tuple: a SYN that reuses a four-tuple whose server end is in
    TIME-WAIT takes that entry over (``tcp_timewait_state_process()``, RFC 6191), and a
    client ``connect()`` reuses a client-side one only under ``tcp_tw_reuse``.

    ``between_hosts=True`` runs them from a two-host lab's client to its server, and each
    side is what that host's own table holds ("client side": the client host's)."""
    settings = {"ip_local_port_range": tuple(port_range)} if port_range is not None else {}
    sides = {}
    with place.settings(**settings) if settings else _nothing():
        # Each run is counted before the next starts, and by its own four-tuples: with one port
        # range for both, the second server may get the first one's port again.
        for name, closer in (("client closes first", "client"), ("server closes first", "server")):
            result = run_load(rate=rate, duration=duration, closer=closer, progress=False, lab=place.lab,
                              between_hosts=between_hosts)
            sides[name] = (_hosts_settled(place.lab, result) if between_hosts
                           else place.call(_sides_settled, result))
    return sides


def _hosts_settled(lab, result: LoadResult) -> dict[str, int]:
    """Between hosts: the load's counts, then each host's own TIME-WAIT on the load's port
    (each table holds only its own end), once the load's connections have closed."""
    port, deadline = result.target[1], time.monotonic() + SETTLE_S
    counts = {}
    while time.monotonic() < deadline:
        counts = {host: lab.count_states(host, port=port) for host in ("server", "client")}
        if all(n == 0 for c in counts.values() for state, n in c.items()
               if state not in (TcpState.TIME_WAIT, TcpState.LISTEN)):
            break
        time.sleep(0.02)
    return {"connections made": result.connections, "connects failed": sum(result.errors.values()),
            "four-tuples used": result.four_tuples,
            **{f"{host} side": counts[host][TcpState.TIME_WAIT] for host in ("server", "client")}}


@contextmanager
def _nothing() -> Iterator[dict]:
    yield {}


class PlateauRun:
    """A load at a steady rate, then the drain after it: the load's own measured counts and
    the model (capped at the TIME-WAIT slots other programs left free)."""

    def __init__(self, result: LoadResult, samples, model, time_wait: float, reuse: bool = False,
                 interference: dict | None = None, model_cap: int | None = None):
        self.result, self.samples, self.model, self.time_wait = result, samples, model, time_wait
        self.reuse = reuse
        self.interference = interference or {}
        self.model_cap = model_cap      # the fewest TIME-WAIT slots left free for this load, if it mattered

    def measured_peak(self) -> int:
        return int(self.samples["TIME_WAIT"].max())

    def predicted_peak(self) -> float:
        return float(self.model["TIME_WAIT"].max())

    @property
    def note(self) -> str:
        """What else the machine held while it ran ("" if nothing mattered); where it ran is
        the ``Result``'s note."""
        return Interference(**self.interference).sentence() if self.interference else ""

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


def _check_plateau(rate: float = 200, duration: float | None = None, drain: float | None = None,
                   between_hosts: bool = False) -> None:
    LoadRun(rate=rate, duration=duration or 1.0)
    _check_between_hosts(between_hosts)
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
    ident = call(_sampler_start, port, interval)
    try:
        with bar_for(seconds, "draining", enabled=progress) as bar:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                time.sleep(min(0.25, max(0.0, end - time.monotonic())))
                bar.to(seconds - max(0.0, end - time.monotonic()))
    finally:
        frame = call(_sampler_finish, ident)
    return frame


#: The machine's settings that shape a plateau, mirrored in a lab that stands in for it.
MIRRORED = ("tcp_tw_reuse", "ip_local_port_range", "tcp_tw_reuse_delay")


def _plateau_load(arguments: dict) -> dict:
    """The ``run_load`` settings of a ``watch_plateau`` call (its defaults filled in)."""
    duration = arguments.get("duration")
    return {"rate": arguments.get("rate", 200), "duration": (3.0 if fast_mode() else 70.0) if duration is None
            else duration}


def _moved_note(reason: str, mirrored: dict) -> str:
    held = reason.removeprefix("This load would hold ").split(". ")[0]
    return ("Ran in your private lab, which is yours alone, with this machine's "
            f"{sysctl.describe(mirrored)}: on the machine itself it would have held {held}.")


#: A load too big to share this machine goes to a private lab set like it (else its recording).
TOO_BIG_FOR_THE_MACHINE = Rule(lambda arguments: "" if arguments.get("between_hosts")  # in a lab anyway
                               else exceeds_share(_plateau_load(arguments)), needs=(Need.LAB,),
                               mirror=MIRRORED, note=_moved_note)


@experiment(notebook="04", title="TIME-WAIT during and after a steady load, beside the model",
            needs=[Need.KERNEL], check=_check_plateau, concurrent=True,
            rules=[TOO_BIG_FOR_THE_MACHINE, BETWEEN_HOSTS],
            remark=lambda run: run.note,
            calls=[Call((), {"rate": 200}, "a client-closes load at 200 connections/s for 70 s, then its "
                                           "drain, counted every second"),
                   Call((), {"rate": 200, "between_hosts": True},
                        "a client-closes load at 200 connections/s for 70 s from a private lab's client host "
                        "to its server host, then its drain, counted every second on the client")],
            show="show_plateau")
def watch_plateau(place: Place, rate: float = 200, duration: float | None = None, drain: float | None = None,
                  between_hosts: bool = False, *, progress: bool = True) -> PlateauRun:
    """Run a client-closes load at ``rate`` for ``duration`` s (default 70; 3 in fast mode),
    counting its own sockets (its server port at either end) every second, then keep
    counting for ``drain`` s (default 65; 2 in fast mode) while they expire.  A
    ``PlateauRun`` with the model's prediction for the same achieved rate and duration,
    capped at the TIME-WAIT slots other programs left free.  In fast mode nothing the load
    made can expire within the run, so measurement and model compare like with like.

    On the machine, a load bigger than ``SHARE`` of what is free runs in a private lab
    with the machine's port range and reuse settings (the note says so), else the same
    call recorded in a Linux lab is shown, else a one-line notice says why: the ladder
    decides it before the body runs (``TOO_BIG_FOR_THE_MACHINE``).

    ``between_hosts=True`` runs the load from a two-host lab's client to its server: the
    counts are the client's own, and the model's plateau is the one without TIME-WAIT reuse
    (rate × TIME-WAIT, capped by the ports), since ``tcp_tw_reuse=2`` exempts loopback only."""
    import numpy as np
    import pandas as pd

    fast = fast_mode()
    duration = _plateau_load({"rate": rate, "duration": duration})["duration"]
    drain = (2.0 if fast else 65.0) if drain is None else drain
    interval = 0.25 if fast else 1.0
    lab = place.lab
    call = Place.of(lab, "client" if between_hosts else None).call
    result = run_load(rate=rate, duration=duration, sample_interval=interval, progress=progress, lab=lab,
                      between_hosts=between_hosts)
    after = _drain(call, result.target[1], drain, interval, progress)
    reuse, ports = call(_kernel_reuse, not between_hosts)
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
    return PlateauRun(result, samples, predicted, time_wait, reuse, interference.to_record(), model_cap)


def _kernel_reuse(loopback: bool = True) -> tuple[bool, int | None]:
    """Whether connect() (on loopback, or to another host) may reuse TIME-WAIT ports here,
    and the port count."""
    tw_reuse, port_range = sysctl.read("tcp_tw_reuse"), sysctl.read("ip_local_port_range")
    ports = model.ports_in_range(port_range) if port_range else None
    return (tw_reuse is not None and ports is not None
            and model.reuse_applies(tw_reuse, loopback=loopback)), ports
