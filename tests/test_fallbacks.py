"""Where nothing can run live (macOS, Windows, no /proc), every experiment of the series
falls back to a run recorded on Linux and says so in one line; nothing crashes.

Two ways in: forcing the psutil backend (what a Windows learner has: connections without
the kernel's timers) in this process, and running every notebook in a kernel made to look
like a Mac (tests/simulated/macos.py)."""

import json
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import nbformat  # noqa: E402
import pytest  # noqa: E402

from tcplearn.base import kernel  # noqa: E402
from tcplearn.base.experiment import Result, Where  # noqa: E402
from tcplearn.base.states import TcpState  # noqa: E402
from tcplearn.experiments import close, knobs, load, plateau, start_here, timewait  # noqa: E402
from tcplearn.view import widgets  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RECORDED = "Live is impossible here"


@pytest.fixture
def no_live(monkeypatch):
    """The psutil backend: sockets and states, but not the kernel's table with timers."""
    monkeypatch.setenv("TCPLEARN_BACKEND", "psutil")
    why = kernel.why_not_live()
    assert why == "the psutil backend cannot see the kernel's whole TCP table and its timers"
    return why


def test_live_is_possible_here_and_impossible_off_linux(monkeypatch):
    assert kernel.why_not_live() == ""
    monkeypatch.setattr(sys, "platform", "darwin")
    assert kernel.why_not_live() == "macOS has no Linux TCP table with timers"
    monkeypatch.setattr(sys, "platform", "win32")
    assert kernel.why_not_live() == "Windows has no Linux TCP table with timers"


def test_close_scenarios_replay_the_lab_recording(no_live):
    for name in close.SCENARIOS:
        run = close.run_scenario(name)
        assert run.where == "recorded" and run.note.startswith(RECORDED) and no_live in run.note
        assert f"the '{name}' scenario in a private lab" in run.note
        frame = run.table()
        linux = name == "close-wait-leak"  # Linux's orphan timer: RFC 9293 predicts FIN-WAIT-2 for ever
        assert frame["matches"].all() != linux, f"{name}: the recorded kernel states must be RFC 9293's"
        assert len(close.check_history(run.history)) == linux
        flags = [seg.flags for step in run.segments_by_step for seg in step]
        assert flags, f"{name}: captured segments were recorded"
    fin = close.run_scenario("client-closes-first")
    assert fin.history[-1].states == (TcpState.TIME_WAIT, TcpState.CLOSED)
    assert sum("FIN" in seg.flags for step in fin.segments_by_step for seg in step) == 2
    assert any("RST" in seg.flags for step in close.run_scenario("abort").segments_by_step for seg in step)
    simultaneous = close.run_scenario("simultaneous")
    assert simultaneous.history[-1].states == (TcpState.TIME_WAIT, TcpState.TIME_WAIT)


def test_time_wait_experiments_replay(no_live):
    fw2 = timewait.fin_wait_2_vs_setting()
    assert isinstance(fw2, Result) and fw2.where is Where.RECORDED and fw2.note.startswith(RECORDED)
    orphan = fw2.value.iloc[0]
    assert (orphan["state"] == "FIN_WAIT_2"
            and abs(orphan["timer starts at (s)"] - orphan["tcp_fin_timeout (s)"]) < 1)

    myth = timewait.myth_demo(fin_timeout=5)
    assert myth.where == "recorded" and myth.note.startswith(RECORDED)
    first = myth.first_timers()
    assert first["orphaned FIN-WAIT-2"] <= 5 and first["TIME-WAIT"] >= 59, \
        "the myth is refuted by the recording"
    unrecorded = timewait.myth_demo(fin_timeout=7)
    assert unrecorded.value is None and unrecorded.where is Where.MODEL
    assert "myth_demo(fin_timeout=7, watch=None) was not recorded" in unrecorded.note
    assert "recorded: myth_demo(fin_timeout=5)" in unrecorded.note

    restarts = {(new, old): timewait.server_restart(new, old_server_reuse_address=old)
                for new in (False, True) for old in (None, False, True)}
    for result in restarts.values():
        assert result.note.startswith(RECORDED) and result["time_wait_on_port"] == 1
    assert [k for k, r in restarts.items() if r["bound"]] == [(True, None), (True, True)]


def test_capture_replays_one_recorded_connection(no_live):
    shown = start_here.capture_one_connection()
    assert shown.where is Where.RECORDED and no_live in shown.note
    flags = list(shown.value.table()["flags"])
    assert flags[:3] == ["SYN", "SYN,ACK", "ACK"] and sum("FIN" in f for f in flags) == 2


def test_loads_replay_the_recorded_runs(no_live):
    sides = plateau.time_wait_by_closer()
    assert sides.note.startswith(RECORDED)
    assert (sides["client closes first"]["client side"] >= 290
            and sides["client closes first"]["server side"] == 0)
    assert (sides["server closes first"]["server side"] >= 290
            and sides["server closes first"]["client side"] == 0)

    results = [knobs.with_settings(sysctls, progress=False, **kwargs)
               for sysctls, kwargs in knobs.NOTEBOOK_LOADS]
    for result in results:
        assert isinstance(result.value, load.LoadResult) and result.note.startswith(RECORDED)
    no_reuse, reuse, bind_first, capped = results
    # the note names the lab's settings once, and the machine's only for the others
    assert "tcp_tw_reuse=0" in no_reuse.note and "tcp_tw_reuse=2" not in no_reuse.note
    assert "other kernel settings: tcp_fin_timeout=" in no_reuse.note
    assert no_reuse.errors.get("EADDRNOTAVAIL", 0) > 0 and no_reuse.connections <= 200
    assert reuse.errors == {} and reuse.connections >= 390
    assert bind_first.errors.get("EADDRINUSE", 0) > 0
    assert capped.netstat_delta()["TCPTimeWaitOverflow"] > 0 and capped.samples["TIME_WAIT"].max() <= 100

    unrecorded = knobs.with_settings({"tcp_tw_reuse": 0}, rate=10, duration=1, progress=False)
    assert (unrecorded.value is None and unrecorded.where is Where.MODEL
            and "was not recorded" in unrecorded.note)


def test_playground_shows_the_recorded_run(no_live):
    play = widgets.sysctl_playground()
    assert play.run_button.description == "Show the recorded run" and play.apply_toggle.disabled
    last = play.run_live()
    assert last["recorded"].startswith(RECORDED)
    gids = {line.get_gid() for line in last["figure"].axes[0].get_lines()}
    assert {"model:TIME_WAIT", "measured:TIME_WAIT"} <= gids


def test_doctor_says_what_is_recorded(no_live):
    from tcplearn import doctor

    plan = {part: how for part, how, _ in doctor().live}
    assert plan["01 the four-way close and its variants, with captured segments"] == "recorded"
    assert plan["04 TIME-WAIT during and after a steady load, beside the model"] == "recorded"


def test_tcplearn_imports_without_posix_only_modules():
    """Windows has no fcntl or resource: every tcplearn module must still import."""
    code = ("import sys, pkgutil, importlib\n"
            "sys.modules['fcntl'] = sys.modules['resource'] = None\n"
            "import tcplearn\n"
            "for m in pkgutil.walk_packages(tcplearn.__path__, 'tcplearn.'):\n"
            "    if m.name != 'tcplearn.__main__': importlib.import_module(m.name)\n"
            "print('imported')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "imported", out.stderr[-2000:]


# How many one-line "recorded run" notes each notebook must show on a Mac.
EXPECTED_RECORDED = {
    "00-start-here": 2,
    "01-four-way-close": 8,
    "02-time-wait-and-2msl": 15,
    "03-timeouts-python-vs-node": 1,
    "04-state-counts-under-load": 8,
    "05-sysctl-playground": 0,
    "06-dead-peer": 6,
}


def _texts(nb) -> list[str]:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            out.append(o.get("text", "") + data.get("text/markdown", "") + data.get("text/plain", ""))
    return out


def test_every_notebook_runs_on_a_simulated_mac(series_in_background):
    """The series on a simulated Mac (started with the session, tests/conftest.py): each
    notebook ok, and each kernel experiment replayed under its one-line note."""
    run, saved, names = series_in_background["mac"]
    assert [n.removesuffix(".ipynb") for n in names] == list(EXPECTED_RECORDED)
    result = run.result(timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == dict.fromkeys(names, "ok")
    for name in names:
        texts = _texts(nbformat.read(saved / name, as_version=4))
        doctor = texts[0] if name.startswith("00") else ""
        assert "macOS" in doctor or not name.startswith("00"), "the kernel looked like a Mac"
        notes = [t for t in texts if RECORDED in t]
        count = sum(t.count(RECORDED) for t in notes)
        assert count == EXPECTED_RECORDED[name.removesuffix(".ipynb")], f"{name}: {notes}"
        assert all("macOS" in t or "psutil" in t for t in notes), f"{name}: each note says why"
        assert not any("not recorded" in t for t in texts), f"{name}: a notebook call lacks its recording"
