"""``sample_states``: per-state counts over time, also while a load runs."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from ..states import TcpState
from . import count_states
from .netlink import sockstat_tw

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["StateSampler", "sample_states"]

MAX_SAMPLES = 100_000


class StateSampler:
    """Samples ``count_states(port=...)`` every ``interval`` seconds in a background thread.

    ``with StateSampler(0.1) as s: ...`` then ``s.frame()``: a DataFrame with a ``t``
    column (seconds since start) and one column per RFC state; with ``machine_tw=True``
    also ``machine_tw``, the kernel's own count of every timewait mini-socket in the
    namespace (``/proc/net/sockstat`` tw), whoever made them.  The thread stops when the
    block ends, also on errors.
    """

    def __init__(self, interval: float = 0.1, *, port: int | None = None, machine_tw: bool = False):
        if not 0.005 <= interval <= 60:
            raise ValueError(f"interval must be 0.005-60 seconds, got {interval!r}")
        self.interval, self.port = interval, port
        self.machine_tw = machine_tw  # also the namespace's own total (sockstat tw), column machine_tw
        self.rows: list[dict[str, float | None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def __enter__(self) -> StateSampler:
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="tcplearn-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        next_at = self._t0
        while not self._stop.is_set() and len(self.rows) < MAX_SAMPLES:
            self.sample()
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def sample(self) -> dict[str, float | None]:
        counts = count_states(port=self.port)
        row: dict[str, float | None] = {"t": time.monotonic() - self._t0,
                                        **{s.name: counts[s] for s in TcpState.rfc_states()}}
        if self.machine_tw:
            row["machine_tw"] = sockstat_tw()
        self.rows.append(row)
        return row

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        frame: pd.DataFrame = pd.DataFrame(self.rows)
        return frame


def sample_states(duration: float, interval: float = 0.5, *, port: int | None = None,
                  progress: bool = True) -> pd.DataFrame:
    """Count states every ``interval`` seconds for ``duration`` seconds; returns the DataFrame
    (t × state counts).  Shows a progress bar; Ctrl-C stops it and returns what was sampled."""
    from ..progress import progress as bar_for

    if not 0 < duration <= 3600:
        raise ValueError(f"duration must be in (0, 3600] seconds, got {duration!r}")
    sampler = StateSampler(interval, port=port)
    with sampler:
        try:
            with bar_for(duration, "sampling", enabled=progress) as bar:
                end = time.monotonic() + duration
                while time.monotonic() < end:
                    time.sleep(min(0.25, max(0.0, end - time.monotonic())))
                    bar.to(duration - max(0.0, end - time.monotonic()))
        except KeyboardInterrupt:
            pass
    return sampler.frame()
