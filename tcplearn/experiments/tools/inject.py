"""Deliver a captured segment again, as the network would deliver a delayed duplicate.

A captured frame on Linux ``lo`` is an Ethernet header (zero MAC addresses) and the IP
packet; its TCP checksum is not computed, because loopback leaves it to checksum offload
(the kernel trusts its own packets on ``lo``).  A copy sent back in through a raw socket is
checked like any arriving packet, so ``packet()`` recomputes the checksum (RFC 1071, over
the pseudo-header of RFC 9293 §3.1) after any change to the header.  ``inject()`` sends it
with an ``IPPROTO_RAW`` socket, which needs ``CAP_NET_RAW`` over the network namespace:
a private lab's (an ordinary user is root there) or root's.  IPv4 only: the lab's
experiments run on 127.0.0.1.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from ...base.lab.pcap import _checksum

__all__ = ["TcpHeader", "header", "packet", "inject"]

_ETH_LEN = 14


@dataclass(frozen=True)
class TcpHeader:
    """The absolute numbers of one captured IPv4 TCP segment."""

    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    payload: bytes


def _ip_start(frame: bytes) -> int:
    if len(frame) < _ETH_LEN + 20:
        raise ValueError(f"a frame of {len(frame)} bytes holds no IPv4 packet: "
                         "expected a captured segment's frame (Segment.frame)")
    if struct.unpack_from("!H", frame, 12)[0] != 0x0800 or frame[_ETH_LEN] >> 4 != 4:
        raise ValueError("only IPv4 frames can be injected here (the lab's experiments run on 127.0.0.1)")
    if frame[_ETH_LEN + 9] != socket.IPPROTO_TCP:
        raise ValueError("this frame's IP packet does not carry TCP")
    return _ETH_LEN


def header(frame: bytes) -> TcpHeader:
    """The absolute sequence and acknowledgment numbers, flags, window and payload of the
    IPv4 TCP segment in ``frame`` (a captured ``Segment.frame``); ``ValueError`` otherwise.
    ``Segment.seq``/``ack`` are relative to each side's ISN; these are the numbers on the wire."""
    off = _ip_start(frame)
    ihl = (frame[off] & 0x0F) * 4
    total = struct.unpack_from("!H", frame, off + 2)[0]
    tcp = off + ihl
    sport, dport, seq, ack, data_off, flags, window = struct.unpack_from("!HHIIBBH", frame, tcp)
    src, dst = socket.inet_ntoa(frame[off + 12:off + 16]), socket.inet_ntoa(frame[off + 16:off + 20])
    return TcpHeader(src, sport, dst, dport, seq, ack, flags, window,
                     bytes(frame[tcp + (data_off >> 4) * 4:off + total]))


def packet(frame: bytes, *, ack: int | None = None) -> bytes:
    """The IP packet in ``frame``, ready to send again: with its acknowledgment number set
    to ``ack`` when given (an absolute number), and its TCP and IP checksums computed."""
    off = _ip_start(frame)
    ihl = (frame[off] & 0x0F) * 4
    total = struct.unpack_from("!H", frame, off + 2)[0]
    ip = bytearray(frame[off:off + total])
    if len(ip) != total:
        raise ValueError(f"the frame is cut short: its IP packet says {total} bytes, the frame holds "
                         f"{len(ip)}")
    if ack is not None:
        if not 0 <= ack < 2**32:
            raise ValueError(f"ack={ack} is not a 32-bit sequence number (0 to 2**32 - 1)")
        struct.pack_into("!I", ip, ihl + 8, ack)
    struct.pack_into("!H", ip, ihl + 16, 0)
    pseudo = bytes(ip[12:20]) + struct.pack("!BBH", 0, socket.IPPROTO_TCP, total - ihl)
    struct.pack_into("!H", ip, ihl + 16, _checksum(pseudo + bytes(ip[ihl:])))
    struct.pack_into("!H", ip, 10, 0)
    struct.pack_into("!H", ip, 10, _checksum(bytes(ip[:ihl])))
    return bytes(ip)


def inject(ip_packet: bytes) -> None:
    """Send ``ip_packet`` (from ``packet()``) to its destination through a raw socket, as if
    it had just arrived from the network.  ``PermissionError`` without CAP_NET_RAW."""
    dst = socket.inet_ntoa(ip_packet[16:20])
    if not dst.startswith("127."):
        raise ValueError(f"refusing to inject a segment for {dst}: only loopback (127.0.0.0/8) is used")
    try:
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    except PermissionError as exc:
        raise PermissionError(exc.errno, "sending a raw segment needs CAP_NET_RAW: run in a private lab "
                                         "(root over its own network, no real root needed) or as "
                                         "root") from None
    with raw:
        raw.sendto(ip_packet, (dst, 0))
