"""The private network lab, run as the unprivileged user nobody (as a learner would be)."""

import json
import os
import socket

import pytest

import tcplearn
from tcplearn import LabUnavailable, PrivateLab, TcpState
from tcplearn.base.lab import parse_frame, relative

from .conftest import needs_linux, wait_for

pytestmark = needs_linux


def run_check(env, name, *, wrap=()):
    result = env.run(["lab_checks.py", name], timeout=120, wrap=wrap)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def lab_result(nobody):
    if not tcplearn.lab_available()[0]:
        pytest.skip(tcplearn.lab_available()[1])
    return run_check(nobody, "lab")


def test_runs_as_nobody_and_sysctl_holds_inside_only(lab_result):
    r = lab_result
    assert r["uid"] == 65534
    assert r["applied"] == {"tcp_fin_timeout": 5} and r["inside"] == 5
    assert r["host_before"] == r["host_during"] == r["host_after"] != 5


def test_orphaned_fin_wait_2_follows_the_lab_setting(lab_result):
    orphan = lab_result["orphan"]
    assert orphan["state"] == "FIN_WAIT_2" and orphan["timer"] == "timewait"
    assert 4.0 <= orphan["remaining"] <= 5.0


def test_captured_close_is_fin_ack_fin_ack_in_order(lab_result):
    flags = lab_result["close_flags"]
    closing = [f for f in flags if f not in ("SYN", "SYN,ACK")][1:]  # drop the handshake's ACK
    assert flags[:3] == ["SYN", "SYN,ACK", "ACK"]
    assert closing == ["FIN,ACK", "ACK", "FIN,ACK", "ACK"]
    # client, server, client, server, client, server, client: the client closed first
    assert lab_result["close_from_client"] == [True, False, True, True, False, False, True]
    # Relative numbers as Wireshark shows them: each FIN takes one sequence number.
    assert lab_result["close_seq_ack"] == [[0, 0], [0, 1], [1, 1], [1, 1], [1, 2], [1, 2], [2, 2]]


def test_abortive_close_sends_rst_and_leaves_no_time_wait(lab_result):
    assert lab_result["abort_flags"][-1] == "RST,ACK"
    assert "FIN,ACK" not in lab_result["abort_flags"]
    assert lab_result["abort_counts"] == {"LISTEN": 1}


def test_last_ack_can_be_held_in_a_lab_and_ss_agrees(lab_result):
    last_ack = lab_result["last_ack"]
    assert last_ack["held"] and last_ack["states"] == ["FIN_WAIT_2", "LAST_ACK", "LISTEN"]
    assert last_ack["ss"] == ["FIN-WAIT-2", "LAST-ACK", "LISTEN"]  # the oracle, inside the lab


def test_lab_sysctl_refuses_bad_values_global_and_unknown_names(lab_result):
    e = lab_result["errors"]
    assert "tcp_fin_timeout=-1 refused: expected an int from 1 to 600" in e["tcp_fin_timeout"]
    assert "is global, not per network namespace" in e["tcp_max_orphans"]
    assert "unknown or unsupported sysctl 'tcp_tw_recycle'" in e["tcp_tw_recycle"]


def test_nothing_left_behind_after_exit_exception_and_interrupt(nobody):
    if not tcplearn.lab_available()[0]:
        pytest.skip(tcplearn.lab_available()[1])
    r = run_check(nobody, "cleanup")
    for case in ("normal", "exception", "interrupt"):
        assert r[case]["gone"] and r[case]["holders"] == [], case
    assert r["interrupt"]["interrupted"] and r["interrupt"]["seconds"] < 2.0
    assert r["inner_error"].startswith("invalid literal for int()") and r["still_works"] == "woke"
    assert r["children"] == []


def test_blocked_user_namespaces_are_reported(nobody):
    # An outer user namespace whose limit on nested user namespaces is 0.
    outer = ["unshare", "--user", "--map-root-user", "sh", "-c",
             'echo 0 > /proc/sys/user/max_user_namespaces && exec "$0" "$@"']
    r = run_check(nobody, "blocked", wrap=outer)
    reason = "unprivileged user namespaces are disabled here (user.max_user_namespaces=0)"
    assert not r["ok"] and r["why"].startswith(reason)
    assert r["raised"] == r["why"] and r["doctor"] == [False, r["why"]]


# ---------------------------------------------------------------- in this process too


def _inside():
    return os.stat("/proc/self/ns/net").st_ino, tcplearn.backend().listing


def test_lab_from_this_process_has_its_own_network_namespace():
    ok, why = tcplearn.lab_available()
    if not ok:
        pytest.skip(why)
    mine = os.stat("/proc/self/ns/net").st_ino
    with PrivateLab() as lab:
        netns, listing = lab.run(_inside)
        assert netns != mine and listing == "procfs"
    assert os.stat("/proc/self/ns/net").st_ino == mine


def test_host_sockets_close_normally_while_a_lab_runs(listener):
    """The worker must not keep forked copies of host sockets (they would swallow FINs)."""
    if not tcplearn.lab_available()[0]:
        pytest.skip(tcplearn.lab_available()[1])
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    with PrivateLab():
        client.close()
        port = listener.getsockname()[1]
        wait_for(lambda: tcplearn.count_states(port=port)[TcpState.CLOSE_WAIT] == 1, what="CLOSE-WAIT")
    server.close()


def test_using_a_closed_lab_and_bad_arguments_are_clear_errors():
    lab = PrivateLab()
    with pytest.raises(RuntimeError, match="not running"):
        lab.run(print)
    if not tcplearn.lab_available()[0]:
        pytest.skip(tcplearn.lab_available()[1])
    with PrivateLab() as lab:
        with pytest.raises(ValueError, match="needs at least one setting"):
            lab.sysctl()
        with pytest.raises(TypeError, match="must be picklable"):
            lab.run(lambda: 1)


def test_uid_0_inside_a_user_namespace_is_not_root_of_the_machine(nobody):
    r = nobody.run(["-c", "from tcplearn import sysctl; import os; print(os.geteuid(), sysctl.is_root())"],
                   wrap=("unshare", "--user", "--map-root-user"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "False"]


def test_lab_unavailable_is_a_runtime_error_with_a_reason():
    assert issubclass(LabUnavailable, RuntimeError)


# ---------------------------------------------------------------- the segment parser


def _frame_v4(flags, seq, ack, payload=b""):
    tcp = (40000).to_bytes(2, "big") + (80).to_bytes(2, "big") + seq.to_bytes(4, "big") + \
        ack.to_bytes(4, "big") + bytes([5 << 4, flags]) + b"\xff\xff\x00\x00\x00\x00" + payload
    total = 20 + len(tcp)
    ip = bytes([0x45, 0]) + total.to_bytes(2, "big") + b"\x00\x00\x40\x00\x40\x06\x00\x00" + \
        bytes([127, 0, 0, 1]) + bytes([127, 0, 0, 2])
    return bytes(12) + b"\x08\x00" + ip + tcp


def test_segment_parser_reads_flags_lengths_and_relative_numbers():
    syn = parse_frame(_frame_v4(0x02, 1000, 0))
    data = parse_frame(_frame_v4(0x18, 1001, 5000, b"hello"))
    fin = parse_frame(_frame_v4(0x11, 1006, 5000))
    assert (syn.flags, syn.src, syn.dst, syn.sport, syn.dport) == ("SYN", "127.0.0.1", "127.0.0.2", 40000, 80)
    assert data.flags == "PSH,ACK" and data.length == 5 and fin.flags == "FIN,ACK"
    rel = relative([syn, data, fin])
    assert [(s.seq, s.ack) for s in rel] == [(0, 0), (1, 0), (6, 0)]  # no SYN seen from the peer
    assert parse_frame(b"\x00" * 10) is None and parse_frame(bytes(12) + b"\x08\x06" + bytes(28)) is None
