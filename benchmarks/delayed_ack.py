"""How long the server's kernel holds back its ACK of the client's FIN (notebook 01, section 7),
and whether what the server's program does meanwhile changes it: it sleeps, it reads the end
of file, or it polls the kernel's TCP table as tcplearn's ``run_scenario`` waits do.

    python benchmarks/delayed_ack.py [RUNS]

Each close runs in a private lab, captured on its loopback; the delay is the capture's time
from the client's FIN to the server's lone ACK.  Measured on Linux 6.18 (2 cores, a shared
machine), two runs of 30 closes per mode: 0.1-8 ms in every mode, clustered near 1 ms and near
5 ms, medians 1.2 ms (sleep), 1.2 ms (read) and 1.5-4 ms (poll): the polling does not hurry the
ACK, and a program that does nothing gets it as soon.
"""

from __future__ import annotations

import socket
import statistics
import sys
import time

import tcplearn
from tcplearn.base.observe import sockets

MODES = ("sleep", "read", "poll")


def one_close(mode: str) -> int:
    """One loopback connection; the client closes; the server's program does ``mode`` for
    up to 0.2 s, then closes.  Returns the server's port."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            server, _ = listener.accept()
            with server:
                time.sleep(0.05)     # the handshake's ACKs are long gone
                client.close()
                started = time.monotonic()
                if mode == "read":
                    server.recv(1)   # b'': the FIN arrived
                elif mode == "poll":  # the kernel's table, until the client is in FIN-WAIT-2
                    while time.monotonic() - started < 0.2:
                        ends = [s.state.name for s in sockets(port=port) if s.local_port != port]
                        if "FIN_WAIT_2" in ends:
                            break
                time.sleep(0.2)
    return port


def ack_delay_ms(lab, mode: str) -> float:
    port, segments = lab.run(one_close, mode, capture=True)
    fin = next(s for s in segments if "FIN" in s.flags and s.dport == port)
    ack = next(s for s in segments if s.sport == port and s.flags == "ACK" and s.stamp_ns > fin.stamp_ns)
    return (ack.stamp_ns - fin.stamp_ns) / 1e6


def main(runs: int = 30) -> None:
    ok, why = tcplearn.lab_available()
    if not ok:
        sys.exit(f"needs a private lab: {why}")
    with tcplearn.PrivateLab() as lab:
        for mode in MODES:
            delays = [ack_delay_ms(lab, mode) for _ in range(runs)]
            print(f"{mode:5}  min {min(delays):.2f}  median {statistics.median(delays):.2f}  "
                  f"max {max(delays):.2f} ms over {runs} closes")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
