"""How fast tcplearn counts TCP states, against its peers, with N TIME-WAIT sockets present.

    python benchmarks/bench_observe.py [--sizes 1000,10000,50000] [--repeat 5] [--host]

For each N it creates N TIME-WAIT sockets on loopback (client closes first, spread over
several listening ports so no destination runs out of ephemeral ports), then times, in
this one process:

  count_states()         tcplearn's counting path (sock_diag, strided state bytes)
  raw netlink dump       a plain struct-based sock_diag dump walking every message
  parse /proc            tcplearn's parser over /proc/net/tcp{,6}, then counting
  psutil                 psutil.net_connections("tcp")
  ss -tan                the iproute2 tool, output discarded (includes its process start)
  pyroute2               pyroute2's DiagSocket dump (skipped above 10k unless --pyroute2-all)

and prints the best time of --repeat runs and each peer's ratio to count_states().  By
default it runs inside a private lab, so the TIME-WAIT sockets vanish with the lab's
namespace instead of lingering on the machine for a minute; --host runs on the machine.
Bounded: at most 60,000 sockets, one descriptor pair open at a time.
"""

from __future__ import annotations

import argparse
import resource
import socket
import struct
import subprocess
import sys
import time

import tcplearn
from tcplearn import TcpState
from tcplearn.base.observe import netlink, procfs

MAX_SOCKETS = 60_000
LISTENERS = 8


def make_time_wait(n: int) -> list[socket.socket]:
    """Create ``n`` TIME-WAIT sockets (client-side); returns the listeners, still open."""
    if not 0 < n <= MAX_SOCKETS:
        raise ValueError(f"n must be 1-{MAX_SOCKETS}, got {n}")
    listeners = []
    for _ in range(LISTENERS):
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(128)
        listeners.append(lst)
    linger = struct.pack("ii", 0, 0)
    made = 0
    while made < n:
        lst = listeners[made % LISTENERS]
        client = socket.create_connection(lst.getsockname())
        server, _ = lst.accept()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        client.close()      # the client closes first: it will hold TIME-WAIT
        server.close()
        made += 1
    deadline = time.monotonic() + 10
    while tcplearn.count_states()[TcpState.TIME_WAIT] < n * 0.98 and time.monotonic() < deadline:
        time.sleep(0.05)
    return listeners


def raw_netlink_dump() -> dict[int, int]:
    """The plain way: dump every socket and read each message's state in a Python loop."""
    counts: dict[int, int] = {}
    hdr = struct.Struct("=IHHII")
    for family in (socket.AF_INET, socket.AF_INET6):
        for chunk in netlink.dump_raw(family):
            off = 0
            while off < len(chunk):
                length = hdr.unpack_from(chunk, off)[0]
                state = chunk[off + 17]
                counts[state] = counts.get(state, 0) + 1
                off += (length + 3) & ~3
    return counts


def parse_proc() -> dict[TcpState, int]:
    counts = dict.fromkeys(TcpState, 0)
    for s in procfs.parse_proc_net_tcp(procfs.read_table()):
        counts[s.state] += 1
    return counts


def psutil_count() -> int:
    import psutil

    return len(psutil.net_connections("tcp"))


def ss_tan() -> None:
    subprocess.run(["ss", "-tan"], stdout=subprocess.DEVNULL, check=True)


def pyroute2_dump() -> int:
    from pyroute2 import DiagSocket

    with DiagSocket() as ds:
        ds.bind()
        return sum(len(ds.get_sock_stats(family=f)) for f in (socket.AF_INET, socket.AF_INET6))


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def measure(sizes: list[int], repeat: int, pyroute2_all: bool) -> list[dict]:
    rows = []
    for n in sizes:
        listeners = make_time_wait(n)
        try:
            present = tcplearn.count_states()[TcpState.TIME_WAIT]
            # The fast path must agree with the plain dump before its speed means anything.
            plain = raw_netlink_dump()
            assert plain.get(TcpState.TIME_WAIT.value, 0) == present, (plain, present)
            row = {"N": n, "time_wait": present}
            row["count_states"] = best(tcplearn.count_states, repeat)
            row["raw netlink dump"] = best(raw_netlink_dump, repeat)
            row["parse /proc"] = best(parse_proc, max(1, repeat // 2))
            row["psutil"] = best(psutil_count, max(1, repeat // 2))
            row["ss -tan"] = best(ss_tan, max(1, repeat // 2))
            if n <= 10_000 or pyroute2_all:
                row["pyroute2"] = best(pyroute2_dump, 1)
            rows.append(row)
        finally:
            for lst in listeners:
                lst.close()
    return rows


def report(rows: list[dict]) -> str:
    peers = ["raw netlink dump", "parse /proc", "psutil", "ss -tan", "pyroute2"]
    lines = [f"{'N':>7} {'TIME-WAIT':>9} {'count_states':>13} " + " ".join(f"{p:>22}" for p in peers)]
    for r in rows:
        base = r["count_states"]
        cells = []
        for p in peers:
            cells.append(f"{r[p] * 1000:9.2f} ms ({r[p] / base:6.1f}x)" if p in r else f"{'-':>22}")
        lines.append(f"{r['N']:>7} {r['time_wait']:>9} {base * 1000:10.2f} ms " + " ".join(cells))
    lines.append("(x) = that peer's time / count_states() time: above 1 means count_states() is faster")
    return "\n".join(lines)


def _in_lab(sizes, repeat, pyroute2_all):
    return measure(sizes, repeat, pyroute2_all)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,50000")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--host", action="store_true", help="run on this machine, not in a private lab")
    ap.add_argument("--pyroute2-all", action="store_true", help="also time pyroute2 above 10k sockets")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if any(not 0 < n <= MAX_SOCKETS for n in sizes):
        ap.error(f"sizes must be 1-{MAX_SOCKETS}")
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(f"tcplearn {tcplearn.__version__}, Python {sys.version.split()[0]}, fd limit {soft}")
    lab_ok, why = tcplearn.lab_available()
    if args.host or not lab_ok:
        if not args.host:
            print(f"no private lab ({why}); running on this machine")
        rows = measure(sizes, args.repeat, args.pyroute2_all)
    else:
        print("running inside a private lab (its TIME-WAIT sockets vanish with it)")
        with tcplearn.PrivateLab() as lab:
            rows = lab.run(_in_lab, sizes, args.repeat, args.pyroute2_all)
    print(report(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
