"""How long TIME-WAIT sockets really live on this kernel: N sockets started a little apart,
each watched (every 20 ms) until it leaves the kernel's table.

    python benchmarks/time_wait_spread.py [N]

Runs inside a private lab where one can start (nothing lingers on the machine).  Expect
60 s plus up to one timer-wheel slot (timewait.timer_slack()), spread evenly.
"""

from __future__ import annotations

import sys
import time

import tcplearn
from tcplearn.experiments import timewait


def spread(n: int) -> list[float]:
    started = []
    for _ in range(n):
        started.append((time.monotonic(), timewait.start_time_wait()))
        time.sleep(0.37)  # spread the start times across timer-wheel slots
    ended: dict[int, float] = {}
    while len(ended) < n:
        for t0, exp in started:
            if exp["id"] not in ended and timewait.sample(exp)["state"] == "CLOSED":
                ended[exp["id"]] = time.monotonic() - t0
        time.sleep(0.02)
    return sorted(ended.values())


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    if not 1 <= n <= 100:
        sys.exit("N must be 1-100")
    hz, slack = timewait.timer_slack()
    ok, _ = tcplearn.lab_available()
    if ok:
        with tcplearn.PrivateLab() as lab:
            lengths = lab.run(spread, n)
    else:
        lengths = spread(n)
    print(f"CONFIG_HZ={hz}, timer-wheel slot at 60 s: {slack} s")
    print("TIME-WAIT lengths (s):", ", ".join(f"{x:.2f}" for x in lengths))
    print(f"min {min(lengths):.2f}  max {max(lengths):.2f}  expected range 60.00-{60 + slack:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
