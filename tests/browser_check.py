"""Drive JupyterLab in a real browser: open notebook 05, run all cells, move a slider,
run a port-limited load with the Run live button, look at it in a 900 px window, save the
notebook and open it again.

    python tests/browser_check.py NOTEBOOK_DIR SCREENSHOT CHROMIUM

Starts JupyterLab on 127.0.0.1 with a random token (its app exposed to the page so the
"run all cells" command can be called) and the series' own settings (``dev.py``'s
``lab_settings_args``, what ``dev.py lab`` uses), drives it with Playwright for Python
using the given Chromium, and prints one JSON line: {"ok": bool, ...details}.  Always
stops the browser and the server.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import dev  # noqa: E402 - the repository's dev.py: the settings `dev.py lab` starts JupyterLab with

NOTEBOOK = "05-sysctl-playground.ipynb"
#: Notebook 05's exercise 3, set in the kernel (the sliders' values) before the real button is clicked.
PORT_LIMITED = """pg = [v for v in Out.values() if type(v).__name__ == "Playground"][-1]
pg.controls["tcp_tw_reuse"].value = 0
pg.controls["ip_local_port_range"].value = (40000, 40199)
pg.controls["rate"].value = 100
pg.controls["duration"].value = 4
pg.apply_toggle.value = True
"""
AGREEMENT = re.compile(r"peak of (\d+), reached by ([\d.]+) s; the model for the settings it ran under: "
                       r"(\d+), by ([\d.]+) s")
#: What a 900 px window must show whole: every readout inside the page and not cut, and the
#: button's and checkbox's labels not shortened with an ellipsis.
LAYOUT_PROBLEMS = """() => {
  const problems = [], pg = document.querySelector('.tcplearn-playground');
  if (!pg) return ['no playground'];
  if (![...pg.querySelectorAll('.widget-readout')].some(e => e.getBoundingClientRect().width > 0))
    return ['no readout laid out'];
  const right = Math.min(window.innerWidth,
  document.querySelector('.jp-NotebookPanel').getBoundingClientRect().right);
  for (const el of pg.querySelectorAll('.widget-readout, button, .widget-checkbox label, .widget-checkbox')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0) continue;
    if (r.right > right + 1) problems.push(`${el.className} "${el.innerText}" ends at ${r.right} > ${right}`);
    if (el.scrollWidth > el.clientWidth + 1) problems.push(`${el.className} "${el.innerText}" is cut`);
  }
  for (const el of pg.querySelectorAll('.widget-readout')) {
    if (/e[+-]/.test(el.innerText)) problems.push(`readout "${el.innerText}" in e-notation`);
  }
  return problems;
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(root: str, port: int, token: str, settings: list[str] | None = None) -> subprocess.Popen:
    """JupyterLab on ``root``, with ``settings`` (default: ``dev.py lab``'s) as arguments."""
    # its own workspace and user settings, in a scratch folder beside the notebooks: nothing of a
    # test's layout (a sidebar sized for 900 px) or of this user's own settings carries over
    scratch = os.path.join(root, ".jupyterlab-test")
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.expose_app_in_browser=True", "--ServerApp.open_browser=False",
           f"--LabApp.workspaces_dir={scratch}/workspaces", f"--LabApp.user_settings_dir={scratch}/settings",
           *(dev.lab_settings_args() if settings is None else settings)]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, env={**os.environ, "TCPLEARN_FAST": "1"})
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited: {proc.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.5)
    raise RuntimeError("JupyterLab did not answer within 90 s")


def stop_lab(lab: subprocess.Popen) -> None:
    try:
        os.killpg(lab.pid, signal.SIGTERM)
        lab.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(lab.pid, signal.SIGKILL)
        lab.wait()
    finally:
        if lab.stderr is not None:
            lab.stderr.close()


def run_in_kernel(page, code: str) -> None:
    page.evaluate("async (code) => { const k = "
                  "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel; await "
                  "k.requestExecute({code, store_history: false}).done; }", code)


def port_limited_run(page) -> dict:
    """Exercise 3 with the real Run live button: the progress bar inside the playground while
    it runs, then the status line's measured and modelled TIME-WAIT peaks."""
    run_in_kernel(page, PORT_LIMITED)
    page.wait_for_function("() => /Ticked/.test(document.querySelector('.tcplearn-playground').innerText)",
                           timeout=30_000)
    page.locator(".tcplearn-playground button", has_text="Run live").click()
    page.locator(".tcplearn-progress").scroll_into_view_if_needed()  # where the bar appears, in view
    bar = page.wait_for_selector(".tcplearn-progress .widget-hprogress, .tcplearn-progress .widget-progress",
                                 timeout=60_000)
    seen = page.eval_on_selector(".tcplearn-progress", "el => el.innerText")
    page.wait_for_selector(".tcplearn-playground .tcplearn-agreement", timeout=120_000)
    status = page.eval_on_selector(".tcplearn-playground .tcplearn-agreement",
                                   "el => el.parentElement.innerText")
    found = AGREEMENT.search(status)
    numbers = dict(zip(("measured", "measured_by", "model", "model_by"), map(float, found.groups()),
                       strict=True)) \
        if found else {}
    return {"progress_seen": bool(bar), "progress_text": seen, "status": status, **numbers}


def image_sources(page) -> list[str]:
    return page.eval_on_selector_all(".jp-OutputArea-output img", "els => els.map(e => e.src)")


def drive(port: int, token: str, screenshot: str, chromium: str) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(f"http://127.0.0.1:{port}/lab/tree/{NOTEBOOK}?token={token}", timeout=90_000)
            page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                                   " && window.jupyterapp.shell.currentWidget.sessionContext"
                                   " && window.jupyterapp.shell.currentWidget.sessionContext.session",
                                   timeout=90_000)
            page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.ready")
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            # the playground has rendered when its sliders are on the page and its plot is drawn
            page.wait_for_selector(".widget-slider", timeout=120_000)
            page.wait_for_function(
                "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'"
                " && document.querySelectorAll('.jupyter-widgets img, .widget-output img').length > 0",
                timeout=120_000)
            before = page.eval_on_selector_all(".widget-output img, .jupyter-widgets img",
                                               "els => els.map(e => e.src)")
            # move the "connections / s" slider: focus its handle, press the arrow keys
            slider = page.locator(".widget-slider", has_text="connections / s")
            handle = slider.locator(".noUi-handle").first
            handle.scroll_into_view_if_needed()
            handle.focus()
            for _ in range(8):
                handle.press("ArrowRight")
            page.wait_for_function(
                "(old) => { const now = [...document.querySelectorAll("
                "'.widget-output img, .jupyter-widgets img')]"
                ".map(e => e.src); return now.length > 0 && JSON.stringify(now) !== JSON.stringify(old); }",
                arg=before, timeout=60_000)
            after = page.eval_on_selector_all(".widget-output img, .jupyter-widgets img",
                                              "els => els.map(e => e.src)")
            errors = page.eval_on_selector_all(
                "[data-mime-type='application/vnd.jupyter.stderr'], "
                ".jp-RenderedText[data-mime-type*='error']",
                "els => els.map(e => e.innerText).filter(t => /Traceback|Error/.test(t))")
            run = port_limited_run(page)
            page.screenshot(path=screenshot, full_page=True)
            # reopened in a fresh 900 px window (a resized page keeps its old sidebar's width)
            reopened = save_and_reopen(page, port, token, width=900)
            page.locator(".tcplearn-playground").scroll_into_view_if_needed()
            narrow = page.evaluate(LAYOUT_PROBLEMS)
            page.locator(".tcplearn-playground").screenshot(path=screenshot.replace(".png", "-900px.png"))
            return {"ok": bool(before) and before != after and not errors, "plots_before": len(before),
                    "plot_changed": before != after, "errors": errors[:3], "screenshot": screenshot,
                    "run": run, "narrow_problems": narrow, "reopened": reopened}
        finally:
            browser.close()


SCROLL_TO_PLAYGROUND = """async () => {
  const nb = window.jupyterapp.shell.currentWidget.content;
  await window.jupyterapp.shell.currentWidget.context.ready;
  const i = nb.widgets.findIndex(c => c.model.sharedModel.getSource().includes('sysctl_playground()'));
  if (i < 0) return i;
  await nb.scrollToItem(i, 'start');
  return i;
}"""


def save_and_reopen(page, port: int, token: str, width: int) -> dict:
    """Save the notebook, shut its kernel down, open it again: what a learner sees the next
    day.  Returns the widget state the file holds and any widget error shown."""
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=30_000)
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    page.set_viewport_size({"width": width, "height": 1800})
    page.goto(f"http://127.0.0.1:{port}/lab/tree/{NOTEBOOK}?token={token}", timeout=90_000)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    # JupyterLab lays out only the cells in view: bring the playground's cell there
    page.evaluate(SCROLL_TO_PLAYGROUND)
    # the saved widgets render from the file's state, with no kernel run: wait for them, or the error
    page.wait_for_function("() => document.querySelector('.tcplearn-playground .widget-slider')"
                           " || /Error displaying widget/.test(document.body.innerText)", timeout=60_000)
    text = page.evaluate("() => document.body.innerText")
    return {"widget_errors": re.findall(r"Error displaying widget[^\n]*", text)[:3],
            "sliders": page.eval_on_selector_all(".tcplearn-playground .widget-slider", "els => els.length")}


def main() -> int:
    root, screenshot, chromium = sys.argv[1], sys.argv[2], sys.argv[3]
    port, token = free_port(), secrets.token_hex(16)
    lab = start_lab(root, port, token)
    try:
        result = drive(port, token, screenshot, chromium)
    except Exception as exc:  # noqa: BLE001 - reported to the test as data
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:3000]}
    finally:
        stop_lab(lab)
    if "reopened" in result:  # what the saved file holds (the page saw it rendered)
        with open(os.path.join(root, NOTEBOOK)) as f:
            saved = json.load(f).get("metadata", {}).get("widgets", {})
        state = saved.get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
        result["reopened"]["saved_widget_models"] = len(state)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
