"""Command line: ``python -m tcplearn states [--port P] [--watch S]`` and ``python -m tcplearn doctor``."""

from __future__ import annotations

import argparse
import sys
import time

from . import count_states, doctor
from .states import TcpState


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be an integer from 0 to 65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be from 0 to 65535, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--watch takes seconds, e.g. 1 or 0.5, got {text!r}") from None
    if not 0.1 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"--watch must be from 0.1 to 3600 seconds, got {value}")
    return value


def _table(port: int | None) -> str:
    counts = count_states(port=port)
    shown = [s for s in TcpState if s.is_rfc or counts[s]]
    width = max(len(s.label) for s in shown)
    title = f"TCP sockets per state{f' (port {port})' if port is not None else ''}"
    lines = [title] + [f"  {s.label:<{width}}  {counts[s]:>7}" for s in shown]
    lines.append(f"  {'total':<{width}}  {sum(counts.values()):>7}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tcplearn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    st = sub.add_parser("states", help="per-state counts of TCP sockets")
    st.add_argument("--port", type=_port, help="count only sockets with this port at either end")
    st.add_argument("--watch", type=_seconds, metavar="SECONDS", help="refresh every SECONDS until Ctrl-C")
    sub.add_parser("doctor", help="what this machine offers the series")
    args = parser.parse_args(argv)

    if args.command == "doctor":
        print(doctor())
        return 0
    if args.watch is None:
        print(_table(args.port))
        return 0
    clear = "\033[H\033[2J" if sys.stdout.isatty() else ""
    try:
        while True:
            print(f"{clear}every {args.watch:g}s — {time.strftime('%H:%M:%S')}\n{_table(args.port)}", flush=True)
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
