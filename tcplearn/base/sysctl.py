"""Read, validate and (only when asked, as root) apply-and-restore the TCP teardown sysctls.

Only the names in ``SETTINGS`` are known; everything else is refused with a clear error.
Ranges are the kernel's own where ``ip-sysctl.rst`` or the handler states one, and
tcplearn's safe teaching bounds otherwise (each says which).  ``per_netns`` was measured
on Linux 6.18: those settings exist separately in every network namespace, so a
private lab can change them without touching the host.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from .util import system_name

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "describe",
    "Setting", "SETTINGS", "SysctlError", "read", "read_all", "validate", "command",
    "apply", "is_root", "write_raw", "setting", "reason", "table", "kernel_has",
]


class SysctlError(ValueError):
    """A sysctl name or value was refused, or a change could not be made or undone."""


@dataclass(frozen=True)
class Setting:
    """One known kernel setting: its full name, value shape, accepted range and meaning."""

    name: str
    low: int
    high: int
    unit: str
    per_netns: bool
    meaning: str
    range_source: str
    pair: bool = False

    @property
    def path(self) -> str:
        return "/proc/sys/" + self.name.replace(".", "/")

    @property
    def short(self) -> str:
        return self.name.rsplit(".", 1)[-1]


_INT_MAX = 2**31 - 1

SETTINGS: dict[str, Setting] = {
    s.short: s
    for s in (
        Setting("net.ipv4.tcp_fin_timeout", 1, 600, "s", True,
                "lifetime of an orphaned FIN-WAIT-2 socket (not TIME-WAIT)",
                "tcplearn's teaching bounds; the kernel takes any int"),
        Setting("net.ipv4.tcp_tw_reuse", 0, 2, "", True,
                "reuse TIME-WAIT ports for outgoing connect(): 0 off, 1 on, 2 loopback only",
                "kernel: 0-2"),
        Setting("net.ipv4.tcp_tw_reuse_delay", 1, 60000, "ms", True,
                "how long a TIME-WAIT socket must age before tcp_tw_reuse may reuse it",
                "kernel: 1 to TCP_PAWS_MSL*1000"),
        Setting("net.ipv4.tcp_max_tw_buckets", 0, _INT_MAX, "", True,
                "most TIME-WAIT sockets held at once; beyond it they close with no TIME-WAIT",
                "kernel: any non-negative int"),
        Setting("net.ipv4.ip_local_port_range", 1024, 65535, "", True,
                "ephemeral ports connect() chooses from (low high)",
                "kernel: low <= high, low >= ip_unprivileged_port_start (1024)", pair=True),
        Setting("net.ipv4.tcp_timestamps", 0, 2, "", True,
                "TCP timestamps: 0 off, 1 on with random offset, 2 on without; reuse needs them",
                "kernel: 0-2"),
        Setting("net.ipv4.tcp_rfc1337", 0, 1, "", True,
                "1 ignores RST in TIME-WAIT; 0 (default) lets an RST end TIME-WAIT",
                "kernel: 0-1"),
        Setting("net.ipv4.tcp_max_orphans", 0, _INT_MAX, "", False,
                "most sockets no process holds; beyond it orphans are reset",
                "kernel: any non-negative int"),
        Setting("net.ipv4.tcp_orphan_retries", 0, 255, "", True,
                "retries before an orphaned connection is killed (0 means 8)",
                "kernel: u8"),
        Setting("net.ipv4.tcp_keepalive_time", 1, 32767, "s", True,
                "idle time before the first keepalive probe", "kernel: 1-MAX_TCP_KEEPIDLE"),
        Setting("net.ipv4.tcp_keepalive_intvl", 1, 32767, "s", True,
                "time between keepalive probes", "kernel: 1-MAX_TCP_KEEPINTVL"),
        Setting("net.ipv4.tcp_keepalive_probes", 1, 127, "", True,
                "unanswered keepalive probes before the connection is dropped",
                "kernel: 1-MAX_TCP_KEEPCNT"),
        Setting("net.ipv4.tcp_retries2", 1, 15, "", True,
                "how long unacknowledged data is retransmitted before ETIMEDOUT, given as a "
                "count the kernel turns into a time (15, the default, is about 924.6 s)",
                "tcplearn's teaching bounds: 15 is the default"),
        Setting("net.ipv4.tcp_syn_retries", 1, 127, "", True,
                "SYN retransmissions before connect() gives up with ETIMEDOUT (default 6)",
                "kernel: 1-MAX_TCP_SYNCNT (127)"),
    )
}

Value = int | tuple[int, int]


def setting(name: str) -> Setting:
    """The known ``Setting`` for a short or full name; ``SysctlError`` for anything else."""
    key = name.strip().removeprefix("net.ipv4.").replace("/", ".").rsplit(".", 1)[-1]
    spec = SETTINGS.get(key)
    if spec is None or name.strip() not in (key, spec.name):
        raise SysctlError(
            f"unknown or unsupported sysctl {name!r}: tcplearn only reads and changes "
            f"{', '.join(SETTINGS)}"
        )
    return spec


def _parse(spec: Setting, text: str) -> Value:
    parts = [int(p) for p in text.split()]
    return (parts[0], parts[1]) if spec.pair else parts[0]


def _format(spec: Setting, value: Value) -> str:
    if spec.pair:
        low, high = cast("tuple[int, int]", value)
        return f"{low} {high}"
    return str(value)


def read(name: str, *, proc_root: str = "/proc") -> Value | None:
    """The current value of a known setting (an int, or ``(low, high)`` for the port
    range), or ``None`` when this system has no such file (other OS, older kernel, or a
    global setting seen from inside a namespace).  ``reason(name)`` says why."""
    spec = setting(name)
    path = proc_root + spec.path.removeprefix("/proc")
    try:
        with open(path) as f:
            return _parse(spec, f.read())
    except (OSError, ValueError, IndexError):
        return None


def reason(name: str) -> str:
    """Why ``read(name)`` gives ``None`` here, in one sentence ('' if it does not)."""
    spec = setting(name)
    if not sys.platform.startswith("linux"):
        return f"{spec.name} is a Linux setting, and this is {system_name()}"
    try:
        with open(spec.path) as f:
            f.read()
    except FileNotFoundError:
        return f"{spec.path} does not exist on this kernel or in this network namespace"
    except OSError as exc:
        return f"{spec.path} is unreadable: {exc.strerror}"
    return ""


def read_all() -> dict[str, Value | None]:
    """Every known spec's current value (``None`` where absent), keyed by short name."""
    return {key: read(key) for key in SETTINGS}


def validate(name: str, value: object) -> tuple[Setting, Value]:
    """Check ``value`` for ``name``; returns ``(spec, normalised value)``.

    Raises ``SysctlError`` naming the spec, the value and what is accepted.
    """
    spec = setting(name)
    accepted = (
        f"two ints low high with {spec.low} <= low <= high <= {spec.high}"
        if spec.pair else f"an int from {spec.low} to {spec.high}"
    )
    bad = SysctlError(f"{spec.name}={value!r} refused: expected {accepted} ({spec.range_source})")
    if spec.pair:
        if isinstance(value, str):
            value = value.split()
        try:
            low, high = (int(v) for v in cast("Iterable[Any]", value))  # not iterable: TypeError
        except (TypeError, ValueError):
            raise bad from None
        if not spec.low <= low <= high <= spec.high:
            raise bad
        return spec, (low, high)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad
    if not spec.low <= value <= spec.high:
        raise bad
    return spec, value


def command(name: str, value: object) -> str:
    """The exact ``sysctl -w`` line that sets ``name`` to ``value`` (validated first)."""
    spec, norm = validate(name, value)
    text = _format(spec, norm)
    return f'sudo sysctl -w {spec.name}="{text}"' if spec.pair else f"sudo sysctl -w {spec.name}={text}"


def is_root() -> bool:
    """True when running as root over this machine's Linux TCP settings: uid 0 in the
    initial user namespace of a Linux kernel.

    Inside a user namespace (a container, or ``unshare -U``) uid 0 owns nothing of the
    machine's settings, so it does not count; nor does root on macOS or Windows, which
    have none of these settings."""
    if not sys.platform.startswith("linux") or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/uid_map") as f:
            first = f.read().split()
    except OSError:
        return True  # no user namespaces here at all: uid 0 is root
    return first[:3] == ["0", "0", "4294967295"]


def write_raw(spec: Setting, value: Value, *, proc_root: str = "/proc") -> None:
    """Write one validated value and read it back.

    Unbuffered on purpose: a buffered write to /proc/sys reports EINVAL only at close,
    and a file closed by the garbage collector swallows it.
    """
    path = proc_root + spec.path.removeprefix("/proc")
    text = _format(spec, value)
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise SysctlError(f"could not set {spec.name}={text}: {exc.strerror}") from exc
    got = read(spec.short, proc_root=proc_root)
    if got != value:
        raise SysctlError(f"set {spec.name}={text} but the kernel now reports {got!r}")


@contextlib.contextmanager
def apply(**values: object) -> Iterator[dict[str, Value]]:
    """Set host sysctls for the duration of a ``with`` block, then restore the originals.

    Refused unless root on Linux.  Every name must be known and every value in range,
    all checked before anything changes.  The originals come back on exit, also after
    an exception or KeyboardInterrupt; yields the values now in force.  Prefer a
    ``PrivateLab``, which needs no root and leaves the host alone.
    """
    if not values:
        raise SysctlError("apply() needs at least one setting, e.g. apply(tcp_fin_timeout=5)")
    checked = [validate(name, value) for name, value in values.items()]
    if not sys.platform.startswith("linux"):
        raise SysctlError(f"sysctl.apply works on Linux only; this is {sys.platform}")
    if not is_root():
        raise SysctlError(
            "sysctl.apply changes the machine's own settings and needs root; you are not "
            "root. Use tcplearn.PrivateLab (no root needed), or run: "
            + "; ".join(command(s.short, v) for s, v in checked)
        )
    originals: list[tuple[Setting, Value]] = []
    try:
        for spec, value in checked:
            before = read(spec.short)
            if before is None:
                raise SysctlError(f"{spec.name} does not exist here: {reason(spec.short)}")
            originals.append((spec, before))
            write_raw(spec, value)
        yield {s.short: v for s, v in checked}
    finally:
        errors = []
        for spec, before in reversed(originals):
            try:
                write_raw(spec, before)
            except SysctlError as exc:
                errors.append(str(exc))
        if errors:
            raise SysctlError("could not restore: " + "; ".join(errors))


def table() -> pd.DataFrame:
    """The known settings with their current values and meanings, as a DataFrame that shows its
    "what it does" column in full (pandas would cut it at 50 characters, just before the myth
    corrections)."""
    import pandas as pd

    class FullText(pd.DataFrame):
        def _repr_html_(self) -> str | None:
            with pd.option_context("display.max_colwidth", None):
                # pandas has it; pandas-stubs leave it out
                html: str | None = super()._repr_html_()  # type: ignore[misc]
                return html

        def __repr__(self) -> str:
            with pd.option_context("display.max_colwidth", None, "display.max_columns", None,
                                   "display.width", 250):
                return super().__repr__()

    values = read_all()
    frame: pd.DataFrame = FullText([{"setting": spec.name, "value": values[key], "unit": spec.unit,
                          "per network namespace": spec.per_netns, "what it does": spec.meaning}
                         for key, spec in SETTINGS.items()])
    return frame


def kernel_has(name: str) -> bool:
    """Whether this kernel has the setting ``name`` at all (any name, known or not), e.g.
    ``kernel_has("net.ipv4.tcp_tw_recycle")``: False since Linux 4.12 removed it."""
    path = "/proc/sys/" + name.strip().replace(".", "/")
    return os.path.exists(path)


def describe(values: dict[str, Any]) -> str:
    """Settings as a reader writes them: ``"tcp_tw_reuse=0, ip_local_port_range=(40000, 40199)"``."""
    return ", ".join(f"{k}={v}" for k, v in values.items())
