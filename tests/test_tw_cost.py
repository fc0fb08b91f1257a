"""The size of a TIME-WAIT mini-socket, checked against the kernel's own slab files."""

import os

import pytest

from tcplearn.base import tw_cost
from tcplearn.base.tw_cost import time_wait_cost, time_wait_size

SLAB = "/sys/kernel/slab/tw_sock_TCP"


def _readable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.R_OK)


@pytest.mark.skipif(not _readable(f"{SLAB}/object_size"),
                    reason=f"{SLAB} is not readable here (root-only, or no SLUB)")
def test_size_is_the_kernels_own_slab_figures():
    size = time_wait_size()
    with open(f"{SLAB}/object_size") as f, open(f"{SLAB}/slab_size") as g:
        assert (size["object_size"], size["slab_size"]) == (int(f.read()), int(g.read()))
    assert size["source"] == "sysfs" and size["where"] == SLAB and size["bytes"] == size["slab_size"]
    assert 0 < size["object_size"] <= size["slab_size"] < 4096  # a mini-socket, not a full tcp_sock
    if _readable("/proc/slabinfo"):  # the kernel's two interfaces agree
        assert size["slabinfo"] == size["slab_size"]


@pytest.mark.skipif(not _readable("/proc/slabinfo"), reason="/proc/slabinfo is not readable here (root-only)")
def test_slabinfo_is_used_when_sysfs_is_not(monkeypatch, tmp_path):
    monkeypatch.setattr(tw_cost, "SLAB_DIR", tmp_path)
    size = time_wait_size()
    assert size["source"] == "slabinfo" and size["where"] == "/proc/slabinfo"
    assert size["object_size"] is None and size["bytes"] == size["slab_size"] > 0


def test_a_sourced_figure_says_so_with_its_citation(monkeypatch, tmp_path):
    monkeypatch.setattr(tw_cost, "SLAB_DIR", tmp_path)
    monkeypatch.setattr(tw_cost, "SLABINFO", tmp_path / "slabinfo")
    size = time_wait_size()
    assert size["source"] == "sourced" and "Bernat" in size["where"] and "unconfirmed" in size["kernel"]
    assert (size["object_size"], size["slab_size"], size["bytes"]) == (168, 256, 256)
    v6 = time_wait_size(ipv6=True)  # nothing sourced for IPv6: unknown, not invented
    assert v6["source"] == "unknown" and v6["bytes"] is None
    assert time_wait_cost(10, ipv6=True)["MiB"] is None


def test_a_fake_slabinfo_line_is_parsed(monkeypatch, tmp_path):
    (tmp_path / "slabinfo").write_text(
        "slabinfo - version: 2.1\n# name <active_objs> <num_objs> <objsize> ...\n"
        "tw_sock_TCPv6          0      0    320   12    1 : tunables 0 0 0 : slabdata 0 0 0\n"
        "tw_sock_TCP           32     32    256   16    1 : tunables 0 0 0 : slabdata 2 2 0\n")
    monkeypatch.setattr(tw_cost, "SLAB_DIR", tmp_path / "none")
    monkeypatch.setattr(tw_cost, "SLABINFO", tmp_path / "slabinfo")
    assert time_wait_size()["slab_size"] == 256 and time_wait_size(ipv6=True)["slab_size"] == 320


def test_cost_is_count_times_size():
    per = time_wait_size()["bytes"]
    cost = time_wait_cost(131072)
    assert cost["bytes_per_socket"] == per and cost["bytes"] == per * 131072
    assert cost["MiB"] == pytest.approx(per * 131072 / 2**20)
    assert time_wait_cost(0)["bytes"] == 0
    for bad in (-1, 1.5, True, "10"):
        with pytest.raises(ValueError, match="whole number"):
            time_wait_cost(bad)
