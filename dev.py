#!/usr/bin/env python3
"""Set up tcplearn in ./.venv and open the series, or run every test.

    python3 dev.py lab     # create/refresh .venv, then open 00-start-here in JupyterLab
    python3 dev.py test    # create/refresh .venv, then ruff + the whole test suite
                           # (extra arguments go to pytest, e.g. -k lab or -m slow)
    python3 dev.py quick   # the same, less the minute-long measurements and the browser test

Standard library only, so it runs on a fresh machine (Linux, macOS, Windows).  The
environment is reinstalled only when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".tcplearn-installed"
#: What each command installs (pyproject.toml says what each extra is for).
EXTRAS = {"lab": "notebooks", "test": "notebooks,test,lint,browser", "quick": "notebooks,test,lint,browser",
          "setup": "notebooks,test,lint,browser", "bench": "notebooks,test,lint,browser,bench"}


def _run(*cmd: object) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def setup(extras: str = EXTRAS["setup"]) -> None:
    """Create .venv and install tcplearn (editable) with ``extras``; a command that needs
    fewer extras than are installed installs nothing."""
    if sys.version_info < (3, 10):  # noqa: UP036 - this runs before anything checks the version
        sys.exit(f"tcplearn needs Python 3.10 or newer; this is {sys.version.split()[0]}")
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    have = STAMP.read_text().split("\n") if PY.exists() and STAMP.exists() else []
    if len(have) == 2 and have[0] == digest:
        if set(extras.split(",")) <= set(have[1].split(",")):
            return
        extras = ",".join(sorted(set(extras.split(",")) | set(have[1].split(","))))  # keep what is there
    want = digest + "\n" + extras
    if not PY.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    _run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    _run(PY, "-m", "pip", "install", "--quiet", "-e", f".[{extras}]")
    STAMP.write_text(want)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in EXTRAS:
        print(__doc__)
        return 2
    setup(EXTRAS[argv[0]])
    if argv[0] == "lab":
        os.execv(str(PY), [str(PY), "-m", "jupyterlab", "notebooks/00-start-here.ipynb", *argv[1:]])
    if argv[0] in ("test", "quick"):
        subprocess.run([str(PY), "-m", "ruff", "check", "tcplearn", "tests", "benchmarks", "docs", "dev.py", "setup.py"],
                       check=True, cwd=ROOT)
        quick = ["-m", "not slow and not browser"] if argv[0] == "quick" else []
        return subprocess.run([str(PY), "-m", "pytest", *quick, *argv[1:]], cwd=ROOT).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
