"""What one learner's kernel costs a shared server, notebook by notebook (the table in docs/teaching.md).

    .venv/bin/python docs/capacity.py [--full] [NOTEBOOK ...]

Runs each notebook of ``notebooks/`` (or the ones named), one at a time, in a fresh Jupyter kernel
started by nbclient, in a temporary copy of the folder (the notebooks write pcap files beside
themselves), with ``TCPLEARN_FAST=1`` unless ``--full``.  For each it prints one JSON line:

- ``wall_s``: seconds from the first cell to the last;
- ``cpu_s``: the kernel's CPU time over the run, user + system, its own and that of the children it
  reaped (the loads' servers, the private labs, Node.js);
- ``rss_after_mib``: the kernel's resident memory after the last cell (what an idle learner's kernel
  keeps holding);
- ``peak_tree_mib``: the largest resident memory of the kernel and its children together, sampled
  every 0.2 s while the notebook ran.

Run it on an otherwise quiet machine: CPU time is the kernel's own, but wall time is not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import psutil
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass  # a child that ended between the listing and the reading
    return total


def measure(path: Path, workdir: Path) -> dict:
    """Execute one notebook in a fresh kernel and return what it cost (see the module's docstring)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}})
    with client.setup_kernel():
        kernel = psutil.Process(client.km.provisioner.pid)
        before = kernel.cpu_times()
        peak, stop = [0], threading.Event()

        def sample() -> None:
            while not stop.is_set():
                try:
                    peak[0] = max(peak[0], _tree_rss(kernel))
                except psutil.Error:
                    return
                stop.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.monotonic()
        try:
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
        finally:
            wall = time.monotonic() - start
            stop.set()
            sampler.join()
        peak[0] = max(peak[0], _tree_rss(kernel))  # the last cell's growth, had no sample caught it
        after = kernel.cpu_times()
        rss = kernel.memory_info().rss
    cpu = sum(getattr(after, f) - getattr(before, f)
              for f in ("user", "system", "children_user", "children_system"))
    return {"notebook": path.name, "fast": os.environ.get("TCPLEARN_FAST") == "1", "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1), "rss_after_mib": round(rss / MIB, 1),
            "peak_tree_mib": round(peak[0] / MIB, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the full-length runs (TCPLEARN_FAST unset)")
    parser.add_argument("notebooks", nargs="*", help="names in notebooks/ (default: all, in order)")
    args = parser.parse_args(argv)
    if args.full:
        os.environ.pop("TCPLEARN_FAST", None)
    else:
        os.environ["TCPLEARN_FAST"] = "1"  # the kernels inherit it
    names = args.notebooks or sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
    with tempfile.TemporaryDirectory(prefix="tcplearn-capacity-") as tmp:
        work = Path(tmp) / "notebooks"
        shutil.copytree(ROOT / "notebooks", work)
        for name in names:
            print(json.dumps(measure(work / name, work)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
