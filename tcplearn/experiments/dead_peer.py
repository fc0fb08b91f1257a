"""When the peer vanishes without a word: who notices, how, and when.

``dead_peer(method, **params)`` opens a loopback connection, makes the peer go silent
(no FIN, no RST, no ACK ever again) and watches the local end until it notices or a
bounded window (at most 60 s) ends.  The methods:

* ``"none"``: nothing is set.  An idle connection sends nothing, so nothing notices:
  the socket stays ESTABLISHED for ever.
* ``"keepalive"``: ``SO_KEEPALIVE`` with ``TCP_KEEPIDLE``/``TCP_KEEPINTVL``/``TCP_KEEPCNT``
  set *on the socket* (no sysctl is touched): probes, then ``ETIMEDOUT``.
* ``"user_timeout"``: ``TCP_USER_TIMEOUT`` on the socket, with one byte left
  unacknowledged: retransmissions, then ``ETIMEDOUT``.
* ``"retransmissions"``: ``net.ipv4.tcp_retries2``, a per-network-namespace sysctl, set
  inside a private lab (never on the host), with one byte left unacknowledged.
* ``"settimeout"``: Python's ``sock.settimeout``: ``recv`` raises ``TimeoutError`` yet
  the connection is still ESTABLISHED; it says nothing about the peer (the Python docs' socket timeouts: a
  per-call limit, kept with poll/select, not ``SO_RCVTIMEO``).
* ``"node_idle"``: real Node's ``socket.setTimeout``: only a ``'timeout'`` event, the
  socket stays open (Node's ``doc/api/net.md``, ``socket.setTimeout`` and ``'timeout'``).
* ``"node_keepalive"``: real Node's ``socket.setKeepAlive(true, ms)``: kernel keepalive.
  The values Node sets are read back from Node's own socket (``pidfd_getfd`` then
  ``getsockopt``) and reported, and the detection is compared with them.

The parts: ``dead_peer_model`` (the parameters, the kernel's rules as a model and the
prediction), ``dead_peer_runs`` (one run, with the peer silenced: how, and why the lab)
and here the result and the registration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..base.experiment import Call, Need, Place, Rule, Where, experiment, node_executable
from .dead_peer_model import (
    MAX_WINDOW,
    METHODS,
    PARAMS,
    RetransmissionSchedule,
    _validate,
    _window,
    predict,
    retransmission_schedule,
)
from .dead_peer_runs import run_node, run_python
from .tools.silence import can_silence, silence, unsilence

__all__ = [
    "dead_peer", "DeadPeerResult", "METHODS", "PARAMS", "MAX_WINDOW",
    "retransmission_schedule", "RetransmissionSchedule", "predict", "silence", "unsilence",
    "can_silence",
]


# ---------------------------------------------------------------- the result


@dataclass
class DeadPeerResult:
    """One run of ``dead_peer``.

    ``detected_after`` is seconds from the start of the silence until the local end saw
    an error (None: it never noticed); ``error`` that error's errno name (``"ETIMEDOUT"``);
    where it ran is the ``Result``'s to say, not the value's.  ``how`` says in one sentence
    what made it notice; ``timeline`` (a pandas DataFrame built from ``timeline_rows``) the local end's
    ``/proc/net/tcp`` row over
    time: ``t``, ``state``, timer code ``tr`` and its name, ``when_s`` left on it,
    ``retrnsmt``, ``timeout`` (unanswered probes); ``segments`` the capture (each with
    ``t`` on the same axis, ``from`` "local" or "peer" and a ``kind``), or None without
    capture; ``events`` what the program saw; ``predicted`` what the settings predict;
    ``measured`` values read back (Node's socket options); ``counters`` the lab's TcpExt
    deltas; ``ports`` (local, peer).
    """

    method: str
    params: dict
    detected_after: float | None
    error: str | None
    how: str
    timeline_rows: list[dict]
    segments: list[dict] | None
    events: list[dict] = field(default_factory=list)
    final_state: str = "ESTABLISHED"
    predicted: dict = field(default_factory=dict)
    measured: dict = field(default_factory=dict)
    counters: dict = field(default_factory=dict)
    ports: tuple[int, int] = (0, 0)

    @property
    def timeline(self):
        """``timeline_rows`` as a pandas DataFrame (pandas is imported only here)."""
        import pandas as pd

        return pd.DataFrame(self.timeline_rows, columns=_TIMELINE_COLUMNS)

    def sent(self, kind: str) -> list[float]:
        """Times of the local end's captured segments of one ``kind`` (``"keepalive probe"``,
        ``"retransmission"``, ``"data"``...), empty without a capture."""
        return [s["t"] for s in self.segments or () if s["from"] == "local" and s["kind"] == kind]

    def loss_probes(self) -> list[float]:
        """Times of the captured resends that were tail loss probes (RFC 8985 §7), not
        timeout retransmissions: a probe goes out before the RTO fires, so they are the first
        ``counters["TCPLossProbes"]`` resends.  Empty without a capture or that counter."""
        return self.sent("retransmission")[:max(0, int(self.counters.get("TCPLossProbes", 0)))]

    def segment_table(self):
        """The captured segments as a DataFrame (empty without a capture)."""
        import pandas as pd

        cols = ["t", "from", "kind", "flags", "seq", "ack", "length"]
        return pd.DataFrame(self.segments or [], columns=cols)[cols]

    def to_record(self) -> dict:
        """Plain JSON-able data; ``from_record`` rebuilds the result from it."""
        return {"method": self.method, "params": dict(self.params),
                "detected_after": self.detected_after, "error": self.error,
                "how": self.how, "timeline": [dict(r) for r in self.timeline_rows],
                "segments": self.segments, "events": self.events, "final_state": self.final_state,
                "predicted": self.predicted, "measured": self.measured, "counters": self.counters,
                "ports": list(self.ports)}

    @classmethod
    def from_record(cls, record: dict, arguments: dict | None = None) -> DeadPeerResult:
        """A result from ``to_record()`` data (e.g. loaded from JSON)."""
        data = dict(record)
        data["timeline_rows"] = [dict(r) for r in data.pop("timeline")]
        data["ports"] = tuple(data.get("ports", (0, 0)))
        return cls(**data)


_TIMELINE_COLUMNS = ["t", "state", "tr", "timer", "when_s", "retrnsmt", "timeout"]


def _how(method: str, p: dict, measured: dict) -> str:
    silent = "the peer was silenced with a drop-all socket filter"
    if method == "none":
        return f"Nothing set: an idle connection sends nothing, so nothing notices ({silent})."
    if method == "keepalive":
        return (f"Per socket: SO_KEEPALIVE=1, TCP_KEEPIDLE={p['keepalive_time']} s, "
                f"TCP_KEEPINTVL={p['keepalive_intvl']} s, TCP_KEEPCNT={p['keepalive_probes']} set "
                f"with setsockopt; no sysctl changed ({silent}).")
    if method == "user_timeout":
        return (f"Per socket: TCP_USER_TIMEOUT={p['user_timeout_ms']} ms with one byte left "
                f"unacknowledged; no sysctl changed ({silent}).")
    if method == "retransmissions":
        return (f"Per network namespace: net.ipv4.tcp_retries2={p['tcp_retries2']} set inside the "
                f"private lab (the host's value is untouched), one byte left unacknowledged ({silent}).")
    if method == "settimeout":
        return (f"Python's sock.settimeout({p['timeout']:g}): a per-call limit kept by Python; "
                f"recv() raised TimeoutError and the connection itself was untouched ({silent}).")
    if method == "node_idle":
        return (f"Node's socket.setTimeout({p['timeout_ms']}): a JavaScript inactivity timer that "
                f"only emits 'timeout'; the socket stays open ({silent}).")
    opts = ", ".join(f"{k}={measured[k]}" for k in ("SO_KEEPALIVE", "TCP_KEEPIDLE", "TCP_KEEPINTVL",
                                                      "TCP_KEEPCNT") if k in measured)
    return (f"Node's socket.setKeepAlive(true, {p['initial_delay_ms']}) set {opts or 'options not readable'} "
            f"on its socket (read back with pidfd_getfd + getsockopt) ({silent}).")


def _waiting(fn, method: str, p: dict, progress: bool) -> dict:
    """``fn()``, with a progress bar counting the seconds meanwhile when the run may watch
    longer than 2 s (the bar closes when the run ends, usually before its window does)."""
    from concurrent.futures import ThreadPoolExecutor

    from ..base.progress import MIN_SECONDS, wait_for

    seconds = p["timeout_ms"] / 1000 + 1.0 if method == "node_idle" else _window(method, p)
    if not progress or seconds <= MIN_SECONDS:
        return fn()
    with ThreadPoolExecutor(1) as pool:
        return wait_for(pool.submit(fn), seconds, f"watching ({method})")


def _check(method: str, **params: Any) -> None:
    _validate(method, params)


def _model(method: str, **params: Any) -> None:
    """Where nothing can run: no result, the note says why (``predict`` gives the model)."""
    return None


#: What some methods need beyond a lab or root, read by the ladder before anything runs.
RULES = (
    Rule({"method": ("retransmissions",)}, needs=(Need.LAB,),
         why="tcp_retries2 is a per-network-namespace setting that tcplearn never changes on this machine"),
    Rule({"method": ("node_idle", "node_keepalive")}, needs=(Need.NODE,), why="the local end is real Node"),
)


@experiment(notebook="06", title="a peer that vanishes silently: which timeout notices, and when",
            needs=[Need.KERNEL, Need.CAPTURE], check=_check, model=_model, rules=RULES,
            calls=[Call(("none",), {"duration": 3},
                        "a silent peer that nothing notices, watched 3 s in a private lab"),
                   Call(("keepalive",), {"keepalive_time": 2, "keepalive_intvl": 1, "keepalive_probes": 2},
                        "keepalive (2 s idle, 1 s interval, 2 probes) against a silent peer in a "
                        "private lab"),
                   Call(("user_timeout",), {"user_timeout_ms": 1500},
                        "TCP_USER_TIMEOUT 1500 ms with unacknowledged data, silent peer, private lab"),
                   Call(("retransmissions",), {"tcp_retries2": 3},
                        "tcp_retries2=3 in a private lab with unacknowledged data, silent peer"),
                   Call(("settimeout",), {"timeout": 1.0},
                        "Python's settimeout(1.0) and recv() against a silent peer in a private lab"),
                   Call(("node_idle",), {"timeout_ms": 1000},
                        "real Node's socket.setTimeout(1000) against a silent peer in a private lab")],
            notes={Where.LAB: "Ran in your private lab: the peer was silenced with a drop-all socket filter "
                              "and the segments were captured on the lab's loopback.",
                   Where.ROOT: "No private lab ({why}); ran on this machine as root, capturing its "
                               "loopback."},
            show="show_dead_peer")
def dead_peer(place: Place, method: str, *, progress: bool = True, **params: Any) -> DeadPeerResult:
    """Open a loopback connection, make the peer vanish silently, and watch the local end.

    ``method`` is one of ``METHODS``; its keyword parameters and defaults are in
    ``PARAMS`` (e.g. ``dead_peer("keepalive", keepalive_time=2, keepalive_intvl=1,
    keepalive_probes=2)``).  Bad names or values raise ``ValueError`` saying what is
    accepted; no run watches longer than ``MAX_WINDOW`` seconds.  Where it runs is the
    ladder's choice: a private lab (with capture), else this machine as root (the socket
    filter that silences the peer needs ``CAP_NET_ADMIN``).  ``"retransmissions"`` needs
    the lab: ``tcp_retries2`` is per namespace, and the host's is never changed; without a
    lab (and for the Node methods without Node) the recorded lab run is shown instead, under
    one line saying why.  ``progress`` shows a bar while a run watches longer than 2 s.
    """
    p = _validate(method, params)
    predicted = predict(method, **p)
    node = node_executable() if method.startswith("node_") else None  # the ladder checked it is there
    run, args = (run_node, (method, p, place.can_capture, node)) if node else (run_python, (method, p,
                                                                                           place.can_capture))
    with place.settings(**({"tcp_retries2": p["tcp_retries2"]} if method == "retransmissions" else {})):
        out = _waiting(lambda: place.call(run, *args), method, p, progress)
    if (method == "node_keepalive"
            and {"TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"} <= set(out["measured"])):
        m = out["measured"]
        predicted = {"detected_after": m["TCP_KEEPIDLE"] + m["TCP_KEEPCNT"] * m["TCP_KEEPINTVL"],
                     "probes": [m["TCP_KEEPIDLE"] + k * m["TCP_KEEPINTVL"] for k in range(m["TCP_KEEPCNT"])],
                     "from": "the options read back from Node's socket"}
    return DeadPeerResult(
        method=method, params=p, detected_after=out["detected_after"], error=out["error"],
        how=_how(method, p, out["measured"]),
        timeline_rows=out["timeline"], segments=out["segments"], events=out["events"],
        final_state=out["final_state"], predicted=predicted, measured=out["measured"],
        counters=out["counters"] if place.where is Where.LAB else {}, ports=tuple(out["ports"]),
    )
