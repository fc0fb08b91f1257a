"""A peer that vanishes silently: real sockets, the real kernel, a real capture, real Node.

Every run here is a real loopback connection whose peer is made deaf by a drop-all socket
filter.  Timing tolerances: a segment or a detection may come ``0.1 s + 10 %`` later or
earlier than the settings predict (measured: kernel timers here fire 1-7 % late; keepalive
intervals come out 1.024 s for 1 s).  The nobody runs are started first and run alongside
the others (they only sleep in poll), which keeps the file under a minute.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time

import pytest

import tcplearn
from tcplearn import sysctl
from tcplearn.base.experiment import REGISTRY, Plan, Result, Where, node_executable
from tcplearn.experiments.dead_peer import (
    MAX_WINDOW,
    METHODS,
    DeadPeerResult,
    dead_peer,
    predict,
    retransmission_schedule,
)

from .conftest import can_drop_privileges, needs_linux, own_children, wait_for

pytestmark = needs_linux

HOST_NAMES = ("tcp_retries2", "tcp_keepalive_time", "tcp_keepalive_intvl", "tcp_keepalive_probes")
needs_node = pytest.mark.skipif(node_executable() is None, reason="Node.js is not installed here")


def close_to(measured: float, predicted: float) -> bool:
    return abs(measured - predicted) <= 0.1 + 0.1 * predicted


def needs_lab():
    ok, why = tcplearn.lab_available()
    if not ok:
        pytest.skip(why)


# ------------------------------------------------------------------ shared runs


@pytest.fixture(scope="module")
def host_before():
    return {n: sysctl.read(n) for n in HOST_NAMES}


@pytest.fixture(scope="module", autouse=True)
def nobody_run(host_before, request):
    """Start the nobody runs at once, in the background; ``nobody_result`` collects them."""
    ok, why = can_drop_privileges()
    if ok and not tcplearn.lab_available()[0]:
        ok, why = False, tcplearn.lab_available()[1]
    if not ok:
        yield {"skip": why}
        return
    env = request.getfixturevalue("nobody")
    out = tempfile.NamedTemporaryFile("w+", prefix="dead-peer-nobody-", delete=False)
    err = tempfile.NamedTemporaryFile("w+", prefix="dead-peer-nobody-", delete=False)
    with out, err:
        proc = subprocess.Popen(env.command(["dead_peer_checks.py"]), env=env.env, cwd=env.dir, stdout=out,
                                stderr=err,
                                stdin=subprocess.DEVNULL)
    state = {"proc": proc, "out": out.name, "err": err.name}
    yield state
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for path in (out.name, err.name):
        os.unlink(path)


@pytest.fixture(scope="module")
def nobody_result(nobody_run):
    if "skip" in nobody_run:
        pytest.skip(nobody_run["skip"])
    code = nobody_run["proc"].wait(timeout=120)
    with open(nobody_run["err"]) as f:
        stderr = f.read()
    assert code == 0, stderr[-3000:]
    with open(nobody_run["out"]) as f:
        return json.loads(f.read().strip().splitlines()[-1])


@pytest.fixture(scope="module")
def keepalive():
    needs_lab()
    return dead_peer("keepalive", keepalive_time=2, keepalive_intvl=1, keepalive_probes=2)


@pytest.fixture(scope="module")
def user_timeout():
    needs_lab()
    return dead_peer("user_timeout", user_timeout_ms=1500)


@pytest.fixture(scope="module")
def retransmissions():
    needs_lab()
    return dead_peer("retransmissions", tcp_retries2=3)


@pytest.fixture(scope="module")
def host_run():
    if not sysctl.is_root():
        pytest.skip("on the machine itself the socket filter needs root (CAP_NET_ADMIN)")
    # the ladder would choose the lab here: run the root rung as it runs where no lab can start
    return REGISTRY["dead_peer"].run_at(Plan(Where.ROOT, "a test asks for root", capture=True),
                                        "user_timeout",
                                        user_timeout_ms=1500)


# ------------------------------------------------------------------ parameters


@pytest.mark.parametrize(("method", "params", "message"), [
    ("ping", {}, "unknown method 'ping': expected one of none, keepalive"),
    ("keepalive", {"idle": 2}, "takes keepalive_time, keepalive_intvl, keepalive_probes; not idle"),
    ("keepalive", {"keepalive_time": 0}, "keepalive_time=0 refused: expected an int from 1 to 60"),
    ("keepalive", {"keepalive_time": 2.5}, "keepalive_time=2.5 refused: expected an int"),
    ("keepalive", {"keepalive_probes": True}, "keepalive_probes=True refused"),
    ("keepalive", {"keepalive_time": 50, "keepalive_intvl": 5, "keepalive_probes": 3},
     "= 65 s is over the 60 s limit"),
    ("user_timeout", {"user_timeout_ms": 0}, "user_timeout_ms=0 refused: expected an int from 1 to 60000"),
    ("user_timeout", {"user_timeout_ms": 90_000}, "user_timeout_ms=90000 refused"),
    ("retransmissions", {"tcp_retries2": 15}, "tcp_retries2=15 gives up only after about"),
    ("retransmissions", {"tcp_retries2": 15}, "budget of 924.6 s"),
    ("retransmissions", {"tcp_retries2": 0}, "tcp_retries2=0 refused: expected an int from 1 to 15"),
    ("none", {"duration": 61}, "duration=61 refused: expected a number from 0.1 to 60"),
    ("none", {"duration": float("nan")}, "duration=nan refused"),
    ("settimeout", {"timeout": "1"}, "timeout='1' refused: expected a number"),
    ("node_idle", {"timeout_ms": -5}, "timeout_ms=-5 refused"),
    ("node_keepalive", {"initial_delay_ms": 500}, "initial_delay_ms=500 refused: expected an int from 1000"),
])
def test_bad_parameters_give_clear_value_errors(method, params, message):
    started = time.monotonic()
    with pytest.raises(ValueError, match=None) as info:
        dead_peer(method, **params)
    assert message in str(info.value)
    assert time.monotonic() - started < 0.5  # refused before anything starts


def test_positional_params_are_refused():
    with pytest.raises(TypeError):
        dead_peer("keepalive", 2)  # type: ignore[misc]


def test_every_method_has_defaults_within_the_window():
    for method in METHODS:
        detected = predict(method)["detected_after"]
        assert detected is None or detected <= MAX_WINDOW


# ------------------------------------------------------------------ the model


def test_model_of_tcp_retries2():
    default = retransmission_schedule()
    assert default.budget == pytest.approx(924.6)  # 1023 * 0.2 s + 6 * 120 s
    three = retransmission_schedule(3)
    assert three.budget == pytest.approx(3.0)  # (2**4 - 1) * 0.2 s
    assert three.probe == pytest.approx(0.2)
    assert three.retransmissions == pytest.approx((0.4, 0.8, 1.6, 3.2))
    # 3.2 - 0.4 = 2.8 s < 3.0 s of budget: one more doubling is waited for
    assert three.gives_up_at == pytest.approx(6.4)
    gaps = [b - a for a, b in zip(default.retransmissions, default.retransmissions[1:], strict=False)]
    assert max(gaps) == pytest.approx(120.0)  # capped at TCP_RTO_MAX
    no_tlp = retransmission_schedule(3, tail_loss_probe=False)
    assert no_tlp.probe is None and no_tlp.retransmissions[0] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="rto_max=0.1 refused"):
        retransmission_schedule(3, rto_min=0.2, rto_max=0.1)
    with pytest.raises(ValueError, match="tcp_retries2='3' refused"):
        retransmission_schedule("3")  # type: ignore[arg-type]


# ------------------------------------------------------------------ the runs, in the lab


@pytest.mark.slow
def test_keepalive_detects_the_dead_peer_with_etimedout(keepalive):
    r = keepalive
    assert r.where == "lab" and r.error == "ETIMEDOUT"
    assert 3.5 <= r.detected_after <= 5.0
    assert r.final_state == "CLOSED"
    assert "TCP_KEEPIDLE=2 s" in r.how and "no sysctl changed" in r.how
    alive = r.timeline[r.timeline.state == "ESTABLISHED"]
    assert set(alive.timer) == {"keepalive"} and set(alive.tr) == {2}
    assert alive.timeout.max() == 2  # /proc's "timeout" column: unanswered probes
    assert alive.when_s.iloc[0] == pytest.approx(2.0, abs=0.15)


@pytest.mark.slow
def test_keepalive_probes_are_seen_in_the_capture_when_predicted(keepalive):
    probes = keepalive.sent("keepalive probe")
    assert len(probes) == 2
    for seen, expected in zip(probes, [2.0, 3.0], strict=True):
        assert close_to(seen, expected), (probes, keepalive.segment_table())
    # the end: the kernel's RST, sent as it gives up
    last = [s for s in keepalive.segments if s["from"] == "local"][-1]
    assert last["kind"] == "reset" and close_to(last["t"], keepalive.detected_after)
    assert keepalive.counters["TCPKeepAlive"] == 2


@pytest.mark.slow
def test_user_timeout_detects_with_etimedout(user_timeout):
    r = user_timeout
    assert r.error == "ETIMEDOUT" and 1.4 <= r.detected_after <= 3.0
    # measured: counted from the first RTO retransmission (0.4 s), not from the send
    assert close_to(r.detected_after, r.predicted["detected_after"])
    assert r.predicted["detected_after"] == pytest.approx(1.9)
    sent = r.sent("retransmission")
    assert len(sent) >= 3 and sent == sorted(sent)
    assert set(r.timeline[r.timeline.state == "ESTABLISHED"].timer) == {"retransmit"}


@pytest.mark.slow
def test_retransmissions_follow_the_model_and_give_up(retransmissions):
    r = retransmissions
    assert r.where == "lab" and r.error == "ETIMEDOUT"
    assert 4.0 <= r.detected_after <= 10.0
    model = retransmission_schedule(3)
    expected = [model.probe, *model.retransmissions]  # the tail loss probe, then the RTOs
    seen = r.sent("retransmission")
    assert len(seen) == len(expected), r.segment_table()
    for s, e in zip(seen, expected, strict=True):
        assert close_to(s, e), (seen, expected)
    assert close_to(r.detected_after, model.gives_up_at)
    assert r.counters["TCPLossProbes"] == 1 and r.counters["TCPTimeouts"] == 5
    assert r.timeline.retrnsmt.max() == 4  # icsk_retransmits: the probe is not counted
    assert "tcp_retries2=3 set inside the private lab" in r.how


@pytest.mark.slow
def test_none_notices_nothing_and_stays_established():
    needs_lab()
    r = dead_peer("none", duration=3)
    assert r.detected_after is None and r.error is None
    assert r.final_state == "ESTABLISHED"
    assert set(r.timeline.state) == {"ESTABLISHED"} and set(r.timeline.timer) == {"off"}
    assert r.timeline.t.iloc[-1] >= 3.0
    after_handshake = [s for s in r.segments if s["from"] == "local" and s["kind"] != "handshake"
                       and s["t"] > 0.01]
    assert after_handshake == []  # the local end sent nothing at all in 3 s


def test_settimeout_raises_yet_the_connection_is_established():
    needs_lab()
    r = dead_peer("settimeout", timeout=0.5)
    raised = [e for e in r.events if e["event"] == "recv() raised TimeoutError"]
    assert len(raised) == 1 and 0.45 <= raised[0]["t"] <= 0.9
    assert r.detected_after is None and r.error is None
    assert r.final_state == "ESTABLISHED"
    assert set(r.timeline.state) == {"ESTABLISHED"}


@pytest.mark.slow
def test_a_run_is_stored_as_json_and_replayed(keepalive):
    record = json.loads(json.dumps(keepalive.to_record()))
    again = DeadPeerResult.from_record(record)
    assert again.to_record() == record
    assert again.timeline.equals(keepalive.timeline)
    assert again.sent("keepalive probe") == keepalive.sent("keepalive probe")


# ------------------------------------------------------------------ no lab: as root


@pytest.mark.slow
def test_without_a_lab_root_runs_on_the_machine(host_run):
    r = host_run
    assert r.where == "root" and r.error == "ETIMEDOUT"
    assert 1.4 <= r.detected_after <= 3.0
    assert len(r.sent("retransmission")) >= 3  # captured on the machine's lo, as root
    assert r.counters == {}  # the machine's counters mix in everyone's traffic: not reported


# ------------------------------------------------------------------ real Node


@needs_node
@pytest.mark.slow
def test_node_set_timeout_fires_and_the_socket_stays_open():
    r = dead_peer("node_idle", timeout_ms=1000)
    timeouts = [e for e in r.events if e["event"] == "timeout"]
    assert len(timeouts) == 1 and 1.0 <= timeouts[0]["t"] <= 1.5
    assert timeouts[0]["readyState"] == "open" and timeouts[0]["destroyed"] is False
    assert timeouts[0]["kernel_state"] == "ESTABLISHED" and r.final_state == "ESTABLISHED"
    assert r.detected_after is None and r.error is None
    assert not any(e["event"] == "error" for e in r.events)


@needs_node
@pytest.mark.slow
def test_node_set_keep_alive_detects_when_its_own_settings_predict():
    r = dead_peer("node_keepalive", initial_delay_ms=1000)
    m = r.measured
    assert m["SO_KEEPALIVE"] == 1 and m["TCP_KEEPIDLE"] == 1  # ms turned into whole seconds
    # what Node sets by itself (facts N7), read back from its socket, not assumed
    assert (m["TCP_KEEPINTVL"], m["TCP_KEEPCNT"]) == (1, 10)
    assert r.error == "ETIMEDOUT" and r.final_state == "CLOSED"
    assert close_to(r.detected_after, r.predicted["detected_after"])
    assert r.predicted["detected_after"] == 11 and r.predicted["from"].startswith("the options read back")
    if r.segments is not None:
        probes = r.sent("keepalive probe")
        assert len(probes) == 10
        assert all(close_to(s, e) for s, e in zip(probes, r.predicted["probes"], strict=True))


# ------------------------------------------------------------------ as nobody


@pytest.mark.slow
def test_lab_runs_as_nobody(nobody_result):
    r = nobody_result
    assert r["uid"] == 65534
    runs = {k: DeadPeerResult.from_record(v) for k, v in r["runs"].items()}
    ka, ut, rt = runs["keepalive"], runs["user_timeout"], runs["retransmissions"]
    assert r["where"] == {"keepalive": "lab", "user_timeout": "lab", "retransmissions": "lab"}
    assert ka.error == ut.error == rt.error == "ETIMEDOUT"
    assert 3.5 <= ka.detected_after <= 5.0
    assert 1.4 <= ut.detected_after <= 3.0
    assert 4.0 <= rt.detected_after <= 10.0
    assert len(ka.sent("keepalive probe")) == 2
    assert len(rt.sent("retransmission")) == 5
    assert r["before"] == r["after"]
    # without a lab, nobody cannot silence a TCP peer: refused at once, with the reason
    assert r["can_silence_here"] is False
    assert "needs CAP_NET_ADMIN" in r["no_lab_error"] and "run in a private lab" in r["no_lab_error"]
    assert r["no_lab_seconds"] < 1.0


# ------------------------------------------------------------------ nothing changed, nothing left


def _children() -> list[int]:
    return [p.pid for p in own_children(recursive=False)]  # not the series in the background


def _node_clients() -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"dead_peer_client.js" in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.mark.slow
def test_host_settings_unchanged_and_nothing_left_behind(host_before, host_run, nobody_run):
    if "proc" in nobody_run:
        nobody_run["proc"].wait(timeout=120)
    assert {n: sysctl.read(n) for n in HOST_NAMES} == host_before
    assert host_before["tcp_retries2"] != 3
    wait_for(lambda: _children() == [], timeout=3, what="no child process left")
    assert _node_clients() == []
    local, peer = host_run.ports
    wait_for(lambda: not [s for s in tcplearn.sockets(port=peer) if local in (s.local_port, s.remote_port)],
             timeout=3, what="the host run's sockets to be gone")


# ------------------------------------------------------------------ notebook 06, its figure and display


def _recorded_runs() -> dict:
    """Every registered call replayed from its recording (nothing runs)."""
    exp = REGISTRY["dead_peer"]
    return {c.args[0]: exp.replay(exp.arguments(*c.args, **c.kwargs), "a test replays it") for c in exp.calls}


def test_notebook_06_makes_exactly_the_recorded_calls():
    import ast

    path = os.path.join(os.path.dirname(__file__), "..", "notebooks", "06-dead-peer.ipynb")
    with open(path) as f:
        cells = [cell for cell in json.load(f)["cells"] if cell["cell_type"] == "code"]
    calls = []
    for cell in cells:
        source = "".join(cell["source"])
        if source.startswith("# Under the hood"):  # plain socket code, with shell lines
            continue
        for node in ast.walk(ast.parse(source)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "dead_peer"):
                calls.append((tuple(ast.literal_eval(a) for a in node.args),
                              {k.arg: ast.literal_eval(k.value) for k in node.keywords}))
    registered = [(c.args, c.kwargs) for c in REGISTRY["dead_peer"].calls]
    assert sorted(map(repr, calls)) == sorted(map(repr, registered))
    assert len(calls) == len(registered) == 6


def test_without_a_lab_the_retransmission_run_is_the_recording_not_a_traceback(monkeypatch):
    import tcplearn.base.lab

    # the ladder decides before the body runs: tcp_retries2 needs a lab even as root
    monkeypatch.setattr(tcplearn.base.lab, "lab_available", lambda: (False, "no lab in this test"))
    monkeypatch.setattr(sysctl, "is_root", lambda: True)
    started = time.monotonic()
    r = tcplearn.dead_peer("retransmissions", tcp_retries2=3)
    assert r.where is Where.RECORDED and r.note.startswith("Live is impossible here (no lab in this test; "
                                                           "tcp_retries2 is a per-network")
    assert "\n" not in r.note and r.value.error == "ETIMEDOUT" and 4.0 <= r.value.detected_after <= 10.0
    assert time.monotonic() - started < 1.0
    plan = REGISTRY["dead_peer"].plan(REGISTRY["dead_peer"].arguments("keepalive"))
    assert plan.where is Where.ROOT  # the other methods are fine with root


def test_without_node_the_node_runs_are_the_recordings(monkeypatch):
    import importlib

    monkeypatch.setattr(importlib.import_module("tcplearn.base.experiment"), "node_executable", lambda: None)
    r = tcplearn.dead_peer("node_idle", timeout_ms=1000)
    assert r.where is Where.RECORDED and "(Node.js is not installed here)" in r.note
    timeouts = [e for e in r.value.events if e["event"] == "timeout"]
    assert len(timeouts) == 1 and timeouts[0]["kernel_state"] == "ESTABLISHED"
    unrecorded = tcplearn.dead_peer("node_idle", timeout_ms=700)
    assert unrecorded.value is None and "was not recorded" in unrecorded.note
    assert REGISTRY["dead_peer"].plan(REGISTRY["dead_peer"].arguments("none")).where is not Where.RECORDED


def test_recorded_runs_show_what_the_notebook_explains():
    runs = _recorded_runs()
    for r in runs.values():
        assert r.where is Where.RECORDED and r.value is not None
    ka, ut, rt = runs["keepalive"].value, runs["user_timeout"].value, runs["retransmissions"].value
    assert ka.error == ut.error == rt.error == "ETIMEDOUT"
    assert [close_to(t, e) for t, e in zip(ka.sent("keepalive probe"), [2, 3], strict=True)] == [True, True]
    assert close_to(ut.detected_after, 1.9) and ut.counters["TCPLossProbes"] == 1
    gaps = [b - a for a, b in zip(rt.sent("retransmission"), rt.sent("retransmission")[1:], strict=False)]
    assert all(1.8 <= b / a <= 2.2 for a, b in zip(gaps, gaps[1:], strict=False)), gaps  # backoff doubles
    for r in (ka, ut, rt):  # aborted: straight from ESTABLISHED to CLOSED, never a FIN or TIME-WAIT
        assert [row["state"] for row in r.timeline_rows][-1] == "CLOSED"
        assert set(row["state"] for row in r.timeline_rows) == {"ESTABLISHED", "CLOSED"}
        assert r.sent("fin") == []
    for method in ("none", "settimeout", "node_idle"):
        assert runs[method].value.detected_after is None and runs[method].value.final_state == "ESTABLISHED"
    assert [e["event"] for e in runs["settimeout"].value.events] == ["recv() raised TimeoutError"]


def test_timeline_figure_draws_every_run_as_captured():
    import matplotlib

    matplotlib.use("Agg")
    from tcplearn import plots

    runs = _recorded_runs()
    nothing = Result(None, Where.MODEL, "a one-line notice")
    fig = plots.dead_peer_timeline(list(runs.values()) + [nothing])  # a value-less result is left out
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [plots.dead_peer_lane(r.value) for r in reversed(list(runs.values()))]
    marks = {c.get_gid(): c.get_offsets() for c in ax.collections if c.get_gid()}
    ka, rt = runs["keepalive"].value, runs["retransmissions"].value
    ka_lane, rt_lane = plots.dead_peer_lane(ka), plots.dead_peer_lane(rt)
    probes = marks[f"segments:{ka_lane}:keepalive probe"][:, 0]
    assert list(probes) == pytest.approx(ka.sent("keepalive probe"))
    # the tail loss probe (TcpExt TCPLossProbes: the first resend) is drawn apart from the timeout
    # retransmissions
    assert rt.counters["TCPLossProbes"] == 1 and rt.loss_probes() == rt.sent("retransmission")[:1]
    assert list(marks[f"segments:{rt_lane}:tail loss probe"][:, 0]) == pytest.approx(rt.loss_probes())
    resent = marks[f"segments:{rt_lane}:retransmission"][:, 0]
    assert list(resent) == pytest.approx(rt.sent("retransmission")[1:])
    assert marks[f"gave-up:{rt_lane}"][0, 0] == pytest.approx(rt.detected_after)
    assert marks[f"predicted:{rt_lane}"][0, 0] == pytest.approx(retransmission_schedule(3).gives_up_at)
    gave_up = {gid.split(":", 1)[1] for gid in marks if gid.startswith("gave-up:")}
    noticing = ("keepalive", "user_timeout", "retransmissions")
    assert gave_up == {plots.dead_peer_lane(runs[m].value) for m in noticing}
    texts = {t.get_gid(): t.get_text() for t in ax.texts if t.get_gid()}
    still = texts[f"still:{plots.dead_peer_lane(runs['none'].value)}"]
    assert still.startswith("nothing noticed: still ESTABLISHED")
    assert "until the program closed it" in texts[f"still:{plots.dead_peer_lane(runs['node_idle'].value)}"]
    py_lane = plots.dead_peer_lane(runs["settimeout"].value)
    assert f"events:{py_lane}:recv() raised TimeoutError" in marks
    # every gap between resends is labelled (data -> probe -> first timeout retransmission -> ...),
    # and the last wait
    gaps = [float(t.get_text().strip("+ s")) for t in ax.texts if t.get_gid() == f"gap:{rt_lane}"]
    resends = [rt.sent("data")[0], *rt.sent("retransmission")]
    between = [round(b - a, 2) for a, b in zip(resends, resends[1:], strict=False)]
    assert gaps == pytest.approx(between, abs=0.006)
    # the timeout backoff doubles
    assert all(1.8 <= b / a <= 2.2 for a, b in zip(gaps[1:], gaps[2:], strict=False)), gaps
    assert texts[f"wait:{rt_lane}"] == f"last wait +{rt.detected_after - resends[-1]:.2f} s"
    # after destroy() Node's kernel still held the connection: FIN-WAIT-1, drawn hatched, not ESTABLISHED
    node_lane = plots.dead_peer_lane(runs["node_idle"].value)
    assert "FIN-WAIT-1" in texts[f"still:{node_lane}"]
    assert any(p.get_gid() == f"orphan:{node_lane}" for p in ax.patches)
    fin = runs["node_idle"].value.sent("fin")[0]
    alive = next(line for line in ax.lines if line.get_gid() == f"alive:{node_lane}")
    assert max(alive.get_xdata()) <= fin + 0.01
    with pytest.raises(ValueError, match="at least one run"):
        plots.dead_peer_timeline([])


def test_a_run_is_displayed_as_a_summary_and_a_table():
    from tcplearn.view import display, show

    assert display.shown()[("tcplearn.experiments.dead_peer", "DeadPeerResult")] == "show_dead_peer"
    runs = _recorded_runs()
    ka = runs["keepalive"].value
    table = show.dead_peer_table(ka)
    assert list(table["what"]) == ["sent: keepalive probe (ACK)", "sent: keepalive probe (ACK)",
                                   "sent: reset (RST,ACK)", "poll() reports an error: ETIMEDOUT"]
    text = show.dead_peer_summary(ka)
    assert text.startswith(f"**Noticed after {ka.detected_after:.2f} s: `ETIMEDOUT`**")
    assert "Kernel timer meanwhile (`/proc/net/tcp`): keepalive" in text and "unanswered probes: 2" in text
    assert "still ESTABLISHED" in show.dead_peer_summary(runs["none"].value)
    assert "until the program itself closed it" in show.dead_peer_summary(runs["node_idle"].value)
    assert show.dead_peer_table(runs["none"].value).empty
    rt_rows = list(show.dead_peer_table(runs["retransmissions"].value)["what"])
    assert rt_rows[2].startswith("sent: tail loss probe") and rt_rows[3] == "sent: retransmission (PSH,ACK)"
