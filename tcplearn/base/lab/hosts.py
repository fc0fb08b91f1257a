"""A two-host lab's hosts, their addresses, and where tcplearn may send traffic.

The hosts' addresses come from 198.18.0.0/15, which RFC 2544 (Appendix C.2.2) assigns to
benchmarking network devices ("Benchmarking" in RFC 6890's table of special-purpose addresses):
no machine a learner uses should hold one, and the lab's namespaces have no route anywhere
but to each other.

Every load, inside a lab or out, goes only to loopback or to the lab's own hosts: ``check_target``
is the one refusal, used by the load generator before anything is sent.
"""

from __future__ import annotations

import ipaddress

from ..util import is_loopback

__all__ = ["HOSTS", "NETWORK", "ADDRESSES", "PREFIX", "check_hosts", "check_host", "check_target",
           "own_addresses", "set_own_addresses"]

HOSTS = ("client", "server")
NETWORK = ipaddress.ip_network("198.18.0.0/15")
PREFIX = 24  # the link's subnet, 198.18.0.0/24: only the two hosts are on it
ADDRESSES = {"client": "198.18.0.1", "server": "198.18.0.2"}

# In a lab worker: the addresses of that lab's hosts (set when the worker starts).
_own: frozenset[str] = frozenset()


def check_hosts(hosts: object) -> int:
    """``hosts`` as an int, or ``ValueError`` naming what a lab accepts."""
    if isinstance(hosts, bool) or hosts not in (1, 2):
        raise ValueError(f"hosts={hosts!r} refused: a lab has 1 host (the default, its own loopback) "
                         f"or 2 ({' and '.join(map(repr, HOSTS))}, joined by one link)")
    return 1 if hosts == 1 else 2


def check_host(host: object, hosts: int) -> str:
    """``host`` when it names one of a ``hosts``-host lab's hosts, else ``ValueError`` saying
    which names that lab has."""
    if hosts == 1:
        raise ValueError(f"host={host!r} refused: this lab has one host, so no host names; "
                         "PrivateLab(hosts=2) has 'client' and 'server'")
    if host not in HOSTS:
        raise ValueError(f"unknown host {host!r}: this lab's hosts are {' and '.join(map(repr, HOSTS))}")
    return str(host)


def set_own_addresses(addresses: frozenset[str]) -> None:
    """Called in a lab worker as it starts: these are its lab's hosts."""
    global _own
    _own = addresses


def own_addresses() -> frozenset[str]:
    """The addresses of the lab this process is a host of (empty outside a two-host lab)."""
    return _own


def check_target(host: object, lab: object = None) -> None:
    """Refuse (``ValueError``) a load's target that is neither loopback nor a host of the lab
    the load runs in (``lab``, a ``PrivateLab``, from the caller's side; or the lab this worker
    is a host of).  An address merely inside 198.18.0.0/15, but no host's, is refused too."""
    if is_loopback(host):
        return
    allowed = set(own_addresses())
    if lab is not None:
        allowed.update(getattr(lab, "addresses", {}).values())
    try:
        address = str(ipaddress.ip_address(str(host)))
    except ValueError:
        address = None
    if address is not None and address in allowed:
        return
    where = f" or this lab's hosts ({', '.join(sorted(allowed))})" if allowed else ""
    raise ValueError(f"target {host!r} refused: load goes to loopback only (127.0.0.0/8 or ::1){where}")
