"""Notebook 01's close scenarios: each one a script of ``ConnectionPair`` steps (the tool in
``tools/connection_pair``), played in a private lab with a capture, or as root on this
machine's ``lo``, or live without capture, and recorded for everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..base.experiment import Call, Need, Where, experiment
from ..base.lab import Segment, write_pcap
from ..base.lab.capture import Capture
from ..base.lab.pcap import writable_path
from ..base.rfc import ENDS as _ENDS
from ..base.rfc import check_history, predict
from ..base.states import TcpState
from .tools.connection_pair import (
    SETTLE_TIMEOUT,
    ConnectionPair,
    Step,
)

__all__ = ["ConnectionPair", "Step", "predict", "check_history", "SCENARIOS", "CloseRun", "run_scenario",
           "save_pcap"]


# ---------------------------------------------------------------- scenarios for notebook 01

#: The close variants notebook 01 runs: name -> the pair's steps, as (method, *args).
SCENARIOS: dict[str, tuple[tuple, ...]] = {
    "client-closes-first": (("client_close",), ("server_close",)),
    "server-closes-first": (("server_close",), ("client_close",)),
    "half-close": (("client_shutdown",), ("server_send", b"data after the client's FIN"),
                   ("client_recv",), ("server_close",), ("client_recv",), ("client_close",)),
    "simultaneous": (("simultaneous_close",),),
    "abort": (("client_abort",),),
    "unread-data": (("client_send", b"a request the server never reads"), ("server_close",),
                    ("client_recv",)),
    "server-closes-at-once": (("client_close_server_follows",),),
    "close-wait-leak": (("client_close",), ("wait_until", TcpState.CLOSED, None)),
}

#: The segment table's column: time from the step's socket call (e.g. ``close()``) to the segment.
SINCE_CALL = "ms since the step's call"

#: Why the CLOSE-WAIT leak's client end may vanish: not RFC 9293 (no FIN-WAIT-2 timeout there).
ORPHAN_TIMER = ("Linux's orphan timer: a FIN-WAIT-2 no program holds is dropped after tcp_fin_timeout "
                "(include/net/tcp.h: 'BSD style FIN_WAIT2 deadlock breaker')")


@dataclass
class CloseRun:
    """One scenario's result: the pair's ``history``, the captured segments of each step
    (``None`` when nothing could be captured: the arrows are then what RFC 9293 says is
    sent), the server's port and ``capture_started``, the wall-clock time (``time.time()``)
    the segments' ``t`` counts from (``None`` when unknown).  Where it ran is the ``Result``'s."""

    name: str
    history: list[Step]
    segments_by_step: list[list] | None
    server_port: int
    capture_started: float | None = None

    def table(self):
        """The steps as a DataFrame: who did what, both ends' states from the kernel, what
        RFC 9293 predicted, and (when a step has one) why Linux differs."""
        import pandas as pd

        frame = pd.DataFrame([{
            "step": i, "who": s.actor, "action": s.action,
            "client (kernel)": s.client_state.label, "server (kernel)": s.server_state.label,
            "RFC predicted": " / ".join(x.label for x in s.expected),
            "matches": s.settled,
            "Linux differs": s.differs,
            "seen while waiting": " → ".join(f"{a.label}/{b.label}" for a, b in s.trail)
            if len(s.trail) > 1 else "",
        } for i, s in enumerate(self.history)])
        return frame if frame["Linux differs"].any() else frame.drop(columns="Linux differs")

    def segments(self) -> list[Segment]:
        """Every captured segment of the run, in order (``[]`` when nothing was captured)."""
        return [seg for step in self.segments_by_step or [] for seg in step]

    def segment_table(self):
        """The captured segments after the handshake as a DataFrame: milliseconds since the
        first FIN (or RST), milliseconds since its step's socket call (``close()``, ``send()``...;
        when the run knows when its capture started and the step made a call), who sent it,
        its flags, and the step it belongs to."""
        import pandas as pd

        rows = [(seg, i)
                for i, (step, segs) in enumerate(zip(self.history, self.segments_by_step or [], strict=False))
                if step.action != "connect" for seg in segs]
        first = next((seg.t for seg, _ in rows if seg.has("FIN") or seg.has("RST")), None)
        since_step = self.capture_started is not None

        def began(seg, i) -> float | None:
            step = self.history[i]
            return round((self.capture_started + seg.t - step.began) * 1000, 3) if step.began else None

        columns = ["ms since the first FIN/RST", *([SINCE_CALL] if since_step else []),
                   "from", "flags", "bytes", "step"]
        return pd.DataFrame([{
            "ms since the first FIN/RST": None if first is None else round((seg.t - first) * 1000, 3),
            **({SINCE_CALL: began(seg, i)} if since_step else {}),
            "from": "server" if seg.sport == self.server_port else "client", "flags": seg.flags,
            "bytes": seg.length, "step": self.history[i].action} for seg, i in rows], columns=columns)

    def path(self, end: str = "client") -> list[TcpState]:
        """``end``'s states in the order the kernel showed them (steps and what polls caught
        in between), as ``plots.state_diagram(path=...)`` takes them."""
        if end not in _ENDS:
            raise ValueError(f"end must be 'client' or 'server', got {end!r}")
        i = _ENDS.index(end)
        states = [state for step in self.history
                  for state in (*(pair[i] for pair in step.trail), step.states[i])]
        return [s for k, s in enumerate(states) if k == 0 or s is not states[k - 1]]

    def final_states(self) -> dict[TcpState, str]:
        """The ends' last states, as ``plots.state_diagram(highlight=...)`` takes them."""
        last = self.history[-1]
        if last.client_state == last.server_state:
            return {last.client_state: "client + server"}
        return {last.client_state: "client", last.server_state: "server"}

    def to_record(self) -> dict:
        """Plain JSON-able data, from which ``from_record`` rebuilds this run (recordings)."""
        from dataclasses import asdict

        def step(s: Step) -> dict:
            d = asdict(s)
            d.update(client_state=s.client_state.name, server_state=s.server_state.name,
                     expected=[x.name for x in s.expected], trail=[[a.name, b.name] for a, b in s.trail])
            return d

        return {"name": self.name, "history": [step(s) for s in self.history],
                "server_port": self.server_port,
                "capture_started": self.capture_started,
                "segments_by_step":
                None if self.segments_by_step is None
                else [[g.to_record() for g in gs] for gs in self.segments_by_step]}

    @classmethod
    def from_record(cls, record: dict, arguments: dict | None = None) -> CloseRun:
        """A ``CloseRun`` from ``to_record()`` data."""
        def step(d: dict) -> Step:
            return Step(**{**d, "segments": tuple(tuple(x) for x in d["segments"]),
                           "client_state": TcpState[d["client_state"]],
                           "server_state": TcpState[d["server_state"]],
                           "expected": tuple(TcpState[x] for x in d["expected"]),
                           "trail": tuple((TcpState[a], TcpState[b]) for a, b in d["trail"])})

        segments = record["segments_by_step"]
        return cls(record["name"], [step(d) for d in record["history"]],
                   None if segments is None else [[Segment(**g) for g in gs] for gs in segments],
                   record["server_port"], record.get("capture_started"))


def _steps(name: str, in_lab: bool, wait_timeout: float):
    """Play one scenario's steps on a fresh pair: ``(history, ports, server port)``."""
    with ConnectionPair(settle_timeout=min(SETTLE_TIMEOUT, wait_timeout)) as pair:
        for method, *args in SCENARIOS[name]:
            if method == "simultaneous_close":
                pair.simultaneous_close(drop_until_both_closed=in_lab)
            elif method == "wait_until":
                pair.wait_until(*args, timeout=wait_timeout, label="wait: the server never calls close()",
                                differs=ORPHAN_TIMER)
            else:
                getattr(pair, method)(*args)
        return pair.history, {pair.client_port, pair.server_port}, pair.server_port


def _play(name: str, capture: bool, in_lab: bool, wait_timeout: float):
    """Play a scenario, capturing the loopback when asked: ``(history, segments by step or
    None, server port, the capture's start as time.time() or None)``."""
    if not capture:
        history, _, server_port = _steps(name, in_lab, wait_timeout)
        return history, None, server_port, None
    with Capture("lo") as cap:
        history, ports, server_port = _steps(name, in_lab, wait_timeout)
        cap.settle()
    # Each segment belongs to the first step recorded after it; segments after the last step
    # come from leaving the ``with`` block (closing what is left), not from the scenario.
    by_step: list[list] = [[] for _ in history]
    for seg in cap.segments:
        if {seg.sport, seg.dport} != ports:
            continue
        when = cap.started + seg.t
        index = next((i for i, st in enumerate(history) if st.wall >= when), None)
        if index is not None:
            by_step[index].append(seg)
    return history, by_step, server_port, cap.started


def _check_scenario(name: str) -> None:
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}: expected one of {', '.join(SCENARIOS)}")


#: The setting a scenario changes in the lab, as its notes say it.
LEAK_FIN_TIMEOUT = 1
_LAB_SETTING = {"close-wait-leak": f", with tcp_fin_timeout={LEAK_FIN_TIMEOUT} in the lab"}

_NO_CAPTURE = ("No private lab ({why}) and no capture: states are live, the arrows show what "
               "RFC 9293 says is sent.")


@experiment(
    notebook="01", title="the four-way close and its variants, with captured segments",
    needs=[Need.KERNEL], wants=[Need.CAPTURE], check=_check_scenario,
    calls=[Call((name,), {}, f"the '{name}' scenario in a private lab{_LAB_SETTING.get(name, '')}, its "
                             "segments captured on the lab's loopback") for name in SCENARIOS],
    notes={Where.LAB: lambda why, arguments: ("Ran in your private "
                                              f"lab{_LAB_SETTING.get(arguments['name'], '')}: the segments "
                                              "are real, captured on the lab's loopback."),
           Where.ROOT: "No private lab ({why}); ran on this machine as root, capturing its loopback.",
           Where.LIVE: _NO_CAPTURE},
            show="show_close_run")
def run_scenario(place, name: str) -> CloseRun:
    """Run one close variant of ``SCENARIOS`` and return what happened (a ``CloseRun``).

    In a private lab: real captured segments; the simultaneous close is made real by losing
    both FINs; the CLOSE-WAIT leak runs with tcp_fin_timeout=1.  On this machine as root:
    capturing its loopback (short waits).  Else live without capture, the arrows then being
    what RFC 9293 says is sent; where the kernel's states cannot be read, the Linux recording.
    """
    if place.where is Where.LAB:
        if name == "close-wait-leak":
            place.lab.sysctl(tcp_fin_timeout=LEAK_FIN_TIMEOUT)
        return CloseRun(name, *place.call(_play, name, True, True, 5.0))
    # on the machine: short waits, so that no step waits long enough to need a progress bar;
    # captured on its lo where the ladder found that root can capture there
    return CloseRun(name, *_play(name, place.can_capture, False, 1.5))



def save_pcap(run, path: str = "01-close.pcap"):
    """Write ``run``'s captured segments (a ``CloseRun`` or its ``Result``) as a pcap file
    for Wireshark or ``tcpdump -nn -r``; returns the file's path, or ``None`` when nothing
    was captured here (no lab: the arrows were what RFC 9293 says is sent).  Where the
    folder cannot be written (a read-only notebook folder), the file goes to the temporary
    directory instead, and that is the path returned."""
    value = getattr(run, "value", run)
    if not isinstance(value, CloseRun):
        raise TypeError(f"save_pcap takes a run_scenario() result, got {type(value).__name__}")
    segments = value.segments()
    if not segments:
        return None
    return write_pcap(segments, writable_path(path))
