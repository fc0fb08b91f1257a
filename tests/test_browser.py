"""A real browser: JupyterLab on loopback, notebook 05 run in it, a slider moved.

Uses Playwright for Python with Debian's Chromium (``.ci/run`` installs the ``chromium``
package).  Skipped, with the reason, only where Chromium or Playwright is absent.  The
screenshot is kept as ``artifacts/playground.png``.
"""

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
def test_playground_in_a_real_browser():
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium); .ci/run installs it")
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.skip("playwright (Python) is not installed: pip install -e '.[browser]'")
    artifacts = ROOT / "artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / "playground.png"
    with tempfile.TemporaryDirectory() as notebooks:
        for nb in (ROOT / "notebooks").glob("*.ipynb"):
            shutil.copy(nb, notebooks)
        out = subprocess.run([sys.executable, str(ROOT / "tests" / "browser_check.py"), notebooks, str(shot),
                              CHROMIUM], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["ok"], result
    assert result["plot_changed"] and result["errors"] == []
    assert shot.exists() and shot.stat().st_size > 10_000
