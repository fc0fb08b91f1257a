"""A load under changed kernel settings (notebook 04, and notebook 05's "apply"): in a
private lab, or as root restored afterwards, or the run recorded in a Linux lab."""

from __future__ import annotations

from ..base import sysctl
from ..base.experiment import BETWEEN_HOSTS, Call, Need, Place, Rule, Where, experiment
from .load import LoadResult, LoadRun, run_load
from .sharing import exceeds_share

__all__ = ["with_settings", "machine_load", "NOTEBOOK_LOADS", "PLAYGROUND_SETTINGS"]


def _check_with_settings(sysctls: dict, **load_kwargs) -> None:
    if not isinstance(sysctls, dict) or not sysctls:
        raise ValueError(f"sysctls must be a non-empty dict of settings, e.g. {{'tcp_tw_reuse': 0}}; got "
                         f"{sysctls!r}")
    for name, value in sysctls.items():
        sysctl.validate(name, value)
    LoadRun(**{k: v for k, v in load_kwargs.items() if k not in ("progress", "lab", "between_hosts")})
    between = load_kwargs.get("between_hosts", False)
    if not isinstance(between, bool):
        raise ValueError(f"between_hosts must be True or False; got {between!r}")


#: The loads notebook 04 runs with changed settings, as ``with_settings(sysctls, **kwargs)``.
NOTEBOOK_LOADS = (
    ({"ip_local_port_range": (40000, 40199), "tcp_tw_reuse": 0}, dict(rate=100, duration=4)),
    ({"ip_local_port_range": (40000, 40199), "tcp_tw_reuse": 1}, dict(rate=100, duration=4)),
    ({"ip_local_port_range": (40000, 40199)}, dict(rate=100, duration=4, bind_before_connect=True)),
    ({"tcp_max_tw_buckets": 100}, dict(rate=500, duration=2, sample_interval=0.1)),
)


@experiment(
    notebook="04, 05", title="loads under changed kernel settings (04; 05's apply)",
    needs=[Need.KERNEL, Need.SETTINGS], check=_check_with_settings,
    calls=[Call((sysctls,), kwargs, f"a load ({', '.join(f'{k}={v}' for k, v in kwargs.items())}) in a "
                                    f"private lab with {sysctl.describe(sysctls)}")
           for sysctls, kwargs in NOTEBOOK_LOADS]
          + [Call(({"ip_local_port_range": (40000, 40199)},), dict(rate=100, duration=4, between_hosts=True),
                  "a load (rate=100, duration=4) from a private lab's client host to its server host, both "
                  "with ip_local_port_range=(40000, 40199)")],
    rules=[BETWEEN_HOSTS],
    notes={Where.LAB: lambda why, a: f"Ran in your private lab with {sysctl.describe(a['sysctls'])} (this "
                                     "machine's settings untouched).",
           Where.ROOT: lambda why, a: f"No private lab ({why}); ran on this machine as root with "
                                      f"{sysctl.describe(a['sysctls'])}, then restored it."},
    show="show_load")
def with_settings(place: Place, sysctls: dict, **load_kwargs) -> LoadResult:
    """Run a load (``run_load``'s keywords) with kernel settings changed for it: in a private
    lab (no root, machine untouched), else as root with ``sysctl.apply`` (restored
    afterwards), else the same call recorded in a Linux lab.  A ``LoadResult``.

    ``between_hosts=True`` runs it from a two-host lab's client to its server, both hosts
    with ``sysctls``: no loopback exemption, so a small port range runs out at ports per 60 s."""
    with place.settings(**sysctls):
        return run_load(lab=place.lab, **load_kwargs)


#: The settings notebook 05's model reads: a lab standing in for this machine takes them over.
PLAYGROUND_SETTINGS = ("tcp_fin_timeout", "tcp_tw_reuse", "tcp_max_tw_buckets", "ip_local_port_range")


def _too_big(arguments: dict) -> str:
    keys = ("rate", "duration", "count", "closer", "sources", "bind_before_connect")
    return exceeds_share({k: arguments[k] for k in keys if k in arguments})


#: A load too big to share this machine runs in a private lab set like it.
TOO_BIG_FOR_THE_MACHINE = Rule(_too_big, needs=(Need.LAB,), mirror=PLAYGROUND_SETTINGS,
                               note=lambda reason, mirrored: f"Ran in your private lab with this machine's "
                                                             f"settings: {reason}")


def _check_machine_load(**load_kwargs) -> None:
    LoadRun(**{k: v for k, v in load_kwargs.items() if k != "progress"})


@experiment(
    notebook="05", title="a load under this machine's own settings (05's Run live)",
    needs=[Need.KERNEL], check=_check_machine_load, rules=[TOO_BIG_FOR_THE_MACHINE],
    remark=lambda result: result.note,
    calls=[Call((), dict(rate=200.0, duration=10.0, closer="client", bind_before_connect=False,
                         sample_interval=0.25),
                "05's Run live with the playground's defaults (200 connections/s for 10 s, the client "
                "closing first), on the machine with its own settings")],
    notes={Where.LIVE: "Ran on this machine with its own settings (apply is off)."},
    show="show_load")
def machine_load(place: Place, **load_kwargs) -> LoadResult:
    """Run a load (``run_load``'s keywords) under this machine's own settings: on the machine
    when it fits the share others leave it (``SHARE``), else in a private lab that takes over
    the machine's settings (the ladder decides it before anything runs).  A ``LoadResult``."""
    return run_load(lab=place.lab, **load_kwargs)
