"""The load generator, the sampler and the model, against the kernel's own counters."""

import os
import signal
import subprocess
import sys
import threading
import time

import matplotlib
import pytest

matplotlib.use("Agg")

import tcplearn  # noqa: E402
from tcplearn import TcpState, model, sysctl  # noqa: E402
from tcplearn.base.observe.netlink import sockstat_tw  # noqa: E402
from tcplearn.base.observe.sampler import StateSampler, sample_states  # noqa: E402
from tcplearn.experiments.knobs import with_settings
from tcplearn.experiments.load import MAX_DURATION, MAX_RATE, run_load
from tcplearn.experiments.plateau import time_wait_by_side, watch_plateau
from tcplearn.experiments.remedy import sources_remedy
from tcplearn.view.plots import load_plot, sources_remedy_plot  # noqa: E402
from tcplearn.view.show import load_summary, plateau_figure, time_wait_cost_text  # noqa: E402

from .conftest import needs_linux, needs_ss, own_children, own_recycle_ceiling  # noqa: E402

pytestmark = needs_linux


def lab_or_skip():
    ok, why = tcplearn.lab_available()
    if not ok:
        pytest.skip(why)


def _children():
    return own_children()  # the series running in the background are not this test's


def _tcp_mib() -> dict[str, int]:
    """The ``Tcp:`` counters of /proc/net/snmp (this network namespace)."""
    with open("/proc/net/snmp") as f:
        lines = f.read().splitlines()
    names, values = (line.split()[1:] for line in lines if line.startswith("Tcp:"))
    return dict(zip(names, map(int, values), strict=True))


def _counts_in_lab():
    """A short load in a fresh namespace, then three independent counts of TIME-WAIT."""
    resets_before = _tcp_mib()["OutRsts"]
    result = run_load(rate=2000, duration=1.0, progress=False)
    # the last closes reach TIME-WAIT asynchronously: wait (with a deadline) until no socket of
    # the run is still on its way there, then count three ways
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        counts = tcplearn.count_states()
        if not any(counts[s] for s in (TcpState.ESTABLISHED, TcpState.FIN_WAIT_1, TcpState.FIN_WAIT_2,
                                       TcpState.CLOSE_WAIT, TcpState.LAST_ACK, TcpState.CLOSING)):
            break
        time.sleep(0.02)
    ours = tcplearn.count_states()[TcpState.TIME_WAIT]
    stat = sockstat_tw()
    ss_walk = subprocess.run(["ss", "-tan", "state", "time-wait"], capture_output=True, text=True).stdout
    ss_summary = subprocess.run(["ss", "-s"], capture_output=True, text=True).stdout
    timewait_line = next(line for line in ss_summary.splitlines() if line.startswith("TCP:"))
    delta = result.netstat_delta()  # the lab's own counters: this load's only
    resets = _tcp_mib()["OutRsts"] - resets_before
    return (result.connections, result.rate, delta["TW"], delta["TWRecycled"], resets, ours, stat,
            len(ss_walk.splitlines()) - 1, timewait_line)


@needs_ss
def test_time_wait_count_agrees_with_sockstat_and_ss():
    lab_or_skip()
    with tcplearn.PrivateLab() as lab:
        connections, rate, entered, recycled, resets, ours, stat, walked, summary = lab.run(_counts_in_lab)
    assert connections >= 1900
    assert entered == connections            # TcpExt TW: every connection's client end entered TIME-WAIT
    # Two things end a TIME-WAIT early, and the lab's own counters name each (see conftest):
    #  - a later connect() of the load took over its port (tcp_tw_reuse=2 on loopback):
    #    TcpExt TWRecycled, at most what the port walk allows;
    #  - a reset: measured (capture in a lab, 6.18), the client's end acknowledges the
    #    server's FIN twice, 60 µs apart; the second ACK finds the server's socket already
    #    closed, the server answers with a RST (tcp_v4_send_reset: no socket), and a RST
    #    ends a TIME-WAIT (tcp_timewait_state_process, with tcp_rfc1337=0, the default).
    #    Each one is a RST the lab sent (Tcp OutRsts); 0 to 12 in 2,000 were seen.
    assert recycled <= own_recycle_ceiling(connections, rate)
    assert ours == connections - recycled - resets
    assert stat == ours                      # /proc/net/sockstat tw
    assert abs(walked - ours) <= 2           # ss walking the sockets
    assert f"timewait {ours})" in summary    # ss -s


def _sides_once_settled(result, timeout: float = 5.0) -> dict[str, int]:
    """``time_wait_by_side``, polled until every connection of the run has reached TIME-WAIT
    (the last closes get there asynchronously) or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        sides = time_wait_by_side(result)
        if sum(sides.values()) >= result.connections or time.monotonic() > deadline:
            return sides
        time.sleep(0.02)


def test_achieved_rate_and_timeline():
    result = run_load(rate=500, duration=1.0, progress=False)
    assert 480 <= result.connections <= 510 and 450 <= result.rate <= 520 and result.errors == {}
    assert result.timeline["connections"].sum() == result.connections
    assert _sides_once_settled(result)["client side"] >= result.connections - 5


def test_server_closing_first_puts_time_wait_on_the_server():
    result = run_load(rate=300, duration=0.5, closer="server", progress=False)
    sides = _sides_once_settled(result)
    assert sides["server side"] >= result.connections - 5 and sides["client side"] == 0


@pytest.mark.slow
def test_fast_plateau_model_within_ten_percent():
    os.environ["TCPLEARN_FAST"] = "1"
    try:
        run = watch_plateau(rate=400, progress=False)
    finally:
        del os.environ["TCPLEARN_FAST"]
    # A connect() that takes over one of the load's own ports still in TIME-WAIT, beyond what
    # the port walk expects, ends that TIME-WAIT early (TWRecycled, see conftest): the model's
    # peak holds once those are added back.  On the machine the counter is machine-wide, so
    # no more is added back than this load's walk can revisit.
    inter, result = run.interference, run.result
    assert inter["recycled_expected"] is not None          # a run within one TIME-WAIT
    extra = inter["recycled"] - inter["recycled_expected"]
    own_extra = min(max(0, extra), own_recycle_ceiling(result.connections, result.rate))
    assert abs(run.measured_peak() + own_extra - run.predicted_peak()) <= 0.1 * run.predicted_peak()
    # ... and the note names the takeover exactly when it is more than a handful
    named = inter["reuse_possible"] and extra > max(5, 0.02 * inter["own_peak"])
    assert ("TWRecycled" in run.note) == named
    fig = plateau_figure(run.value)
    gids = {line.get_gid() for line in fig.axes[0].get_lines()}
    assert {"measured:TIME_WAIT", "model:TIME_WAIT"} <= gids


def _plateau_in_lab(rate, duration, tw_reuse):
    tcplearn.sysctl.write_raw(tcplearn.sysctl.SETTINGS["tcp_tw_reuse"], tw_reuse)
    with StateSampler(1.0) as sampler:
        result = run_load(rate=rate, duration=duration, progress=False)
    return result.rate, sampler.frame()


@pytest.mark.slow
def test_plateau_matches_the_model_within_ten_percent_with_and_without_reuse():
    lab_or_skip()
    from concurrent.futures import ThreadPoolExecutor

    from tcplearn.base.kernel import timer_slack

    def one(tw_reuse):
        with tcplearn.PrivateLab() as lab:
            return lab.run(_plateau_in_lab, 500, 66.0, tw_reuse)

    with ThreadPoolExecutor(2) as pool:  # both runs at once: one minute, not two
        no_reuse, reuse = pool.map(one, (0, 2))
    ports = model.ports_in_range(sysctl.read("ip_local_port_range"))
    time_wait = 60 + timer_slack()[1] / 2
    for (achieved, frame), use in ((no_reuse, False), (reuse, True)):
        plateau = frame[frame["t"] >= 62]["TIME_WAIT"].mean()
        predicted = model.time_wait_plateau(achieved, time_wait=time_wait, ports=ports, reuse=use)
        assert abs(plateau - predicted) <= 0.1 * predicted, (use, plateau, predicted)


@pytest.mark.slow
def test_port_exhaustion_starts_when_the_model_says():
    lab_or_skip()
    result = with_settings({"ip_local_port_range": (40000, 40199), "tcp_tw_reuse": 0},
                           rate=100, duration=3.0, progress=False)
    expected = model.exhaustion_time(100, model.ports_in_range((40000, 40199)))
    assert "EADDRNOTAVAIL" in result.errors
    assert abs(result.first_error_at() - expected) <= 0.3
    # the line under the plot gives the rate until the ports ran out, as the plot's title does
    until = result.rate_until_first_error()
    assert 90 <= until <= 110 and result.rate < 80
    shown = f"{until:.0f}/s until the first EADDRNOTAVAIL"
    assert shown in load_summary(result) and shown in load_plot(result).axes[0].get_title()
    # the first failure is reported by the end of its 0.1 s bin, the time the plot draws that bin at:
    # no failure before it, and no success after it (no TIME-WAIT can expire in 3 s)
    first, tl = result.first_error_at(), result.timeline
    assert tl[tl["t"] < first - 1e-9]["errors"].sum() == 0
    assert tl[tl["t"] > first + 1e-9]["connections"].sum() == 0
    by = f"by {first:.1f} s"
    assert by in load_summary(result) and by in load_plot(result).axes[0].get_title()
    # TcpExt TW counts the TIME-WAIT entries scheduled: one per connection closed
    assert result.netstat_delta()["TW"] == result.connections
    # the load's own server took a port from the narrowed range, and connect() never gets it
    assert 40000 <= result.target[1] <= 40199 and result.connections <= 199
    reused = with_settings({"ip_local_port_range": (40000, 40199), "tcp_tw_reuse": 1},
                           rate=100, duration=3.0, progress=False)
    assert reused.errors == {} and reused.netstat_delta()["TW"] == reused.connections
    # reuse as ready as a free port, one parity searched first: well under the 199 usable ports ever
    # got a port that no TIME-WAIT held; every other connection reused one (TWRecycled)
    fresh = reused.netstat_delta()["TW"] - reused.netstat_delta()["TWRecycled"]
    assert reused.netstat_delta()["TWRecycled"] > 0 and fresh <= 150, fresh


@pytest.mark.slow
def test_bind_before_connect_defeats_tw_reuse():
    lab_or_skip()
    result = with_settings({"ip_local_port_range": (40000, 40199)}, rate=100, duration=3.0,
                           bind_before_connect=True, progress=False)
    assert "EADDRINUSE" in result.errors and result.connections <= 200


def test_max_tw_buckets_caps_time_wait():
    lab_or_skip()
    result = with_settings({"tcp_max_tw_buckets": 100}, rate=500, duration=1.0, sample_interval=0.1,
                           progress=False)
    assert result.samples["TIME_WAIT"].max() == 100
    assert result.netstat_delta()["TCPTimeWaitOverflow"] == result.connections - 100


@pytest.mark.slow
def test_several_sources_and_ipv6():
    result = run_load(rate=400, duration=0.5, sources=4, progress=False)
    assert result.errors == {} and result.connections >= 190
    import socket
    if socket.has_ipv6:
        result = run_load(rate=200, duration=0.5, family=socket.AF_INET6, progress=False)
        assert result.errors == {} and result.connections >= 90


@pytest.mark.parametrize("kwargs,message", [
    (dict(target=("10.0.0.1", 80)), "loopback only"),
    (dict(target=("example.org", 80)), "loopback only"),
    (dict(rate=-5), "rate must be"),
    (dict(rate=MAX_RATE + 1), "rate must be"),
    (dict(duration=0), "duration must be"),
    (dict(duration=MAX_DURATION + 1), "duration must be"),
    (dict(count=0), "count must be"),
    (dict(closer="both"), "closer must be"),
    (dict(sources=2, family=10), "several sources need IPv4"),
    (dict(concurrency=10_000), "concurrency must be"),
])
def test_bad_inputs_get_clear_errors(kwargs, message):
    before = _children()
    with pytest.raises(ValueError, match=message):
        run_load(progress=False, **kwargs)
    assert _children() == before  # refused before anything started


def test_inverted_port_range_is_refused():
    with pytest.raises(sysctl.SysctlError, match="low <= high"):
        sysctl.validate("ip_local_port_range", (40199, 40000))
    with pytest.raises(ValueError, match="low <= high"):
        model.ports_in_range((40199, 40000))


def _threads() -> int:
    """Live threads, less tqdm's monitor: tqdm (4.70) starts one TMonitor per process with its
    first bar, even a disabled one, and keeps it for the life of the process, so whether it is
    counted depends on whether an earlier test made a bar; it is not the load's."""
    from tqdm._monitor import TMonitor

    return sum(1 for th in threading.enumerate() if not isinstance(th, TMonitor))


def test_threads_children_and_descriptors_come_back_after_a_run_and_an_interrupted_run(sigint_raises):
    threads, children = _threads(), _children()
    run_load(rate=1000, duration=0.5, progress=False)
    assert _threads() == threads and _children() == children
    timer = threading.Timer(0.4, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_load(rate=500, duration=10, progress=False)  # within the share of a machine others use
    finally:  # a load refused or failed before the signal: the signal must not hit the next test
        timer.cancel()
        timer.join()
    assert time.monotonic() - t0 < 5
    deadline = time.monotonic() + 5
    while (_threads() != threads or _children() != children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _threads() == threads and _children() == children


def test_sampler_thread_stops_and_samples_are_counts():
    threads = threading.active_count()
    frame = sample_states(0.6, 0.1, progress=False)
    assert len(frame) >= 5 and {"t", "TIME_WAIT", "ESTABLISHED"} <= set(frame.columns)
    assert threading.active_count() == threads
    with pytest.raises(ValueError, match="interval"):
        StateSampler(0)


def test_model_numbers():
    assert model.time_wait_plateau(200) == 12000
    assert model.time_wait_plateau(5000, max_tw_buckets=131072) == 131072
    assert round(model.sustainable_rate(28232)) == 471   # facts K2: about 470/s
    assert model.exhaustion_time(100, 200) == 2.0 and model.exhaustion_time(1, 200) is None
    assert model.reuse_applies(2, loopback=True) and not model.reuse_applies(2, loopback=False)
    assert not model.reuse_applies(1, bind_before_connect=True)
    frame = model.predict_counts(10, 5, time_wait=60, until=70, step=1)
    assert frame.set_index("t").loc[5, "TIME_WAIT"] == 50 and frame.set_index("t").loc[70, "TIME_WAIT"] == 0


@pytest.mark.slow
def test_cli_load_runs_and_refuses_non_loopback():
    ok = subprocess.run([sys.executable, "-m", "tcplearn", "load", "--rate", "200", "--duration", "0.5"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "connections in" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "tcplearn", "load", "--target", "10.1.2.3:80"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "loopback only" in bad.stderr


# ---------------------------------------------------------------- the remedy: more four-tuples


@pytest.mark.slow
def test_more_source_addresses_multiply_the_sustainable_rate():
    """Measured in a lab with tcp_tw_reuse=0 and 200 ports per run: each source address adds
    the same number of four-tuples towards one destination, so the rate it sustains grows
    k-fold, within 10 %."""
    lab_or_skip()
    remedy = sources_remedy(k_values=(1, 2, 4), progress=False)
    assert remedy.where == "lab" and "tcp_tw_reuse=0" in remedy.note
    for run in remedy.runs:
        load = run["load"]
        assert set(load.errors) == {"EADDRNOTAVAIL"}, load.errors   # the ports ran out, nothing else failed
        assert load.rate_until_first_error() >= 0.8 * 400
        # the table's "first failure by" is where the cumulative successes flatten (bins end-labelled)
        first, tl = load.first_error_at(), load.timeline
        assert tl[tl["t"] > first + 1e-9]["connections"].sum() == 0
        row = remedy.table().set_index("source addresses").loc[run["k"]]
        assert row["first failure by (s; within the 0.1 s before)"] == round(first, 1)
        # 200 ports, less the one the load's own server listens on, per source address
        assert abs(load.connections - 199 * run["k"]) <= 0.02 * 199 * run["k"], (run["k"], load.connections)
    growth = remedy.growth()
    for k in (2, 4):
        assert abs(growth[k] - k) <= 0.1 * k, growth
    assert remedy.rates()[1] == pytest.approx(remedy.four_tuples()[1] / 60)
    fig = sources_remedy_plot(remedy.value)
    gids = {a.get_gid() for ax in fig.axes for a in [*ax.get_lines(), *ax.patches]}
    assert {"remedy:cumulative:1", "remedy:cumulative:4", "remedy:rate:2", "remedy:k-fold"} <= gids


@pytest.mark.parametrize("kwargs,message", [
    (dict(k_values=(2, 4)), "including 1"),
    (dict(k_values=(1, 1)), "distinct"),
    (dict(k_values=(1, 17)), "from 1 to 16"),
    (dict(ports=5), "ports must be"),
    (dict(ports=2000, k_values=(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13)), "do not fit"),
    (dict(rate=None), "one rate"),
    (dict(rate=1, ports=2000, k_values=(1,)), "longer than"),
])
def test_the_remedy_refuses_bad_input_before_anything_runs(kwargs, message):
    before = _children()
    with pytest.raises(ValueError, match=message):
        sources_remedy(progress=False, **kwargs)
    assert _children() == before


# ---------------------------------------------------------------- what TIME-WAIT costs


def test_the_cost_sentence_says_where_the_size_came_from(monkeypatch, tmp_path):
    from tcplearn.base import tw_cost

    size = tcplearn.time_wait_size()
    text = time_wait_cost_text(tcplearn.time_wait_cost(1000))
    if size["source"] == "sysfs":
        assert f"1,000 TIME-WAIT sockets × {size['slab_size']} bytes" in text
        assert "your kernel's own" in text and "/sys/kernel/slab/tw_sock_TCP" in text
    monkeypatch.setattr(tw_cost, "SLAB_DIR", tmp_path)
    monkeypatch.setattr(tw_cost, "SLABINFO", tmp_path / "slabinfo")
    sourced = time_wait_cost_text(tcplearn.time_wait_cost(1000))
    assert "1,000 TIME-WAIT sockets × 256 bytes = 250.0 KiB" in sourced
    assert "sourced figure, **not your kernel's**" in sourced and "Bernat" in sourced


def test_time_wait_by_closer_counts_the_connections_and_their_four_tuples():
    """Review 23, item 10: beside each side's TIME-WAIT count, the connections made and the
    distinct four-tuples they used (one server port, so distinct client ports), from the
    load's own sockets.  A four-tuple holds at most one TIME-WAIT socket, and the closer's
    side holds one for each (both loads are short: nothing expires within a second)."""
    sides = tcplearn.time_wait_by_closer(rate=300, duration=0.5).value
    for name, closer in (("client closes first", "client side"), ("server closes first", "server side")):
        run = sides[name]
        assert 0 < run["four-tuples used"] <= run["connections made"]
        other = "server side" if closer == "client side" else "client side"
        assert run[other] == 0
        # the reuse tcp_tw_reuse=2 allows on loopback, and a takeover by a SYN, both leave one
        # TIME-WAIT socket per four-tuple: never more, and (settled, unexpired) never fewer
        assert run[closer] == run["four-tuples used"], run


@pytest.mark.slow
def test_a_new_syn_takes_over_the_servers_time_wait():
    """Notebook 04's second time_wait_by_closer call, 400 connections over 200 client ports in a
    lab.  The client closing first runs out of ports: each holds a TIME-WAIT less than the
    tcp_tw_reuse_delay (1 s) old, so connect() fails once the range is used.  The server closing
    first never does: its client ports are free, and a SYN to a four-tuple whose server end is in
    TIME-WAIT, its sequence number past the old connection's, takes that entry over
    (tcp_timewait_state_process() returns TCP_TW_SYN; RFC 6191, RFC 9293 §3.6.1).  So the server
    holds one TIME-WAIT socket per four-tuple, fewer than the connections."""
    lab_or_skip()
    result = tcplearn.time_wait_by_closer(rate=400, duration=1.0, port_range=(40000, 40199))
    assert result.where.name == "LAB", result.note
    client, server = result.value["client closes first"], result.value["server closes first"]
    # 200 ports, less the load's own server port when it lies in the range
    assert 199 <= client["connections made"] <= 200 and client["connects failed"] > 0
    assert client["client side"] == client["four-tuples used"] and client["server side"] == 0
    assert server["connects failed"] == 0
    assert server["four-tuples used"] <= 200 < server["connections made"]  # ports used again
    assert server["server side"] == server["four-tuples used"] and server["client side"] == 0
