"""TcpState and the RFC 9293 table."""

import pytest

from tcplearn import TRANSITIONS, Event, TcpState
from tcplearn.base.states import next_state, reachable

# RFC 9293 section 3.3.2 lists these eleven states.
RFC_NAMES = {"LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2",
             "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT", "CLOSED"}


def test_the_eleven_rfc_states_with_linux_codes():
    assert {s.rfc_name for s in TcpState.rfc_states()} == RFC_NAMES
    # include/net/tcp_states.h (facts P6)
    expected = {"01": "ESTABLISHED", "02": "SYN-SENT", "03": "SYN-RECEIVED", "04": "FIN-WAIT-1",
                "05": "FIN-WAIT-2", "06": "TIME-WAIT", "07": "CLOSED", "08": "CLOSE-WAIT",
                "09": "LAST-ACK", "0A": "LISTEN", "0B": "CLOSING"}
    assert {s.proc_hex: s.rfc_name for s in TcpState.rfc_states()} == expected


def test_linux_only_states_are_marked():
    assert not TcpState.NEW_SYN_RECV.is_rfc and TcpState.NEW_SYN_RECV.rfc_name is None
    assert TcpState.BOUND_INACTIVE.label == "TCP_BOUND_INACTIVE"


@pytest.mark.parametrize("name,state", [
    ("ESTAB", TcpState.ESTABLISHED), ("time-wait", TcpState.TIME_WAIT),
    ("FIN-WAIT-2", TcpState.FIN_WAIT_2), ("TCP_FIN_WAIT2", TcpState.FIN_WAIT_2),
    ("FIN_WAIT2", TcpState.FIN_WAIT_2), ("UNCONN", TcpState.CLOSED), ("SYN-RECV", TcpState.SYN_RECEIVED),
])
def test_every_name_resolves(name, state):
    assert TcpState.from_name(name) is state


def test_every_state_round_trips_through_its_names():
    for state in TcpState:
        assert TcpState.from_code(state.proc_hex) is state
        assert TcpState.from_name(state.linux_name) is state
        if state.rfc_name:
            assert TcpState.from_name(state.rfc_name) is state


def test_bad_names_and_codes_say_what_is_accepted():
    with pytest.raises(ValueError, match="unknown TCP state name 'HALF-OPEN'.*FIN-WAIT-2"):
        TcpState.from_name("HALF-OPEN")
    with pytest.raises(ValueError, match="unknown TCP state code 'ZZ'.*1-13"):
        TcpState.from_code("ZZ")


def test_table_covers_the_rfc_states_only():
    assert set(TRANSITIONS) == set(TcpState.rfc_states())
    for arcs in TRANSITIONS.values():
        assert all(target.is_rfc for target in arcs.values())


def test_table_is_read_only():
    with pytest.raises(TypeError):
        TRANSITIONS[TcpState.ESTABLISHED][Event.CLOSE] = TcpState.CLOSED  # type: ignore[index]


@pytest.mark.parametrize("path", [
    # RFC 9293 figure 12: the active closer
    [(Event.CLOSE, TcpState.FIN_WAIT_1), (Event.RCV_ACK_OF_FIN, TcpState.FIN_WAIT_2),
     (Event.RCV_FIN, TcpState.TIME_WAIT), (Event.TIMEOUT_2MSL, TcpState.CLOSED)],
    # figure 12: the passive closer
    [(Event.RCV_FIN, TcpState.CLOSE_WAIT), (Event.CLOSE, TcpState.LAST_ACK),
     (Event.RCV_ACK_OF_FIN, TcpState.CLOSED)],
    # figure 13: simultaneous close
    [(Event.CLOSE, TcpState.FIN_WAIT_1), (Event.RCV_FIN, TcpState.CLOSING),
     (Event.RCV_ACK_OF_FIN, TcpState.TIME_WAIT), (Event.TIMEOUT_2MSL, TcpState.CLOSED)],
    # abort
    [(Event.ABORT, TcpState.CLOSED)],
])
def test_close_paths_from_established(path):
    state = TcpState.ESTABLISHED
    for event, expected in path:
        state = next_state(state, event)
        assert state is expected


def test_open_paths():
    assert next_state(TcpState.CLOSED, Event.PASSIVE_OPEN) is TcpState.LISTEN
    assert next_state(TcpState.LISTEN, Event.RCV_SYN) is TcpState.SYN_RECEIVED
    assert next_state(TcpState.SYN_RECEIVED, Event.RCV_ACK_OF_SYN) is TcpState.ESTABLISHED
    assert next_state(TcpState.CLOSED, Event.ACTIVE_OPEN) is TcpState.SYN_SENT
    assert next_state(TcpState.SYN_SENT, Event.RCV_SYN_ACK) is TcpState.ESTABLISHED


def test_impossible_transition_is_refused_with_the_allowed_events():
    with pytest.raises(ValueError, match="no transition from TIME-WAIT on CLOSE.*TIMEOUT_2MSL"):
        next_state(TcpState.TIME_WAIT, Event.CLOSE)


def test_reachable_allows_skipped_intermediate_states_only():
    assert reachable(TcpState.ESTABLISHED, TcpState.FIN_WAIT_2)  # FIN-WAIT-1 unseen
    assert not reachable(TcpState.CLOSE_WAIT, TcpState.TIME_WAIT)  # the passive side never gets there
    closing = [Event.CLOSE, Event.RCV_FIN, Event.RCV_ACK_OF_FIN, Event.RCV_FIN_ACK]
    assert not reachable(TcpState.TIME_WAIT, TcpState.ESTABLISHED, via=closing)


def test_events_name_what_they_send():
    assert Event.CLOSE.sends == ("FIN",)
    assert Event.RCV_SYN.sends == ("SYN", "ACK")
    assert Event.ABORT.sends == ("RST",)
    assert Event.RCV_ACK_OF_FIN.sends == ()
    assert TRANSITIONS.__doc__ and "Figure 5" in TRANSITIONS.__doc__
