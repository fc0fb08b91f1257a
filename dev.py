#!/usr/bin/env python3
"""Set up tcplearn in ./.venv and open the series, or run every test.

    python3 dev.py lab     # create/refresh .venv, then open 00-start-here in JupyterLab
    python3 dev.py test    # create/refresh .venv, then ruff + the whole test suite
                           # (extra arguments go to pytest, e.g. -k lab or -m slow)

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
EXTRAS = "notebooks,test"


def _run(*cmd: object) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def setup() -> None:
    """Create .venv and install tcplearn (editable) with its notebook and test extras."""
    if sys.version_info < (3, 10):  # noqa: UP036 - this runs before anything checks the version
        sys.exit(f"tcplearn needs Python 3.10 or newer; this is {sys.version.split()[0]}")
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + EXTRAS.encode()).hexdigest()
    if PY.exists() and STAMP.exists() and STAMP.read_text() == want:
        return
    if not PY.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    _run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    _run(PY, "-m", "pip", "install", "--quiet", "-e", f".[{EXTRAS}]")
    STAMP.write_text(want)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("lab", "test", "setup"):
        print(__doc__)
        return 2
    setup()
    if argv[0] == "lab":
        os.execv(str(PY), [str(PY), "-m", "jupyterlab", "notebooks/00-start-here.ipynb", *argv[1:]])
    if argv[0] == "test":
        subprocess.run([str(PY), "-m", "ruff", "check", "tcplearn", "tests", "benchmarks", "dev.py"],
                       check=True, cwd=ROOT)
        return subprocess.run([str(PY), "-m", "pytest", *argv[1:]], cwd=ROOT).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
