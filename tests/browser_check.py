"""Drive JupyterLab in a real browser: open notebook 05, run all cells, move a slider.

    python tests/browser_check.py NOTEBOOK_DIR SCREENSHOT CHROMIUM

Starts JupyterLab on 127.0.0.1 with a random token (its app exposed to the page so the
"run all cells" command can be called), drives it with Playwright for Python using the
given Chromium, and prints one JSON line: {"ok": bool, ...details}.  Always stops the
browser and the server.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request

NOTEBOOK = "05-sysctl-playground.ipynb"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(root: str, port: int, token: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.expose_app_in_browser=True", "--ServerApp.open_browser=False"]
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
            page.screenshot(path=screenshot, full_page=True)
            return {"ok": bool(before) and before != after and not errors, "plots_before": len(before),
                    "plot_changed": before != after, "errors": errors[:3], "screenshot": screenshot}
        finally:
            browser.close()


def main() -> int:
    root, screenshot, chromium = sys.argv[1], sys.argv[2], sys.argv[3]
    port, token = free_port(), secrets.token_hex(16)
    lab = start_lab(root, port, token)
    try:
        result = drive(port, token, screenshot, chromium)
    except Exception as exc:  # noqa: BLE001 - reported to the test as data
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:3000]}
    finally:
        try:
            os.killpg(lab.pid, signal.SIGTERM)
            lab.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(lab.pid, signal.SIGKILL)
            lab.wait()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
