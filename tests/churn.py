"""A foreign program for the interference tests: thousands of TIME-WAIT sockets that are
not the load's (or the notebook's) own."""

from __future__ import annotations

import subprocess
import sys
import time

from tcplearn.base.observe.netlink import sockstat_tw

# A foreign program: a server that closes first, so every connection leaves one TIME-WAIT
# socket on the server's port (no port reuse can cap it), as fast as it goes, until killed.
CHURN = r"""
import socket, subprocess, sys
server = subprocess.Popen([sys.executable, "-m", "tcplearn.experiments.loadserver", "--closer", "server"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
port = int(server.stdout.readline().split()[1])
print(port, flush=True)
for i in range(int(sys.argv[1])):
    s = socket.socket()
    # four source addresses: four port walks, so a SYN seldom meets (and recycles) an old TIME-WAIT
    s.setsockopt(socket.IPPROTO_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT
    s.bind((f"127.0.0.{2 + i % 4}", 0))
    s.connect(("127.0.0.1", port))
    s.recv(1); s.close()
print("done", flush=True)
sys.stdin.read()  # until the test kills it (the server follows: its stdin closes)
"""


def start_churn(connections: int) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", CHURN, str(connections)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def _end(proc: subprocess.Popen) -> None:
    """Wait for a churn told to stop (up to 5 s, then kill it), and close its output."""
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.stdout.close()


def stop_churn(proc: subprocess.Popen) -> None:
    proc.stdin.close()  # the churn ends, and its server with it
    _end(proc)


def wait_tw(at_least: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while (tw := sockstat_tw() or 0) < at_least and time.monotonic() < deadline:
        time.sleep(0.1)
    return tw


# A foreign program whose clients close first, at a steady rate, to one server: once its port
# search has gone round the ports (about 3,100 connections, notebook 04's walk), each connect
# takes over one of its own ports still in TIME-WAIT (tcp_tw_reuse=2 on loopback), so the
# namespace's TcpExt TWRecycled grows at about its rate, none of it any load's.
REUSING_CHURN = r"""
import socket, subprocess, sys, time
server = subprocess.Popen([sys.executable, "-m", "tcplearn.experiments.loadserver", "--closer", "client"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
port = int(server.stdout.readline().split()[1])
print(port, flush=True)
rate, next_at = float(sys.argv[1]), time.monotonic()
while True:
    next_at += 1 / rate
    time.sleep(max(0.0, next_at - time.monotonic()))
    s = socket.socket()
    s.connect(("127.0.0.1", port))
    s.close()
"""


def start_reusing_churn(rate: float) -> tuple[subprocess.Popen, int]:
    """The churn above at ``rate`` connections per second, until ``stop_reusing_churn``."""
    proc = subprocess.Popen([sys.executable, "-c", REUSING_CHURN, str(rate)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def stop_reusing_churn(proc: subprocess.Popen) -> None:
    proc.terminate()  # its server's stdin closes with it, and the server ends
    _end(proc)
