"""Recorded Linux runs, and the fallback to them where live is impossible."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

import tcplearn  # noqa: E402
from tcplearn import traces  # noqa: E402
from tcplearn.timewait import sample_countdown, summarize  # noqa: E402


def test_shipped_traces_carry_their_kernel_and_settings():
    assert set(traces.names()) == {"time_wait_countdown", "plateau"}
    for name in traces.names():
        trace = traces.load(name)
        assert trace.meta["kernel"] and trace.meta["date"] and trace.meta["settings"]["tcp_fin_timeout"]
        assert len(trace.frame) > 10
    with pytest.raises(ValueError, match="no recorded trace 'nope'"):
        traces.load("nope")


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
    assert "psutil backend cannot see the kernel's timers" in line


def test_plateau_falls_back_to_the_recording_off_linux(monkeypatch):
    import tcplearn.load as load_module

    monkeypatch.setattr(load_module.sys, "platform", "darwin")
    run = load_module.watch_plateau(progress=False)
    assert run.note.startswith("Live is impossible here") and run.measured_peak() > 1000
    assert abs(run.measured_peak() - run.predicted_peak()) <= 0.1 * run.predicted_peak()
    fig = run.figure()
    assert {"measured:TIME_WAIT", "model:TIME_WAIT"} <= {line.get_gid() for line in fig.axes[0].get_lines()}
