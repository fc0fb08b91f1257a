"""One progress bar for every wait the series makes (a wait over 2 s shows one).

``Progress`` wraps a tqdm bar: ``with progress(total, "draining") as bar: bar.to(n)``.  It
builds no tqdm object at all when it is off (so no tqdm monitor thread starts for a run
with ``progress=False``), and a wait that ends early because what it waited for came (a
connection that noticed its dead peer, a socket that left the table) ends full and green,
with the time it took, instead of a red, part-filled bar: ending early is success.  Only an
exception leaves the bar as it was.  ``wait_for(future, seconds, ...)`` shows a bar while
a future runs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["Progress", "progress", "wait_for", "MIN_SECONDS"]

#: Waits no longer than this show no bar.
MIN_SECONDS = 2.0


class Progress:
    """A bar counting up to ``total`` (seconds, or connections with ``unit="conn"``); does
    nothing when ``enabled`` is false."""

    def __init__(self, total: float, desc: str, *, unit: str = "s", enabled: bool = True,
                 seconds: bool = True) -> None:
        self.total, self.started = total, time.monotonic()
        self._bar: Any = None
        try:
            from tqdm.auto import tqdm
        except ImportError:  # the runs themselves need only the standard library (e.g. as nobody)
            enabled = False
        if enabled:
            fmt = "{l_bar}{bar}| {n:.1f}/{total:.1f} s{postfix}" if seconds and unit == "s" else None
            self._bar = tqdm(total=round(total, 1), unit=unit, desc=desc, leave=False, bar_format=fmt)

    def to(self, n: float, **postfix: object) -> None:
        """Show ``n`` done (capped at the total), with optional ``postfix`` figures."""
        if self._bar is None:
            return
        self._bar.n = round(min(n, self.total), 1)
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)
        self._bar.refresh()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def done(self) -> None:
        """The wait ended as it should (early or not): a full bar with the time it took."""
        if self._bar is None:
            return
        self._bar.total = max(self._bar.n, 0.1)  # full, hence green, even when it ended early
        self._bar.n = self._bar.total
        self._bar.set_postfix_str(f"done in {self.elapsed():.1f} s", refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@contextlib.contextmanager
def progress(total: float, desc: str, *, unit: str = "s", enabled: bool = True) -> Iterator[Progress]:
    """A ``Progress`` for the block: full and green when the block ends normally, closed
    in any case (also on KeyboardInterrupt)."""
    bar = Progress(total, desc, unit=unit, enabled=enabled)
    try:
        yield bar
        bar.done()
    finally:
        bar.close()


def wait_for(future: Any, seconds: float, desc: str, *, enabled: bool = True, tick: float = 0.1) -> Any:
    """``future.result()``, with a bar counting the seconds meanwhile when ``enabled`` and
    ``seconds`` is over ``MIN_SECONDS`` (the bar stops at ``seconds``; the wait does not)."""
    from concurrent.futures import wait

    with progress(seconds, desc, enabled=enabled and seconds > MIN_SECONDS) as bar:
        while wait([future], timeout=tick).not_done:
            bar.to(bar.elapsed())
    return future.result()
