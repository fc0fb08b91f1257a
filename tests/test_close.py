"""ConnectionPair: every close variant, against the kernel, ss, the RFC table and real captures."""

import socket

import matplotlib
import pytest

matplotlib.use("Agg")

import tcplearn  # noqa: E402
from tcplearn import TRANSITIONS, TcpState  # noqa: E402
from tcplearn.base.experiment import REGISTRY  # noqa: E402
from tcplearn.base.states import Event  # noqa: E402
from tcplearn.experiments.close import (  # noqa: E402
    ORPHAN_TIMER,
    SCENARIOS,
    SINCE_CALL,
    CloseRun,
    ConnectionPair,
    Step,
    _play,
    check_history,
    predict,
    run_scenario,
    save_pcap,
)

from .conftest import needs_linux, needs_ss, ss_rows  # noqa: E402
from .test_pcap import needs_tcpdump, tcpdump_flags  # noqa: E402

pytestmark = needs_linux
S = TcpState
E, FW2, CW, TW, CL = S.ESTABLISHED, S.FIN_WAIT_2, S.CLOSE_WAIT, S.TIME_WAIT, S.CLOSED

# The (client, server) states after each step, as Linux reports them on loopback.
EXPECTED = {
    "client-closes-first": [(E, E), (FW2, CW), (TW, CL)],
    "server-closes-first": [(E, E), (CW, FW2), (CL, TW)],
    "half-close": [(E, E), (FW2, CW), (FW2, CW), (FW2, CW), (TW, CL), (TW, CL), (TW, CL)],
    "abort": [(E, E), (CL, CL)],
    "unread-data": [(E, E), (E, E), (CL, CL), (CL, CL)],
    "server-closes-at-once": [(E, E), (TW, CL)],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_every_variant_on_the_host(name, family, monkeypatch):
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("no IPv6")
    monkeypatch.setattr("tcplearn.experiments.close.ConnectionPair.__init__.__defaults__", (family,))
    history, *_ = _play(name, False, False, 2.0)
    assert [s.states for s in history] == EXPECTED[name]
    assert all(s.settled for s in history), "the kernel reached the RFC's prediction"
    assert check_history(history) == []


def test_half_close_data_still_flows_and_eof_is_empty_bytes():
    with ConnectionPair() as pair:
        pair.client_shutdown()
        pair.server_send(b"after the FIN")
        assert pair.client_recv() == b"after the FIN"
        pair.server_close()
        assert pair.client_recv() == b""
        assert pair.states() == (TW, CL)


def test_close_wait_leak_on_the_host():
    with ConnectionPair() as pair:
        pair.client_close()
        assert pair.states() == (FW2, CW)
        # The server never closes: CLOSE-WAIT stays as long as it holds the socket.
        step = pair.wait_until(timeout=0.3)
        assert step.server_state is CW


def test_steps_cross_checked_with_ss():
    if ss_rows is None:
        pytest.skip("no ss")
    with ConnectionPair() as pair:
        pair.client_close()
        rows = {(r["local_port"], r["remote_port"]): r["state"] for r in ss_rows(pair.server_port)}
        assert rows == {(pair.client_port, pair.server_port): "FIN-WAIT-2",
                        (pair.server_port, pair.client_port): "CLOSE-WAIT"}
        pair.server_close()
        rows = {(r["local_port"], r["remote_port"]): r["state"] for r in ss_rows(pair.server_port)}
        assert rows == {(pair.client_port, pair.server_port): "TIME-WAIT"}


test_steps_cross_checked_with_ss = needs_ss(test_steps_cross_checked_with_ss)


def test_no_descriptor_left_after_an_exception_inside_the_block():
    # The autouse fixture checks the descriptor count before and after.
    with pytest.raises(ZeroDivisionError):
        with ConnectionPair() as pair:
            pair.client_shutdown()
            raise ZeroDivisionError("an experiment failed")
    assert pair.client is None and pair.server is None


def test_bad_uses_are_clear_errors():
    with pytest.raises(ValueError, match="family must be"):
        ConnectionPair(family=socket.AF_UNIX)
    with ConnectionPair() as pair:
        pair.client_close()
        with pytest.raises(RuntimeError, match="client socket is already closed"):
            pair.client_send(b"x")
        with pytest.raises(ValueError, match="non-empty bytes"):
            pair.server_send("text")
    with pytest.raises(ValueError, match="unknown scenario 'teardown'"):
        run_scenario("teardown")


def test_simultaneous_close_on_the_host_is_honest_about_the_race():
    history, *_ = _play("simultaneous", False, False, 1.0)
    step = history[-1]
    assert step.expected == (TW, TW)  # RFC 9293 figure 13
    # Loopback delivers the first FIN inside the first close(): usually one end wins.
    assert step.states in {(TW, TW), (TW, CL), (CL, TW)}
    assert check_history(history) == []


def test_prediction_follows_the_table():
    final, segments = predict({"client": E, "server": E}, [("client", Event.CLOSE)])
    assert final == {"client": FW2, "server": CW} and segments == [("client", "FIN"), ("server", "ACK")]
    final, segments = predict({"client": E, "server": E}, [("client", Event.CLOSE), ("server", Event.CLOSE)])
    assert final == {"client": TW, "server": TW}
    assert segments == [("client", "FIN"), ("server", "FIN"), ("server", "ACK"), ("client", "ACK")]
    final, segments = predict({"client": E, "server": E}, [("client", Event.ABORT)])
    assert final == {"client": CL, "server": CL} and segments == [("client", "RST")]


# ---------------------------------------------------------------- real captures in a lab

_FLAGS = {"FIN": {"FIN,ACK", "FIN"}, "FIN,ACK": {"FIN,ACK"}, "ACK": {"ACK"}, "RST": {"RST", "RST,ACK"},
          "DATA": {"PSH,ACK"}, "SYN": {"SYN"}, "SYN,ACK": {"SYN,ACK"}}


def _kind(seg) -> str:
    return next(k for k, accepted in _FLAGS.items() if seg.flags in accepted)


@pytest.fixture(scope="module")
def lab_runs():
    ok, why = tcplearn.lab_available()
    if not ok:
        pytest.skip(why)
    return {name: run_scenario(name) for name in SCENARIOS}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_captured_segments_are_what_the_rfc_predicts(lab_runs, name):
    run = lab_runs[name]
    assert run.where == "lab"
    if name == "close-wait-leak":  # Linux's orphan timer is not RFC 9293's: see the test below
        assert len(check_history(run.history)) == 1
    else:
        assert check_history(run.history) == []
    if name == "server-closes-at-once":
        pytest.skip("three or four segments depends on timing: test_lab_three_segments_or_four")
    for step, captured in zip(run.history, run.segments_by_step, strict=True):
        senders = ["server" if s.sport == run.server_port else "client" for s in captured]
        if name == "close-wait-leak" and step.actor == "nobody":
            assert captured == []  # an orphaned FIN-WAIT-2 expires silently
            continue
        # A segment sent again with the same flags and seq is a retransmission (the lab's
        # simultaneous close loses both FINs on purpose): the RFC's list counts it once.
        firsts, seen = [], set()
        for seg, who in zip(captured, senders, strict=True):
            key = (who, seg.flags.replace(",ACK", "") if seg.has("FIN") else seg.flags, seg.seq)
            if key not in seen:
                seen.add(key)
                firsts.append((who, seg))
        assert len(firsts) == len(step.segments), (step.action, [str(s) for s in captured])
        pairs = list(zip(step.segments, firsts, strict=True))
        if step.action == "close() on both at once":
            # Both ends act at once: which FIN leaves first is a coin toss, so compare
            # as multisets; every FIN must still come before every ACK.
            kinds = sorted((who, _kind(seg)) for who, seg in firsts)
            assert kinds == sorted(step.segments), (step.action, [str(s) for s in captured])
            continue
        for (sender, flags), (who, seg) in pairs:
            assert who == sender and seg.flags in _FLAGS[flags], (step.action, str(seg))


def test_lab_simultaneous_close_is_figure_13(lab_runs):
    run = lab_runs["simultaneous"]
    assert run.history[-1].states == (TW, TW) and run.history[-1].settled  # both were active closers
    fins = [s for s in run.segments_by_step[-1] if s.has("FIN")]
    # Both ends sent a FIN, and each FIN is the first thing its end sent after the handshake
    # (relative seq 1): each end closed before the other's FIN reached it.  The first copies
    # were lost while the lab's lo was down; the capture holds the retransmissions.
    assert {("server" if s.sport == run.server_port else "client") for s in fins} == {"client", "server"}
    assert {s.seq for s in fins} == {1}
    # The segment table shows the retransmission: each captured FIN left at least the minimum
    # RTO (200 ms) after the step's close() calls began, where section 1's FIN leaves at once.
    table = run.segment_table()
    fin_rows = table[table["flags"].str.contains("FIN")]
    assert len(fin_rows) >= 2 and (fin_rows[SINCE_CALL] >= 180).all(), table
    first = lab_runs["client-closes-first"].segment_table()
    assert first["flags"].iloc[0] == "FIN,ACK" and 0 <= first[SINCE_CALL].iloc[0] < 50, first


def test_lab_close_wait_leak_outlives_the_orphan(lab_runs):
    run = lab_runs["close-wait-leak"]
    # the note above the table names the setting the lab changed, live and recorded
    assert "with tcp_fin_timeout=1 in the lab" in run.note
    assert "with tcp_fin_timeout=1 in the lab" not in lab_runs["client-closes-first"].note
    scenario = REGISTRY["run_scenario"]
    recorded = scenario.replay(scenario.arguments("close-wait-leak"), "a test")
    assert "with tcp_fin_timeout=1 in the lab" in recorded.note and "tcp_fin_timeout=60" not in recorded.note
    last = run.history[-1]
    assert last.states == (CL, CW)  # the client's FIN-WAIT-2 expired (tcp_fin_timeout=1); CLOSE-WAIT stays
    # RFC 9293 has no FIN-WAIT-2 timeout: it predicts FIN-WAIT-2 for ever, and the difference is Linux's
    assert last.expected == (FW2, CW) and not last.settled and last.differs == ORPHAN_TIMER
    table = run.table()
    assert table["RFC predicted"].iloc[-1] == "FIN-WAIT-2 / CLOSE-WAIT" and not table["matches"].iloc[-1]
    assert table["Linux differs"].iloc[-1] == ORPHAN_TIMER and table["Linux differs"].iloc[:-1].eq("").all()
    (problem,) = check_history(run.history)
    assert problem.startswith("client: FIN-WAIT-2 -> CLOSED during 'wait")
    assert "RFC 9293 has no timer" in problem
    assert run.segments_by_step[-1] == []  # silently: no segment


def test_check_history_flags_a_change_nobody_caused_unless_it_is_2msl():
    def step(actor, states, expected=None):
        return Step(0.0, actor, "wait" if actor == "nobody" else "x", (), *states, expected or states)

    assert check_history([step("client", (FW2, CW)), step("nobody", (CL, CW), (FW2, CW))]) != []
    assert check_history([step("client", (TW, CL)), step("nobody", (CL, CL), (TW, CL))]) == []
    # the same change after an action (an RST can close FIN-WAIT-2) is explained by the table
    assert check_history([step("client", (FW2, CW)), step("server", (CL, CL))]) == []


def test_lab_close_with_unread_data_sends_rst_and_no_fin(lab_runs):
    run = lab_runs["unread-data"]
    after_handshake = [s for s in run.segments() if not s.has("SYN")][1:]  # the handshake's last ACK left out
    senders = ["server" if s.sport == run.server_port else "client" for s in after_handshake]
    rows = list(zip(senders, [s.flags for s in after_handshake], strict=True))
    assert not any(s.has("FIN") for s in run.segments()), rows  # no FIN, although nobody set SO_LINGER
    assert rows[0] == ("client", "PSH,ACK") and after_handshake[0].length == 32
    assert ("server", "RST,ACK") in rows or ("server", "RST") in rows
    close = run.history[2]
    assert close.action == "close() with 32 bytes unread" and close.states == (CL, CL)
    assert [s.flags for s in run.segments_by_step[2]] in (["RST,ACK"], ["RST"])
    assert run.history[3].action == "recv() -> ConnectionResetError (RST)"


def _close_segments(run) -> list[tuple[str, str]]:
    return [("server" if s.sport == run.server_port else "client", s.flags)
            for s in run.segments() if s.has("FIN") or (s.flags == "ACK" and s.t > _first_fin(run))]


def _first_fin(run) -> float:
    return next(s.t for s in run.segments() if s.has("FIN"))


def _follow(pause: float):
    """In the lab: the server closes ``pause`` s after its recv() saw the client's FIN."""
    from tcplearn.base.lab.capture import Capture

    with Capture("lo") as cap:
        with ConnectionPair() as pair:
            pair.client_close_server_follows(pause=pause)
        cap.settle()
    ours = [s for s in cap.segments if pair.server_port in (s.sport, s.dport)]
    assert [s.flags for s in ours[:3]] == ["SYN", "SYN,ACK", "ACK"]  # the connect step's handshake
    return CloseRun("follow", pair.history, [ours[:3], ours[3:]], pair.server_port)


FOUR = [("client", "FIN,ACK"), ("server", "ACK"), ("server", "FIN,ACK"), ("client", "ACK")]
THREE = [("client", "FIN,ACK"), ("server", "FIN,ACK"), ("client", "ACK")]


def test_lab_three_segments_or_four(lab_runs):
    # Four: the server closes only after the pair saw the client in FIN-WAIT-2, i.e. after the ACK.
    assert _close_segments(lab_runs["client-closes-first"]) == FOUR
    # Three: a server thread waiting in recv() closes at once, and its FIN carries the ACK.
    # (A loaded machine can delay the thread past the kernel's delayed ACK: try again, up to three times.)
    runs = [lab_runs["server-closes-at-once"]]
    while _close_segments(runs[-1]) != THREE and len(runs) < 3:
        runs.append(run_scenario("server-closes-at-once"))
    assert _close_segments(runs[-1]) == THREE, [_close_segments(r) for r in runs]
    assert runs[-1].history[-1].states == (TW, CL) and runs[-1].history[-1].segments == tuple(
        (who, "FIN" if flags == "FIN,ACK" and who == "client" else flags) for who, flags in THREE)
    # ... and the client went from FIN-WAIT-1 straight to TIME-WAIT: RFC 9293's "rcv FIN,ACK of FIN"
    from tcplearn.view.plots import state_diagram

    fig = state_diagram(close_only=True, path=runs[-1].path("client"))
    assert (S.FIN_WAIT_1, Event.RCV_FIN_ACK, TW) in fig.tcplearn_path
    # Four again when the server waits 50 ms after recv() returned: the ACK went alone first.
    with tcplearn.PrivateLab() as lab:
        paused = lab.run(_follow, 0.05)
    assert _close_segments(paused) == FOUR and paused.history[-1].segments == (
        ("client", "FIN"), ("server", "ACK"), ("server", "FIN"), ("client", "ACK"))
    table = paused.segment_table()
    lone_ack = table[(table["from"] == "server") & (table["flags"] == "ACK")]["ms since the first FIN/RST"]
    assert 0 < lone_ack.iloc[0] < 50  # the kernel ACKed the FIN on its own, before the server's close()


@needs_tcpdump
def test_saved_pcap_is_read_back_by_tcpdump(lab_runs, tmp_path):
    run = lab_runs["client-closes-first"]
    path = save_pcap(run, tmp_path / "01-close.pcap")
    assert path.name == "01-close.pcap" and tcpdump_flags(path) == [s.flags for s in run.segments()]
    assert tcpdump_flags(path)[:3] == ["SYN", "SYN,ACK", "ACK"]
    # a recorded run exports too (built frames), and a run with nothing captured gives None
    recorded = REGISTRY["run_scenario"].replay(REGISTRY["run_scenario"].arguments("unread-data"), "a test")
    assert "RST,ACK" in tcpdump_flags(save_pcap(recorded, tmp_path / "recorded.pcap"))
    history, _, port, started = _play("abort", False, False, 1.0)
    assert started is None
    assert save_pcap(CloseRun("abort", history, None, port), tmp_path / "none.pcap") is None
    assert not (tmp_path / "none.pcap").exists()
    with pytest.raises(TypeError, match="run_scenario"):
        save_pcap([1, 2], tmp_path / "x.pcap")


def test_path_lists_each_ends_states_in_order():
    history, _, port, _ = _play("client-closes-first", False, False, 1.0)
    run = CloseRun("client-closes-first", history, None, port)
    assert run.path("client")[0] == E and run.path("client")[-1] == TW and FW2 in run.path("client")
    assert run.path("server") == [E, CW, CL]
    with pytest.raises(ValueError, match="end must be"):
        run.path("peer")


# ---------------------------------------------------------------- the diagrams


def test_state_diagram_draws_every_state_and_transition_of_the_table():
    from tcplearn.view.plots import state_diagram

    fig = state_diagram({TW: "client", CL: "server"})
    gids = {p.get_gid() for p in fig.axes[0].patches}
    for state, event, target in TRANSITIONS.arcs():
        assert f"arc:{state.name}:{event.name}:{target.name}" in gids
    for state in TcpState.rfc_states():
        assert any(g and g.startswith(f"state:{state.name}") for g in gids), state
    assert "state:TIME_WAIT:highlight" in gids and "state:CLOSED:highlight" in gids
    assert "state:ESTABLISHED" in gids  # not highlighted
    assert fig.tcplearn_arcs == TRANSITIONS.arcs()


def test_sequence_diagram_has_one_arrow_per_segment():
    from tcplearn.view.plots import sequence_diagram

    with ConnectionPair() as pair:
        pair.client_close()
        pair.server_close()
    fig = sequence_diagram(pair.history)
    arrows = [p.get_gid() for p in fig.axes[0].patches if (p.get_gid() or "").startswith("segment:")]
    expected = [f"{sender}:{flags}" for step in pair.history for sender, flags in step.segments]
    assert [a.split(":", 2)[2] for a in arrows] == expected
    assert len(arrows) == fig.tcplearn_segments == 7  # handshake 3 + FIN, ACK + FIN, ACK
    labels = {t.get_gid() for t in fig.axes[0].texts if t.get_gid()}
    assert {"state:client:TIME_WAIT", "state:server:CLOSED"} <= labels


def test_sequence_diagram_of_a_real_capture(lab_runs):
    from tcplearn.view.plots import sequence_diagram

    run = lab_runs["abort"]
    fig = sequence_diagram(run)
    arrows = [p.get_gid() for p in fig.axes[0].patches if (p.get_gid() or "").startswith("segment:")]
    assert len(arrows) == sum(len(s) for s in run.segments_by_step)
    assert arrows[-1].endswith(":client:RST,ACK") or arrows[-1].endswith(":client:RST")
    assert "captured" in fig.axes[0].get_title()
