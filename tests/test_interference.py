"""Every count a load reports is its own; what else the machine holds is named; loads on a
shared machine are bounded (issue 13).  Foreign churn runs in a private lab where it fills
tables, so this machine is not touched."""

import json
import os
import re
import subprocess
import sys

import pytest

import tcplearn
from tcplearn import model
from tcplearn.experiments.load import LoadRun, run_load
from tcplearn.experiments.plateau import watch_plateau
from tcplearn.experiments.sharing import SHARE, HostShareError, host_share_check, running_loads

from .churn import start_churn, stop_churn, wait_tw
from .conftest import needs_linux, needs_ss, own_children, own_recycle_ceiling, wait_for

pytestmark = needs_linux


def lab_or_skip():
    ok, why = tcplearn.lab_available()
    if not ok:
        pytest.skip(why)


def _ss_own_time_wait(port: int) -> int:
    out = subprocess.run(["ss", "-tanH", "state", "time-wait", f"( sport = :{port} or dport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    return len(out.splitlines())


def _plateau_beside_foreign_churn():
    os.environ["TCPLEARN_FAST"] = "1"
    churn, churn_port = start_churn(30_000)
    try:
        foreign = wait_tw(20_000, 30)
        run = watch_plateau(rate=300, duration=5, drain=1, progress=False)
        own_by_ss = _ss_own_time_wait(run.result.target[1])
    finally:
        stop_churn(churn)
    return (foreign, churn_port, run.result.connections, run.result.target[1], run.measured_peak(),
            run.predicted_peak(), own_by_ss, run.note, run.interference)


@needs_ss
@pytest.mark.slow
def test_plateau_counts_its_own_sockets_beside_tens_of_thousands_of_foreign_ones():
    lab_or_skip()
    with tcplearn.PrivateLab() as lab:
        measured = lab.run(_plateau_beside_foreign_churn)
    foreign, churn_port, made, port, peak, predicted, by_ss, note, inter = measured
    assert foreign >= 20_000 and port != churn_port and abs(made - 1500) <= 0.15 * 1500
    # Every connection left one TIME-WAIT socket, except those whose port a later connect()
    # of the load took while it was still in TIME-WAIT (tcp_tw_reuse=2 on loopback; TWRecycled
    # counts them, and in a lab that counter is the load's own: the churn's clients hold no
    # TIME-WAIT, the server closes first).  How many the walk can revisit: see conftest
    # (CI saw 144 of 1,500).  Never the churn's sockets.
    recycled = inter["recycled"]
    assert recycled <= own_recycle_ceiling(made, made / 5)   # 300/s for 5 s
    # 2 %: the TIME-WAIT sockets RSTs end (up to 0.6 % measured: see test_load's count) and the
    # last closes still on their way when the sampler takes its last sample
    assert abs(peak + recycled - made) <= 0.02 * made + 2
    assert abs(by_ss - peak) <= 0.02 * peak + 2          # ss, filtered by the load's port, agrees
    # the model's peak (notebook 04's stated error) once the takeovers it does not expect are
    # added back, and the note names them exactly when they are more than a handful
    extra = recycled - inter["recycled_expected"]
    assert abs(peak + extra - predicted) <= 0.10 * predicted
    assert ("TWRecycled" in note) == (extra > max(5, 0.02 * inter["own_peak"]))
    assert inter["foreign_tw_max"] >= 20_000
    assert "other programs held" in note and str(port) in note


def _plateau_in_a_full_table(cap: int):
    os.environ["TCPLEARN_FAST"] = "1"
    tcplearn.sysctl.write_raw(tcplearn.sysctl.SETTINGS["tcp_max_tw_buckets"], cap)
    churn, _ = start_churn(cap + 2_000)
    try:
        wait_tw(cap, 30)
        run = watch_plateau(rate=300, duration=2, drain=0.5, progress=False)
    finally:
        stop_churn(churn)
    return cap, run.note, run.predicted_peak(), run.model_cap, run.measured_peak(), run.result.connections


@pytest.mark.slow
def test_a_full_time_wait_table_is_named_and_caps_the_model():
    lab_or_skip()
    with tcplearn.PrivateLab() as lab:
        cap, note, predicted, model_cap, peak, made = lab.run(_plateau_in_a_full_table, 3000)
    assert "tcp_max_tw_buckets" in note and "cap" in note
    assert model_cap is not None and predicted <= model_cap + 1 and predicted < 0.5 * made
    assert peak <= cap


TWO = r"""
import json, os
os.environ["TCPLEARN_FAST"] = "1"
import tcplearn
# a 2 s drain: on a busy machine the load's server may still be closing its ends when the load stops
run = tcplearn.watch_plateau(rate=300, duration=4, drain=2.0, progress=False)
print(json.dumps({"made": run.result.connections, "peak": run.measured_peak(), "port": run.result.target[1],
                  "others": run.interference.get("other_loads", []), "note": run.note,
                  "recycled": run.interference["recycled"], "errors": run.result.errors,
                  "counters": run.result.netstat_delta("TW", "TWRecycled", "TCPTimeWaitOverflow",
                                                       "TCPAbortOnClose", "ListenDrops")}))
"""


@pytest.mark.slow
def test_two_learners_at_once_each_see_their_own_count():
    procs = [subprocess.Popen([sys.executable, "-c", TWO], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [json.loads(p.communicate(timeout=90)[0].strip().splitlines()[-1]) for p in procs]
    a, b = outs
    assert a["port"] != b["port"]
    for me, other in ((a, b), (b, a)):
        # its own, not the sum of both: every connection's TIME-WAIT, less those whose port a
        # later connect() of the same load took while still in TIME-WAIT.  TWRecycled is
        # machine-wide here (the other load's takeovers are in it too), so no more is taken
        # off than this load's own walk can revisit (see conftest).
        own_recycled = min(me["recycled"], own_recycle_ceiling(me["made"], me["made"] / 4))  # 4 s
        low = me["made"] - own_recycled - 0.02 * me["made"] - 2
        assert low <= me["peak"] <= 1.02 * me["made"] + 2, json.dumps(me)
        assert me["peak"] < me["made"] + 0.5 * other["made"]
    # the loads overlapped, and at least one of them saw the other and said so
    assert b["port"] in a["others"] or a["port"] in b["others"]
    assert any("other tcplearn load" in o["note"] for o in outs)


def _children():
    return own_children()  # the series running in the background are not this test's


def test_a_load_too_big_to_share_the_machine_is_refused_with_the_numbers():
    before = _children()
    with pytest.raises(HostShareError, match=r"more than 25% of the [\d,]+ free") as info:
        run_load(rate=20_000, duration=60, progress=False)
    assert isinstance(info.value, ValueError) and "private lab" in str(info.value)
    assert "tcp_max_tw_buckets" in str(info.value) or "ip_local_port_range" in str(info.value)
    assert _children() == before                     # refused before anything started
    assert SHARE == 0.25
    machine = host_share_check(dict(rate=100, duration=1))  # a small load passes, and reads the machine
    assert machine.tw_cap and machine.ports and machine.ports_in_use is not None


def test_a_running_load_is_listed_in_its_namespace_and_gone_after():
    run = LoadRun(rate=200, duration=1.0).start()
    try:
        assert (os.getpid(), run.target[1]) in running_loads()
    finally:
        run.finish()
    assert (os.getpid(), run.target[1]) not in running_loads()


def test_the_port_walk_model():
    # facts L20: the search moves on 1 + U{0..7} ports of one parity: one pass of 14,116 ports
    # takes 14,116 / 4.5 connections, all distinct; the random-choice estimate is lower
    assert model.distinct_ports(3000, 28232) == pytest.approx(3000)
    assert model.distinct_ports(12_100, 28232) == pytest.approx(8740, abs=5)
    assert model.distinct_ports(12_100, 28232, walk=False) == pytest.approx(8126, abs=5)
    assert model.time_wait_plateau(200, time_wait=60.5, ports=28232, reuse=True) == pytest.approx(8740, abs=5)


@pytest.mark.slow
def test_notebooks_count_their_own_sockets_beside_a_foreign_churn(executed_series):
    """Notebooks 02, 04 and 05 executed headless while another program has left thousands of
    TIME-WAIT sockets on this machine: no error, and the numbers they print are their own.
    The series is executed once for the whole suite, with the churn (tests/conftest.py)."""
    import re

    foreign = executed_series.foreign_tw
    assert foreign >= 10_000, "the foreign churn left its TIME-WAIT sockets on the machine"
    for name in executed_series.amid_churn:
        assert executed_series.results[name] == "ok", executed_series.results[name]

    plateau = re.search(r"Load: (\d+) connections/s for ([\d.]+) s\. TIME-WAIT peak: \*\*(\d+) measured\*\*",
                        executed_series.texts("04-state-counts-under-load.ipynb"))
    assert plateau, "notebook 04 printed its plateau"
    rate, seconds, peak = float(plateau[1]), float(plateau[2]), int(plateau[3])
    assert abs(peak - rate * seconds) <= 0.15 * rate * seconds, "the plateau counts the load's own sockets"
    assert peak < foreign / 2, "not the machine's TIME-WAIT count"
    restarts = re.findall(r"'time_wait_on_port': (\d+)", executed_series.texts("02-time-wait-and-2msl.ipynb"))
    assert restarts and set(restarts) == {"1"}, "notebook 02 counts the TIME-WAIT on its own port only"


def test_time_wait_reused_beyond_the_port_search_is_named():
    from tcplearn.experiments.sharing import Interference

    # in a lab the namespace, and so its TcpExt TWRecycled, is the load's own
    lab = Interference(port=4242, own_peak=1416, recycled=84, reuse_possible=True, counters_own=True,
                       made=1500).sentence()
    assert "84 of this load's connections took over a port" in lab and "TWRecycled in your lab" in lab
    assert "84 more than the model's port search expects" in lab and "every program" not in lab
    # on the machine the counter counts every program: only what the load's own sockets show is its own
    host = Interference(port=4242, own_peak=1416, recycled=1084, reuse_possible=True, made=1500,
                        own_taken=84).sentence()
    assert "up to 84 of this load's connections" in host and "can sit up to 84 below the model" in host
    assert "TcpExt TWRecycled, which counts every program on the machine, rose by 1,084" in host
    # issue 23: a 600-connection load that measured exactly the model beside a foreign churn's 1,002
    # takeovers is not blamed for them, and no shortfall larger than the load is ever named
    review = Interference(port=4242, own_peak=600, recycled=1002, reuse_possible=True, made=600,
                          own_taken=0).sentence()
    assert ("rose by 1,002" in review and "none of them was this load's" in review
            and "below the model" not in review)
    huge = Interference(port=4242, own_peak=0, recycled=5000, reuse_possible=True, counters_own=True,
                        made=600).sentence()
    assert "600 of this load's connections" in huge and "up to 600 below" in huge and "5,000" not in huge
    # what the load's own sockets cannot tell (an older recording) is not attributed to it
    unknown = Interference(port=4242, own_peak=1416, recycled=84, reuse_possible=True).sentence()
    assert "rose by 84" in unknown and "this load's connections" not in unknown and "below" not in unknown
    # a load longer than one TIME-WAIT: expiry and reuse mix, the model's plateau is the comparison
    assert Interference(port=4242, own_peak=8549, recycled=4832, recycled_expected=None,
                        reuse_possible=True).sentence() == ""
    # reuse the model's port search expects is no surprise, and a load that cannot reuse its own
    # ports (server closes first, bind before connect, tcp_tw_reuse=0) is not blamed for others'
    assert Interference(port=4242, own_peak=8800, recycled=5200, recycled_expected=5190, reuse_possible=True,
                        counters_own=True).sentence() == ""
    assert Interference(port=4242, own_peak=1416, recycled=84).sentence() == ""


@pytest.mark.slow
def test_time_wait_taken_over_by_another_program_is_not_the_loads():
    """Issue 23: on this machine, beside a foreign program whose connects take over its own
    TIME-WAIT ports, notebook 04's fast-mode load (600 connections) is not told it lost what
    the machine-wide TcpExt TWRecycled counted."""
    from tcplearn.base.kernel import netstat

    from .churn import start_reusing_churn, stop_reusing_churn

    probe = LoadRun(rate=200, duration=3.0)
    if not probe._reuse_possible():
        pytest.skip("tcp_tw_reuse does not apply to loopback connects here")
    churn, churn_port = start_reusing_churn(1000)
    try:
        # its walk has gone round the ports once it takes over TIME-WAIT ports at about its rate
        before = netstat().get("TWRecycled", 0)
        wait_for(lambda: netstat().get("TWRecycled", 0) - before >= 500, timeout=30,
                 what="the foreign churn taking over its own TIME-WAIT ports")
        result = run_load(rate=200, duration=3.0, sample_interval=0.25, progress=False)
    finally:
        stop_reusing_churn(churn)
    inter, made, note = result.interference, result.connections, result.note
    assert result.target[1] != churn_port and not inter["counters_own"]
    # the review's situation: the namespace's counter grew by more than this load made
    assert inter["recycled"] - inter["recycled_expected"] > made, inter
    # its own takeovers, from its own sockets: no more than its own walk can revisit (conftest)
    # plus the 2 % an RST ends or the sampler misses (test_plateau_counts_its_own_sockets...)
    own = inter["own_taken"]
    assert own is not None and own <= own_recycle_ceiling(made, 200) + 0.02 * made + 2, inter
    assert "which counts every program on the machine" in note, note
    for shortfall in re.findall(r"up to ([\d,]+) below the model", note):
        assert int(shortfall.replace(",", "")) <= own <= made, note


def test_expected_reuse_counts_only_revisits_within_one_time_wait():
    run = LoadRun(rate=200, duration=1.0)
    if not run._reuse_possible():
        pytest.skip("tcp_tw_reuse does not apply to loopback connects here")
    ports = model.ports_in_range(tcplearn.sysctl.read("ip_local_port_range"))
    assert run._expected_recycles(1500, 5.0) == round(1500 - model.distinct_ports(1500, ports))
    if ports == 28_232:  # the default range: notebook 04's 60 s at 200/s holds ~8,740 ports
        assert run._expected_recycles(12_100, 60.0) == pytest.approx(12_100 - 8_740, abs=5)
    assert run._expected_recycles(14_000, 70.0) is None   # past one TIME-WAIT: not claimed
    assert LoadRun(rate=200, duration=1.0, closer="server")._expected_recycles(1500, 5.0) == 0
