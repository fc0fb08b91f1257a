"""Recorded Linux runs, and the fallback to them where live is impossible."""

import matplotlib

matplotlib.use("Agg")

import json  # noqa: E402
import platform  # noqa: E402

import pytest  # noqa: E402

import tcplearn  # noqa: E402
from tcplearn import traces  # noqa: E402
from tcplearn.base import recordings  # noqa: E402
from tcplearn.base.experiment import REGISTRY  # noqa: E402
from tcplearn.experiments.timewait import sample_countdown, summarize  # noqa: E402
from tcplearn.view.show import plateau_figure  # noqa: E402


def test_shipped_recordings_carry_their_kernel_and_settings():
    assert set(recordings.names()) == {exp.name for exp in traces.recordable()}
    for name in recordings.names():
        recording = recordings.load(name)
        meta = recording.meta
        assert meta["kernel"] and meta["date"] and meta["settings"]["tcp_fin_timeout"]
        assert recording.runs
        for run in recording.runs.values():
            assert run["what"] and run["result"] is not None
    with pytest.raises(ValueError, match="no recording 'nope'"):
        recordings.load("nope")


def test_a_call_is_found_whatever_its_spelling():
    exp = REGISTRY["watch_plateau"]
    key = recordings.key
    assert key("f", exp.arguments(rate=200, duration=1, progress=True)) == key("f", exp.arguments(200.0, 1.0))
    assert key("f", exp.arguments()) == key("f", exp.arguments(rate=200))  # defaults filled in
    assert key("f", {"a": (40000, 40199)}) == key("f", {"a": [40000, 40199]}) != key("f", {"a": True})
    with pytest.raises(TypeError, match="not <object"):
        key("f", {"a": object()})


def test_the_recorder_writes_exactly_the_calls_the_notebooks_replay(tmp_path):
    """The recorder cannot drift from what the notebooks replay: every recordable experiment's
    recording holds exactly the calls it registers, and the recorder, run afresh here on one
    experiment of each kind (a lab capture, a lab setting, a live run on this machine), writes
    those same calls.  (The full recording is ``python -m tcplearn.traces record``: minutes.)"""
    for exp in traces.recordable():
        wanted = {recordings.key(exp.name, exp.arguments(*c.args, **c.kwargs)) for c in exp.calls}
        assert set(recordings.load(exp.name).runs) == wanted, exp.name
    ok, why = tcplearn.lab_available()
    if not ok:
        pytest.skip(f"recording needs a private lab: {why}")
    for name in ("capture_one_connection", "lab_side_by_side", "server_restart"):
        path = traces.record_experiment(REGISTRY[name], tmp_path)
        fresh = json.loads(path.read_text())
        assert fresh["runs"].keys() == recordings.load(path.stem).runs.keys(), path.name
        assert fresh["meta"]["kernel"] == platform.release()


def test_recorded_countdown_is_a_whole_time_wait():
    exp = REGISTRY["sample_countdown"]
    frame = exp.replay(exp.arguments(), "test").value
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
    import sys

    import tcplearn.experiments.plateau as plateau_module

    monkeypatch.setattr(sys, "platform", "darwin")
    run = plateau_module.watch_plateau(progress=False)
    assert run.note.startswith("Live is impossible here") and run.measured_peak() > 1000
    assert abs(run.measured_peak() - run.predicted_peak()) <= 0.1 * run.predicted_peak()
    fig = plateau_figure(run.value)
    assert {"measured:TIME_WAIT", "model:TIME_WAIT"} <= {line.get_gid() for line in fig.axes[0].get_lines()}
