"""TIME-WAIT and FIN-WAIT-2 timers, read live from the kernel.

Experiments are split into ``start_*`` (open and close sockets, keep what must stay
open) and ``sample`` (read the timers), so the caller can drive the sampling and show
progress, in this process or in a private lab's worker, where the held sockets live on
between calls.  ``TCPLEARN_FAST=1`` samples a shorter window; it never replaces a
measurement with a constant.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Callable

from ._util import loopback_listener
from .lab import runner
from .observe import TcpSocket, sockets
from .states import TcpState

__all__ = [
    "fast_mode", "start_time_wait", "start_orphaned_fin_wait_2", "start_half_closed",
    "deliver_peer_fin", "sample", "release", "sample_countdown", "measure_time_wait",
    "myth_test", "server_restart", "os_defaults", "kernel_hz", "timer_slack",
]

#: Sockets an experiment keeps open between calls, by experiment id (per process).
_held: dict[int, list[socket.socket]] = {}
_next_id = iter(range(1, 1 << 30))


def fast_mode() -> bool:
    """True when ``TCPLEARN_FAST`` is set (tests, quick runs): shorter sampling windows."""
    return os.environ.get("TCPLEARN_FAST", "") not in ("", "0")


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


def sample_countdown(seconds: float | None = None, interval: float | None = None, *,
                     lab=None, progress: bool = True):
    """Create a TIME-WAIT socket and read its kernel timer until it disappears, or for
    ``seconds`` (default: until it is gone; ``TCPLEARN_FAST``: 3 s).  Returns a DataFrame
    (t, state, timer, timer_remaining), one row per reading, every row read from the kernel.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from . import traces

    if lab is None and traces.why_not_live():
        # no kernel timers to read here (macOS, Windows, a psutil-only system): a recorded run
        trace = traces.load("time_wait_countdown")
        trace.frame.attrs["note"] = trace.note
        trace.frame.attrs["hz"] = trace.meta.get("hz")  # the recording kernel's, for the explanation
        return trace.frame
    if seconds is None:
        seconds = 3.0 if fast_mode() else 75.0
    if interval is None:
        interval = 0.5 if fast_mode() else 1.0
    if not 0 < seconds <= 300 or not 0.01 <= interval <= 60:
        raise ValueError(f"seconds must be in (0, 300] and interval in [0.01, 60]; got {seconds}, {interval}")
    run = runner(lab)
    exp = run(start_time_wait)
    rows = [dict(exp, t=0.0)]
    bar = tqdm(total=round(seconds), unit="s", desc="TIME-WAIT countdown", disable=not progress,
               leave=False)
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(min(interval, max(0.0, end - time.monotonic())))
            reading = run(sample, exp)
            rows.append(reading)
            bar.n = min(round(seconds), round(reading["t"]))
            bar.refresh()
            if reading["state"] == "CLOSED":
                break
    finally:
        bar.close()
        run(release, exp)
    frame = pd.DataFrame(rows)[["t", "state", "timer", "timer_remaining"]]
    return frame


def measure_time_wait(*, lab=None, progress: bool = True, limit: float = 130.0) -> float:
    """How long a TIME-WAIT socket lives on this kernel, measured: from the moment it is
    seen in TIME-WAIT until it is gone from the kernel's table (polled every 50 ms).
    About 60 s on Linux.  Waits the full time (with a progress bar) even in fast mode."""
    from tqdm.auto import tqdm

    run = runner(lab)
    exp = run(start_time_wait)
    if exp["state"] != "TIME_WAIT":
        run(release, exp)
        raise RuntimeError(f"expected a TIME-WAIT socket, the kernel shows {exp['state']}")
    t0 = time.monotonic()
    bar = tqdm(total=int(limit), unit="s", desc="waiting for TIME-WAIT to end", disable=not progress,
               leave=False)
    try:
        while time.monotonic() - t0 < limit:
            if run(sample, exp)["state"] == "CLOSED":
                return time.monotonic() - t0
            time.sleep(0.05)
            bar.n = int(time.monotonic() - t0)
            bar.refresh()
        raise RuntimeError(f"TIME-WAIT still present after {limit:g} s")
    finally:
        bar.close()
        run(release, exp)


def myth_test(fin_timeout: int = 5, *, progress: bool = True, watch: float | None = None):
    """Test "tcp_fin_timeout sets the TIME-WAIT timeout" against the kernel.

    In a private lab (or, as root without a lab, with ``sysctl.apply``, restored after),
    set ``tcp_fin_timeout`` to ``fin_timeout``, then create an orphaned FIN-WAIT-2 and a
    TIME-WAIT socket side by side and read both timers for ``watch`` seconds (default:
    ``fin_timeout + 2``; ``TCPLEARN_FAST``: 2 s).  Returns ``(DataFrame, where)`` with
    where ``"lab"`` or ``"host"``; raises ``LabUnavailable`` when neither is possible.
    """
    from . import sysctl
    from .lab import LabUnavailable, PrivateLab, lab_available

    if watch is None:
        watch = 2.0 if fast_mode() else fin_timeout + 2.0
    sysctl.validate("tcp_fin_timeout", fin_timeout)
    ok, why = lab_available()
    if ok:
        with PrivateLab() as lab:
            lab.sysctl(tcp_fin_timeout=fin_timeout)
            return _watch_both(runner(lab), watch, progress), "lab"
    if sysctl.is_root():
        with sysctl.apply(tcp_fin_timeout=fin_timeout):
            return _watch_both(runner(None), watch, progress), "host"
    raise LabUnavailable(f"{why}, and you are not root, so tcp_fin_timeout cannot be changed here")


LATE_FIN = "orphaned FIN-WAIT-2, then the peer's FIN"


def _watch_both(run, watch: float, progress: bool):
    import pandas as pd
    from tqdm.auto import tqdm

    experiments = {"orphaned FIN-WAIT-2": run(start_orphaned_fin_wait_2),
                   "TIME-WAIT": run(start_time_wait),
                   LATE_FIN: run(start_orphaned_fin_wait_2)}
    fin_at, fin_sent = min(2.0, watch / 2), False
    rows = []
    bar = tqdm(total=round(watch), unit="s", desc="watching the timers", disable=not progress, leave=False)
    try:
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
            bar.n = min(round(watch), round(time.monotonic() - t0))
            bar.refresh()
    finally:
        bar.close()
        for exp in experiments.values():
            run(release, exp)
    return pd.DataFrame(rows)


def server_restart(reuse_address: bool, *, old_server_reuse_address: bool | None = None) -> dict:
    """A server closes its connection first, so TIME-WAIT sits on its own port; then a new
    server tries to ``bind`` that port.  ``reuse_address`` says whether the new server sets
    ``SO_REUSEADDR``; ``old_server_reuse_address`` whether the old one did (default: the
    same, as when one program restarts).  Returns ``{"bound": bool, "error": str,
    "time_wait_on_port": int}``, all measured.  Where the kernel's table cannot be read
    (macOS, Windows), the same call recorded on Linux, with its ``"recorded"`` note."""
    from . import traces

    old_reuse = reuse_address if old_server_reuse_address is None else old_server_reuse_address
    if traces.why_not_live():
        trace, result = traces.recorded_run("time_wait_experiments", "server_restart", bool(reuse_address),
                                            old_server_reuse_address=bool(old_reuse))
        return {**result, "recorded": trace.note}
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
    its source.  A DataFrame; ``confirmed`` is False where the value could not be checked
    against a primary source."""
    import pandas as pd

    rows = [
        ("RFC 9293 (nominal)", "2 min", "4 min (2 × MSL)", "", True,
         "RFC 9293 §3.4.2 (MSL taken to be 2 minutes), §3.6.1 (MUST-13: 2×MSL)"),
        ("Linux", "—", "60 s", "none: compiled in", True,
         "include/net/tcp.h: #define TCP_TIMEWAIT_LEN (60*HZ); measured in this notebook"),
        ("macOS (XNU)", "15 s", "30 s (2 × MSL)", "net.inet.tcp.msl (ms)", True,
         "xnu bsd/netinet/tcp_timer.h TCPTV_MSL; tcp_input.c add_to_time_wait(tp, 2 * tcp_msl)"),
        ("FreeBSD", "30 s", "60 s (2 × MSL)", "net.inet.tcp.msl (ms)", True,
         "sys/netinet/tcp_timer.h TCPTV_MSL (30*hz)"),
        ("Windows", "—", "120 s (Windows Server 2003 docs; 240 s on Windows 2000)",
         "TcpTimedWaitDelay (registry, s)", False,
         "Microsoft TechNet cc757512 (WS2003), cc938217 (Win2000); today's default unconfirmed"),
        ("Solaris", "—", "60 s", "tcp_time_wait_interval (ms)", True,
         "Oracle Solaris Tunable Parameters Reference Manual"),
    ]
    return pd.DataFrame(rows, columns=["system", "MSL", "TIME-WAIT", "tunable", "confirmed", "source"])



# ---------------------------------------------------------------- the kernel's timer wheel

# kernel/time/timer.c: a timer 60 s away lands on a wheel level whose slots are this many
# milliseconds wide, and fires at the end of its slot (never early).  Keyed by CONFIG_HZ.
_WHEEL_SLOT_MS_AT_60S = {100: 5120, 250: 2048, 300: 1706, 1000: 4096}


def kernel_hz() -> int | None:
    """The kernel's CONFIG_HZ, from its build configuration where readable, else ``None``."""
    import gzip
    import platform

    for path, opener in ((f"/boot/config-{platform.release()}", open), ("/proc/config.gz", gzip.open)):
        try:
            with opener(path, "rt") as f:
                for line in f:
                    if line.startswith("CONFIG_HZ="):
                        return int(line.split("=", 1)[1])
        except (OSError, ValueError):
            continue
    return None


def timer_slack() -> tuple[int | None, float]:
    """``(CONFIG_HZ, seconds)``: how much later than 60 s a TIME-WAIT socket may leave,
    because the timer wheel rounds a 60 s timer up to the end of its slot.  With HZ
    unknown, the widest slot of the common HZ values (5.12 s)."""
    hz = kernel_hz()
    return hz, _WHEEL_SLOT_MS_AT_60S.get(hz, max(_WHEEL_SLOT_MS_AT_60S.values())) / 1000


# ---------------------------------------------------------------- notebook helpers


def summarize(countdown) -> str:
    """One sentence on a ``sample_countdown`` frame: the measured length when the socket
    disappeared while sampled, else how far the kernel's timer fell while it was watched."""
    prefix = countdown.attrs.get("note", "")
    if prefix:
        return prefix + " " + _summarize(countdown)
    return _summarize(countdown)


def _summarize(countdown) -> str:
    tw = countdown[countdown["state"] == "TIME_WAIT"]
    gone = countdown[countdown["state"] == "CLOSED"]
    start = tw["timer_remaining"].iloc[0]
    if len(gone):
        last, first_gone = tw["t"].iloc[-1], gone["t"].iloc[0]
        hz, slack = timer_slack()
        if "hz" in countdown.attrs:  # a recorded run: its own kernel's timer wheel
            hz = countdown.attrs["hz"]
            slack = _WHEEL_SLOT_MS_AT_60S.get(hz, max(_WHEEL_SLOT_MS_AT_60S.values())) / 1000
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


def fin_wait_2_vs_setting():
    """The orphaned FIN-WAIT-2 timer beside ``tcp_fin_timeout`` (read from /proc/sys, no root
    needed), and a half-closed FIN-WAIT-2 that a process still holds.  A DataFrame, or where
    the kernel's timers cannot be read (macOS, Windows) a ``Recorded`` one from Linux."""
    import pandas as pd

    from . import sysctl, traces

    if traces.why_not_live():
        trace, rows = traces.recorded_run("time_wait_experiments", "fin_wait_2_vs_setting")
        return traces.Recorded(pd.DataFrame(rows), trace.note)

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
    """What ``myth_demo`` found: the readings, where they were taken, and the figure."""

    def __init__(self, table, where: str, fin_timeout: int, note: str = ""):
        self.table, self.where, self.fin_timeout, self.note = table, where, fin_timeout, note

    def first_timers(self) -> dict[str, float]:
        """Each socket's first timer reading, in seconds."""
        first = self.table[self.table["t"] == self.table["t"].min()]
        return dict(zip(first["socket"], first["timer_remaining"], strict=True))

    def _ipython_display_(self) -> None:
        from IPython.display import Markdown, display

        from .plots import myth_plot

        place = {"lab": "in your private lab (the machine's own setting is untouched)",
                 "host": "on this machine as root (the original value has been restored)",
                 "recorded": "in a private lab, in the recorded run"}[self.where]
        if self.note:
            display(Markdown(f"> {self.note}"))
        display(Markdown(f"> `tcp_fin_timeout` was set to {self.fin_timeout} s {place}."))
        display(myth_plot(self.table, self.fin_timeout))


def myth_demo(fin_timeout: int = 5):
    """``myth_test`` for a notebook: a ``MythResult`` to display.  Where ``tcp_fin_timeout``
    cannot be changed (no lab, no root) or the timers cannot be read (macOS, Windows), the
    run recorded on Linux with the same ``fin_timeout`` (its note says so), or a one-line
    notice when that value was not recorded."""
    import pandas as pd

    from . import traces
    from .lab import LabUnavailable
    from .tour import Notice

    why = traces.why_not_live()
    if not why:
        try:
            table, where = myth_test(fin_timeout)
            return MythResult(table, where, fin_timeout)
        except LabUnavailable as exc:
            why = str(exc)
    trace, rows = traces.recorded_run("time_wait_experiments", "myth_demo", fin_timeout=fin_timeout)
    if rows is None:
        return Notice(f"{why}, and no run with tcp_fin_timeout={fin_timeout} was recorded "
                      "(myth_demo() replays the recorded fin_timeout=5).")
    return MythResult(pd.DataFrame(rows), "recorded", fin_timeout, traces.note(trace, why))
