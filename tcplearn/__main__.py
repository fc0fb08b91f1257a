"""Command line, as ``tcplearn`` (the installed script) or ``python -m tcplearn``:

    tcplearn states [--port P] [--watch SECONDS]
    tcplearn doctor
    tcplearn notebooks DIR [--overwrite]
    tcplearn load --rate R --duration S [--closer client|server] [--count N]
                  [--sources K] [--bind-before-connect] [--ipv6] [--target HOST:PORT] [--lab]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

from . import count_states, doctor
from .base.states import TcpState


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


def _positive(name: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} takes a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be positive, got {value:g}")
        return value
    return parse


def _target(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--target takes HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _table(port: int | None) -> str:
    counts = count_states(port=port)
    shown = [s for s in TcpState if s.is_rfc or counts[s]]
    width = max(len(s.label) for s in shown)
    title = f"TCP sockets per state{f' (port {port})' if port is not None else ''}"
    lines = [title] + [f"  {s.label:<{width}}  {counts[s]:>7}" for s in shown]
    lines.append(f"  {'total':<{width}}  {sum(counts.values()):>7}")
    return "\n".join(lines)


def _prog() -> str:
    """How the user called us: ``python -m tcplearn`` runs this file as ``__main__.py``; the
    installed ``tcplearn`` script is any other name."""
    return "python -m tcplearn" if Path(sys.argv[0]).name == "__main__.py" else "tcplearn"


def _description(prog: str) -> str:
    return ("What this machine offers the series, its TCP table, a bounded loopback load, and a copy of the\n"
            "notebook series.  Each command has its own --help:\n\n"
            f"  {prog} states [--port P] [--watch SECONDS]\n"
            f"  {prog} doctor\n"
            f"  {prog} notebooks DIR [--overwrite]\n"
            f"  {prog} load --rate R --duration S [--closer client|server] [--count N] [--sources K]\n"
            f"  {' ' * len(prog)}      [--bind-before-connect] [--ipv6] [--target HOST:PORT] [--lab]")


def _open_hint(directory: str) -> str:
    """How to open the copied series: with JupyterLab where this Python has it, else how to get it."""
    start = Path(directory) / "00-start-here.ipynb"
    if importlib.util.find_spec("jupyterlab") is not None:
        return f"Open the series with:\n  jupyter lab {start}"
    return ("JupyterLab, which opens them, is not installed for this Python. Install it with tcplearn's "
            "notebook\nextra, then open the series:\n  pip install 'tcplearn[notebooks]'\n  jupyter lab "
            f"{start}")


def _lab_load():
    """Notebook 05's ``machine_load`` experiment with one more row in its table of needs:
    every call needs a private lab, set like this machine (``PLAYGROUND_SETTINGS``), so
    ``--lab`` takes the ladder's lab rung, as the Python API's loads do when they are too
    big for the machine, and the ladder's fallbacks where no lab can start."""
    import dataclasses

    from .base import sysctl
    from .base.experiment import Need, Rule
    from .experiments.knobs import PLAYGROUND_SETTINGS, machine_load

    asked = Rule(lambda arguments: "you asked for a private lab (--lab)", needs=(Need.LAB,),
                 mirror=PLAYGROUND_SETTINGS,
                 note=lambda reason, mirrored: f"Ran in your private lab (--lab), which is yours alone, with "
                                               f"this machine's {sysctl.describe(mirrored)}; the machine's "
                                               "table and ports were not touched.")
    return dataclasses.replace(machine_load, rules=(asked,))


def _load(parser: argparse.ArgumentParser, args: argparse.Namespace, prog: str) -> int:
    """``load``: on this machine within its share, or with ``--lab`` in a private lab."""
    import socket

    from .experiments.load import run_load
    from .experiments.sharing import HostShareError

    if args.lab and args.target is not None:
        parser.error("--lab runs the load and its own server inside the lab, whose loopback is its own: "
                     f"--target {args.target[0]}:{args.target[1]} (a server on this machine) cannot be "
                     "reached from there; drop one of the two")
    settings = dict(rate=args.rate, duration=args.duration, count=args.count, closer=args.closer,
                    concurrency=args.concurrency, sources=args.sources,
                    bind_before_connect=args.bind_before_connect,
                    family=socket.AF_INET6 if args.ipv6 else socket.AF_INET, target=args.target,
                    sample_interval=0.5)  # the load's own sockets, counted while it runs: its TIME-WAIT peak
    try:
        if args.lab:
            ran = _lab_load()(**settings)
            if ran.note:
                print(ran.note)
            if ran.value is None:
                return 1
            result = ran.value
        else:
            result = run_load(**settings)
    except HostShareError as exc:
        print(f"{prog} load: {exc.held} Add --lab to run it in a private lab of your own, where it shares "
              "nothing, or lower --rate or --duration.", file=sys.stderr)
        return 1
    except ValueError as exc:
        parser.error(str(exc))
    except KeyboardInterrupt:
        print("interrupted: the load was stopped and cleaned up")
        return 130
    errors = ", ".join(f"{k} {v}" for k, v in sorted(result.errors.items())) or "none"
    print(f"{result.connections} connections in {result.elapsed:.2f} s: {result.rate:.0f}/s; "
          f"errors: {errors}")
    own = result.interference or {}
    if "own_peak" in own and result.target:
        print(f"its own sockets (server port {result.target[1]} at either end): a TIME-WAIT peak of "
              f"{own['own_peak']:,}")
    if result.note and not args.lab:  # in a lab, the ladder's note above already ends with it
        print(result.note)
    whose = "your lab's, so this load's own" if own.get("counters_own") else "this machine's, every program's"
    print(f"kernel counters ({whose}): " + ", ".join(f"{k} +{v}" for k, v in result.netstat_delta().items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    prog = _prog()
    parser = argparse.ArgumentParser(prog=prog, description=_description(prog),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    st = sub.add_parser("states", help="per-state counts of TCP sockets")
    st.add_argument("--port", type=_port, help="count only sockets with this port at either end")
    st.add_argument("--watch", type=_seconds, metavar="SECONDS", help="refresh every SECONDS until Ctrl-C")
    sub.add_parser("doctor", help="what this machine offers the series")
    nb = sub.add_parser("notebooks", help="copy the notebook series into DIR")
    nb.add_argument("dir", metavar="DIR", help="where to copy the series (created if missing)")
    nb.add_argument("--overwrite", action="store_true", help="replace copies you have edited")
    ld = sub.add_parser("load", help="a bounded loopback load (connections churned, TIME-WAIT made)")
    ld.add_argument("--rate", type=_positive("--rate"),
                    help="connections per second (default: as fast as possible)")
    ld.add_argument("--duration", type=_positive("--duration"), default=5.0, help="seconds (default 5)")
    ld.add_argument("--count", type=int, help="stop after this many connections")
    ld.add_argument("--closer", choices=("client", "server"), default="client")
    ld.add_argument("--concurrency", type=int)
    ld.add_argument("--sources", type=int, default=1, help="spread over 127.0.0.1..N")
    ld.add_argument("--bind-before-connect", action="store_true")
    ld.add_argument("--ipv6", action="store_true", help="use ::1")
    ld.add_argument("--target", type=_target, help="HOST:PORT of a loopback server (default: its own)")
    ld.add_argument("--lab", action="store_true",
                    help="run it in a private lab set like this machine (no root needed; the machine's "
                         "table and ports untouched), also when it is too big to share the machine")
    args = parser.parse_args(argv)

    if args.command == "doctor":
        print(doctor())
        return 0
    if args.command == "notebooks":
        from .series import SeriesError, copy_series

        try:
            copied = copy_series(args.dir, overwrite=args.overwrite)
        except SeriesError as exc:
            print(f"tcplearn notebooks: {exc}", file=sys.stderr)
            return 1
        notebooks = [p for p in copied if p.suffix == ".ipynb"]
        others = [p.name for p in copied if p.suffix != ".ipynb"]
        names = [f"{len(notebooks)} notebooks", *others]
        listed = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]
        print(f"Copied {listed} into {args.dir}. {_open_hint(args.dir)}")
        return 0
    if args.command == "load":
        return _load(parser, args, prog)
    if args.watch is None:
        print(_table(args.port))
        return 0
    clear = "\033[H\033[2J" if sys.stdout.isatty() else ""
    try:
        while True:
            print(f"{clear}every {args.watch:g}s — {time.strftime('%H:%M:%S')}\n{_table(args.port)}",
                  flush=True)
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
