"""TIME-WAIT and FIN-WAIT-2 timers, read live from the kernel.

Experiments are split into ``start_*`` (open and close sockets, keep what must stay
open) and ``sample`` (read the timers), so the caller can drive the sampling and show
progress, in this process or in a private lab's worker, where the held sockets live on
between calls.  ``TCPLEARN_FAST=1`` samples a shorter window; it never replaces a
measurement with a constant.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable

from ..base import sysctl
from ..base.experiment import Call, Need, Place, Where, experiment
from ..base.kernel import fast_mode, timer_slack, wheel_slot
from ..base.observe import TcpSocket, sockets
from ..base.progress import progress as bar_for
from ..base.states import TcpState
from ..base.util import loopback_listener

__all__ = [
    "start_time_wait", "start_orphaned_fin_wait_2", "start_half_closed",
    "deliver_peer_fin", "sample", "release", "sample_countdown", "measure_time_wait",
    "myth_demo", "MythResult", "server_restart", "os_defaults", "summarize",
    "fin_wait_2_vs_setting", "fin_arrives_later",
]

#: Sockets an experiment keeps open between calls, by experiment id (per process).
_held: dict[int, list[socket.socket]] = {}
_next_id = iter(range(1, 1 << 30))


def _pair() -> tuple[socket.socket, socket.socket, socket.socket]:
    lst = loopback_listener()
    try:
        client = socket.create_connection(lst.getsockname())
        server, _ = lst.accept()
    except BaseException:
        lst.close()
        raise
    return lst, client, server


def _wait_for(pred: Callable[[], object], timeout: float = 3.0) -> object:
    deadline = time.monotonic() + timeout
    value = pred()
    while not value and time.monotonic() < deadline:
        time.sleep(0.005)
        value = pred()
    return value


def _row(client_port: int, server_port: int) -> TcpSocket | None:
    for s in sockets(port=server_port):
        if s.local_port == client_port and s.remote_port == server_port:
            return s
    return None


def _start(closer: str, keep_server: bool, shutdown_only: bool = False) -> dict:
    lst, client, server = _pair()
    ports = {"client_port": client.getsockname()[1], "server_port": lst.getsockname()[1]}
    lst.close()
    if shutdown_only:
        client.shutdown(socket.SHUT_WR)   # FIN sent, the fd stays open: not orphaned
    else:
        client.close()
    want = TcpState.FIN_WAIT_2
    _wait_for(lambda: (r := _row(**ports)) is not None and r.state is want)
    held = [server] if keep_server else []
    if shutdown_only:
        held.append(client)
    if closer == "both" and not keep_server:
        server.close()
        _wait_for(lambda: (r := _row(**ports)) is not None and r.state is TcpState.TIME_WAIT)
    ident = next(_next_id)
    _held[ident] = held
    first = _row(**ports)
    return {"id": ident, **ports, "started": time.time(),
            "state": first.state.name if first else "CLOSED",
            "timer": first.timer if first else "off",
            "timer_remaining": first.timer_remaining if first else None}


def start_time_wait() -> dict:
    """Open a loopback connection and close it actively (client first, then server): the
    client's end enters TIME-WAIT.  Returns the ports and its first reading."""
    return _start("both", keep_server=False)


def start_orphaned_fin_wait_2() -> dict:
    """The client closes and the server never does: the client's end is an *orphaned*
    FIN-WAIT-2 (no process holds it), on the ``tcp_fin_timeout`` timer.  The server's
    socket is held open until ``release``."""
    return _start("client", keep_server=True)


def start_half_closed() -> dict:
    """The client only half-closes (``shutdown(SHUT_WR)``, fd still open): a FIN-WAIT-2
    that a process still holds, which has no FIN-WAIT-2 timer."""
    return _start("client", keep_server=True, shutdown_only=True)


def deliver_peer_fin(experiment: dict) -> dict:
    """Close the held server socket: its FIN reaches the client's FIN-WAIT-2 end, which
    moves to TIME-WAIT with a fresh timer.  Returns the new reading."""
    for sock in _held.get(experiment["id"], []):
        if sock.getsockname()[1] == experiment["server_port"]:
            sock.close()
    _held[experiment["id"]] = [s for s in _held.get(experiment["id"], []) if s.fileno() != -1]
    ports = {k: experiment[k] for k in ("client_port", "server_port")}
    _wait_for(lambda: (r := _row(**ports)) is not None and r.state is TcpState.TIME_WAIT)
    return sample(experiment)


def sample(experiment: dict) -> dict:
    """One reading of the experiment's client end: seconds since it started, its state
    (``"CLOSED"`` once gone) and the kernel's timer."""
    row = _row(experiment["client_port"], experiment["server_port"])
    return {"t": time.time() - experiment["started"],
            "state": row.state.name if row else "CLOSED",
            "timer": row.timer if row else "off",
            "timer_remaining": row.timer_remaining if row else None}


def release(experiment: dict | None = None) -> None:
    """Close the sockets an experiment held (all experiments' when ``None``)."""
    for ident in [experiment["id"]] if experiment else list(_held):
        for sock in _held.pop(ident, []):
            sock.close()


# ---------------------------------------------------------------- driving from the caller


def _check_countdown(seconds: float | None = None, interval: float | None = None) -> None:
    if seconds is not None and not 0 < seconds <= 300:
        raise ValueError(f"seconds must be in (0, 300]; got {seconds!r}")
    if interval is not None and not 0.01 <= interval <= 60:
        raise ValueError(f"interval must be in [0.01, 60]; got {interval!r}")


def _frame_from(rows, arguments=None):
    import pandas as pd

    return pd.DataFrame(rows)


def _rows(frame) -> list[dict]:
    import json

    return json.loads(frame.to_json(orient="records", double_precision=4))


def _countdown_from(record, arguments=None):
    frame = _frame_from(record["rows"])
    frame.attrs["hz"] = record["hz"]  # the recording kernel's, for the explanation
    return frame


def _countdown_to(frame) -> dict:
    from ..base.kernel import kernel_hz

    return {"rows": _rows(frame), "hz": kernel_hz()}


@experiment(notebook="02", title="one TIME-WAIT socket's kernel timer, read until it leaves",
            needs=[Need.KERNEL], check=_check_countdown, concurrent=True,
            calls=[Call((), {}, "one TIME-WAIT socket's kernel timer, read every second until it "
                                         "left the table")],
            to_record=_countdown_to, from_record=_countdown_from)
def sample_countdown(place: Place, seconds: float | None = None, interval: float | None = None, *,
                     progress: bool = True):
    """Create a TIME-WAIT socket and read its kernel timer until it disappears, or for
    ``seconds`` (default: 75 s, until it is gone; ``TCPLEARN_FAST``: 3 s).  Returns a DataFrame
    (t, state, timer, timer_remaining), one row per reading, every row read from the kernel.
    Where the kernel's timers cannot be read, the recorded whole countdown is replayed
    whatever ``seconds`` says."""
    import pandas as pd

    if seconds is None:
        seconds = 3.0 if fast_mode() else 75.0
    if interval is None:
        interval = 0.5 if fast_mode() else 1.0
    run = place.call
    exp = run(start_time_wait)
    rows = [dict(exp, t=0.0)]
    try:
        with bar_for(seconds, "TIME-WAIT countdown", enabled=progress) as bar:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                time.sleep(min(interval, max(0.0, end - time.monotonic())))
                reading = run(sample, exp)
                rows.append(reading)
                bar.to(reading["t"])
                if reading["state"] == "CLOSED":
                    break
    finally:
        run(release, exp)
    return pd.DataFrame(rows)[["t", "state", "timer", "timer_remaining"]]


def _check_length(*, limit: float = 130.0) -> None:
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not 61 <= limit <= 600:
        raise ValueError(f"limit={limit!r}: expected seconds from 61 to 600 (Linux's TIME-WAIT lasts about "
                         "60 s)")


@experiment(notebook="02", title="one TIME-WAIT socket's whole life, timed until it leaves the table",
            needs=[Need.KERNEL], check=_check_length, concurrent=True,
            calls=[Call((), {}, "one TIME-WAIT socket, timed from TIME-WAIT until it left the table")])
def measure_time_wait(place: Place, *, progress: bool = True, limit: float = 130.0) -> float:
    """How long a TIME-WAIT socket lives on this kernel, in seconds, measured: from the
    moment it is seen in TIME-WAIT until it is gone from the kernel's table (polled every
    50 ms).  About 60 s on Linux.  Waits the full time (with a progress bar) even in fast
    mode; ``limit`` is when it gives up."""
    run = place.call
    exp = run(start_time_wait)
    if exp["state"] != "TIME_WAIT":
        run(release, exp)
        raise RuntimeError(f"expected a TIME-WAIT socket, the kernel shows {exp['state']}")
    t0 = time.monotonic()
    try:
        with bar_for(limit, "waiting for TIME-WAIT to end", enabled=progress) as bar:
            while time.monotonic() - t0 < limit:
                if run(sample, exp)["state"] == "CLOSED":
                    return time.monotonic() - t0
                time.sleep(0.05)
                bar.to(time.monotonic() - t0)
        raise RuntimeError(f"TIME-WAIT still present after {limit:g} s")
    finally:
        run(release, exp)


LATE_FIN = "orphaned FIN-WAIT-2, then the peer's FIN"


def _watch_both(run, watch: float, progress: bool):
    import pandas as pd

    experiments = {"orphaned FIN-WAIT-2": run(start_orphaned_fin_wait_2),
                   "TIME-WAIT": run(start_time_wait),
                   LATE_FIN: run(start_orphaned_fin_wait_2)}
    fin_at, fin_sent = min(2.0, watch / 2), False
    rows = []
    try:
        with bar_for(watch, "watching the timers", enabled=progress) as bar:
            t0 = time.monotonic()
            while True:
                now = time.monotonic() - t0
                if not fin_sent and now >= fin_at:
                    run(deliver_peer_fin, experiments[LATE_FIN])
                    fin_sent = True
                    now = time.monotonic() - t0
                for name, exp in experiments.items():
                    reading = run(sample, exp)
                    rows.append({"socket": name, "t": round(now, 2), "state": reading["state"],
                                 "timer_remaining": reading["timer_remaining"]})
                if now >= watch:
                    break
                time.sleep(0.5)
                bar.to(time.monotonic() - t0)
    finally:
        for exp in experiments.values():
            run(release, exp)
    return pd.DataFrame(rows)


@experiment(notebook="02", title="a server restarted on its port while its TIME-WAIT remains",
            needs=[Need.KERNEL],
            calls=[Call((new,), {"old_server_reuse_address": old},
                        "a server restarted on its port while its TIME-WAIT remains (SO_REUSEADDR: new "
                        f"server {'on' if new else 'off'}, old server "
                        f"{'on' if (new if old is None else old) else 'off'})")
                   for new in (False, True) for old in (None, False, True)])
def server_restart(place: Place, reuse_address: bool, *,
                   old_server_reuse_address: bool | None = None) -> dict:
    """A server closes its connection first, so TIME-WAIT sits on its own port; then a new
    server tries to ``bind`` that port.  ``reuse_address`` says whether the new server sets
    ``SO_REUSEADDR``; ``old_server_reuse_address`` whether the old one did (default: the
    same, as when one program restarts).  Returns ``{"bound": bool, "error": str,
    "time_wait_on_port": int}``, all measured."""
    old_reuse = reuse_address if old_server_reuse_address is None else old_server_reuse_address
    lst = loopback_listener(reuse_address=old_reuse)
    client = server = None
    try:
        port = lst.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        server, _ = lst.accept()
        client_port = client.getsockname()[1]
        server.close()                # the server closes first: TIME-WAIT will be on its port
        _wait_for(lambda: (r := _row(client_port, port)) is not None and r.state is TcpState.CLOSE_WAIT)
        client.close()
        lst.close()                   # the old server is gone; only its TIME-WAIT remains
        _wait_for(lambda: any(s.state is TcpState.TIME_WAIT and s.local_port == port
                              for s in sockets(port=port)))
        tw = sum(1 for s in sockets(port=port) if s.state is TcpState.TIME_WAIT and s.local_port == port)
        with socket.socket() as fresh:
            if reuse_address:
                fresh.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                fresh.bind(("127.0.0.1", port))
                fresh.listen()
            except OSError as exc:
                name = errno.errorcode.get(exc.errno, str(exc.errno))
                return {"bound": False, "error": f"{name}: {exc.strerror}", "time_wait_on_port": tw}
        return {"bound": True, "error": "", "time_wait_on_port": tw}
    finally:
        for sock in (lst, client, server):
            if sock is not None:
                sock.close()


def os_defaults():
    """TIME-WAIT and MSL defaults on Linux, macOS, FreeBSD, Windows (and the RFC), each with
    its source.  A DataFrame; ``confirmed`` is False where the value, or part of its
    derivation, could not be checked against a current primary source (the source column
    says which part)."""
    import pandas as pd

    rows = [
        ("RFC 9293 (nominal)", "2 min", "4 min (2 × MSL)", "", True,
         "RFC 9293 §3.4.2 (MSL taken to be 2 minutes), §3.6.1 (MUST-13: 2×MSL)"),
        ("Linux", "—", "60 s", "none: compiled in", True,
         "include/net/tcp.h: #define TCP_TIMEWAIT_LEN (60*HZ); measured in this notebook"),
        ("macOS (XNU)", "15 s", "30 s (2 × MSL)", "net.inet.tcp.msl (ms)", False,
         "xnu bsd/netinet/tcp_timer.h TCPTV_MSL (15*TCP_RETRANSHZ); tcp_input.c add_to_time_wait(tp, 2 * "
         "tcp_msl). Partly: TCP_RETRANSHZ = 1000/s (tcp_var.h) was not re-read"),
        ("FreeBSD", "30 s", "60 s (2 × MSL)", "net.inet.tcp.msl (ms)", False,
         "sys/netinet/tcp_timer.h TCPTV_MSL. Partly: the stored source is a 1995 revision (30*PR_SLOWHZ, "
         "also 30 s); the modern form (30*hz) was seen only in a FreeBSD-derived excerpt"),
        ("Windows", "—", "120 s (Windows Server 2003 docs; 240 s on Windows 2000)",
         "TcpTimedWaitDelay (registry, s)", False,
         "Microsoft TechNet cc757512 (WS2003), cc938217 (Win2000); today's default unconfirmed"),
        ("Solaris", "—", "60 s", "tcp_time_wait_interval (ms)", True,
         "Oracle Solaris Tunable Parameters Reference Manual"),
    ]
    return pd.DataFrame(rows, columns=["system", "MSL", "TIME-WAIT", "tunable", "confirmed", "source"])



# ---------------------------------------------------------------- notebook helpers


def summarize(countdown) -> str:
    """One sentence on ``sample_countdown``'s result: the measured length when the socket
    disappeared while sampled, else how far the kernel's timer fell while it was watched;
    a recorded run's note comes first."""
    frame = getattr(countdown, "value", countdown)
    prefix = countdown.note if getattr(countdown, "where", None) is Where.RECORDED else ""
    return f"{prefix} {_summarize(frame)}" if prefix else _summarize(frame)


def _summarize(countdown) -> str:
    tw = countdown[countdown["state"] == "TIME_WAIT"]
    gone = countdown[countdown["state"] == "CLOSED"]
    start = tw["timer_remaining"].iloc[0]
    if len(gone):
        last, first_gone = tw["t"].iloc[-1], gone["t"].iloc[0]
        hz, slack = timer_slack()
        if "hz" in countdown.attrs:  # a recorded run: its own kernel's timer wheel
            hz = countdown.attrs["hz"]
            slack = wheel_slot(hz)
        grid = f"CONFIG_HZ={hz}" if hz else "an unknown HZ"
        return (f"Measured: the kernel's timer started at {start:.2f} s, and the socket left the table "
                f"between {last:.1f} s and {first_gone:.1f} s after it entered TIME-WAIT. (This kernel, "
                f"with {grid}, fires a 60 s timer at the end of a {slack:g} s slot, so anything from "
                f"60 to {60 + slack:.2f} s is TCP_TIMEWAIT_LEN at work.)")
    span = tw["t"].iloc[-1] - tw["t"].iloc[0]
    fell = start - tw["timer_remaining"].iloc[-1]
    return (f"Sampled {span:.1f} s of the countdown (a short window, as in fast mode): the kernel's timer "
            f"started at {start:.2f} s and fell by {fell:.2f} s in {span:.1f} s. The socket was still "
            "there when sampling stopped, so its full length was not measured in this run.")


@experiment(notebook="02", title="an orphaned and a half-closed FIN-WAIT-2 beside tcp_fin_timeout",
            needs=[Need.KERNEL],
            calls=[Call((), {}, "an orphaned and a half-closed FIN-WAIT-2, their kernel timers beside "
                                "tcp_fin_timeout")],
            to_record=_rows, from_record=_frame_from)
def fin_wait_2_vs_setting(place: Place):
    """The orphaned FIN-WAIT-2 timer beside ``tcp_fin_timeout`` (read from /proc/sys, no root
    needed), and a half-closed FIN-WAIT-2 that a process still holds.  A DataFrame."""
    import pandas as pd

    setting = sysctl.read("tcp_fin_timeout")
    rows = []
    for name, start in (("orphaned FIN-WAIT-2 (client called close())", start_orphaned_fin_wait_2),
                        ("half-closed FIN-WAIT-2 (shutdown(SHUT_WR), fd still open)", start_half_closed)):
        exp = start()
        try:
            rows.append({"socket": name, "state": exp["state"], "kernel timer": exp["timer"],
                         "timer starts at (s)": exp["timer_remaining"] if exp["timer"] != "off" else None,
                         "tcp_fin_timeout (s)": setting})
        finally:
            release(exp)
    return pd.DataFrame(rows)


def fin_arrives_later(pause: float = 1.0):
    """An orphaned FIN-WAIT-2 whose peer closes after ``pause`` seconds: its timer before the
    peer's FIN, and after, when the socket has moved to TIME-WAIT.  A DataFrame."""
    import pandas as pd

    if not 0 <= pause <= 10:
        raise ValueError(f"pause must be 0-10 s, got {pause!r}")
    exp = start_orphaned_fin_wait_2()
    try:
        time.sleep(pause)  # let the FIN-WAIT-2 timer run down a little, visibly
        before = sample(exp)
        after = deliver_peer_fin(exp)
    finally:
        release(exp)
    return pd.DataFrame([{"moment": "before the peer's FIN", **before},
                         {"moment": "right after the peer's FIN", **after}])[
        ["moment", "state", "timer", "timer_remaining"]]


class MythResult:
    """What ``myth_demo`` found: the timer readings (``table``) under ``fin_timeout``."""

    def __init__(self, table, fin_timeout: int):
        self.table, self.fin_timeout = table, fin_timeout

    def first_timers(self) -> dict[str, float]:
        """Each socket's first timer reading, in seconds."""
        first = self.table[self.table["t"] == self.table["t"].min()]
        return dict(zip(first["socket"], first["timer_remaining"], strict=True))


def _check_myth(fin_timeout: int = 5, *, watch: float | None = None) -> None:
    sysctl.validate("tcp_fin_timeout", fin_timeout)
    if watch is not None and not 0 < watch <= 130:
        raise ValueError(f"watch must be in (0, 130] seconds; got {watch!r}")


@experiment(
    notebook="02", title="the tcp_fin_timeout myth: FIN-WAIT-2 and TIME-WAIT timers side by side",
    needs=[Need.KERNEL, Need.SETTINGS], check=_check_myth,
    calls=[Call((), {"fin_timeout": 5}, "tcp_fin_timeout=5 in a private lab; an orphaned FIN-WAIT-2, a "
                     "TIME-WAIT "
                     "and an orphaned FIN-WAIT-2 whose peer closes at 2 s, their kernel timers read every "
                     "half second")],
    to_record=lambda r: _rows(r.table),
    from_record=lambda rows, arguments: MythResult(_frame_from(rows), arguments["fin_timeout"]),
    notes={Where.LAB: "`tcp_fin_timeout` was set to {fin_timeout} s in your private lab (the machine's own "
                      "setting is untouched).",
           Where.ROOT: "No private lab ({why}): `tcp_fin_timeout` was set to {fin_timeout} s on this machine "
                       "as root (the original value has been restored)."},
            show="show_myth")
def myth_demo(place: Place, fin_timeout: int = 5, *, progress: bool = True,
              watch: float | None = None) -> MythResult:
    """Test "tcp_fin_timeout sets the TIME-WAIT timeout" against the kernel: set
    ``tcp_fin_timeout`` to ``fin_timeout`` (in a private lab, or as root restored after),
    create an orphaned FIN-WAIT-2, a TIME-WAIT socket and an orphaned FIN-WAIT-2 whose peer
    closes later, side by side, and read their timers for ``watch`` seconds (default:
    ``fin_timeout + 2``; ``TCPLEARN_FAST``: 2 s).  A ``MythResult``."""
    if watch is None:
        watch = 2.0 if fast_mode() else fin_timeout + 2.0
    with place.settings(tcp_fin_timeout=fin_timeout):
        return MythResult(_watch_both(place.call, watch, progress), fin_timeout)
