"""Recorded Linux runs, and the fallback to them where live is impossible."""

import matplotlib

matplotlib.use("Agg")

import json  # noqa: E402
import platform  # noqa: E402

import pytest  # noqa: E402

import tcplearn  # noqa: E402
from tcplearn import traces  # noqa: E402
from tcplearn.timewait import sample_countdown, summarize  # noqa: E402


def test_shipped_traces_carry_their_kernel_and_settings():
    assert set(traces.names()) == set(traces.TRACES)
    for name in traces.names():
        trace = traces.load(name)
        assert trace.meta["kernel"] and trace.meta["date"] and trace.meta["settings"]["tcp_fin_timeout"]
        assert len(trace.frame) > 10 or trace.runs
        for run in trace.runs.values():
            assert run["what"] and run["result"] is not None
    with pytest.raises(ValueError, match="no recorded trace 'nope'"):
        traces.load("nope")


def test_a_call_is_found_whatever_its_spelling():
    assert traces.key("f", 1, rate=300, duration=1, progress=True) == traces.key("f", 1.0, duration=1.0, rate=300)
    assert traces.key("f", (40000, 40199)) == traces.key("f", [40000, 40199]) != traces.key("f", True)
    with pytest.raises(TypeError, match="not <object"):
        traces.key("f", object())


def test_the_recorder_reproduces_every_recorded_call(tmp_path):
    """The single runs, recorded afresh here, hold the same calls as the shipped traces,
    so the recorder cannot drift from what the notebooks replay."""
    ok, why = tcplearn.lab_available()
    if not ok:
        pytest.skip(f"recording needs a private lab: {why}")
    traces._record_single_runs(tmp_path)
    for path in sorted(tmp_path.glob("*.json")):
        fresh = json.loads(path.read_text())
        assert fresh["runs"].keys() == traces.load(path.stem).runs.keys(), path.name
        assert fresh["meta"]["kernel"] == platform.release()


def test_recorded_countdown_is_a_whole_time_wait():
    frame = traces.load("time_wait_countdown").frame
    tw = frame[frame["state"] == "TIME_WAIT"]
    assert 58 <= tw["timer_remaining"].iloc[0] <= 60 and (frame["state"] == "CLOSED").any()
    assert 59 <= frame[frame["state"] == "CLOSED"]["t"].iloc[0] <= 66


def test_countdown_falls_back_to_the_recording_without_kernel_timers(monkeypatch):
    monkeypatch.setenv("TCPLEARN_BACKEND", "psutil")  # the no-/proc backend: no timers
    assert not tcplearn.backend().live_timers
    frame = sample_countdown(progress=False)
    line = summarize(frame)
    assert line.startswith("Live is impossible here") and "recorded run" in line and "Measured:" in line
    assert "psutil backend cannot see the kernel's whole TCP table and its timers" in line


def test_plateau_falls_back_to_the_recording_off_linux(monkeypatch):
    import tcplearn.load as load_module

    monkeypatch.setattr(load_module.sys, "platform", "darwin")
    run = load_module.watch_plateau(progress=False)
    assert run.note.startswith("Live is impossible here") and run.measured_peak() > 1000
    assert abs(run.measured_peak() - run.predicted_peak()) <= 0.1 * run.predicted_peak()
    fig = run.figure()
    assert {"measured:TIME_WAIT", "model:TIME_WAIT"} <= {line.get_gid() for line in fig.axes[0].get_lines()}
