"""The structure the code promises: layers without import cycles, one registry that every
experiment is in, the public API importable, the series shipped in the wheel."""

import importlib.util
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import tcplearn
from tcplearn import traces
from tcplearn.base import kernel, recordings
from tcplearn.base.experiment import REGISTRY, Need, Where

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tcplearn"


def _load_graph_tool():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "docs" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GRAPH = _load_graph_tool()
import_graph = GRAPH.import_graph
_cycle = GRAPH.find_cycle


def test_no_module_imports_a_module_that_imports_it_back():
    assert _cycle(import_graph()) is None, " -> ".join(_cycle(import_graph()))


def test_the_architecture_page_shows_the_graph_the_code_has():
    text = (ROOT / "docs" / "architecture.md").read_text()
    assert GRAPH.mermaid() in text, "refresh it: python docs/import_graph.py --write"


def test_the_layers_point_down():
    """base imports nothing above it; experiments never import the view."""
    for module, edges in import_graph().items():
        if module.startswith("tcplearn.base"):
            assert all(e.startswith("tcplearn.base") for e in edges), (module, edges)
        if module.startswith("tcplearn.experiments"):
            assert not any(e.startswith("tcplearn.view") for e in edges), (module, edges)


def test_the_promised_names_import_from_tcplearn():
    for name in ("ConnectionPair", "TrickleServer", "run_load", "LoadResult", "sample_states",
                 "watch_plateau",
                 "run_scenario", "with_settings", "myth_demo", "sample_countdown", "capture_one_connection",
                 "first_look", "lab_side_by_side", "doctor", "PrivateLab", "count_states", "plots",
                 "sysctl_playground"):
        assert getattr(tcplearn, name) is not None, name
        assert name in tcplearn.__all__, name


def test_import_stays_light():
    """``import tcplearn`` loads no plotting or widget library: the view comes on first use."""
    out = subprocess.run([sys.executable, "-c", "import sys, tcplearn; "
                          "print(sorted(m for m in ('matplotlib', 'ipywidgets', 'IPython') if m in "
                          "sys.modules))"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_every_experiment_that_may_replay_has_every_notebook_call_recorded():
    """None can be forgotten: every registered experiment that needs something of the machine
    (its kernel's table, changed settings, capture) falls back to a recording, and each of its
    notebook calls is there.  An experiment that needs nothing (notebook 03's clients run
    wherever Python runs) never replays, so it records nothing."""
    for exp in REGISTRY.values():
        if not exp.needs & {Need.KERNEL, Need.SETTINGS, Need.CAPTURE}:
            assert exp.plan().where is Where.LIVE, exp.name
            continue
        assert exp.calls, f"{exp.name} needs the machine but records no call"
        assert exp.name in recordings.names(), f"{exp.name} has no recording"
        for c in exp.calls:
            run = recordings.find(exp.name, exp.name, exp.arguments(*c.args, **c.kwargs))
            assert run is not None, f"{exp.name}{c.args}{c.kwargs} is not recorded"
            value = (exp.from_record(run.result, exp.arguments(*c.args, **c.kwargs)) if exp.from_record
                     else run.result)
            assert value is not None
    assert {e.name for e in traces.recordable()} == set(recordings.names())


def test_every_experiment_appears_in_doctors_table():
    rows = tcplearn.doctor().live
    titles = [part for part, _, _ in rows]
    for exp in REGISTRY.values():
        assert f"{exp.notebook} {exp.title}" in titles, exp.name
    # an experiment whose calls take different rungs lists each ("live / lab")
    assert {part for _, how, _ in rows for part in how.split(" / ")} <= {w.value for w in Where}


def test_a_call_the_notebooks_do_not_make_gets_one_line_not_a_traceback(monkeypatch):
    monkeypatch.setenv("TCPLEARN_BACKEND", "psutil")
    result = tcplearn.with_settings({"tcp_tw_reuse": 0}, rate=10, duration=1, progress=False)
    assert result.value is None and result.where is Where.MODEL
    assert "was not recorded" in result.note and "\n" not in result.note


def test_bad_arguments_are_refused_before_anything_runs():
    with pytest.raises(ValueError, match="unknown scenario 'teardown'"):
        tcplearn.run_scenario("teardown")
    with pytest.raises(TypeError):
        tcplearn.run_scenario()


def test_the_wheel_carries_the_series(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w",
                          str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "deprecat" not in (out.stdout + out.stderr).lower(), \
        "setuptools warns about the project's metadata"
    (wheel,) = tmp_path.glob("tcplearn-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
    assert shipped and all(f"tcplearn/series/{n}" in names for n in [*shipped, "glossary.md"]), sorted(names)
    assert any(n.startswith("tcplearn/recordings/") for n in names)


def test_notebooks_command_copies_the_series_and_keeps_edits(tmp_path):
    dest = tmp_path / "series"
    out = subprocess.run([sys.executable, "-m", "tcplearn", "notebooks", str(dest)], capture_output=True,
                         text=True, timeout=60)
    shipped = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
    assert out.returncode == 0 and sorted(p.name for p in dest.glob("*.ipynb")) == shipped, out.stderr
    assert "jupyter lab" in out.stdout and (dest / "glossary.md").exists()
    edited = dest / shipped[0]
    edited.write_text(edited.read_text() + " ")
    again = subprocess.run([sys.executable, "-m", "tcplearn", "notebooks", str(dest)], capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 1 and shipped[0] in again.stderr and edited.read_text().endswith(" ")
    forced = subprocess.run([sys.executable, "-m", "tcplearn", "notebooks", str(dest), "--overwrite"],
                            capture_output=True, text=True, timeout=60)
    assert forced.returncode == 0 and not edited.read_text().endswith(" ")


def test_a_rule_decides_the_rung_before_the_body_runs(monkeypatch):
    """Needs per call are data: a call that a Rule sends to a lab replays (or gets the notice)
    where no lab can start, and its body never runs; other calls of the same experiment run
    live.  A throwaway experiment, removed from the registry afterwards."""
    import tcplearn.base.lab
    from tcplearn.base.experiment import Call, Need, Rule, experiment

    ran: list = []
    try:
        @experiment(notebook="99", title="a throwaway", needs=[Need.KERNEL],
                    rules=[Rule({"mode": ("deep",)}, needs=(Need.LAB,), why="deep needs a lab")],
                    calls=[Call(("deep",), {}, "never recorded: the test checks the notice")])
        def throwaway(place, mode: str = "shallow"):
            ran.append((mode, place.where))
            return mode

        if kernel.why_not_live():
            pytest.skip(kernel.why_not_live())
        monkeypatch.setattr(tcplearn.base.lab, "lab_available", lambda: (False, "no lab in this test"))
        assert throwaway("shallow").value == "shallow" and ran == [("shallow", Where.LIVE)]
        deep = throwaway("deep")
        assert deep.where is Where.MODEL and deep.value is None and ran == [("shallow", Where.LIVE)]
        assert "no lab in this test; deep needs a lab" in deep.note.lower() and "not recorded" in deep.note
        assert throwaway.plan(throwaway.arguments("deep")).where is Where.RECORDED
        assert throwaway.plan(throwaway.arguments("shallow")).where is Where.LIVE
    finally:
        REGISTRY.pop("throwaway", None)


@dataclass
class ThrowawayValue:
    """The value a throwaway experiment returns (defined here, outside tcplearn)."""

    mode: str


def test_registering_an_experiment_is_all_it_takes(monkeypatch, tmp_path):
    """One registration reaches every place a new experiment must appear: the package's
    exports (the experiment and the class it returns), the display (its ``show``), doctor's
    table (planned per call), the recorder's list, and a recording it writes and replays.
    A throwaway experiment whose value is a tcplearn class, removed afterwards."""
    import tcplearn.view.display as display
    from tcplearn.base.experiment import Call, experiment

    # a class of tcplearn's own
    monkeypatch.setattr(ThrowawayValue, "__module__", "tcplearn.throwaway_values")
    try:
        @experiment(notebook="99", title="a throwaway registered by a test", needs=[Need.KERNEL],
                    calls=[Call((), {"mode": "deep"}, "a throwaway call, recorded by the test")],
                    to_record=lambda value: {"mode": value.mode},
                    from_record=lambda data, arguments: ThrowawayValue(data["mode"]),
                    show="tcplearn.view.why:show_old_duplicate")
        def throwaway(place, mode: str = "shallow") -> ThrowawayValue:
            return ThrowawayValue(mode)

        assert tcplearn.throwaway is throwaway and tcplearn.ThrowawayValue is ThrowawayValue
        assert "lab" in str(throwaway.__signature__) and "place" not in str(throwaway.__signature__)
        assert (display.shown()[("tcplearn.throwaway_values", "ThrowawayValue")]
                == "tcplearn.view.why:show_old_duplicate")
        assert "99 a throwaway registered by a test" in [part for part, _, _ in tcplearn.doctor().live]
        assert throwaway in traces.recordable()
        if kernel.why_not_live():
            pytest.skip(kernel.why_not_live())
        path = traces.record_experiment(throwaway, tmp_path)
        monkeypatch.setattr(recordings, "_folder", lambda: tmp_path)  # the store, holding only its recording
        monkeypatch.setenv("TCPLEARN_BACKEND", "psutil")  # no kernel timers: the ladder replays
        replayed = throwaway(mode="deep")
        assert path.exists() and replayed.where is Where.RECORDED and replayed.value == ThrowawayValue("deep")
        assert "a throwaway call, recorded by the test" in replayed.note
    finally:
        REGISTRY.pop("throwaway", None)
