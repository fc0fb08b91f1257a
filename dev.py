#!/usr/bin/env python3
"""Set up tcplearn in ./.venv and open the series, or run every test.

    python3 dev.py lab     # create/refresh .venv, then open 00-start-here in JupyterLab
                           # (extra arguments go to Jupyter, e.g. --no-browser or --port 9999)
    python3 dev.py test    # create/refresh .venv, then ruff, mypy and the whole test suite
                           # (extra arguments go to pytest, e.g. -k lab or -m slow)
    python3 dev.py quick   # the same, less the tests marked slow and the browser test
    python3 dev.py bench   # set up .venv with the benchmarks' peers too (benchmarks/README.md)

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
#: What each command installs: extras of the package (what a learner may install too) and
#: dependency groups (PEP 735, development only); pyproject.toml says what each is for.
INSTALLS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "lab": (("notebooks",), ()),
    "test": (("notebooks",), ("dev",)),
    "quick": (("notebooks",), ("dev",)),
    "setup": (("notebooks",), ("dev",)),
    "bench": (("notebooks",), ("dev", "bench")),
}
#: ``pip install --group`` arrived in pip 25.1.
PIP = "pip>=25.1"
#: Where JupyterLab opens, relative to notebooks/ (its root directory).
START = "00-start-here.ipynb"
#: The series' own JupyterLab settings (``overrides.json``), the file Binder's postBuild installs
#: too: ``saveState`` keeps widget state in a saved notebook, so a reopened one shows its widgets
#: instead of "Error displaying widget: model not found".
LAB_SETTINGS = ROOT / "binder"


def _run(*cmd: object) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def _tokens(extras: tuple[str, ...], groups: tuple[str, ...]) -> set[str]:
    return {f"extra:{e}" for e in extras} | {f"group:{g}" for g in groups}


def setup(extras: tuple[str, ...] = INSTALLS["setup"][0],
          groups: tuple[str, ...] = INSTALLS["setup"][1]) -> None:
    """Create .venv and install tcplearn (editable) with ``extras`` and the dependency
    ``groups``; a command that needs less than is installed installs nothing."""
    if sys.version_info < (3, 10):  # noqa: UP036 - this runs before anything checks the version
        sys.exit(f"tcplearn needs Python 3.10 or newer; this is {sys.version.split()[0]}")
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    have = STAMP.read_text().split("\n") if PY.exists() and STAMP.exists() else []
    want = _tokens(extras, groups)
    if len(have) == 2 and have[0] == digest:
        installed = set(have[1].split(",")) - {""}
        if want <= installed:
            return
        want |= installed  # keep what is there
    if not PY.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    _run(PY, "-m", "pip", "install", "--quiet", "--upgrade", PIP)
    all_extras = sorted(t.split(":", 1)[1] for t in want if t.startswith("extra:"))
    all_groups = sorted(t.split(":", 1)[1] for t in want if t.startswith("group:"))
    target = f".[{','.join(all_extras)}]" if all_extras else "."
    group_args = [arg for g in all_groups for arg in ("--group", g)]
    _run(PY, "-m", "pip", "install", "--quiet", "-e", target, *group_args)
    STAMP.write_text(digest + "\n" + ",".join(sorted(want)))


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def lab_settings_args() -> list[str]:
    """JupyterLab's arguments for the series' own settings: it reads ``overrides.json`` from
    its application settings directory."""
    return [f"--LabApp.app_settings_dir={LAB_SETTINGS}"]


def lab_command(extra: list[str]) -> list[str]:
    """JupyterLab on notebooks/, opening 00-start-here; the URL it prints (with --no-browser,
    the one to paste into a browser) opens that notebook too, not the file browser."""
    cmd = [str(PY), "-m", "jupyterlab", "--ServerApp.root_dir=notebooks",
           f"--LabApp.default_url=/lab/tree/{START}", *lab_settings_args()]
    if _is_root():
        # Jupyter refuses to start as root without it ("Running as root is not recommended").
        print("dev.py: running as root, so JupyterLab gets --allow-root", flush=True)
        cmd.append("--allow-root")
    return cmd + extra


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in INSTALLS:
        print(__doc__)
        return 2
    setup(*INSTALLS[argv[0]])
    if argv[0] == "lab":
        cmd = lab_command(argv[1:])
        os.chdir(ROOT)
        os.execv(cmd[0], cmd)
    if argv[0] in ("test", "quick"):
        subprocess.run([str(PY), "-m", "ruff", "check", "tcplearn", "tests", "benchmarks", "docs", "dev.py",
                        "setup.py"], check=True, cwd=ROOT)
        subprocess.run([str(PY), "-m", "mypy"], check=True, cwd=ROOT)  # [tool.mypy] says what and how
        quick = ["-m", "not slow and not browser"] if argv[0] == "quick" else []
        return subprocess.run([str(PY), "-m", "pytest", *quick, *argv[1:]], cwd=ROOT).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
