"""Shared test machinery: fd-leak guard, the ``ss`` oracle, polling, and running as ``nobody``."""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINUX = sys.platform.startswith("linux")

needs_linux = pytest.mark.skipif(not LINUX, reason="reads the Linux kernel's TCP tables")
needs_ss = pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) is not installed")


def _open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")} if LINUX else set()


@pytest.fixture(scope="session", autouse=True)
def _warm_library_caches():
    """matplotlib keeps the font files it has used open for the life of the process; open
    them once up front so the descriptor check below sees only what a test itself leaks."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return
    fig = Figure()
    ax = fig.subplots()
    ax.set_title("warm-up")
    ax.text(0, 0, "bold", fontweight="bold")
    ax.text(0, 1, "italic", style="italic")
    ax.text(0, 2, "→ ✓")  # glyphs that need the fallback font
    ax.text(0, 3, "bold italic", fontweight="bold", style="italic")
    import io
    fig.savefig(io.BytesIO(), format="png")


@pytest.fixture(autouse=True)
def no_fd_leak():
    """Every test must leave the process with the descriptors it found."""
    gc.collect()
    before = _open_fds()
    yield
    deadline = time.monotonic() + 2.0
    while True:
        gc.collect()
        leaked = _open_fds() - before
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    details = {fd: _describe(fd) for fd in leaked}
    assert not leaked, f"test leaked file descriptors: {details}"


def _describe(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


# ------------------------------------------------------------------ the markers


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


#: Fixtures that drop from root to nobody: a test using one needs root, so it is marked root.
DROPS_TO_NOBODY = {"nobody", "nobody_with_packages", "learner_python"}


#: Slow tests in files this conftest does not own the markers of (node ids): marked here.
SLOW_ELSEWHERE = {
    "tests/test_fallbacks.py::test_every_notebook_runs_on_a_simulated_mac",  # the series, ~1 min
    "tests/test_architecture.py::test_the_wheel_carries_the_series",        # builds a wheel, ~5 s
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if DROPS_TO_NOBODY & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.root(reason="runs code as nobody, which needs root to drop to"))
        if item.nodeid in SLOW_ELSEWHERE:
            item.add_marker(pytest.mark.slow)


def pytest_runtest_setup(item):
    """``@pytest.mark.root(reason=...)``: skipped with its reason when not root; as root (CI)
    it runs."""
    marker = item.get_closest_marker("root")
    if marker is not None and not is_root():
        why = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
        pytest.skip(f"needs root{': ' + why if why else ''} (CI runs as root)")


# ------------------------------------------------------------------ interrupts
# A process started with SIGINT ignored (by `cmd &` in a non-interactive shell, nohup, many
# runners) passes that on to its children, and Python then installs no KeyboardInterrupt
# handler at all.  Tests that interrupt set the handler up themselves, so they test the same
# thing however the suite was started.


def default_sigint() -> None:
    """``preexec_fn`` for a child a test interrupts: SIGINT back to its default, so the
    child's Python raises KeyboardInterrupt on it (as under a terminal's Ctrl-C)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def sigint_raises():
    """SIGINT raises KeyboardInterrupt in this process for the test, whatever the suite
    inherited; the previous handler comes back afterwards."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.01, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}; last value {value!r}")
        time.sleep(interval)


# ------------------------------------------------------------------ TIME-WAIT taken over early
#
# What a load's TcpExt TWRecycled can be, measured on Linux 6.18 (a load at 300/s for 5 s in
# a fresh lab, each connection's source port recorded, 20 runs; 2,000/s for 1 s, 6 runs):
#  - every recycle was a connect() whose port search landed on a port this same load had
#    used before, still in TIME-WAIT: recycles == revisits of the load's own ports, exactly;
#  - the search walks as __inet_hash_connect says (net/ipv4/inet_hashtables.c: each success
#    moves table_perturb[index] on by max(i, random(8) * 2) + 2, steps of 2 to 16 ports, even
#    ports first), and about one run in two it jumped once, by 2,546 to 24,470 ports, at no
#    cost in connect() time (so not a long scan) and with no other connect() on the machine
#    near it (so not another flow sharing the slot).  Why the slot moves is not explained;
#    what follows from it is: after the jump the walk can meet the load's earlier ports;
#  - tcp_twsk_unique (net/ipv4/tcp_ipv4.c) lets a connect take a TIME-WAIT only once
#    tcp_tw_reuse_delay (ms, 1,000 by default; 6.14+) has passed since it entered TIME-WAIT,
#    so nothing made in the first delay can be taken over, and a walk through old ports
#    lands on one with the probability the walk itself leaves them at, 1 / WALK_ADVANCE
#    (measured 0.06-0.24 of the connections after the first revisit).


def own_recycle_ceiling(made: int, rate: float) -> int:
    """The most TIME-WAIT sockets of one load (one source address, one destination) later
    connects of the same load can take over, for a run within one pass of the port walk:
    the connections made after the first ``tcp_tw_reuse_delay``, each landing on one of the
    load's own ports with probability ``1 / WALK_ADVANCE``, plus three standard deviations."""
    from tcplearn import model, sysctl

    ports = model.ports_in_range(sysctl.read("ip_local_port_range"))
    assert made <= ports / 2 / model.WALK_ADVANCE, "more than one pass of the port walk: use the model"
    delay = (sysctl.read("tcp_tw_reuse_delay") or 1000) / 1000  # absent before 6.14: "1 s" (its old rule)
    eligible = max(0.0, made - rate * delay)
    p = 1 / model.WALK_ADVANCE
    return int(p * eligible + 3 * (p * (1 - p) * eligible) ** 0.5) + 1


# ------------------------------------------------------------------ the ss oracle

_SS_TIMER = re.compile(r"timer:\((\w+),([^,]+),(\d+)\)")


def _ss_seconds(text: str) -> float:
    total = 0.0
    for number, unit in re.findall(r"([\d.]+)(min|sec|ms)", text):
        total += float(number) * {"min": 60, "sec": 1, "ms": 0.001}[unit]
    return total


def ss_rows(port: int) -> list[dict]:
    """``ss -tan -o`` rows with ``port`` at either end: state, ends, timer name and seconds."""
    out = subprocess.run(
        ["ss", "-tan", "-o", f"( sport = :{port} or dport = :{port} )"],
        capture_output=True, text=True, check=True,
    ).stdout
    rows = []
    for line in out.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 5:
            continue
        local, peer = parts[3], parts[4]
        m = _SS_TIMER.search(line)
        rows.append({
            "state": parts[0],
            "local_port": int(local.rsplit(":", 1)[1]),
            "remote_port": 0 if peer.endswith(":*") else int(peer.rsplit(":", 1)[1]),
            "timer": m.group(1) if m else "off",
            "timer_s": _ss_seconds(m.group(2)) if m else 0.0,
        })
    return rows


@pytest.fixture
def listener():
    """A listening socket on 127.0.0.1 with an ephemeral port, closed afterwards."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock
    sock.close()


# ------------------------------------------------------------------ the series, executed once

#: The notebook runner every mode uses (as this user, as nobody, on a simulated Mac).
RUN_NOTEBOOKS = ROOT / "tests" / "unprivileged" / "run_notebooks.py"
#: The whole series' budget in one runner (7 notebooks, TCPLEARN_FAST=1): measured 2.5 min as root
#: or as nobody on this 2-core machine, 1.5 min with user namespaces blocked; longer when shared.
SERIES_TIMEOUT = 900


class ExecutedSeries:
    """Every notebook, executed once; ``results[name]`` is "ok" or the error, ``texts(name)``
    what its cells printed (the executed copy is kept in ``saved``), ``user`` who ran it."""

    #: Executed while a foreign program's TIME-WAIT sockets fill the machine's table.
    amid_churn = ("02-time-wait-and-2msl.ipynb", "04-state-counts-under-load.ipynb",
                  "05-sysctl-playground.ipynb")

    def __init__(self, saved: Path, results: dict[str, str], foreign_tw: int, user: str):
        self.saved, self.results, self.foreign_tw, self.user = saved, results, foreign_tw, user

    def texts(self, name: str) -> str:
        import nbformat

        nb = nbformat.read(self.saved / name, as_version=4)
        return "\n".join(o.get("text", "") + "".join(str(v) for v in o.get("data", {}).values())
                         for c in nb.cells for o in c.get("outputs", []))


def copy_series_for(env: Unprivileged, folder: str = "notebooks") -> Path:
    """The notebooks copied where ``env``'s nobody may write (its kernels write beside them),
    into ``env.dir / folder``."""
    dest = env.dir / folder
    shutil.copytree(ROOT / "notebooks", dest, dirs_exist_ok=True)
    for p in [dest, *dest.rglob("*")]:
        p.chmod(0o777 if p.is_dir() else 0o666)
    return dest


@pytest.fixture(scope="session")
def executed_series(request, tmp_path_factory) -> ExecutedSeries:
    """The series executed headless once for the whole run, shared by every test that needs
    an executed notebook with a private lab at hand (the simulated Mac's and the blocked
    namespaces' runs are modes of their own).  As root (CI) it runs as nobody, as a learner
    would: with a lab, root and nobody take the same rung of the ladder (lab, then root), so
    one execution covers both; not as root, it runs as this user.  Notebooks 02, 04 and 05
    run first, amid a foreign churn's TIME-WAIT sockets, so the same execution also shows
    that they count only their own sockets; the others follow."""
    from .churn import start_churn, stop_churn, wait_tw

    names = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
    order = [*ExecutedSeries.amid_churn, *(n for n in names if n not in ExecutedSeries.amid_churn)]
    drop, _ = can_drop_privileges()
    if drop:
        env = request.getfixturevalue("nobody_with_packages")
        copy_series_for(env)
        saved = env.dir / "executed"
        saved.mkdir(exist_ok=True)
        saved.chmod(0o777)
        cmd, run = ["run_notebooks.py", "--save", str(saved), *(f"notebooks/{n}" for n in order)], env.run
    else:
        saved = tmp_path_factory.mktemp("executed")
        cmd = [sys.executable, str(RUN_NOTEBOOKS), "--save", str(saved), *order]

        def run(cmd, timeout):  # in a child process: nbclient's zmq context keeps descriptors
            return subprocess.run(cmd, cwd=ROOT / "notebooks", env={**os.environ, "TCPLEARN_FAST": "1"},
                                  capture_output=True, text=True, timeout=timeout)
    churn = None
    try:
        if LINUX:
            churn, _ = start_churn(20_000)
            assert churn.stdout.readline().strip() == "done"
        foreign = wait_tw(10_000, 10) if LINUX else 0
        out = run(cmd, timeout=SERIES_TIMEOUT)
    finally:
        if churn is not None:
            stop_churn(churn)
    assert out.returncode == 0, out.stderr[-3000:]
    reported = json.loads(out.stdout.strip().splitlines()[-1])
    results = {k.removeprefix("notebooks/"): v for k, v in reported.items()}
    return ExecutedSeries(saved, results, foreign, "nobody" if drop else "this user")


# ------------------------------------------------------------------ series in the background
#
# One execution of the whole series needs nothing of this machine's TCP: the simulated Mac's,
# where every kernel experiment replays.  It takes a minute or two, mostly waiting on its
# kernels, so it starts with the session, beside the other tests, and its test collects it.
# The others stay on their own: the run amid a foreign churn (executed_series) would fill the
# machine's table under every other test, and the one with user namespaces blocked runs live
# loads on this machine's loopback beside tests that measure it.


#: The background children's pids: the tests that count their own child processes skip them.
BACKGROUND_PIDS: set[int] = set()


def own_children(recursive: bool = True) -> list:
    """This process's children (``psutil.Process``, running), without the series running in
    the background and theirs: what a test's own code started and left."""
    import psutil

    found = []
    for child in psutil.Process().children(recursive=recursive):
        try:
            if child.pid in BACKGROUND_PIDS or any(a.pid in BACKGROUND_PIDS for a in child.parents()):
                continue
            if child.is_running():
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


class Background:
    """A child started now whose outcome a test collects later (``result()``): its output
    goes to files, so a chatty child never blocks on a full pipe."""

    def __init__(self, cmd: list[str], **popen) -> None:
        self._out = tempfile.TemporaryFile("w+")
        self._err = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=self._err, text=True, **popen)
        BACKGROUND_PIDS.add(self.proc.pid)

    def result(self, timeout: float) -> subprocess.CompletedProcess:
        """Wait for the child (killed after ``timeout`` seconds, which then raises) and return
        what it printed."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        texts = []
        for f in (self._out, self._err):
            f.seek(0)
            texts.append(f.read())
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, *texts)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


SIMULATED_MAC_TEST = "test_every_notebook_runs_on_a_simulated_mac"
#: What blocks the creation of user namespaces for the series (inside a user namespace of its own).
BLOCKED = ("unshare", "--user", "--map-root-user", "sh", "-c",
           'echo 0 > /proc/sys/user/max_user_namespaces && exec "$0" "$@"')


def start_simulated_mac(where: Path) -> tuple[Background, Path, list[str]]:
    """The series executed as if on a Mac (an IPython startup file makes the kernel look like
    macOS), in a copy of the notebooks under ``where``; returns the run, the folder the
    executed notebooks are saved in, and the notebooks' names."""
    startup = where / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-macos.py").write_text((ROOT / "tests" / "simulated" / "macos.py").read_text())
    saved, copy = where / "executed", where / "notebooks"
    saved.mkdir()
    shutil.copytree(ROOT / "notebooks", copy, ignore=shutil.ignore_patterns("*.pcap", ".ipynb_checkpoints"))
    names = sorted(p.name for p in copy.glob("[0-9][0-9]-*.ipynb"))
    env = {**os.environ, "IPYTHONDIR": str(where / "ipython"), "TCPLEARN_FAST": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("TCPLEARN_BACKEND", None)
    run = Background([sys.executable, str(ROOT / "tests" / "unprivileged" / "run_notebooks.py"),
                      "--save", str(saved), *names], cwd=copy, env=env)
    return run, saved, names


@pytest.fixture(scope="session", autouse=True)
def series_in_background(request, tmp_path_factory):
    """Starts, with the session, the series executions whose tests this session will run
    (``{"mac": (run, saved, names)}``), and stops what is left of
    them at its end."""
    selected = {item.originalname for item in request.session.items}
    runs: dict = {}
    try:
        if SIMULATED_MAC_TEST in selected:
            runs["mac"] = start_simulated_mac(tmp_path_factory.mktemp("simulated-mac"))
        yield runs
    finally:
        for value in runs.values():
            value[0].stop()


# ------------------------------------------------------------------ running as nobody
#
# What a learner runs: the Python this suite runs on (every supported version, not only the
# one Debian ships), in a virtual environment of their own, with an ordinary user's PATH.
# The nobody user makes that venv itself, from this interpreter where nobody may run it, else
# from a copy of its standard library that nobody may read (a pyenv or uv Python under /root
# is not), once per session; tcplearn and this environment's packages are copied beside it.

#: An ordinary Debian user's PATH (``ENV_PATH`` in /etc/login.defs): no /usr/sbin, no /sbin, so
#: ``sysctl`` and the like are not found, as in a learner's shell and IPython's ``!``.
LEARNER_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"
_AS_NOBODY = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all")
#: Parts of the standard library no test imports (tests, GUIs, the build's config): not copied.
_NOT_COPIED = ("site-packages", "dist-packages", "test", "idlelib", "tkinter", "turtledemo", "config-*",
               "ensurepip", "__phello__")


def can_drop_privileges() -> tuple[bool, str]:
    if not LINUX:
        return False, "dropping privileges is tested on Linux"
    if os.geteuid() != 0:
        return False, "needs root to drop privileges to nobody (CI runs as root)"
    if not shutil.which("setpriv"):
        return False, "setpriv (util-linux) is not installed"
    return True, ""


def _version_as_nobody(python: str, env: dict | None = None) -> str:
    out = subprocess.run([*_AS_NOBODY, python, "-c", "import sys; print(sys.version)"], capture_output=True,
                         text=True, env=env or {"PATH": LEARNER_PATH}, timeout=60)
    return out.stdout.strip() if out.returncode == 0 else ""


class LearnerPython:
    """This suite's own interpreter as nobody may run it: ``python`` (a path), and ``env``,
    what it needs in its environment (a copied shared build: where its libpython is)."""

    def __init__(self):
        base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
        self.dir: Path | None = None
        self.python, self.env = base, {}
        if _version_as_nobody(base) == sys.version:
            return  # e.g. Debian's /usr/bin/python3.X: nobody runs it as it is
        # a copy nobody may read: the binary, its libpython, the standard library (with its
        # compiled files, whose recorded times copy2 keeps, so nothing is compiled again)
        prefix, stdlib = Path(sys.base_prefix), Path(sysconfig.get_path("stdlib"))
        self.dir = Path(tempfile.mkdtemp(prefix="tcplearn-python-"))
        try:
            (self.dir / "bin").mkdir()
            self.python = str(self.dir / "bin" / Path(base).name)
            shutil.copy2(base, self.python)
            shutil.copytree(stdlib, self.dir / stdlib.relative_to(prefix), symlinks=True,
                            ignore=shutil.ignore_patterns(*_NOT_COPIED))
            libdir, library = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
            if sysconfig.get_config_var("Py_ENABLE_SHARED") and libdir and library:
                (self.dir / "lib").mkdir(exist_ok=True)
                shutil.copy2(Path(libdir) / library, self.dir / "lib" / library)
                # the binary's RUNPATH names the original lib/, which nobody may not enter
                self.env = {"LD_LIBRARY_PATH": str(self.dir / "lib")}
            for path in [self.dir, *self.dir.rglob("*")]:
                if not path.is_symlink():
                    path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
            theirs = _version_as_nobody(self.python, {"PATH": LEARNER_PATH, **self.env})
            assert theirs == sys.version, f"nobody's copy of {base} runs {theirs!r}, not {sys.version!r}"
        except BaseException:
            self.cleanup()
            raise

    def cleanup(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)


class Unprivileged:
    """Runs code as ``nobody`` in a venv nobody made from this suite's Python, holding a
    world-readable copy of tcplearn (and, with ``packages=True``, of this environment's
    site-packages), with a learner's PATH (``LEARNER_PATH``, the venv's bin first)."""

    def __init__(self, packages: bool, base: LearnerPython):
        self.dir = Path(tempfile.mkdtemp(prefix="tcplearn-nobody-"))
        self.dir.chmod(0o755)
        shutil.copytree(ROOT / "tcplearn", self.dir / "tcplearn",
                        ignore=shutil.ignore_patterns("__pycache__"))
        for script in (ROOT / "tests" / "unprivileged").glob("*.py"):
            shutil.copy(script, self.dir / script.name)
        lines = [str(self.dir)]
        if packages:
            site = Path(sysconfig.get_paths()["purelib"])
            dest = self.dir / "site-packages"
            shutil.copytree(site, dest, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "tcplearn*", "__editable__*"))
            lines.append(f"import site; site.addsitedir({str(dest)!r})")  # its own .pth files too, as pip's
        self.home = self.dir / "home"
        self.home.mkdir()
        for path in [self.dir, *self.dir.rglob("*")]:
            path.chmod(0o777 if path.is_relative_to(self.home) else
                       (0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644))
        # the learner's venv, made by nobody (without pip: nothing is installed over the network)
        self.venv = self.dir / "venv"
        self.venv.mkdir()
        os.chown(self.venv, *_nobody_ids())
        made = subprocess.run([*_AS_NOBODY, base.python, "-m", "venv", "--without-pip", str(self.venv)],
                              capture_output=True, text=True, env={"PATH": LEARNER_PATH, **base.env},
                              cwd=self.dir, timeout=120)
        assert made.returncode == 0, f"nobody could not make a venv: {made.stderr[-2000:]}"
        self.interpreter = str(self.venv / "bin" / "python")
        purelib = subprocess.run([*_AS_NOBODY, self.interpreter, "-c",
                                  "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                 capture_output=True,
                                 text=True, env={"PATH": LEARNER_PATH, **base.env}, timeout=60,
                                 check=True).stdout.strip()
        # what pip install would have put there: tcplearn (and the packages), on the venv's path
        (Path(purelib) / "tcplearn-tests.pth").write_text("\n".join(lines) + "\n")
        self.env = {
            "PATH": f"{self.venv / 'bin'}:{LEARNER_PATH}",
            "VIRTUAL_ENV": str(self.venv),
            "HOME": str(self.home),
            "MPLCONFIGDIR": str(self.home / "mpl"),
            "JUPYTER_RUNTIME_DIR": str(self.home / "runtime"),
            "IPYTHONDIR": str(self.home / "ipython"),
            "TCPLEARN_FAST": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            **base.env,
        }

    def command(self, args: list[str], wrap: tuple[str, ...] = ()) -> list[str]:
        """The command line that runs the venv's Python with ``args`` as nobody; ``wrap`` goes
        between (e.g. unshare).  Run it with ``env=self.env`` and ``cwd=self.dir``."""
        return [*_AS_NOBODY, *wrap, self.interpreter, *args]

    def run(self, args: list[str], timeout: float = 300, wrap: tuple[str, ...] = (),
            **kw) -> subprocess.CompletedProcess:
        """Run the venv's Python with ``args`` as nobody; ``wrap`` goes between (e.g. unshare)."""
        return subprocess.run(self.command(args, wrap), env=self.env, capture_output=True, text=True,
                              timeout=timeout, cwd=self.dir, **kw)

    def python(self, code: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.run(["-c", code], timeout=timeout)

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _nobody_ids() -> tuple[int, int]:
    import grp
    import pwd

    return pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid


@pytest.fixture(scope="session")
def learner_python():
    """This suite's Python as nobody may run it (a copy only where it must be), for the session."""
    ok, why = can_drop_privileges()
    if not ok:
        pytest.skip(why)
    base = LearnerPython()
    yield base
    base.cleanup()


@pytest.fixture(scope="session")
def nobody(learner_python):
    env = Unprivileged(packages=False, base=learner_python)
    yield env
    env.cleanup()


@pytest.fixture(scope="session")
def nobody_with_packages(learner_python):
    env = Unprivileged(packages=True, base=learner_python)
    yield env
    env.cleanup()
