"""TCP segments from captured loopback frames: a small, tested parser.

Why not scapy or dpkt: we need nine header fields of IPv4/IPv6 + TCP from frames on
``lo``; scapy costs ~1 s to import and ~50 µs a packet, dpkt is another dependency for
what ``struct`` does in twenty lines.  Frames on Linux ``lo`` carry a 14-byte Ethernet
header with zero MAC addresses.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

__all__ = ["Segment", "parse_frame", "relative", "FLAG_ORDER"]

#: Flag names in the order they are shown ("SYN,ACK", "FIN,ACK", "RST,ACK").
FLAG_ORDER = ("SYN", "FIN", "RST", "PSH", "ACK", "URG", "ECE", "CWR")
_FLAG_BITS = {"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10,
              "URG": 0x20, "ECE": 0x40, "CWR": 0x80}

_ETH = struct.Struct("!6s6sH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIBBHHH")


@dataclass(frozen=True, slots=True)
class Segment:
    """One TCP segment as seen on the wire.

    ``t`` is seconds since the capture started (kernel timestamp); ``flags`` is e.g.
    ``"FIN,ACK"``; ``seq``/``ack`` are relative to each side's initial sequence number,
    as Wireshark shows them, once passed through ``relative()`` (absolute before);
    ``length`` is the payload size in bytes.

    A captured segment also keeps ``frame``, the frame exactly as the kernel handed it to
    the packet socket (Ethernet header included), and ``stamp_ns``, the kernel's capture
    time in nanoseconds since the epoch; ``write_pcap`` writes those bytes.  A recorded
    segment (from a trace) has neither: ``b""`` and ``0``.  Neither takes part in ``==``
    or ``repr``, and ``to_record()`` leaves the frame out, so recorded JSON stays plain.
    """

    t: float
    src: str
    sport: int
    dst: str
    dport: int
    flags: str
    seq: int
    ack: int
    length: int
    frame: bytes = field(default=b"", repr=False, compare=False)
    stamp_ns: int = field(default=0, repr=False, compare=False)

    def to_record(self) -> dict[str, Any]:
        """The segment as plain JSON-able data (``Segment(**d)`` rebuilds it), without the
        captured frame's bytes."""
        d = asdict(self)
        del d["frame"], d["stamp_ns"]
        return d

    def has(self, flag: str) -> bool:
        """True if this segment carries ``flag`` (``"FIN"``, ``"ACK"``, …)."""
        return flag.upper() in self.flags.split(",")

    @property
    def label(self) -> str:
        """A short label for diagrams: flags, then ``len=N`` when there is payload."""
        return self.flags + (f" len={self.length}" if self.length else "")

    def __str__(self) -> str:
        return (f"{self.t:8.6f}  {self.src}:{self.sport} -> {self.dst}:{self.dport}  "
                f"[{self.flags}] seq={self.seq} ack={self.ack} len={self.length}")


def _flags(bits: int) -> str:
    return ",".join(name for name in FLAG_ORDER if bits & _FLAG_BITS[name])


def parse_frame(frame: bytes, t: float = 0.0, stamp_ns: int = 0) -> Segment | None:
    """The TCP segment in one Ethernet frame, or ``None`` if it holds no TCP (or is cut).

    The segment keeps ``frame`` itself (as ``bytes``) and ``stamp_ns``, its capture time."""
    if len(frame) < _ETH.size:
        return None
    ethertype = _ETH.unpack_from(frame)[2]
    off = _ETH.size
    try:
        if ethertype == 0x0800:
            ver_ihl, _, total, _, _, _, proto, _, src, dst = _IPV4.unpack_from(frame, off)
            if ver_ihl >> 4 != 4 or proto != 6:
                return None
            ihl = (ver_ihl & 0x0F) * 4
            tcp_off, ip_payload = off + ihl, total - ihl
            src_s, dst_s = str(ipaddress.IPv4Address(src)), str(ipaddress.IPv4Address(dst))
        elif ethertype == 0x86DD:
            _, payload_len, next_header, _, src, dst = _IPV6.unpack_from(frame, off)
            if next_header != 6:  # extension headers are not used on loopback TCP
                return None
            tcp_off, ip_payload = off + _IPV6.size, payload_len
            src_s, dst_s = str(ipaddress.IPv6Address(src)), str(ipaddress.IPv6Address(dst))
        else:
            return None
        sport, dport, seq, ack, data_off, bits, _, _, _ = _TCP.unpack_from(frame, tcp_off)
    except struct.error:
        return None
    header = (data_off >> 4) * 4
    return Segment(t, src_s, sport, dst_s, dport, _flags(bits), seq, ack if bits & 0x10 else 0,
                   max(0, ip_payload - header), bytes(frame), stamp_ns)


def relative(segments: Iterable[Segment]) -> list[Segment]:
    """Rewrite ``seq``/``ack`` relative to each side's initial sequence number.

    A side's ISN is the seq of its SYN, or of its first segment seen when the SYN was not
    captured (as Wireshark does).  Each connection (4-tuple) is handled on its own.
    """
    isn: dict[tuple[str, int, str, int], int] = {}
    out = []
    for s in segments:
        key = (s.src, s.sport, s.dst, s.dport)
        if s.has("SYN") or key not in isn:
            isn[key] = s.seq
        seq = (s.seq - isn[key]) % 2**32
        peer = isn.get((s.dst, s.dport, s.src, s.sport))
        ack = (s.ack - peer) % 2**32 if (s.has("ACK") and peer is not None) else 0
        out.append(replace(s, seq=seq, ack=ack))
    return out
