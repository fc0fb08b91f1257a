"""Parse ``/proc/net/tcp`` and ``/proc/net/tcp6``.

The format (``Documentation/networking/proc_net_tcp.rst``; ``tcp4_seq_show()`` in ``net/ipv4/tcp_ipv4.c``):
one header line, then per socket
``sl: laddr:lport raddr:rport st tx:rx tr:when retrnsmt uid timeout inode ...``.
Addresses are the network-order words printed as host-order integers, so on a
little-endian host every 4-byte group is byte-reversed; ports are plain hex.
TIME-WAIT mini-socket rows are shorter than full-socket rows.  ``tm->when`` is in
USER_HZ ticks (clock_t), not jiffies or milliseconds.

The parser never raises on content: a line it cannot read is skipped and counted.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from collections.abc import Iterable

from ..states import TcpState
from .tcpsocket import TIMER_NAMES, TcpSocket

__all__ = ["ParsedTable", "parse_proc_net_tcp", "decode_address", "USER_HZ", "read_table"]


def _user_hz() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK"))
    except (AttributeError, ValueError, OSError):
        return 100  # Linux fixes USER_HZ at 100 for the clock_t ABI.


#: Ticks per second of ``tm->when`` (clock_t), 100 on every Linux we know of.
USER_HZ = _user_hz()

_STATE_BY_CODE = {s.value: s for s in TcpState}


class ParsedTable(list[TcpSocket]):
    """A ``list[TcpSocket]`` that also says how many lines were skipped as malformed.

    ``skipped`` counts data lines that could not be read; headers and blank lines
    are not counted.  ``skipped_lines`` keeps up to 20 of them for error messages.
    """

    skipped: int
    skipped_lines: list[str]

    def __init__(self, rows: Iterable[TcpSocket] = ()) -> None:
        super().__init__(rows)
        self.skipped = 0
        self.skipped_lines = []

    def _skip(self, line: str) -> None:
        self.skipped += 1
        if len(self.skipped_lines) < 20:
            self.skipped_lines.append(line)


def decode_address(text: str, *, byteorder: str = sys.byteorder) -> tuple[str, int]:
    """Decode one ``HEXADDR:HEXPORT`` field into ``(address, port)``.

    The family follows from the width: 8 hex digits are IPv4, 32 are IPv6.
    ``byteorder`` is that of the host that wrote the table (``"little"`` for x86 and
    ARM, which is every fixture we have).  Raises ``ValueError`` naming the field.
    """
    addr_hex, sep, port_hex = text.partition(":")
    if not sep or not 1 <= len(port_hex) <= 4 or len(addr_hex) not in (8, 32):
        raise ValueError(f"not a /proc/net/tcp address: {text!r}")
    try:
        raw = bytes.fromhex(addr_hex)
        port = int(port_hex, 16)
    except ValueError:
        raise ValueError(f"not a /proc/net/tcp address: {text!r}") from None
    if byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw)), port
    return str(ipaddress.IPv6Address(raw)), port


def _parse_line(fields: list[str], byteorder: str, user_hz: int) -> TcpSocket:
    # fields: sl laddr raddr st tx:rx tr:when retrnsmt uid timeout inode [...]
    if len(fields) < 10 or not fields[0].endswith(":"):
        raise ValueError("too few fields")
    local, lport = decode_address(fields[1], byteorder=byteorder)
    remote, rport = decode_address(fields[2], byteorder=byteorder)
    if (":" in local) != (":" in remote):
        raise ValueError("mixed address families")
    state = _STATE_BY_CODE[int(fields[3], 16)]
    tx_hex, _, rx_hex = fields[4].partition(":")
    tr_hex, _, when_hex = fields[5].partition(":")
    tr = int(tr_hex, 16)
    return TcpSocket(
        family=socket.AF_INET6 if ":" in local else socket.AF_INET,
        local_address=local,
        local_port=lport,
        remote_address=remote,
        remote_port=rport,
        state=state,
        tx_queue=int(tx_hex, 16),
        rx_queue=int(rx_hex, 16),
        timer=TIMER_NAMES[tr],
        timer_remaining=int(when_hex, 16) / user_hz,
        retransmits=int(fields[6], 16),
        uid=int(fields[7]),
        inode=int(fields[9]),
        probes=int(fields[8]),  # tcp4_seq_show() prints icsk_probes_out here ("timeout" in the header)
    )


def parse_proc_net_tcp(
    text: str,
    *,
    byteorder: str = sys.byteorder,
    user_hz: int = USER_HZ,
    port: int | None = None,
) -> ParsedTable:
    """Parse the content of ``/proc/net/tcp`` and/or ``/proc/net/tcp6``.

    Returns a list of ``TcpSocket`` in file order (a ``ParsedTable`` whose ``skipped``
    says how many data lines were malformed).  Header lines in any spelling, trailing
    spaces, several tables concatenated, IPv4 and IPv6 rows mixed, and the short
    TIME-WAIT rows are all accepted.  Junk never raises.  ``port`` keeps only sockets
    with that port at either end (a cheap text pre-filter is applied first).
    """
    table = ParsedTable()
    if not isinstance(text, str):
        raise TypeError(f"parse_proc_net_tcp expects str, got {type(text).__name__}")
    needle = f":{port:04X} " if port is not None else None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or "local_address" in stripped:
            continue
        if needle is not None and needle not in line:
            # Either end could carry the port; a row without the text cannot match.
            if _looks_like_row(stripped):
                continue
        try:
            sock = _parse_line(stripped.split(), byteorder, user_hz)
        except (ValueError, KeyError, IndexError, ipaddress.AddressValueError):
            table._skip(line)
            continue
        if port is None or sock.local_port == port or sock.remote_port == port:
            table.append(sock)
    return table


def _looks_like_row(stripped: str) -> bool:
    head = stripped.split(None, 1)[0]
    return head.endswith(":") and head[:-1].isdigit()


PROC_FILES = ("/proc/net/tcp", "/proc/net/tcp6")


def read_table(
    *, families: tuple[int, ...] = (socket.AF_INET, socket.AF_INET6), proc_root: str = "/proc"
) -> str:
    """The concatenated text of the kernel's TCP tables for ``families``.

    ``proc_root`` may name ``/proc/<pid>`` to read the table of that process's network
    namespace (how the host looks into a private lab).  A missing ``tcp6`` (IPv6
    disabled) is treated as empty; an unreadable ``tcp`` raises ``OSError``.
    """
    parts = []
    for family, name in ((socket.AF_INET, "tcp"), (socket.AF_INET6, "tcp6")):
        if family not in families:
            continue
        try:
            with open(f"{proc_root}/net/{name}", encoding="ascii", errors="replace") as f:
                parts.append(f.read())
        except FileNotFoundError:
            if name == "tcp":
                raise
    return "\n".join(parts)
