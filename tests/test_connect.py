"""connect_timeout(): the seed's connect timeout and the kernel's own SYN limit, measured
in a private lab against loopback listeners whose SYNs are dropped."""

import errno

import pytest

import tcplearn
from tcplearn.base.experiment import Where
from tcplearn.base.lab import lab_available
from tcplearn.experiments.connect import connect_timeout, syn_schedule

LAB, WHY = lab_available()
needs_lab = pytest.mark.skipif(not LAB, reason=WHY)


def test_the_rule_gives_the_documented_defaults_and_the_measured_runs():
    # 127 s without linear timeouts (facts Y7, ip-sysctl), 131 s with the default 4
    assert syn_schedule(6, 0)["gives_up"] == 127
    assert syn_schedule(6, 4)["gives_up"] == 131
    # the runs measured on Linux 6.18 (connect.py's docstring)
    assert syn_schedule(1, 4) == {"syns": [0, 1, 2], "gives_up": 3}
    assert syn_schedule(2, 4) == {"syns": [0, 1, 2, 3, 4, 5], "gives_up": 7}
    assert syn_schedule(2, 0) == {"syns": [0, 1, 3], "gives_up": 7}
    assert syn_schedule(3, 4)["gives_up"] == 19


def test_bad_arguments_are_refused_before_anything_runs():
    with pytest.raises(ValueError, match="timeout"):
        connect_timeout(timeout=0)
    with pytest.raises(ValueError, match="syn_retries"):
        connect_timeout(syn_retries=7)
    with pytest.raises(ValueError, match="tcp_syn_retries"):
        syn_schedule(0)


@needs_lab
@pytest.mark.slow
def test_pythons_timeout_and_the_kernels_limit_both_measured():
    result = tcplearn.connect_timeout(2, syn_retries=2, progress=False)
    assert result.where is Where.LAB
    py, kernel = result.attempts["python"], result.attempts["kernel"]
    # Python's own timeout: TimeoutError without an errno, after the 2 s it was given
    assert py["raised"] == "TimeoutError" and py["errno"] is None and py["message"] == "timed out"
    assert 2.0 <= py["after_s"] <= 2.5
    # no timeout: the kernel gives up with ETIMEDOUT when tcp_syn_retries' budget is spent
    assert kernel["raised"] == "TimeoutError" and kernel["errno"] == errno.ETIMEDOUT
    assert result.tcp_syn_retries == 2
    assert result.predicted["gives_up"] - 0.1 <= kernel["after_s"] <= result.predicted["gives_up"] + 1.0
    # the capture saw the kernel's SYNs where its rule says (each within 0.3 s)
    assert len(kernel["syns_at"]) == len(result.predicted["syns"])
    assert all(abs(a - b) <= 0.3 for a, b in zip(kernel["syns_at"], result.predicted["syns"], strict=True))
    # while Python's attempt sent its SYN and one retransmission before giving up at 2 s
    assert [round(t) for t in py["syns_at"]] == [0, 1]
    assert len(result.table()) == 2
