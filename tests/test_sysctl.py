"""tcplearn.sysctl: reading, validation, commands, and apply-and-restore."""

import pytest

from tcplearn import sysctl

from .conftest import needs_linux


@needs_linux
def test_read_gives_typed_values_for_this_kernel():
    values = sysctl.read_all()
    assert set(values) == set(sysctl.SETTINGS)
    assert isinstance(values["tcp_fin_timeout"], int)
    low, high = values["ip_local_port_range"]
    assert 0 < low <= high <= 65535
    with open("/proc/sys/net/ipv4/tcp_fin_timeout") as f:
        assert values["tcp_fin_timeout"] == int(f.read())


@pytest.mark.parametrize("name,value,message", [
    ("tcp_fin_timeout", 0, "expected an int from 1 to 600"),
    ("tcp_fin_timeout", "5", "expected an int"),
    ("tcp_tw_reuse", 3, "from 0 to 2"),
    ("tcp_tw_reuse", True, "expected an int"),
    ("ip_local_port_range", (30000, 20000), "low <= high"),
    ("ip_local_port_range", (80, 90), "1024 <= low"),
    ("ip_local_port_range", "1 2 3", "two ints"),
    ("tcp_tw_recycle", 0, "unknown or unsupported sysctl 'tcp_tw_recycle'"),
    ("net.core.somaxconn", 10, "unknown or unsupported sysctl"),
])
def test_bad_values_are_refused_with_what_is_accepted(name, value, message):
    with pytest.raises(sysctl.SysctlError, match=message.replace("(", r"\(")):
        sysctl.validate(name, value)


def test_full_and_short_names_and_commands():
    assert sysctl.command("net.ipv4.tcp_fin_timeout", 30) == "sudo sysctl -w net.ipv4.tcp_fin_timeout=30"
    assert sysctl.command("ip_local_port_range", "40000 40100") == \
        'sudo sysctl -w net.ipv4.ip_local_port_range="40000 40100"'


def test_apply_is_refused_for_non_root_in_a_real_unprivileged_process(nobody):
    r = nobody.python(
        "from tcplearn import sysctl\n"
        "try:\n"
        "    with sysctl.apply(tcp_fin_timeout=5):\n"
        "        print('APPLIED')\n"
        "except sysctl.SysctlError as e:\n"
        "    print(e)\n"
    )
    assert r.returncode == 0, r.stderr
    assert "APPLIED" not in r.stdout
    assert "needs root; you are not root" in r.stdout and "sysctl -w net.ipv4.tcp_fin_timeout=5" in r.stdout


def test_apply_validates_everything_before_changing_anything():
    before = sysctl.read_all()
    with pytest.raises(sysctl.SysctlError, match="tcp_tw_reuse=9"):
        with sysctl.apply(tcp_fin_timeout=5, tcp_tw_reuse=9):
            pass
    assert sysctl.read_all() == before


@needs_linux
@pytest.mark.root(reason="applying host sysctls needs root")
def test_apply_sets_and_restores_also_after_an_exception():
    before = sysctl.read_all()
    new_fin = 7 if before["tcp_fin_timeout"] != 7 else 8
    with pytest.raises(ZeroDivisionError):
        with sysctl.apply(tcp_fin_timeout=new_fin, ip_local_port_range=(40000, 40999)) as now:
            assert now == {"tcp_fin_timeout": new_fin, "ip_local_port_range": (40000, 40999)}
            assert sysctl.read("tcp_fin_timeout") == new_fin
            assert sysctl.read("ip_local_port_range") == (40000, 40999)
            raise ZeroDivisionError("an experiment failed")
    assert sysctl.read_all() == before


@needs_linux
@pytest.mark.root(reason="applying host sysctls needs root")
def test_apply_restores_after_keyboard_interrupt():
    before = sysctl.read_all()
    with pytest.raises(KeyboardInterrupt):
        with sysctl.apply(tcp_rfc1337=1 - before["tcp_rfc1337"]):
            raise KeyboardInterrupt
    assert sysctl.read_all() == before
