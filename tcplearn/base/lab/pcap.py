"""Save segments as a classic libpcap file that tcpdump and Wireshark open.

A live capture's segments carry the frames exactly as the packet socket read them (an
Ethernet header with zero MAC addresses, as Linux ``lo`` gives it, then IP and TCP), so
the file holds the real bytes, stamped with the kernel's nanosecond times.  Their TCP
checksums are as the kernel left them on loopback: not computed (checksum offload), so
``tcpdump -vv`` calls them incorrect, as it does on a live ``tcpdump -i lo``.

A recorded capture (a trace) has no frames; each of its segments becomes a built frame:
Ethernet + IPv4 or IPv6 + TCP with the segment's addresses, ports, flags, seq and ack,
``length`` zero bytes of payload and correct checksums.  Recorded seq/ack are relative
(``relative()``), so built frames use them as they are, as if each side's initial
sequence number were 0: tcpdump and Wireshark then show the same numbers.  The window is
not recorded; built frames say 65535.
"""

from __future__ import annotations

import ipaddress
import os
import struct
from collections.abc import Iterable
from pathlib import Path

from .segments import _FLAG_BITS, Segment

__all__ = ["write_pcap", "writable_path", "build_frame", "SNAPLEN", "LINKTYPE_ETHERNET"]

MAGIC_NS = 0xA1B23C4D  # classic pcap, nanosecond timestamps (libpcap >= 1.5 reads it)
SNAPLEN = 262144
LINKTYPE_ETHERNET = 1
_HEADER = struct.Struct("<IHHiIII")  # magic, 2, 4, thiszone, sigfigs, snaplen, linktype
_RECORD = struct.Struct("<IIII")  # ts_sec, ts_nsec, incl_len, orig_len
_ETH = struct.Struct("!6s6sH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIBBHHH")
BUILT_WINDOW = 65535
_NS = 1_000_000_000


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def build_frame(seg: Segment) -> bytes:
    """An Ethernet frame carrying ``seg`` as Linux ``lo`` would (zero MACs), with correct
    IP and TCP checksums and ``seg.length`` zero bytes of payload."""
    bits = 0
    for name in filter(None, seg.flags.split(",")):
        if name.strip().upper() not in _FLAG_BITS:
            raise ValueError(f"segment {seg} has an unknown TCP flag {name!r}: "
                             f"expected some of {', '.join(_FLAG_BITS)}")
        bits |= _FLAG_BITS[name.strip().upper()]
    try:
        src, dst = ipaddress.ip_address(seg.src), ipaddress.ip_address(seg.dst)
    except ValueError as exc:
        raise ValueError(f"segment {seg} has an address that is not an IP address: {exc}") from None
    if src.version != dst.version:
        raise ValueError(f"segment {seg} mixes an IPv{src.version} and an IPv{dst.version} address")
    for name, port in (("sport", seg.sport), ("dport", seg.dport)):
        if not 0 <= port <= 0xFFFF:
            raise ValueError(f"segment {seg} has {name}={port}, not a port (0 to 65535)")
    tcp_len = _TCP.size + seg.length
    limit = 0xFFFF - (_IPV4.size if src.version == 4 else 0)
    if not 0 <= seg.length or tcp_len > limit:
        raise ValueError(f"segment {seg} has length={seg.length}, which does not fit in one IP packet")
    payload = bytes(seg.length)
    ack = seg.ack % 2**32 if bits & _FLAG_BITS["ACK"] else 0
    tcp = _TCP.pack(seg.sport, seg.dport, seg.seq % 2**32, ack, (_TCP.size // 4) << 4, bits,
                    BUILT_WINDOW, 0, 0)
    if src.version == 4:
        pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, 6, tcp_len)
        tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp + payload)) + tcp[18:]
        ip = _IPV4.pack(0x45, 0, _IPV4.size + tcp_len, 0, 0x4000, 64, 6, 0, src.packed, dst.packed)
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        ethertype = 0x0800
    else:
        pseudo = src.packed + dst.packed + struct.pack("!IxxxB", tcp_len, 6)
        tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp + payload)) + tcp[18:]
        ip = _IPV6.pack(6 << 28, tcp_len, 6, 64, src.packed, dst.packed)
        ethertype = 0x86DD
    return _ETH.pack(bytes(6), bytes(6), ethertype) + ip + tcp + payload


def writable_path(path: str | os.PathLike[str]) -> Path:
    """``path``, or the same file name in the temporary directory when ``path``'s folder
    cannot be written (a read-only notebook folder on a shared server)."""
    import tempfile

    target = Path(path)
    if target.parent.is_dir() and not os.access(target.parent, os.W_OK):
        return Path(tempfile.gettempdir()) / target.name
    return target


def write_pcap(segments: Iterable[Segment], path: str | os.PathLike[str], *, start: float = 0.0) -> Path:
    """Write ``segments`` to ``path`` as a libpcap file (nanosecond timestamps, Ethernet
    link type) and return the path.

    Captured segments are written as their frames, at their kernel timestamps; recorded
    ones (no frame) as built frames (see the module's docstring), at ``start + t``
    seconds since the epoch (``start`` defaults to 0: 1970, as the recording kept no
    absolute time).  Open the file with ``tcpdump -nn -r FILE`` or Wireshark.
    """
    if isinstance(segments, (str, bytes, Segment)) or not isinstance(segments, Iterable):
        raise TypeError(f"write_pcap needs a list of Segment records (e.g. lab.run(fn, capture=True)[1]), "
                        f"not {type(segments).__name__}")
    segments = list(segments)
    for i, seg in enumerate(segments):
        if not isinstance(seg, Segment):
            raise TypeError(f"write_pcap needs Segment records; item {i} is a {type(seg).__name__}"
                            + (" (a recorded segment as a dict? rebuild it with Segment(**d))"
                               if isinstance(seg, dict) else ""))
    out = [_HEADER.pack(MAGIC_NS, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET)]
    for seg in segments:
        frame = seg.frame or build_frame(seg)
        stamp = seg.stamp_ns if seg.frame and seg.stamp_ns else round(start * _NS) + round(seg.t * _NS)
        if stamp < 0:
            raise ValueError(f"segment {seg} would be stamped before 1970: give write_pcap a start time")
        kept = frame[:SNAPLEN]
        out.append(_RECORD.pack(stamp // _NS, stamp % _NS, len(kept), len(frame)) + kept)
    path = Path(path)
    try:
        path.write_bytes(b"".join(out))
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot write the pcap file: {exc.strerror}", str(path)) from exc
    return path
