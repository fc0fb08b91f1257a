"""The load generator's own server, run as a child process: ``python -m tcplearn.loadserver``.

It listens on a loopback port (printed on stdout as one line, ``PORT <n>``) and, for every
connection, either waits for the client's FIN and then closes (``--closer client``: the
client ends in TIME-WAIT) or closes at once (``--closer server``: the server does).  A
separate process, so that it runs on another core than the Python client threads.  It
stops when its stdin closes (the parent is gone) or on SIGTERM.
"""

from __future__ import annotations

import argparse
import selectors
import signal
import socket
import sys


def serve(host: str, family: int, closer: str) -> None:
    lst = socket.socket(family, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind((host, 0))
    lst.listen(4096)
    lst.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(lst, selectors.EVENT_READ, "listen")
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    print(f"PORT {lst.getsockname()[1]}", flush=True)
    running = True

    def stop(*_):
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    while running:
        for key, _ in sel.select(0.2):
            if key.data == "stdin":
                if not sys.stdin.buffer.read1(4096):
                    running = False
            elif key.data == "listen":
                for _ in range(256):
                    try:
                        conn, _ = lst.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:  # EMFILE and friends: try again on the next round
                        break
                    if closer == "server":
                        conn.close()
                    else:
                        conn.setblocking(False)
                        sel.register(conn, selectors.EVENT_READ, "conn")
            else:
                conn = key.fileobj
                try:
                    data = conn.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(conn)
                    conn.close()
    # Connections still waiting in the accept queue are accepted and closed in order: closing
    # the listener with them inside would reset them, and their clients' ends, already past
    # their own close, would lose the TIME-WAIT the load is there to make.
    while True:
        try:
            conn, _ = lst.accept()
        except OSError:  # BlockingIOError: the queue is empty
            break
        conn.close()
    for key in list(sel.get_map().values()):
        if key.data == "conn":
            key.fileobj.close()
    lst.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--closer", choices=("client", "server"), default="client")
    args = ap.parse_args()
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    serve(args.host, family, args.closer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
