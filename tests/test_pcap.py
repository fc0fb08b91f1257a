"""pcap export: a live lab capture's real frames, and a recorded capture's built frames,
read back by tcpdump (the oracle) with the same segments and flags in order."""

import re
import shutil
import struct
import subprocess

import pytest

import tcplearn
from tcplearn.base.experiment import REGISTRY
from tcplearn.base.lab import Segment
from tcplearn.base.lab.pcap import MAGIC_NS, SNAPLEN, build_frame, write_pcap
from tcplearn.base.lab.segments import FLAG_ORDER, parse_frame

from .conftest import needs_linux

needs_tcpdump = pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")

# tcpdump's flag letters, and our names for them
_LETTERS = {"S": "SYN", "F": "FIN", "R": "RST", "P": "PSH", ".": "ACK", "U": "URG", "E": "ECE", "W": "CWR"}


def tcpdump_flags(path) -> list[str]:
    """The TCP flags of each packet in ``path`` as tcpdump reads it, in our notation."""
    out = subprocess.run(["tcpdump", "-nn", "-r", str(path)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    flags = [re.search(r"Flags \[([^\]]*)\]", line) for line in lines]
    assert all(flags), lines
    return [",".join(sorted((_LETTERS[c] for c in m.group(1)), key=FLAG_ORDER.index)) for m in flags]


def read_pcap(path) -> tuple[tuple, list[tuple[int, int, bytes]]]:
    """The file header and every record as ``(seconds, nanoseconds, frame)``."""
    data = path.read_bytes()
    header = struct.unpack_from("<IHHiIII", data)
    records, off = [], 24
    while off < len(data):
        sec, frac, incl, orig = struct.unpack_from("<IIII", data, off)
        assert incl == orig
        records.append((sec, frac, data[off + 16:off + 16 + incl]))
        off += 16 + incl
    return header, records


def _talk():
    """Open a loopback connection, send a little each way, close it (client first)."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = server.accept()
        client.sendall(b"hello")
        assert conn.recv(5) == b"hello"
        conn.sendall(b"world!")
        assert client.recv(6) == b"world!"
        client.close()
        conn.recv(1)
        conn.close()
    return port


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    if not tcplearn.lab_available()[0]:
        pytest.skip(tcplearn.lab_available()[1])
    with tcplearn.PrivateLab() as lab:
        port, segments = lab.run(_talk, capture=True)
    return port, segments, write_pcap(segments, tmp_path_factory.mktemp("pcap") / "live.pcap")


@needs_linux
def test_live_capture_file_is_the_captured_frames(live):
    port, segments, path = live
    assert segments and all(s.frame and s.stamp_ns for s in segments)
    header, records = read_pcap(path)
    assert header == (MAGIC_NS, 2, 4, 0, 0, SNAPLEN, 1)
    assert [r[2] for r in records] == [s.frame for s in segments]
    assert [r[0] * 10**9 + r[1] for r in records] == [s.stamp_ns for s in segments]
    # the frames are what the segments were parsed from (seq/ack absolute there)
    assert [parse_frame(r[2]).flags for r in records] == [s.flags for s in segments]


@needs_linux
@needs_tcpdump
def test_tcpdump_reads_a_live_capture_with_the_same_flags(live):
    port, segments, path = live
    assert tcpdump_flags(path) == [s.flags for s in segments]
    flags = [s.flags for s in segments if port in (s.sport, s.dport)]
    assert flags[:3] == ["SYN", "SYN,ACK", "ACK"] and "FIN,ACK" in flags


def _recorded_segments() -> list[Segment]:
    exp = REGISTRY["run_scenario"]
    run = exp.replay(exp.arguments("client-closes-first"), "a test asks for the recording").value
    return [s for step in run.segments_by_step for s in step]


@needs_tcpdump
def test_tcpdump_reads_a_recorded_capture_with_the_same_flags_and_numbers(tmp_path):
    segments = _recorded_segments()
    assert segments and not any(s.frame for s in segments)
    path = write_pcap(segments, tmp_path / "recorded.pcap")
    assert tcpdump_flags(path) == [s.flags for s in segments]
    out = subprocess.run(["tcpdump", "-nn", "-vv", "-S", "-r", str(path)], capture_output=True, text=True,
                         timeout=30).stdout
    assert "incorrect" not in out and "bad cksum" not in out
    # the built frames carry the recorded (relative) seq/ack as they are
    _, records = read_pcap(path)
    back = [parse_frame(r[2], s.t) for r, s in zip(records, segments, strict=True)]
    assert back == segments


def test_built_frames_have_correct_checksums_ipv4_and_ipv6():
    for src in ("127.0.0.1", "::1"):
        seg = Segment(0.25, src, 40000, src, 8080, "PSH,ACK", 1, 1, 7)
        frame = build_frame(seg)
        assert parse_frame(frame, 0.25) == seg
        ip = frame[14:]
        if src == "::1":
            pseudo, tcp = ip[8:40] + struct.pack("!IxxxB", len(ip) - 40, 6), ip[40:]
        else:
            assert _sum16(ip[:20]) == 0xFFFF
            pseudo, tcp = ip[12:20] + struct.pack("!BBH", 0, 6, len(ip) - 20), ip[20:]
        assert _sum16(pseudo + tcp + b"\0" * (len(tcp) % 2)) == 0xFFFF


def _sum16(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def test_recorded_timestamps_start_at_the_given_time(tmp_path):
    segments = _recorded_segments()
    _, records = read_pcap(write_pcap(segments, tmp_path / "a.pcap", start=1_700_000_000))
    assert records[0][0] == 1_700_000_000 and records[0][1] == round(segments[0].t * 1e9)


def test_segment_frame_stays_out_of_equality_repr_and_records():
    seg = Segment(0.0, "127.0.0.1", 1, "127.0.0.1", 2, "SYN", 0, 0, 0)
    frame = build_frame(seg)
    captured = parse_frame(frame, 0.0, 123)
    assert captured.frame == frame and captured.stamp_ns == 123
    assert captured == seg and repr(captured) == repr(seg)
    assert captured.to_record() == seg.to_record() and Segment(**captured.to_record()) == seg


def test_bad_input_is_refused_clearly(tmp_path):
    seg = Segment(0.0, "127.0.0.1", 1, "127.0.0.1", 2, "SYN", 0, 0, 0)
    with pytest.raises(TypeError, match="list of Segment"):
        write_pcap("segments.json", tmp_path / "x.pcap")
    with pytest.raises(TypeError, match="Segment records; item 1 is a dict.*Segment\\(\\*\\*d\\)"):
        write_pcap([seg, seg.to_record()], tmp_path / "x.pcap")
    with pytest.raises(TypeError, match="list of Segment"):
        write_pcap(seg, tmp_path / "x.pcap")
    with pytest.raises(ValueError, match="unknown TCP flag 'BOGUS'"):
        write_pcap([Segment(0.0, "127.0.0.1", 1, "127.0.0.1", 2, "SYN,BOGUS", 0, 0, 0)], tmp_path / "x.pcap")
    with pytest.raises(ValueError, match="not an IP address"):
        write_pcap([Segment(0.0, "localhost", 1, "127.0.0.1", 2, "SYN", 0, 0, 0)], tmp_path / "x.pcap")
    with pytest.raises(FileNotFoundError, match="cannot write the pcap file"):
        write_pcap([seg], tmp_path / "no" / "such" / "dir.pcap")
    with pytest.raises(IsADirectoryError, match="cannot write the pcap file"):
        write_pcap([seg], tmp_path)
    assert not (tmp_path / "x.pcap").exists()
