"""A two-host private lab: two network namespaces joined by a veth link, with real sockets.

Lab functions live at module level: a lab's workers are forks of this process and find
them by name.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import os
import signal
import socket
import time

import pytest

import tcplearn
from tcplearn import PrivateLab, TcpState, run_load
from tcplearn.base.experiment import REGISTRY, Where
from tcplearn.base.lab import hosts

from .conftest import needs_linux, wait_for

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
        return ("timeout" if isinstance(exc, TimeoutError) else os.strerror(exc.errno) if exc.errno
                else str(exc))


def _netns_inode() -> int:
    return os.stat("/proc/self/ns/net").st_ino


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


_ends: dict[str, socket.socket] = {}  # a connection's end, kept in a host between calls


def _open_end(address: str, port: int) -> int:
    _ends["client"] = socket.create_connection((address, port), timeout=2)
    return _ends["client"].getsockname()[1]


def _accept_end() -> None:
    _ends["server"], _ = _kept[-1].accept()


def _close_end(name: str) -> None:
    _ends.pop(name).close()


def _states(port: int) -> list[tuple[str, str]]:
    """This host's sockets on ``port`` (either end) as (local address, state), listener aside."""
    return sorted((s.local_address, s.state.name) for s in tcplearn.sockets(port=port)
                  if s.state is not TcpState.LISTEN)


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
    with PrivateLab(hosts=2) as lab:
        before = lab.read_sysctl("tcp_fin_timeout", host="server")
        other = before + 1
        assert lab.sysctl(host="client", tcp_fin_timeout=other) == {"tcp_fin_timeout": other}
        assert lab.read_sysctl("tcp_fin_timeout", host="client") == other
        assert lab.read_sysctl("tcp_fin_timeout", host="server") == before  # the client's change only
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
    assert seen.get("raised") == {"normally": None, "exception": "RuntimeError",
                                  "interrupt": "KeyboardInterrupt"}[how]
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


# ---------------------------------------------------------------- what differs between hosts

PORTS = (60000, 60199)  # 200 ephemeral ports: __inet_hash_connect walks every one (even, then odd)
RATE, DURATION = 400, 1.8  # the loop: the ports run out at 0.5 s, well inside the run


def _exhaust(lab, between_hosts: bool):
    lab.sysctl(host="client", ip_local_port_range=PORTS)
    delay = lab.read_sysctl("tcp_tw_reuse_delay", host="client")  # None before Linux 6.14
    reuse = lab.read_sysctl("tcp_tw_reuse", host="client")
    result = run_load(rate=RATE, duration=DURATION, lab=lab, between_hosts=between_hosts, progress=False)
    port = result.target[1]
    # the last connections' closes may still be crossing: each ends once the client's end is
    # in TIME-WAIT (it got the server's FIN) and the server's end is gone (it got the last ACK)
    def settled():
        ends = {h: lab.count_states(h, port=port) for h in lab.hosts}
        busy = sum(n for h, c in ends.items() for s, n in c.items()
                   if s not in (TcpState.TIME_WAIT, TcpState.LISTEN))
        return None if busy else ends
    return result, wait_for(settled, timeout=5, what="the load's closes to finish"), delay, reuse


@pytest.mark.slow
def test_between_hosts_the_ports_run_out_and_only_the_client_holds_time_wait(two_hosts_ok):
    with PrivateLab(hosts=2) as lab:
        result, ends, _, reuse = _exhaust(lab, between_hosts=True)
    ports = PORTS[1] - PORTS[0] + 1
    assert reuse == 2  # the kernel's default: reuse for loopback only (tcp_sk_init), so not here
    tried = result.connections + sum(result.errors.values())
    assert tried > ports, \
        f"the loop tried only {tried} connects in {DURATION} s: too busy a machine to run out"
    # no TIME-WAIT port is reused between hosts, so exactly one connection per port, then
    # every further connect() fails with EADDRNOTAVAIL (__inet_hash_connect found no port)
    assert result.connections == ports, result
    assert set(result.errors) == {"EADDRNOTAVAIL"} and result.errors["EADDRNOTAVAIL"] > 0
    assert result.netstat_delta("TWRecycled")["TWRecycled"] == 0
    # the client closed first: it holds every TIME-WAIT, in its own table; the server none
    assert ends["client"][TcpState.TIME_WAIT] == ports
    assert ends["server"][TcpState.TIME_WAIT] == 0


@pytest.mark.slow
def test_on_one_loopback_the_same_loop_reuses_time_wait_ports(two_hosts_ok):
    with PrivateLab(hosts=2) as lab:  # the same client host, its own loopback this time
        result, ends, delay, reuse = _exhaust(lab, between_hosts=False)
    assert reuse == 2 and result.target[0] == "127.0.0.1"
    # here the load's server listens on the client host too, on a port bind() took from the same
    # range, and connect() skips ports that bind() holds (__inet_hash_connect): one port fewer
    ports = PORTS[1] - PORTS[0] + 1 - (PORTS[0] <= result.target[1] <= PORTS[1])
    delay_s = (delay if delay is not None else 1000) / 1000  # 1 s before the setting existed
    assert DURATION > ports / RATE + delay_s  # the run outlasts exhaustion plus the reuse delay...
    # ...so connects after the delay take over TIME-WAIT ports (tcp_twsk_unique): more than one
    # connection per port; each success beyond the first walk over the ports is one such reuse
    recycled = result.netstat_delta("TWRecycled")["TWRecycled"]
    assert result.connections > ports, result
    # every port the load used holds one TIME-WAIT at the end (a takeover replaces the old
    # one with the new connection's), and every other connection was a takeover
    assert recycled == result.connections - ends["client"][TcpState.TIME_WAIT]
    # and no more than twice over: a port reused at or after `delay` (the first TIME-WAIT's
    # age) can be reused again only `delay` later, 2 s, after the run's 1.8 s
    assert result.connections <= ports * (1 + int(DURATION // delay_s))
    assert ends["client"][TcpState.TIME_WAIT] <= ports


def test_each_host_sees_only_its_own_end_of_a_four_way_close(two_hosts_ok):
    with PrivateLab(hosts=2) as lab:
        client, server = lab.address("client"), lab.address("server")
        port = lab.run(_listen, server, host="server")
        lab.run(_open_end, server, port, host="client")
        lab.run(_accept_end, host="server")

        def step(expected: dict[str, list[tuple[str, str]]]) -> None:
            # a host's table must hold exactly its own end (its own address, its own state) and
            # not the other's; each state is reached once a segment has crossed: poll for it
            for h in lab.hosts:
                wait_for(lambda h=h: lab.run(_states, port, host=h) == expected[h],
                         timeout=5, what=f"{h}'s table to show exactly {expected[h]}")

        step({"client": [(client, "ESTABLISHED")], "server": [(server, "ESTABLISHED")]})
        lab.run(_close_end, "client", host="client")   # the client closes first...
        step({"client": [(client, "FIN_WAIT_2")], "server": [(server, "CLOSE_WAIT")]})
        lab.run(_close_end, "server", host="server")   # ...then the server
        # the server's LAST_ACK lasts until the client's ACK arrives, then its end is gone
        step({"client": [(client, "TIME_WAIT")], "server": []})


# ---------------------------------------------------------------- the experiments between hosts

@pytest.mark.slow
def test_time_wait_by_closer_between_hosts_each_host_counts_its_own(two_hosts_ok):
    run = tcplearn.time_wait_by_closer(rate=300, duration=1.0, between_hosts=True)
    assert (run.where is Where.LAB
            and "Between its two hosts: client 198.18.0.1 and server 198.18.0.2" in run.note)
    made = 300 * 1.0  # the load never exceeds its rate, and no TIME-WAIT expires within 60 s
    client_first, server_first = run.value["client closes first"], run.value["server closes first"]
    # whoever closes first holds TIME-WAIT, in its own host's table; the other host holds none
    assert client_first["server side"] == 0 and 0 < client_first["client side"] <= made
    assert server_first["client side"] == 0 and 0 < server_first["server side"] <= made


@pytest.mark.slow
def test_watch_plateau_between_hosts_keeps_every_time_wait(two_hosts_ok):
    run = tcplearn.watch_plateau(rate=200, duration=1.5, drain=1.0, between_hosts=True, progress=False)
    assert (run.where is Where.LAB
            and "Between its two hosts: client 198.18.0.1 and server 198.18.0.2" in run.note)
    # tcp_tw_reuse=2 exempts loopback only: between hosts no port is reused, and nothing the
    # load made can expire within its 2.5 s (TIME-WAIT lasts 60 s), so the peak is every one
    assert run.reuse is False and run.result.target[0] == "198.18.0.2"
    assert run.result.netstat_delta("TWRecycled")["TWRecycled"] == 0
    assert run.measured_peak() == run.result.connections > 0


def test_a_between_hosts_call_needs_a_two_host_lab_or_replays(monkeypatch):
    exp = REGISTRY["time_wait_by_closer"]
    plan = exp.plan(exp.arguments(between_hosts=True))
    if tcplearn.base.lab.lab_available()[0] and tcplearn.base.lab.two_host_lab_available()[0]:
        assert plan.where is Where.LAB and plan.hosts == 2
    assert exp.plan(exp.arguments()).hosts == 1  # the default call is unchanged: one loopback
    monkeypatch.setattr(tcplearn.base.lab, "lab_available", lambda: (True, ""))
    monkeypatch.setattr(tcplearn.base.lab, "two_host_lab_available", lambda: (False, "no veth in this test"))
    plan = exp.plan(exp.arguments(between_hosts=True))
    assert plan.where is Where.RECORDED and plan.why.startswith("no veth in this test; a load between hosts")
    run = tcplearn.time_wait_by_closer(between_hosts=True)
    assert run.where is Where.RECORDED and "from a private lab's client host to its server host" in run.note
    assert run.value["client closes first"]["server side"] == 0
    with pytest.raises(ValueError, match="between_hosts must be True or False; got 'yes'"):
        tcplearn.time_wait_by_closer(between_hosts="yes")
    # a load under changed settings between hosts: the small port range runs out at its size
    narrow = tcplearn.with_settings({"ip_local_port_range": (40000, 40199)}, rate=100, duration=4,
                                    between_hosts=True, progress=False)
    assert narrow.where is Where.RECORDED and narrow.target[0] == "198.18.0.2"
    assert narrow.connections == 200 and set(narrow.errors) == {"EADDRNOTAVAIL"}
    with pytest.raises(ValueError, match="between_hosts must be True or False; got 1"):
        tcplearn.with_settings({"tcp_tw_reuse": 0}, rate=10, duration=1, between_hosts=1)


AS_NOBODY = '''
import json, os, socket
import tcplearn
from tcplearn import PrivateLab

kept = []

def listen(address):
    lst = socket.socket(); lst.bind((address, 0)); lst.listen(); kept.append(lst)
    return lst.getsockname()[1]

def connect(address, port):
    kept.append(socket.create_connection((address, port), timeout=2))

def table(port, until=None):
    import time
    deadline = time.monotonic() + 5
    while True:  # until the final ACK has reached this host (it crosses the link after connect())
        rows = sorted((s.local_address, s.state.name) for s in tcplearn.sockets(port=port))
        if until is None or until in [state for _, state in rows] or time.monotonic() > deadline:
            return rows
        time.sleep(0.01)

with PrivateLab(hosts=2) as lab:
    port = lab.run(listen, lab.address("server"), host="server")
    lab.run(connect, lab.address("server"), port, host="client")
    print(json.dumps({"uid": os.getuid(), "client": lab.run(table, port, host="client"),
                      "server": lab.run(table, port, "ESTABLISHED", host="server"), "link": lab.link_note}))
'''


def test_an_ordinary_user_gets_two_hosts(nobody, two_hosts_ok):
    out = nobody.python(AS_NOBODY, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["uid"] == 65534  # nobody: no root, no capabilities on the machine
    # the connection's two ends, each in its own host's table, the server's beside its listener
    assert seen["client"] == [["198.18.0.1", "ESTABLISHED"]]
    assert seen["server"] == [["198.18.0.2", "ESTABLISHED"], ["198.18.0.2", "LISTEN"]]


KILLED = '''
import json, os, sys, time
from tcplearn import PrivateLab

def inode():
    return os.stat("/proc/self/ns/net").st_ino

def busy():
    os.write(1, b"busy\\n")  # straight to the test's pipe: the worker's own stdout is captured
    time.sleep(60)

lab = PrivateLab(hosts=2).__enter__()
print(json.dumps({"pids": list(lab.pids.values()), "inodes": [lab.run(inode, host=h) for h in lab.hosts]}),
flush=True)
lab.run(busy, host="server")  # killed meanwhile: the server's worker is busy, not listening
'''


def test_a_killed_caller_leaves_no_host_behind(two_hosts_ok):
    import subprocess
    import sys

    caller = subprocess.Popen([sys.executable, "-c", KILLED], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        seen = json.loads(caller.stdout.readline())
        assert caller.stdout.readline() == "busy\n"
    finally:
        caller.kill()  # SIGKILL: no __exit__, no finally, as when a notebook's kernel dies
        caller.wait()
        caller.stdout.close()
    # the idle client's worker sees its channel close; the busy server's cannot, but each worker
    # asked the kernel for SIGKILL when its parent dies (PR_SET_PDEATHSIG): once both have
    # exited, nothing holds either namespace, and the link goes with them
    wait_for(lambda: _pids_with_netns(set(seen["inodes"])) == [], timeout=5,
             what="the hosts' namespaces to go")
    assert len(seen["pids"]) == 2 and len(set(seen["inodes"])) == 2
