"""Why TIME-WAIT exists, measured: the lost last ACK, the old duplicate, TIME-WAIT
assassination, each run in a private lab with the real kernel.

Oracles besides the experiment's own numbers: the capture (what each segment drew),
``ss -tan`` run inside the same lab after the experiment (which TIME-WAIT sockets are
left), the kernel's counters, and tcpdump reading the pcap files.  The experiments' bodies
are run in a lab the test holds (``REGISTRY[name].body(Place(Where.LAB, lab), ...)``) so
that ``ss`` can look into that lab afterwards; the public calls are run as ``nobody``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading

import pytest

import tcplearn
from tcplearn import sysctl
from tcplearn.base.experiment import REGISTRY, Place, Where
from tcplearn.experiments.old_duplicate import ISN_HZ, PAYLOAD, OldDuplicate
from tcplearn.experiments.tools import inject
from tcplearn.experiments.why_time_wait import LostLastAck, TimeWaitAssassination

from .conftest import needs_linux, needs_ss, ss_rows

pytestmark = [needs_linux, needs_ss]
needs_tcpdump = pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
HOST = ("tcp_max_tw_buckets", "tcp_timestamps", "tcp_rfc1337")


def needs_lab():
    ok, why = tcplearn.lab_available()
    if not ok:
        pytest.skip(why)


def in_lab(name: str, **kwargs):
    """Run experiment ``name``'s body in a lab of our own; return its value and ``ss -tan``
    read inside that lab afterwards (rows with the value's server port)."""
    needs_lab()
    with tcplearn.PrivateLab() as lab:
        value = REGISTRY[name].body(Place(Where.LAB, lab), **kwargs)
        return value, lab.run(ss_rows, value.server_port)


@pytest.fixture(scope="module")
def host_before():
    return {n: sysctl.read(n) for n in HOST}


@pytest.fixture(scope="module")
def with_tw(host_before):
    return in_lab("lost_last_ack", time_wait=True, retransmissions=2)


@pytest.fixture(scope="module")
def without_tw(host_before):
    return in_lab("lost_last_ack", time_wait=False, retransmissions=2)


@pytest.fixture(scope="module")
def duplicates(host_before):
    return {name: in_lab("old_duplicate", **kwargs)[0] for name, kwargs in (
        ("fitted", {"ack": "fitted"}), ("as sent", {"ack": "as sent"}), ("paws", {"timestamps": True}),
        ("short", {"old_bytes": 16384}))}


@pytest.fixture(scope="module")
def assassinations(host_before):
    return {rfc1337: in_lab("time_wait_assassination", rfc1337=rfc1337) for rfc1337 in (0, 1)}


def server_fins(run: LostLastAck):
    return [s for s in run.segments() if s.sport == run.server_port and s.has("FIN")]


def replies_to_fins(run: LostLastAck) -> list[str]:
    """From the capture alone: what the client sent after each of the server's FINs."""
    segs, out = run.segments(), []
    for i, s in enumerate(segs):
        if s.sport == run.server_port and s.has("FIN"):
            reply = next(r for r in segs[i + 1:] if r.sport == run.client_port)
            out.append("RST" if reply.has("RST") else "ACK")
    return out


# ------------------------------------------------------------------ the lost last ACK


def test_with_time_wait_every_fin_draws_an_ack_and_the_server_closes_cleanly(with_tw):
    run, ss = with_tw
    assert isinstance(run, LostLastAck)
    fins = server_fins(run)
    assert len(fins) == 1 + 2 + 1, [str(s) for s in run.segments()]   # the FIN, 2 unheard, 1 heard
    assert replies_to_fins(run) == ["ACK"] * 4 and run.answers == ["ACK"] * 3
    assert [f["heard"] for f in run.fins] == [False, False, False, True]
    times = [s.t for s in fins]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(g > 0.15 for g in gaps) and gaps[-1] > gaps[0] * 1.5, gaps   # RTO from 200 ms, backing off
    assert run.passive_error is None
    assert run.server_states == ["CLOSE_WAIT", "LAST_ACK", "CLOSED"]
    assert run.client_state_while_lost == "TIME_WAIT"
    assert run.counters.get("TCPTimeWaitOverflow", 0) == 0 and run.counters.get("TCPTimeouts", 0) >= 1
    # ss, inside the lab after the run: the client's TIME-WAIT is still there, the server's end is gone
    assert [(r["state"], r["local_port"]) for r in ss] == [("TIME-WAIT", run.client_port)], ss


def test_without_time_wait_the_fins_meet_rsts_and_the_server_ends_with_econnreset(without_tw):
    run, ss = without_tw
    assert run.counters.get("TCPTimeWaitOverflow") == 1, run.counters   # the kernel's own word for it
    assert run.client_while_lost == [] and run.client_state_while_lost is None
    # the FIN-WAIT-2 socket ACKs the first FIN before it is destroyed; every later FIN meets an RST
    assert replies_to_fins(run) == ["ACK", "RST", "RST", "RST"]
    assert run.answers == ["RST"] * 3
    assert run.passive_error == "ECONNRESET"
    assert run.server_states[-1] == "CLOSED" and "LAST_ACK" in run.server_states
    assert ss == [], ss


# ------------------------------------------------------------------ the old duplicate


def test_a_fitted_old_segment_is_read_by_the_new_connection(duplicates):
    run = duplicates["fitted"]
    assert isinstance(run, OldDuplicate)
    assert run.stopped_by is None and run.in_reach
    assert run.old_bytes_delivered > 0 and run.delivered and run.delivered in PAYLOAD * 20
    # exactly the copy's bytes from the new rcv_nxt on, as the capture shows the server ACK them
    assert run.old_bytes_delivered == run.replayed_offset + run.replayed_length
    segs = run.segments()
    replayed = segs[run.replayed]
    assert replayed.sport == run.client_port and replayed.length == run.replayed_length
    answer = next(s for s in segs[run.replayed + 1:] if s.sport == run.server_port)
    assert answer.ack == 1 + run.old_bytes_delivered, str(answer)


def test_the_isn_clock_runs_at_one_per_64_ns(duplicates):
    for run in duplicates.values():
        # within 2 ms of the clock over the gap: a busy VM may pause between the kernel's
        # choosing an ISN and the SYN's leaving (measured once: 0.8 ms over a 31 ms gap)
        assert abs(run.isn_distance - ISN_HZ * run.isn_gap_s) < ISN_HZ * 0.002, \
            (run.isn_distance, run.isn_gap_s)
        assert run.isn_distance == (run.isn_new - run.isn_old) % 2**32
        # the capture's own SYNs carry those ISNs
        syns = [s for s in run.segments() if s.flags == "SYN"]
        assert [inject.header(s.frame).seq for s in syns] == [run.isn_old, run.isn_new]


def test_an_old_ack_number_draws_a_challenge_ack(duplicates):
    run = duplicates["as sent"]
    assert run.delivered == b"" and run.old_bytes_delivered == 0
    assert run.ack_offset < 0, "the old segment acknowledges less than the new connection has sent"
    assert run.stopped_by == "ACK check (RFC 5961)"
    assert run.counters.get("TCPChallengeACK") == 1 and "PAWSEstab" not in run.counters
    answer = next(s for s in run.segments()[run.replayed + 1:] if s.sport == run.server_port)
    assert answer.flags == "ACK" and answer.ack == 1 and answer.seq == 1   # nothing was taken in


def test_paws_drops_the_old_segment_when_timestamps_are_on(duplicates):
    run = duplicates["paws"]
    assert run.timestamps and run.ack == "fitted" and run.in_reach
    assert run.old_bytes_delivered == 0 and run.stopped_by == "PAWS"
    assert run.counters.get("PAWSEstab") == 1
    answer = next(s for s in run.segments()[run.replayed + 1:] if s.sport == run.server_port)
    assert answer.ack == 1


def test_a_short_old_connection_stays_behind_the_isn_clock(duplicates):
    run = duplicates["short"]
    assert run.old_bytes_moved == 16384, "a short connection sends what it was asked, not a whole chunk"
    assert not run.in_reach and run.isn_distance > run.old_bytes_moved
    assert run.replayed_offset + run.replayed_length <= 0, "the copy lies wholly before the new window"
    assert run.stopped_by == "outside the window" and run.old_bytes_delivered == 0
    assert not {"PAWSEstab", "TCPChallengeACK"} & set(run.counters)


# ------------------------------------------------------------------ TIME-WAIT assassination


def test_rfc1337_0_lets_the_rst_kill_time_wait(assassinations):
    run, ss = assassinations[0]
    assert isinstance(run, TimeWaitAssassination)
    assert [r["state"] for r in run.rows_before] == ["TIME_WAIT"]
    assert not run.time_wait_survived and run.rows_after == []
    assert ss == [], ss                                              # ss agrees: no TIME-WAIT left
    assert run.rst_seq == run.time_wait_expects, "the RST carries exactly the seq TIME-WAIT expects"
    assert run.tcp_counters.get("OutRsts") == 1 and run.tcp_counters.get("InSegs") == 2
    segs = run.segments()
    assert segs[run.replayed].flags == "ACK" and segs[run.replayed].sport == run.client_port
    assert segs[run.replayed + 1].has("RST") and segs[run.replayed + 1].sport == run.server_port


def test_rfc1337_1_keeps_time_wait(assassinations):
    run, ss = assassinations[1]
    assert run.time_wait_survived and run.rst_seq == run.time_wait_expects
    assert [r["state"] for r in run.rows_after] == ["TIME_WAIT"]
    assert [(r["state"], r["local_port"]) for r in ss] == [("TIME-WAIT", run.client_port)], ss
    # its timer ran on: the RST neither ended it nor restarted it
    assert run.rows_after[0]["timer_s"] <= run.rows_before[0]["timer_s"]


# ------------------------------------------------------------------ pcap files


def _tcpdump(path, *extra) -> list[str]:
    out = subprocess.run(["tcpdump", "-nn", *extra, "-r", str(path)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


@needs_tcpdump
def test_tcpdump_reads_each_runs_pcap(tmp_path, with_tw, duplicates, assassinations):
    flag_letters = {"S": "SYN", "F": "FIN", "R": "RST", "P": "PSH", ".": "ACK"}
    for name, run in (("lost", with_tw[0]), ("dup", duplicates["fitted"]), ("tw", assassinations[0][0])):
        path = run.save_pcap(tmp_path / f"{name}.pcap")
        lines = _tcpdump(path)
        assert len(lines) == len(run.segments()), name
        read = [{flag_letters[c] for c in re.search(r"Flags \[([^\]]*)\]", line).group(1)} for line in lines]
        assert read == [set(s.flags.split(",")) for s in run.segments()], name


@needs_tcpdump
def test_the_replayed_segments_checksum_is_correct(tmp_path, duplicates, assassinations):
    """Captured loopback frames carry no TCP checksum (offload); the copy sent again does."""
    for run in (duplicates["fitted"], assassinations[0][0]):
        lines = _tcpdump(run.save_pcap(tmp_path / "x.pcap"), "-vv")
        tcp_lines = [line for line in lines if "cksum" in line and "Flags" in line]
        assert len(tcp_lines) == len(run.segments())
        assert "(correct)" in tcp_lines[run.replayed], tcp_lines[run.replayed]


@needs_tcpdump
def test_a_recorded_runs_pcap_opens_too(tmp_path, monkeypatch):
    monkeypatch.setenv("TCPLEARN_BACKEND", "psutil")
    result = tcplearn.time_wait_assassination(rfc1337=0)
    assert result.where is Where.RECORDED
    lines = _tcpdump(result.value.save_pcap(tmp_path / "recorded.pcap"))
    assert len(lines) == len(result.value.segments())


# ------------------------------------------------------------------ the ladder, bad input, nothing left


@pytest.mark.parametrize("call, message", [
    (lambda: tcplearn.old_duplicate(ack="late"), "unknown ack mode 'late'"),
    (lambda: tcplearn.old_duplicate(old_bytes=-5), "old_bytes=-5"),
    (lambda: tcplearn.old_duplicate(timestamps="yes"), "timestamps='yes'"),
    (lambda: tcplearn.lost_last_ack(retransmissions=-1), "retransmissions=-1"),
    (lambda: tcplearn.lost_last_ack(retransmissions=9), "from 0 to 4"),
    (lambda: tcplearn.lost_last_ack(time_wait=None), "time_wait=None"),
    (lambda: tcplearn.time_wait_assassination(rfc1337=2), "rfc1337=2"),
])
def test_bad_input_is_refused_before_anything_runs(call, message):
    before = threading.active_count()
    with pytest.raises(ValueError, match=re.escape(message)):
        call()
    assert threading.active_count() == before


def test_recorded_runs_replay_with_their_tables_and_diagrams(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from tcplearn.view import display, why

    monkeypatch.setenv("TCPLEARN_BACKEND", "psutil")
    for name in ("lost_last_ack", "old_duplicate", "time_wait_assassination"):
        exp = REGISTRY[name]
        for c in exp.calls:
            result = exp(*c.args, **c.kwargs)
            assert result.where is Where.RECORDED and "recorded run" in result.note, result.note
            module, _, function = display.shown()[(type(result.value).__module__,
                                                   type(result.value).__name__)] \
                .rpartition(":")
            assert module == "tcplearn.view.why" and callable(getattr(why, function))
    dup = tcplearn.old_duplicate(ack="fitted").value
    fig = why.why_diagram(dup.segments(), dup.server_port, replayed=dup.replayed, skip=why._old_skip(dup))
    gids = [p.get_gid() for p in fig.axes[0].patches]
    assert f"segment:{dup.replayed}:replayed" in gids
    assert any("replayed:" in t.get_text() for t in fig.axes[0].texts)
    assert why.old_duplicate_table(dup)["value"].str.contains("bytes").any()
    table = why.old_duplicates_table({"fitted": tcplearn.old_duplicate(ack="fitted"),
                                      "as sent": tcplearn.old_duplicate(ack="as sent")})
    assert list(table["ran"]) == ["recorded", "recorded"]
    assert list(table["stopped by"]) == ["nothing", "ACK check (RFC 5961)"]
    assert table["counter"][0] == "-" and "TCPChallengeACK" in table["counter"][1]
    lost = tcplearn.lost_last_ack(time_wait=False).value
    unheard, _ = why._lost_marks(lost)
    assert len(unheard) == 3 and list(why.lost_last_ack_table(lost)["client answered"]) \
        == ["ACK", "RST", "RST", "RST"]


def test_the_host_is_untouched(host_before, with_tw, without_tw, duplicates, assassinations):
    assert {n: sysctl.read(n) for n in HOST} == host_before


def test_runs_as_nobody_in_a_lab(nobody):
    needs_lab()
    out = nobody.run(["why_checks.py"], timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["uid"] == 65534 and r["before"] == r["after"]
    runs = r["runs"]
    assert {k: v["where"] for k, v in runs.items()} == dict.fromkeys(runs, "lab")
    lost = LostLastAck.from_record(runs["lost_without_time_wait"]["value"])
    assert lost.passive_error == "ECONNRESET" and lost.answers == ["RST", "RST"]
    dup = OldDuplicate.from_record(runs["old_duplicate_fitted"]["value"])
    assert dup.stopped_by is None and dup.old_bytes_delivered > 0
    tw = TimeWaitAssassination.from_record(runs["assassination"]["value"])
    assert not tw.time_wait_survived and tw.rst_seq == tw.time_wait_expects
