"""ConnectionPair: every close variant, against the kernel, ss, the RFC table and real captures."""

import socket

import matplotlib
import pytest

matplotlib.use("Agg")

import tcplearn  # noqa: E402
from tcplearn import TRANSITIONS, TcpState  # noqa: E402
from tcplearn.base.states import Event  # noqa: E402
from tcplearn.experiments.close import SCENARIOS, ConnectionPair, _play, check_history, predict, run_scenario  # noqa: E402

from .conftest import needs_linux, needs_ss, ss_rows  # noqa: E402

pytestmark = needs_linux
S = TcpState
E, FW2, CW, TW, CL = S.ESTABLISHED, S.FIN_WAIT_2, S.CLOSE_WAIT, S.TIME_WAIT, S.CLOSED

# The (client, server) states after each step, as Linux reports them on loopback.
EXPECTED = {
    "client-closes-first": [(E, E), (FW2, CW), (TW, CL)],
    "server-closes-first": [(E, E), (CW, FW2), (CL, TW)],
    "half-close": [(E, E), (FW2, CW), (FW2, CW), (FW2, CW), (TW, CL), (TW, CL), (TW, CL)],
    "abort": [(E, E), (CL, CL)],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_every_variant_on_the_host(name, family, monkeypatch):
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("no IPv6")
    monkeypatch.setattr("tcplearn.experiments.close.ConnectionPair.__init__.__defaults__", (family,))
    history, _, _ = _play(name, False, False, 2.0)
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
    history, _, _ = _play("simultaneous", False, False, 1.0)
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

_FLAGS = {"FIN": {"FIN,ACK", "FIN"}, "ACK": {"ACK"}, "RST": {"RST", "RST,ACK"},
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
    assert run.where == "lab" and check_history(run.history) == []
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


def test_lab_close_wait_leak_outlives_the_orphan(lab_runs):
    last = lab_runs["close-wait-leak"].history[-1]
    assert last.states == (CL, CW)  # the client's FIN-WAIT-2 expired (tcp_fin_timeout=1); CLOSE-WAIT stays


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
