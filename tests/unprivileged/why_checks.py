"""Why-TIME-WAIT runs made by tests/test_why_time_wait.py as the unprivileged user ``nobody``.

Prints one JSON object: the uid, the host's settings before and after, and for each run
where it ran and its ``to_record()``.  Needs no pandas or matplotlib.
"""

from __future__ import annotations

import json
import os

from tcplearn import lost_last_ack, old_duplicate, sysctl, time_wait_assassination

NAMES = ("tcp_max_tw_buckets", "tcp_timestamps", "tcp_rfc1337")


def main() -> None:
    before = {n: sysctl.read(n) for n in NAMES}
    runs = {"lost_without_time_wait": lost_last_ack(time_wait=False, retransmissions=1),
            "old_duplicate_fitted": old_duplicate(ack="fitted"),
            "assassination": time_wait_assassination(rfc1337=0)}
    after = {n: sysctl.read(n) for n in NAMES}
    print(json.dumps({"uid": os.getuid(), "before": before, "after": after,
                      "runs": {k: {"where": str(r.where), "value": r.value.to_record()}
                               for k, r in runs.items()}}))


if __name__ == "__main__":
    main()
