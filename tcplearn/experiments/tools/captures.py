"""Captured segments: one connection's, and captures made one after another joined."""

from __future__ import annotations

import os
from pathlib import Path

from ...base.lab import Segment, parse_frame, relative, write_pcap
from ...base.lab.pcap import writable_path

__all__ = ["of_connection", "joined", "Captured"]


class Captured:
    """A mixin for measurement dataclasses that keep a ``captured`` list of segments."""

    captured: list[Segment]

    def segments(self) -> list[Segment]:
        """The captured segments of this connection, in order."""
        return list(self.captured)

    def save_pcap(self, path: str | os.PathLike) -> Path:
        """Write the segments as a pcap file (Wireshark, ``tcpdump -nn -r``) and return its
        path: ``path``, or the same name in the temporary directory where ``path``'s folder
        cannot be written.  A live run writes the captured frames; a recorded one, frames
        built from the recorded numbers (``write_pcap``)."""
        return write_pcap(self.captured, writable_path(path))


def of_connection(segments: list[Segment], server_port: int, client_port: int) -> list[Segment]:
    """The segments between these two ports (as root on the machine's ``lo``, a capture
    also holds everyone else's)."""
    return [s for s in segments if {s.sport, s.dport} == {server_port, client_port}]


def joined(*captures: list[Segment]) -> list[Segment]:
    """Captures made one after the other as one list: each segment re-read from its frame
    (absolute numbers), on one time axis from the first segment, numbers made relative to
    each connection's ISN again (``relative``), so a later capture's segments continue the
    earlier one's numbering.  Segments without frames (recorded) are kept as they are."""
    framed = [s for cap in captures for s in cap]
    if not framed or not all(s.frame and s.stamp_ns for s in framed):
        return framed
    start = min(s.stamp_ns for s in framed)
    parsed = [parse_frame(s.frame, (s.stamp_ns - start) / 1e9, s.stamp_ns) for s in framed]
    return relative(sorted((p for p in parsed if p is not None), key=lambda s: s.stamp_ns))
