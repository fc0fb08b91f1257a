"""The "as nobody" checks run what a learner runs (issue 23, item 30): the Python this suite
runs on, in a venv the nobody user made itself, with an ordinary user's PATH."""

import json
import os
import sys

from .conftest import LEARNER_PATH

WHO = r"""
import json, os, shutil, subprocess, sys
import tcplearn
print(json.dumps({"version": sys.version, "prefix": sys.prefix, "base_prefix": sys.base_prefix,
                  "executable": sys.executable, "uid": os.geteuid(), "path": os.environ["PATH"],
                  "tcplearn": tcplearn.__file__, "which_sysctl": shutil.which("sysctl"),
                  "which_python3": shutil.which("python3"),
                  # what IPython's ! runs: /bin/sh with the kernel's PATH
                  "sh_sysctl": subprocess.run(["/bin/sh", "-c", "command -v sysctl"], capture_output=True,
                                              text=True).returncode}))
"""


def _who(env) -> dict:
    out = env.python(WHO)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def test_nobody_runs_this_suites_python_in_a_venv_of_its_own(nobody):
    me = _who(nobody)
    assert me["uid"] == os.stat(nobody.venv).st_uid != 0      # nobody made the venv, and runs it
    assert me["version"] == sys.version                             # the very interpreter the suite runs on
    assert me["prefix"] == str(nobody.venv) != me["base_prefix"]    # a venv, as a learner's
    assert me["executable"] == str(nobody.venv / "bin" / "python")     # the venv's, first on its PATH
    assert me["which_python3"] == str(nobody.venv / "bin" / "python3")
    assert me["tcplearn"].startswith(str(nobody.dir))               # the copy of this checkout's tcplearn


def test_nobody_has_a_learners_path(nobody):
    me = _who(nobody)
    assert me["path"] == f"{nobody.venv / 'bin'}:{LEARNER_PATH}"
    assert "/usr/sbin" not in me["path"].split(":") and "/sbin" not in me["path"].split(":")
    # sysctl(8) lives in /usr/sbin on Debian: a learner's shell, and IPython's !, do not find it
    if not any(os.path.exists(f"{d}/sysctl") for d in LEARNER_PATH.split(":")):
        assert me["which_sysctl"] is None and me["sh_sysctl"] != 0


def test_nobody_with_packages_imports_this_environments_packages(nobody_with_packages):
    code = ("import pandas, matplotlib, nbclient, ipykernel, tcplearn, sys; print(sys.version); "
            "print(tcplearn.__file__)")
    out = nobody_with_packages.python(code)
    assert out.returncode == 0, out.stderr[-2000:]
    version, where = out.stdout.strip().rsplit("\n", 1)
    assert version == sys.version and where.startswith(str(nobody_with_packages.dir))
