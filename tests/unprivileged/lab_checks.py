"""Lab experiments run by tests/test_lab.py as the unprivileged user ``nobody``.

Each check prints one JSON object on stdout.  Lab functions live at module level so the
lab's worker can find them.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import struct
import sys
import threading
import time

import tcplearn
from tcplearn import PrivateLab, TcpState


def _poll(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    return predicate()


def _pair():
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    client = socket.create_connection(lst.getsockname())
    server, _ = lst.accept()
    return lst, client, server


def orphaned_fin_wait_2():
    """Client closes, server never does: the orphaned FIN-WAIT-2 and its timer."""
    lst, client, server = _pair()
    port = lst.getsockname()[1]
    client.close()
    rows = _poll(lambda: [s for s in tcplearn.sockets(port=port) if s.state is TcpState.FIN_WAIT_2])
    server.close()
    lst.close()
    return {"state": rows[0].state.name, "timer": rows[0].timer, "remaining": rows[0].timer_remaining}


def graceful_close():
    lst, client, server = _pair()
    port = lst.getsockname()[1]
    client.close()
    # FIN-WAIT-2 means the client received the ACK of its FIN: only then is the server's
    # FIN a segment of its own (under load the ACK may otherwise ride on it).
    _poll(lambda: (c := tcplearn.count_states(port=port))[TcpState.CLOSE_WAIT] == 1
          and c[TcpState.FIN_WAIT_2] == 1)
    server.close()
    _poll(lambda: tcplearn.count_states(port=port)[TcpState.TIME_WAIT] == 1)
    lst.close()
    return port


def abortive_close():
    lst, client, server = _pair()
    port = lst.getsockname()[1]
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    _poll(lambda: tcplearn.count_states(port=port)[TcpState.ESTABLISHED] == 0)
    counts = tcplearn.count_states(port=port)
    server.close()
    lst.close()
    return {s.name: n for s, n in counts.items() if n}


def _set_lo(up: bool):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(s, 0x8913, ifr))[1]
        flags = flags | 1 if up else flags & ~1
        fcntl.ioctl(s, 0x8914, struct.pack("16sh", b"lo", flags))


def hold_last_ack():
    """Passive closer in LAST-ACK, held by taking the lab's lo down before its FIN."""
    lst, client, server = _pair()
    port = lst.getsockname()[1]
    client.shutdown(socket.SHUT_WR)
    _poll(lambda: (c := tcplearn.count_states(port=port))[TcpState.CLOSE_WAIT] == 1
          and c[TcpState.FIN_WAIT_2] == 1)  # the ACK of the client's FIN has arrived
    _set_lo(False)
    try:
        server.close()  # its FIN cannot be delivered
        held = _poll(lambda: tcplearn.count_states(port=port)[TcpState.LAST_ACK] == 1)
        seen = sorted(s.state.name for s in tcplearn.sockets(port=port))
        import subprocess
        ss = subprocess.run(["ss", "-tan", f"( sport = :{port} or dport = :{port} )"],
                            capture_output=True, text=True).stdout.split("\n")[1:]
        ss_states = sorted(line.split()[0] for line in ss if line.strip())
    finally:
        _set_lo(True)
    client.close()
    lst.close()
    return {"held": bool(held), "states": seen, "ss": ss_states}


def sleeper(seconds):
    time.sleep(seconds)
    return "woke"


def report_pid():
    return os.getpid()


def _netns_holders(inode):
    holders = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.stat(f"/proc/{pid}/ns/net").st_ino == inode:
                    holders.append(int(pid))
            except OSError:
                pass
    return holders


def _gone(pid):
    return not os.path.exists(f"/proc/{pid}")


def check_lab():
    host_before = tcplearn.sysctl.read("tcp_fin_timeout")
    with PrivateLab() as lab:
        inside_before = lab.read_sysctl("tcp_fin_timeout")
        applied = lab.sysctl(tcp_fin_timeout=5)
        inside = lab.read_sysctl("tcp_fin_timeout")
        host_during = tcplearn.sysctl.read("tcp_fin_timeout")
        orphan = lab.run(orphaned_fin_wait_2)
        _, close_segments = lab.run(graceful_close, capture=True)
        abort_counts, abort_segments = lab.run(abortive_close, capture=True)
        last_ack = lab.run(hold_last_ack)
        errors = {}
        for bad in ({"tcp_fin_timeout": -1}, {"tcp_max_orphans": 10}, {"tcp_tw_recycle": 1}):
            try:
                lab.sysctl(**bad)
            except ValueError as exc:
                errors[next(iter(bad))] = str(exc)
    print(json.dumps({
        "uid": os.getuid(),
        "host_before": host_before, "host_during": host_during,
        "host_after": tcplearn.sysctl.read("tcp_fin_timeout"),
        "inside_before": inside_before, "applied": applied, "inside": inside,
        "orphan": orphan, "last_ack": last_ack, "errors": errors,
        "close_flags": [s.flags for s in close_segments],
        "close_from_client": [s.sport == close_segments[0].sport for s in close_segments],
        "close_seq_ack": [(s.seq, s.ack) for s in close_segments],
        "abort_flags": [s.flags for s in abort_segments], "abort_counts": abort_counts,
    }))


def check_cleanup():
    out = {}
    # 1. a normal exit
    with PrivateLab() as lab:
        pid = lab.run(report_pid)
        inode = os.stat(f"/proc/{lab.pid}/ns/net").st_ino
    out["normal"] = {"gone": _gone(lab_pid := pid) and _gone(lab.pid or lab_pid),
                     "holders": _netns_holders(inode)}
    # 2. an exception inside the block
    try:
        with PrivateLab() as lab:
            pid = lab.pid
            inode = os.stat(f"/proc/{pid}/ns/net").st_ino
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    out["exception"] = {"gone": _gone(pid), "holders": _netns_holders(inode)}
    # 3. Ctrl-C while an experiment runs in the lab: SIGINT raises KeyboardInterrupt here
    # also when the test suite was started with SIGINT ignored (this process inherits that)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    interrupted = False
    started = time.monotonic()
    try:
        with PrivateLab() as lab:
            pid = lab.pid
            inode = os.stat(f"/proc/{pid}/ns/net").st_ino
            timer.start()
            lab.run(sleeper, 30)
    except KeyboardInterrupt:
        interrupted = True
    out["interrupt"] = {"interrupted": interrupted, "gone": _gone(pid), "holders": _netns_holders(inode),
                        "seconds": time.monotonic() - started}
    # 4. an error raised inside the lab comes back as itself
    with PrivateLab() as lab:
        try:
            lab.run(int, "not a number")
        except ValueError as exc:
            out["inner_error"] = str(exc)
        out["still_works"] = lab.run(sleeper, 0)
    out["children"] = [p for p in os.listdir("/proc") if p.isdigit() and _ppid(p) == os.getpid()]
    print(json.dumps(out))


def _ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def check_blocked():
    ok, why = tcplearn.lab_available()
    try:
        with PrivateLab():
            raised = None
    except tcplearn.LabUnavailable as exc:
        raised = str(exc)
    doctor_line = tcplearn.doctor().check("private network lab")
    print(json.dumps({"ok": ok, "why": why, "raised": raised,
                      "doctor": [doctor_line.ok, doctor_line.detail]}))


if __name__ == "__main__":
    {"lab": check_lab, "cleanup": check_cleanup, "blocked": check_blocked}[sys.argv[1]]()
