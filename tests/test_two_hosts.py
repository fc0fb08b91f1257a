"""A two-host private lab: two network namespaces joined by a veth link, with real sockets.

Lab functions live at module level: a lab's workers are forks of this process and find
them by name.
"""

from __future__ import annotations

import gzip
import ipaddress
import os
import signal
import socket
import time

import pytest

import tcplearn
from tcplearn import PrivateLab, run_load
from tcplearn.base.lab import hosts

from .conftest import needs_linux

pytestmark = needs_linux


@pytest.fixture(scope="module")
def two_hosts_ok():
    ok, why = tcplearn.base.lab.two_host_lab_available()
    if not ok:
        pytest.skip(why)


# ---------------------------------------------------------------- run inside the hosts

def _interfaces() -> dict[str, str]:
    """This namespace's interfaces and their IPv4 addresses (SIOCGIFADDR)."""
    import fcntl
    import struct

    out = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                raw = fcntl.ioctl(s, 0x8915, struct.pack("256s", name.encode()))  # SIOCGIFADDR
                out[name] = socket.inet_ntoa(raw[20:24])
            except OSError:
                out[name] = ""
    return out


_kept: list[socket.socket] = []


def _listen(address: str) -> int:
    lst = socket.socket()
    lst.bind((address, 0))
    lst.listen(16)
    _kept.append(lst)
    return lst.getsockname()[1]


def _connect_and_close(address: str, port: int) -> int:
    with socket.create_connection((address, port), timeout=2) as c:
        return c.getsockname()[1]


def _connect_to(address: str) -> str:
    """Try a TCP connect from inside a host; the errno's name when the kernel refuses."""
    try:
        with socket.create_connection((address, 9), timeout=1):
            return "connected"
    except OSError as exc:
        return "timeout" if isinstance(exc, TimeoutError) else os.strerror(exc.errno) if exc.errno else str(exc)


def _netns_inode() -> int:
    return os.stat("/proc/self/ns/net").st_ino


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


# ---------------------------------------------------------------- the machine's side

def _machine_addresses() -> set[str]:
    return {a for a in _interfaces().values() if a}


def _pids_with_netns(inodes: set[int]) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}/ns/net").st_ino in inodes:
                    found.append(int(name))
            except OSError:
                pass
    return found


def _kernel_has_netem() -> bool | None:
    """The kernel's own answer, from its build configuration, where it publishes one."""
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            config = f.read()
    except OSError:
        return None
    return "CONFIG_NET_SCH_NETEM=y" in config or "CONFIG_NET_SCH_NETEM=m" in config


# ---------------------------------------------------------------- the lab itself

def test_bad_input_is_refused_with_what_is_accepted():
    for bad in (3, 0, True, "2"):
        with pytest.raises(ValueError, match=rf"hosts={bad!r} refused.*1 host.*2 \('client' and 'server'"):
            PrivateLab(hosts=bad)
    with pytest.raises(ValueError, match=r"unknown host 'router'.*'client' and 'server'"):
        PrivateLab(hosts=2).address("router")
    with pytest.raises(ValueError, match=r"host='server' refused: this lab has one host"):
        PrivateLab().address("server")


def test_a_two_host_lab_starts_fast_with_one_link_and_its_own_addresses(two_hosts_ok):
    started = time.monotonic()
    with PrivateLab(hosts=2) as lab:
        took = time.monotonic() - started
        client, server = lab.run(_interfaces, host="client"), lab.run(_interfaces, host="server")
        inodes = {lab.run(_netns_inode, host=h) for h in lab.hosts}
        with pytest.raises(ValueError, match="unknown host 'router'"):
            lab.run(_interfaces, host="router")
        with pytest.raises(ValueError, match="unknown host 'router'"):
            lab.run(_interfaces, capture="router")
    # Two forks, one setns, one veth and two addresses: ~35 ms measured here when idle; a
    # second leaves room for a loaded two-core machine, and is what "well under" promises.
    assert took < 1.0
    assert client == {"lo": "127.0.0.1", "eth0": "198.18.0.1"}
    assert server == {"lo": "127.0.0.1", "eth0": "198.18.0.2"}
    assert len(inodes | {_netns_inode()}) == 3  # two namespaces of their own, neither the machine's
    for address in (lab.address("client"), lab.address("server")):
        assert ipaddress.ip_address(address) in ipaddress.ip_network("198.18.0.0/15")  # RFC 2544's
        assert address not in _machine_addresses()


def test_each_host_has_its_own_settings(two_hosts_ok):
    machine = tcplearn.sysctl.read("tcp_fin_timeout")
    other = 7 if machine != 7 else 9
    with PrivateLab(hosts=2) as lab:
        assert lab.sysctl(host="client", tcp_fin_timeout=other) == {"tcp_fin_timeout": other}
        assert lab.read_sysctl("tcp_fin_timeout", host="client") == other
        # a fresh namespace starts from the kernel's default, not from the client's change
        assert lab.read_sysctl("tcp_fin_timeout", host="server") != other
        lab.sysctl(tcp_syn_retries=3)  # no host: every host
        assert [lab.read_sysctl("tcp_syn_retries", host=h) for h in lab.hosts] == [3, 3]
    assert tcplearn.sysctl.read("tcp_fin_timeout") == machine


def test_capture_on_either_end_of_the_link_sees_the_connection(two_hosts_ok):
    with PrivateLab(hosts=2) as lab:
        port = lab.run(_listen, lab.address("server"), host="server")
        target = (lab.address("server"), port)
        _, on_client = lab.run(_connect_and_close, *target, host="client", capture=True)
        _, on_server = lab.run(_connect_and_close, *target, host="client", capture="server")
    for segments in (on_client, on_server):
        # each end of a veth sees every frame once (sent or received): the handshake and the
        # client's FIN, acknowledged (the server never closes its accepted end)
        assert [s.flags for s in segments] == ["SYN", "SYN,ACK", "ACK", "FIN,ACK", "ACK"]
        assert {s.src for s in segments} == {"198.18.0.1", "198.18.0.2"}


def test_the_link_says_whether_it_has_a_delay(two_hosts_ok):
    with PrivateLab(hosts=2) as lab:
        note, missing = lab.link_note, lab.netem_missing
    netem = _kernel_has_netem()
    if netem is None:
        pytest.skip("this kernel publishes no /proc/config.gz to compare with")
    assert bool(missing) is (not netem)
    if not netem:
        assert "no delay on the link" in note and "sch_netem" in note


@pytest.mark.parametrize("how", ["normally", "exception", "interrupt"])
def test_namespaces_link_and_workers_vanish_with_the_lab(two_hosts_ok, how):
    lab = PrivateLab(hosts=2)
    seen: dict = {}
    old = signal.getsignal(signal.SIGALRM)

    def interrupt(*_):
        raise KeyboardInterrupt

    try:
        with lab:
            seen["pids"] = dict(lab.pids)
            seen["inodes"] = {lab.run(_netns_inode, host=h) for h in lab.hosts}
            if how == "exception":
                raise RuntimeError("boom")
            if how == "interrupt":  # Ctrl-C in the caller while the server's worker is busy
                signal.signal(signal.SIGALRM, interrupt)
                signal.setitimer(signal.ITIMER_REAL, 0.1)
                lab.run(_sleep, 5, host="server")
    except (RuntimeError, KeyboardInterrupt) as exc:
        seen["raised"] = type(exc).__name__
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert seen.get("raised") == {"normally": None, "exception": "RuntimeError", "interrupt": "KeyboardInterrupt"}[how]
    assert len(seen["pids"]) == 2 and len(seen["inodes"]) == 2
    assert lab.pids == {}
    # both workers were reaped by the lab (so no zombie either), and no process is left in
    # either namespace: a network namespace, and the veth pair in it, go with its last process
    assert all(not os.path.exists(f"/proc/{pid}") for pid in seen["pids"].values())
    assert _pids_with_netns(seen["inodes"]) == []
    assert not any(a in hosts.NETWORK for a in map(ipaddress.ip_address, _machine_addresses()))


# ---------------------------------------------------------------- nowhere but the lab

def _routes() -> list[str]:
    """This namespace's IPv4 routes, as "destination/mask-bits dev" (from /proc/net/route)."""
    out = []
    with open("/proc/net/route") as f:
        for line in f.readlines()[1:]:
            dev, dest, _, _, _, _, _, mask = line.split()[:8]
            as_ip = socket.inet_ntoa(int(dest, 16).to_bytes(4, "little"))
            out.append(f"{as_ip}/{bin(int(mask, 16)).count('1')} {dev}")
    return out


def test_a_load_goes_to_loopback_or_the_labs_hosts_only(two_hosts_ok):
    # the machine's own addresses, TEST-NET-1 (RFC 5737), a public address, and two that are
    # no lab host's: a free address on the lab's own link, and a name
    outside = sorted(_machine_addresses() - {"127.0.0.1"}) + ["192.0.2.1", "8.8.8.8"]
    with PrivateLab(hosts=2) as lab:
        for host in [*outside, "198.18.0.3", "example.org"]:
            with pytest.raises(ValueError, match=rf"target {host!r} refused: load goes to loopback only.*"
                                                 r"this lab's hosts \(198\.18\.0\.1, 198\.18\.0\.2\)"):
                run_load(count=1, target=(host, 80), lab=lab, progress=False)
        with pytest.raises(ValueError, match="between_hosts=True starts its own server"):
            run_load(count=1, target=(lab.address("server"), 80), lab=lab, between_hosts=True, progress=False)
        # a lab's host address is no target without that lab
        with pytest.raises(ValueError, match=r"target '198\.18\.0\.2' refused: load goes to loopback only"):
            run_load(count=1, target=("198.18.0.2", 80), progress=False)
        with pytest.raises(ValueError, match=r"between_hosts=True needs lab=PrivateLab\(hosts=2\)"):
            run_load(count=1, between_hosts=True, progress=False)
        # and the kernel agrees: each host's one route (beside its loopback's) is the link's, so
        # even code that skipped the refusal could not leave the lab
        for host in lab.hosts:
            assert lab.run(_routes, host=host) == ["198.18.0.0/24 eth0"]
            for address in outside:
                assert lab.run(_connect_to, address, host=host) == "Network is unreachable"
