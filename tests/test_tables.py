"""Every table a notebook shows reaches the learner whole (issue 23, item 16): pandas cuts a
cell at 50 characters, and the series' tables hold sentences the prose tells the learner to
read.  Tested in a real kernel, on real tables (recorded runs, so it holds off-line), in the
outputs JupyterLab renders and in a static HTML export."""

from __future__ import annotations

import html
import json
import shutil
import subprocess
import sys

import nbformat
import pytest

from tcplearn.base.experiment import REGISTRY
from tcplearn.experiments.timewait import os_defaults
from tcplearn.view.show import LONG_CELL, dead_peer_table

# The notebook: 02's table of systems, 01's close-wait leak (its "Linux differs" column) and
# 06's user-timeout run replayed from their recordings, and a frame a notebook cell makes itself
# with long row labels (as 03's socket options).  Each cell's last value is displayed by IPython.
CELLS = [
    "import tcplearn\nfrom tcplearn.base.experiment import REGISTRY\nfrom tcplearn.view.show import "
    "dead_peer_table\ndef replay(name, first):\n"
    "    exp = REGISTRY[name]\n"
    "    call = next(c for c in exp.calls if c.args[:1] == (first,))\n"
    "    return exp.replay(exp.arguments(*call.args, **call.kwargs), 'a recorded run, for the test').value",
    "tcplearn.os_defaults()",
    "replay('run_scenario', 'close-wait-leak').table()",
    "dead_peer_table(replay('dead_peer', 'user_timeout'))",
    "import pandas as pd\n"
    f"pd.DataFrame({{'value': [1, 2]}}, index=['{'a' * 70}', '{'b' * 70}'])",
]


def _long_texts() -> list[str]:
    """Every cell text longer than pandas' 50 characters in the tables the notebook shows."""
    def texts(frame):
        cells = [str(v) for v in frame.to_numpy().ravel()] + [str(i) for i in frame.index]
        return [t for t in cells if len(t) > 50]

    def replay(name, first):  # the notebook's recorded call that starts with ``first``
        exp = REGISTRY[name]
        call = next(c for c in exp.calls if c.args[:1] == (first,))
        return exp.replay(exp.arguments(*call.args, **call.kwargs), "test").value

    found = texts(os_defaults()) + texts(replay("run_scenario", "close-wait-leak").table())
    found += texts(dead_peer_table(replay("dead_peer", "user_timeout")))
    return found + ["a" * 70, "b" * 70]


EXECUTE = r"""
import json, sys
import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=120, kernel_name="python3").execute()
nbformat.write(nb, sys.argv[1])
body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
with open(sys.argv[2], "w") as f:
    f.write(body)
"""


def test_the_table_formatters_cut_no_cell():
    """What IPython is handed for a table (the quick check; the kernel's own below)."""
    from tcplearn.view.display import TABLES
    from tcplearn.view.show import table_html, table_text

    frame = os_defaults()
    longest = max(frame["source"], key=len)
    assert len(longest) > 100 and html.escape(longest, quote=False) in table_html(frame)

    class Printer:  # IPython's pretty printer, as far as table_text uses it
        def text(self, text):
            self.out = text

    printer = Printer()
    table_text(frame, printer, False)
    assert longest in printer.out
    assert {name for (_module, name) in TABLES} == {"DataFrame"}


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook above executed in a real kernel, and its static HTML export."""
    folder = tmp_path_factory.mktemp("tables")
    path, exported = folder / "tables.ipynb", folder / "tables.html"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nbformat.write(nb, path)
    # in a child process: a kernel's zmq context keeps descriptors open in the process that ran it
    out = subprocess.run([sys.executable, "-c", EXECUTE, str(path), str(exported)], capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    return nbformat.read(path, as_version=4), exported


@pytest.mark.slow
def test_no_table_cell_is_cut_in_jupyterlab_nor_in_a_static_export(executed):
    notebook, exported = executed
    shown = [o["data"] for c in notebook.cells[1:] for o in c.outputs
             if o.get("output_type") == "execute_result"]
    assert len(shown) == 4 and all("text/html" in d and "text/plain" in d for d in shown), \
        json.dumps(shown)[:2000]
    rendered = "\n".join(d["text/html"] for d in shown)
    plain = "\n".join(d["text/plain"] for d in shown)
    page = exported.read_text()
    long = _long_texts()
    # the three experiments' tables do hold sentences pandas would have cut (else this tests nothing)
    assert len(long) >= 8 and max(map(len, long)) > 100, long
    for text in long:
        assert html.escape(text, quote=False) in rendered, text   # what JupyterLab renders
        assert html.escape(text, quote=False) in page, text       # the static export
        assert text in plain, text                                # a terminal, a text export
    assert "..." not in rendered and "…" not in rendered
    # a long cell wraps, left-aligned, by its own inline style (no style sheet needed)
    style = "text-align: left; white-space: normal"
    wrapped = [t for t in long if f'style="{style}' in rendered.split(html.escape(t, quote=False))[0][-200:]]
    assert wrapped == long
    assert all(len(t) > LONG_CELL for t in long)


MEASURE = (r"""
import json, sys
from playwright.sync_api import sync_playwright
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=sys.argv[1])
    page = browser.new_page(viewport={"width": 900, "height": 1000})
    page.goto("file://" + sys.argv[2])
    print(json.dumps(page.evaluate('''() => [...document.querySelectorAll("table.dataframe")].map(t => {
        const area = t.closest(".jp-OutputArea-output");
        return {table: t.getBoundingClientRect().width, area: area.clientWidth, """
           r"""scroll: area.scrollWidth}; })''')))
    browser.close()
""")


@pytest.mark.slow
def test_every_table_fits_a_900_px_window(executed):
    """In a real Chromium, the static export at the 900 px the review used: no table is wider
    than its output area, so no cell hides beyond a horizontal scroll."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium); .ci/run installs it")
    pytest.importorskip("playwright", reason="playwright (Python) is not installed: pip install -e "
                                             "'.[browser]'")
    out = subprocess.run([sys.executable, "-c", MEASURE, chromium, str(executed[1])], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    tables = json.loads(out.stdout)
    assert len(tables) == 4
    for t in tables:
        assert t["table"] <= t["area"] + 1 and t["scroll"] <= t["area"] + 1, tables


def test_a_loads_counters_say_whose_they_are():
    """TcpExt counters count a whole network namespace: a lab's are the load's own, the
    machine's every program's (issue 23, item 29), and the line under a load says which."""
    from tcplearn.experiments.load import LoadResult
    from tcplearn.view.show import load_summary

    exp = REGISTRY["machine_load"]  # 05's Run live, recorded on the machine itself
    call = exp.calls[0]
    recorded = exp.replay(exp.arguments(*call.args, **call.kwargs), "test").value
    assert recorded.interference["counters_own"] is False
    assert "kernel counters (the machine's, every program's): TW +" in load_summary(recorded)
    in_a_lab = LoadResult(**{**vars(recorded), "interference": {**recorded.interference,
                                                                "counters_own": True}})
    assert "kernel counters (your lab's, this load's own): TW +" in load_summary(in_a_lab)
    # an older recording that does not say: no claim either way
    unknown = LoadResult(**{**vars(recorded), "interference": {}})
    assert "kernel counters: TW +" in load_summary(unknown)
