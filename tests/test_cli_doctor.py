"""python -m tcplearn and doctor()."""

import subprocess
import sys

import pytest

import tcplearn

from .conftest import default_sigint, needs_linux


def cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "tcplearn", *args], capture_output=True, text=True,
                          timeout=timeout)


@needs_linux
def test_states_counts_a_listener_on_its_port(listener):
    port = listener.getsockname()[1]
    out = cli("states", "--port", str(port))
    assert out.returncode == 0, out.stderr
    lines = dict(line.split() for line in out.stdout.splitlines()[1:])
    assert lines["LISTEN"] == "1" and lines["TIME-WAIT"] == "0" and lines["total"] == "1"
    assert f"(port {port})" in out.stdout


def test_bad_arguments_name_the_value():
    out = cli("states", "--port", "99999")
    assert out.returncode == 2 and "port must be from 0 to 65535, got 99999" in out.stderr
    out = cli("states", "--watch", "soon")
    assert out.returncode == 2 and "--watch takes seconds" in out.stderr


@needs_linux
def test_watch_refreshes_until_interrupted(listener):
    import signal
    import time
    # Ctrl-C as a terminal delivers it: SIGINT at its default in the child, also when this
    # suite was started with SIGINT ignored (which a child would inherit).
    proc = subprocess.Popen([sys.executable, "-m", "tcplearn", "states", "--watch", "0.2",
                             "--port", str(listener.getsockname()[1])], stdout=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)
    seen, deadline = [], time.monotonic() + 30  # three refreshes, however slowly the child starts
    try:
        while sum("TCP sockets per state" in line for line in seen) < 3 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        proc.stdout.close()
    assert sum("TCP sockets per state" in line for line in seen) >= 3, seen[-5:]
    assert proc.returncode == 0, "Ctrl-C ends the watch cleanly"


def test_doctor_reports_the_machine():
    report = tcplearn.doctor()
    names = {c.name for c in report.checks}
    assert {"operating system", "root", "/proc/net/tcp readable", "observation backend",
            "teardown sysctls", "Node.js", "Binder", "private network lab"} <= names
    assert len(report.live) == len(tcplearn.REGISTRY)
    html = report._repr_html_()
    assert "<table>" in html and "What will be live here" in html
    out = cli("doctor")
    assert out.returncode == 0 and "What will be live here" in out.stdout


def test_doctor_sees_binder_from_its_environment(monkeypatch):
    monkeypatch.setenv("BINDER_LAUNCH_HOST", "https://mybinder.org/")
    assert tcplearn.doctor().check("Binder").detail == "this is a Binder session"


@needs_linux
def test_doctor_reports_the_psutil_fallback(monkeypatch):
    monkeypatch.setenv("TCPLEARN_BACKEND", "psutil")
    report = tcplearn.doctor()
    assert "psutil" in report.check("observation backend").detail
    assert dict((p, h) for p, h, _ in report.live)[
        "02 one TIME-WAIT socket's kernel timer, read until it leaves"] == "recorded"


def test_public_api_is_exported():
    for name in ("TcpState", "TRANSITIONS", "TcpSocket", "parse_proc_net_tcp", "sockets", "count_states",
                 "backend", "doctor", "sysctl", "PrivateLab", "LabUnavailable", "lab_available", "Segment"):
        assert hasattr(tcplearn, name), name


def test_doctor_says_yes_and_no_in_words_and_root_is_never_a_failure(monkeypatch):
    """Each sign carries its word (no emoji font, a screen reader); not being root is fine, and says why."""
    import importlib
    import re

    doctor_module = importlib.import_module("tcplearn.doctor")  # tcplearn.doctor is also the function
    monkeypatch.setattr(doctor_module.sysctl, "is_root", lambda: False)
    report = tcplearn.doctor()
    root = report.check("root")
    assert root.ok is None and root.detail.startswith("not root (not needed: ")
    html = report._repr_html_()
    marks = re.findall(r"<tr><td>([^<]*)</td><td>", html)
    assert len(marks) == len(report.checks)
    assert set(marks) <= {"✅ yes", "❌ no", "ℹ️ info"}, marks
    assert not any(line.split()[:2] == ["NO", "root"] for line in str(report).splitlines())


# ------------------------------------------------------------------ load, on the machine or in a lab


def test_a_load_too_big_for_the_machine_is_refused_and_names_lab():
    from tcplearn.experiments.sharing import exceeds_share

    # 20,000/s for 60 s holds far more than a quarter of any default port range or TIME-WAIT table
    out = cli("load", "--rate", "20000", "--duration", "60")
    assert out.returncode == 1 and out.stdout == "", out.stdout
    assert "This load would hold about" in out.stderr and "more than 25% of the" in out.stderr
    assert "Add --lab to run it in a private lab" in out.stderr and "lower --rate or --duration" in out.stderr
    assert "run_load(" not in out.stderr and "PrivateLab" not in out.stderr  # no Python call for a shell user
    # the review's own load, where this machine's share refuses it (it did on a default Linux)
    if exceeds_share(dict(rate=2000, duration=10, sample_interval=0.5)):
        out = cli("load", "--rate", "2000", "--duration", "10")
        assert out.returncode == 1 and "Add --lab" in out.stderr


def test_lab_and_a_target_on_this_machine_are_refused_together():
    out = cli("load", "--lab", "--target", "127.0.0.1:8080")
    assert (out.returncode == 2
            and "--target 127.0.0.1:8080 (a server on this machine) cannot be reached" in out.stderr)


@needs_linux
def test_a_lab_load_runs_in_the_lab_and_reports_its_own_sockets():
    import re

    from tcplearn import TcpState, count_states

    from .conftest import own_recycle_ceiling

    ok, why = tcplearn.lab_available()
    if not ok:
        pytest.skip(why)
    out = cli("load", "--rate", "300", "--duration", "1", "--lab")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("Ran in your private lab (--lab)") and "ip_local_port_range=" in out.stdout
    made = int(re.search(r"^(\d+) connections in [\d.]+ s", out.stdout, re.M)[1])
    port, peak = re.search(r"server port (\d+) at either end\): a TIME-WAIT peak of ([\d,]+)",
                           out.stdout).groups()
    port, peak = int(port), int(peak.replace(",", ""))
    assert abs(made - 300) <= 0.15 * 300, out.stdout
    # every connection left one TIME-WAIT socket (the client closes first), less those a later
    # connect() of the same load took over (tcp_tw_reuse; conftest's ceiling) and the few an
    # RST ends (2 %: see test_interference)
    assert made - own_recycle_ceiling(made, 300) - 0.02 * made - 2 <= peak <= made, out.stdout
    # the lab's counters are the load's own: TcpExt TW counts each of its TIME-WAIT sockets
    # as it is made (kernel.py), and nothing else ran in the lab
    tw = int(re.search(r"kernel counters \(your lab's, so this load's own\): TW \+(\d+)", out.stdout)[1])
    assert tw == made, out.stdout
    # and none of it was on this machine: its TIME-WAIT sockets, 60 s long, went with the lab
    assert count_states(port=port)[TcpState.TIME_WAIT] == 0
