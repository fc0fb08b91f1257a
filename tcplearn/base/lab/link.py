"""The wire between a two-host lab's hosts: a veth pair made over rtnetlink, addressed by ioctl.

A veth pair is two Ethernet devices joined back to back: a frame sent on one arrives on the
other (``drivers/net/veth.c``, ``veth_xmit``).  Created with its peer in another network
namespace (``IFLA_NET_NS_PID``), it is a cable between two hosts.  Root in the lab's user
namespace holds CAP_NET_ADMIN over both of its network namespaces, so no root on the machine
is needed.  Everything here runs inside a lab worker, never in the caller's namespace.

Delay and loss on a real path come from the ``netem`` queueing discipline
(``net/sched/sch_netem.c``); ``netem_missing`` asks this kernel for one on the link and says
plainly when it has none, rather than pretending the link has a delay.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

__all__ = ["create_veth", "configure", "netem_missing", "LINK", "LinkError"]

LINK = "eth0"  # each host's end of the link has the name a learner's first interface has

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_NEWQDISC, RTM_DELQDISC = 16, 36, 37
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
IFLA_IFNAME, IFLA_LINKINFO, IFLA_NET_NS_PID = 3, 18, 19
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
TCA_KIND, TCA_OPTIONS = 1, 2
TC_H_ROOT = 0xFFFFFFFF
SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCSIFADDR, SIOCSIFNETMASK = 0x8913, 0x8914, 0x8916, 0x891C
IFF_UP = 0x1
_NLMSG = struct.Struct("=IHHII")      # struct nlmsghdr
_IFINFO = struct.Struct("=BxHiII")    # struct ifinfomsg
_TCMSG = struct.Struct("=BxxxiIII")   # struct tcmsg
_NETEM = struct.Struct("=IIIIII")     # struct tc_netem_qopt: latency, limit, loss, gap, duplicate, jitter


class LinkError(OSError):
    """The link could not be made or set up; ``str()`` says which step and why."""


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _request(kind: int, body: bytes, flags: int = 0) -> None:
    """Send one rtnetlink request and wait for the kernel's acknowledgement; raises
    ``OSError`` with the kernel's errno when it refuses."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as s:
        s.bind((0, 0))
        s.send(_NLMSG.pack(_NLMSG.size + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags, 1, 0) + body)
        while True:
            data = s.recv(65536)
            offset = 0
            while offset + _NLMSG.size <= len(data):
                length, mtype, _, seq, _ = _NLMSG.unpack_from(data, offset)
                if mtype == NLMSG_ERROR and seq == 1:
                    (code,) = struct.unpack_from("=i", data, offset + _NLMSG.size)
                    if code:
                        raise OSError(-code, os.strerror(-code))
                    return
                offset += max(length, _NLMSG.size)


def create_veth(peer_pid: int, name: str = LINK) -> None:
    """Make a veth pair: ``name`` here, and its peer, also called ``name``, in the network
    namespace of process ``peer_pid`` (both ends down, unaddressed)."""
    ifname = _attr(IFLA_IFNAME, name.encode() + b"\0")
    peer = (_IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + ifname
            + _attr(IFLA_NET_NS_PID, struct.pack("=I", peer_pid)))
    info = _attr(IFLA_INFO_KIND, b"veth\0") + _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer))
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + ifname + _attr(IFLA_LINKINFO, info)
    try:
        _request(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL)
    except OSError as exc:
        raise LinkError(exc.errno, f"could not create the lab's link (a veth pair): {exc.strerror}") from exc


def _ifreq_addr(name: str, address: str) -> bytes:
    sin = struct.pack("=HH4s8x", socket.AF_INET, 0, socket.inet_aton(address))
    return struct.pack("16s16s", name.encode(), sin)


def configure(address: str, prefix: int, name: str = LINK) -> None:
    """Give this namespace's end of the link ``address``/``prefix`` and bring it up (the kernel
    adds the route to the prefix itself), with IPv6 off on it so that nothing but what an
    experiment sends crosses the link."""
    import fcntl  # POSIX only

    try:
        with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as f:
            f.write("1")  # else router solicitations and MLD reports would cross the link
    except OSError:
        pass  # a kernel without IPv6: nothing would be sent anyway
    mask = socket.inet_ntoa(struct.pack("!I", (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s, SIOCSIFADDR, _ifreq_addr(name, address))
            fcntl.ioctl(s, SIOCSIFNETMASK, _ifreq_addr(name, mask))
            ifr = struct.pack("16sh", name.encode(), 0)
            flags = struct.unpack("16sh", fcntl.ioctl(s, SIOCGIFFLAGS, ifr))[1]
            fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh", name.encode(), flags | IFF_UP))
    except OSError as exc:
        raise LinkError(exc.errno,
                        f"could not address the lab's link as {address}/{prefix}: {exc.strerror}") from exc


def netem_missing(name: str = LINK) -> str:
    """``""`` when this kernel can put a ``netem`` qdisc (delay, loss) on the link, else why
    not, in one sentence.  Tries for real: adds a zero-delay netem root qdisc and removes it."""
    index = socket.if_nametoindex(name)
    options = _NETEM.pack(0, 1000, 0, 0, 0, 0)  # no delay, a 1000-packet queue, no loss
    body = _TCMSG.pack(socket.AF_UNSPEC, index, 0x10000, TC_H_ROOT, 0)
    try:
        _request(RTM_NEWQDISC, body + _attr(TCA_KIND, b"netem\0") + _attr(TCA_OPTIONS, options),
                 NLM_F_CREATE | NLM_F_EXCL)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EOPNOTSUPP, errno.EINVAL):
            return ("this kernel has no netem queueing discipline (sch_netem), so the link has no "
                    "delay and no loss: segments cross it in microseconds")
        return f"netem could not be set on the link ({exc.strerror}), so the link has no delay and no loss"
    try:
        _request(RTM_DELQDISC, _TCMSG.pack(socket.AF_UNSPEC, index, 0, TC_H_ROOT, 0))
    except OSError:
        pass  # a zero-delay netem changes nothing a learner measures; the lab goes soon anyway
    return ""
