"""CPU cost of sampling TCP state counts at 10 Hz with 10,000 sockets present.

    python benchmarks/bench_sampler.py [--sockets 10000] [--seconds 10]

Creates the TIME-WAIT sockets (in a private lab where one can start), then runs a
StateSampler at 0.1 s for the given seconds and measures the CPU time this process spent
(time.process_time), as a share of one core.  For comparison it does the same with the
/proc parser and with psutil as the counting method.
"""

from __future__ import annotations

import argparse
import sys
import time

import tcplearn
from tcplearn.base.observe.sampler import StateSampler
from tcplearn.experiments.load import run_load


def cpu_share(seconds: float, backend: str | None) -> tuple[float, int]:
    tcplearn.set_backend(backend)
    try:
        c0, t0 = time.process_time(), time.monotonic()
        with StateSampler(0.1) as sampler:
            time.sleep(seconds)
        return (time.process_time() - c0) / (time.monotonic() - t0), len(sampler.rows)
    finally:
        tcplearn.set_backend(None)


def measure(n: int, seconds: float) -> dict:
    run_load(count=n, duration=60, progress=False)
    present = tcplearn.count_states()[tcplearn.TcpState.TIME_WAIT]
    out = {"time_wait_present": present}
    for name, backend in (("count_states (netlink + sockstat)", None), ("parse /proc", "procfs"),
                          ("psutil", "psutil")):
        out[name] = cpu_share(seconds, backend)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sockets", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    ok, why = tcplearn.lab_available()
    if ok:
        with tcplearn.PrivateLab() as lab:
            res = lab.run(measure, args.sockets, args.seconds)
    else:
        print(f"no private lab ({why}); running on this machine")
        res = measure(args.sockets, args.seconds)
    print(f"TIME-WAIT sockets present: {res.pop('time_wait_present')}")
    for name, (share, samples) in res.items():
        print(f"{name:<36} {share * 100:6.2f}% of one core at 10 Hz ({samples} samples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
