"""Connections per second: tcplearn's run_load against minimal raw-socket churn loops.

    python benchmarks/bench_load.py [--seconds 3]

Every loop does the same work: connect to a loopback server, close first (the client keeps
TIME-WAIT), and the server closes on EOF.  Peers, run in this one process:

  raw, 1 thread, server in-process    a bare connect/close loop; the server on a selector thread
  raw, 1 thread, server in a child    the same loop against tcplearn's loadserver process
  raw, 2 threads, server in a child   two such loops at once
  run_load(rate=None)                 tcplearn, as fast as it can (its defaults)

Runs inside a private lab where one can start, so the TIME-WAIT sockets vanish with it.
"""

from __future__ import annotations

import argparse
import selectors
import socket
import subprocess
import sys
import threading
import time

import tcplearn
from tcplearn.experiments.load import run_load


def _inprocess_server():
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4096)
    lst.setblocking(False)
    stop = threading.Event()

    def serve():
        sel = selectors.DefaultSelector()
        sel.register(lst, selectors.EVENT_READ)
        while not stop.is_set():
            for key, _ in sel.select(0.05):
                if key.fileobj is lst:
                    while True:
                        try:
                            conn, _ = lst.accept()
                        except BlockingIOError:
                            break
                        conn.setblocking(False)
                        sel.register(conn, selectors.EVENT_READ)
                else:
                    try:
                        data = key.fileobj.recv(64)
                    except BlockingIOError:
                        continue
                    if not data:
                        sel.unregister(key.fileobj)
                        key.fileobj.close()
        for key in list(sel.get_map().values()):
            key.fileobj.close()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    return lst.getsockname(), lambda: (stop.set(), th.join())


def _child_server():
    proc = subprocess.Popen([sys.executable, "-m", "tcplearn.experiments.loadserver"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline().split()[1])

    def stop():
        proc.stdin.close()
        proc.wait(timeout=5)
        proc.stdout.close()
    return ("127.0.0.1", port), stop


def _churn(target, seconds: float, counter: list[int], index: int) -> None:
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        s = socket.socket()
        s.connect(target)
        s.close()
        n += 1
    counter[index] = n


def raw(seconds: float, threads: int, child: bool) -> float:
    target, stop = _child_server() if child else _inprocess_server()
    counts = [0] * threads
    try:
        workers = [threading.Thread(target=_churn, args=(target, seconds, counts, i)) for i in range(threads)]
        t0 = time.monotonic()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return sum(counts) / (time.monotonic() - t0)
    finally:
        stop()


def measure(seconds: float) -> dict[str, float]:
    return {
        "raw, 1 thread, server in-process": raw(seconds, 1, False),
        "raw, 1 thread, server in a child": raw(seconds, 1, True),
        "raw, 2 threads, server in a child": raw(seconds, 2, True),
        "run_load(rate=None)": run_load(duration=seconds, progress=False).rate,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    ok, why = tcplearn.lab_available()
    if ok:
        with tcplearn.PrivateLab() as lab:
            rates = lab.run(measure, args.seconds)
    else:
        print(f"no private lab ({why}); running on this machine")
        rates = measure(args.seconds)
    best_raw = max(v for k, v in rates.items() if k.startswith("raw"))
    for name, rate in rates.items():
        print(f"{name:<36} {rate:9.0f} conn/s   ({rate / best_raw:4.2f} of the best raw loop)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
