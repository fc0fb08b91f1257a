"""Dead-peer runs made by tests/test_dead_peer.py as the unprivileged user ``nobody``.

Prints one JSON object: the uid, the host's settings before and after, and each run's
``to_record()``.  Needs no pandas (``DeadPeerResult.timeline_rows`` is plain data).
"""

from __future__ import annotations

import json
import os
import time

from tcplearn import sysctl
from tcplearn.base.experiment import REGISTRY, Plan, Where
from tcplearn.experiments.dead_peer import can_silence, dead_peer

NAMES = ("tcp_retries2", "tcp_keepalive_time", "tcp_keepalive_intvl", "tcp_keepalive_probes")


def main() -> None:
    before = {n: sysctl.read(n) for n in NAMES}
    runs = {
        "keepalive": dead_peer("keepalive", keepalive_time=2, keepalive_intvl=1, keepalive_probes=2),
        "user_timeout": dead_peer("user_timeout", user_timeout_ms=1500),
        "retransmissions": dead_peer("retransmissions", tcp_retries2=3),
    }
    # no lab: on the machine itself, the filter on a TCP socket needs CAP_NET_ADMIN
    started = time.monotonic()
    try:
        REGISTRY["dead_peer"].run_at(Plan(Where.ROOT), "user_timeout", user_timeout_ms=1500)
        no_lab = None
    except PermissionError as exc:
        no_lab = str(exc)
    no_lab_seconds = time.monotonic() - started
    after = {n: sysctl.read(n) for n in NAMES}
    print(json.dumps({"uid": os.getuid(), "before": before, "after": after,
                      "can_silence_here": can_silence(), "no_lab_error": no_lab,
                      "no_lab_seconds": no_lab_seconds,
                      "runs": {k: r.to_record() for k, r in runs.items()},
                      "where": {k: str(r.where) for k, r in runs.items()}}))


if __name__ == "__main__":
    main()
