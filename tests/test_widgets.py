"""The sysctl playground, driven without a browser: set .value, read what the callbacks return."""

import matplotlib
import pytest

matplotlib.use("Agg")

import tcplearn  # noqa: E402
from tcplearn import model, sysctl  # noqa: E402
from tcplearn.base.model import predict_settings as predict
from tcplearn.view.widgets import sysctl_playground  # noqa: E402

from .conftest import needs_linux, own_recycle_ceiling  # noqa: E402

BASE = dict(tcp_fin_timeout=60, tcp_tw_reuse=2, tcp_max_tw_buckets=131072,
            ip_local_port_range=(32768, 60999), rate=200, duration=90, closer="client",
            bind_before_connect=False)


def test_prediction_follows_each_knob():
    base = predict(**BASE)
    assert base["reuse"]
    assert base["plateau"] == pytest.approx(model.time_wait_plateau(200, ports=28232, reuse=True))
    no_reuse = predict(**{**BASE, "tcp_tw_reuse": 0})
    assert no_reuse["plateau"] == pytest.approx(12000) and no_reuse["exhaustion_at"] is None
    capped = predict(**{**BASE, "tcp_tw_reuse": 0, "tcp_max_tw_buckets": 1000})
    assert capped["plateau"] == 1000 and any("TCPTimeWaitOverflow" in n for n in capped["notes"])
    narrow = predict(**{**BASE, "tcp_tw_reuse": 0, "ip_local_port_range": (40000, 40199), "rate": 100})
    assert narrow["exhaustion_at"] == 2.0 and any("EADDRNOTAVAIL" in n for n in narrow["notes"])
    bound = predict(**{**BASE, "bind_before_connect": True, "ip_local_port_range": (40000, 40199),
                       "rate": 100})
    assert not bound["reuse"] and any("EADDRINUSE" in n for n in bound["notes"])
    # the myth: tcp_fin_timeout does not move TIME-WAIT
    assert predict(**{**BASE, "tcp_fin_timeout": 5})["plateau"] == base["plateau"]
    leak = predict(**{**BASE, "closer": "leak", "tcp_fin_timeout": 5, "rate": 10})
    assert leak["frame"]["FIN_WAIT_2"].max() == pytest.approx(50) and leak["frame"]["TIME_WAIT"].max() == 0


def test_bad_values_are_refused_by_the_same_rules_as_sysctl():
    with pytest.raises(sysctl.SysctlError, match="tcp_tw_reuse=5 refused"):
        predict(**{**BASE, "tcp_tw_reuse": 5})
    with pytest.raises(sysctl.SysctlError, match="low <= high"):
        predict(**{**BASE, "ip_local_port_range": (50000, 40000)})


@needs_linux
def test_controls_drive_the_model_and_the_commands():
    pg = sysctl_playground()
    first = pg.last["prediction"]["frame"]["TIME_WAIT"].max()
    assert pg.last["commands"] == [] or all(c.startswith("sudo sysctl -w") for c in pg.last["commands"])
    pg.controls["tcp_tw_reuse"].value = 0
    pg.controls["rate"].value = 1000
    after = pg.last["prediction"]["frame"]["TIME_WAIT"].max()
    assert after != first
    assert "sudo sysctl -w net.ipv4.tcp_tw_reuse=0" in pg.last["commands"]
    line = pg.last["figure"].axes[0].get_lines()[0]
    assert line.get_gid() == "model:TIME_WAIT" and max(line.get_ydata()) == pytest.approx(after)
    pg.controls["closer"].value = "leak"
    assert pg.run_button.disabled
    with pytest.raises(ValueError, match="no live run"):
        pg.run_live()


@needs_linux
@pytest.mark.slow
def test_run_live_overlays_a_measurement():
    pg = sysctl_playground()
    pg.controls["rate"].value = 200
    pg.controls["duration"].value = 2
    result = pg.run_live()["live"]
    assert result.connections >= 360
    ax = pg.last["figure"].axes[0]
    lines = {line.get_gid(): line for line in ax.get_lines()}
    assert {"model:TIME_WAIT", "measured:TIME_WAIT"} <= set(lines)
    assert "own settings" in pg.status.value


@needs_linux
@pytest.mark.slow
def test_live_overlay_is_honest_when_the_chosen_settings_differ_from_the_run():
    """Issue 13: the model for the settings the run ran under (and the chosen one, labelled),
    the axis zoomed to the live window, counts neither negative nor baseline-shifted, and the
    title's rate = connections / the load's own duration."""
    pg = sysctl_playground()
    machine_reuse = pg.current["tcp_tw_reuse"]
    pg.controls["tcp_tw_reuse"].value = 0 if machine_reuse else 2   # chosen differs; apply stays off
    pg.controls["rate"].value = 300
    pg.controls["duration"].value = 3
    last = pg.run_live()
    result = last["live"]
    assert last["ran_under"]["tcp_tw_reuse"] == machine_reuse           # it ran under the machine's settings
    ax = last["figure"].axes[0]
    lines = {line.get_gid(): line for line in ax.get_lines()}
    assert {"model:TIME_WAIT", "model-chosen:TIME_WAIT", "measured:TIME_WAIT"} <= set(lines)
    labels = {line.get_gid(): line.get_label() for line in ax.get_lines()}
    assert "ran under" in labels["model:TIME_WAIT"] and "chosen" in labels["model-chosen:TIME_WAIT"]
    ran = last["ran_prediction"]
    assert max(lines["model:TIME_WAIT"].get_ydata()) == pytest.approx(ran["plateau"])
    assert ran["reuse"] == model.reuse_applies(machine_reuse)
    t, measured = lines["measured:TIME_WAIT"].get_xdata(), lines["measured:TIME_WAIT"].get_ydata()
    made, recycled = result.connections, result.netstat_delta()["TWRecycled"]
    # the run's own sockets, not shifted by what the machine held before: it starts from what
    # the load had made by the first sample, and grows (no TIME-WAIT expires within 3 s of a
    # 60 s TIME-WAIT; a takeover ends one and makes one), by at most a few in flight
    assert measured[0] <= made / result.elapsed * max(t[0], 0.0) * 1.1 + 5, (t[0], measured[0])
    assert all(b >= a - 5 for a, b in zip(measured, measured[1:], strict=False)), list(measured)
    # the peak is the connections made, less any whose port a later connect() of the load
    # took over (TWRecycled is machine-wide here: no more than the load's walk can revisit)
    own_recycled = min(recycled, own_recycle_ceiling(made, made / result.elapsed))
    # 3 %: RSTs that end a TIME-WAIT (up to 0.6 %, test_load) and the last closes still on their
    # way at the overlay's last sample
    assert made - own_recycled - 0.03 * made - 2 <= max(measured) <= 1.03 * made + 2
    assert ax.get_xlim()[1] <= result.samples["t"].max() * 1.05 + 0.2   # zoomed to the live window
    rate = result.connections / result.elapsed
    assert f"{result.connections} connections in {result.elapsed:.1f} s = {rate:.0f}/s" in ax.get_title()
    assert len(last["figure"].axes) == 2    # the full model curve beside it


@needs_linux
@pytest.mark.slow
def test_apply_for_this_run_uses_a_lab_and_leaves_the_machine_alone():
    ok, why = tcplearn.lab_available()
    if not ok:
        pytest.skip(why)
    before = sysctl.read_all()
    pg = sysctl_playground()
    assert pg.apply_mode == "lab" and not pg.apply_toggle.disabled
    pg.controls["tcp_tw_reuse"].value = 0
    pg.controls["ip_local_port_range"].value = (40000, 40199)
    pg.controls["rate"].value = 100
    pg.controls["duration"].value = 3
    pg.apply_toggle.value = True
    result = pg.run_live()["live"]
    assert "EADDRNOTAVAIL" in result.errors and abs(result.first_error_at() - 2.0) <= 0.3
    assert "private lab" in pg.status.value
    assert sysctl.read_all() == before


@needs_linux
@pytest.mark.root(reason="applying on the machine needs root")
def test_apply_as_root_without_a_lab_restores_also_when_the_run_fails(monkeypatch):
    import tcplearn.base.lab
    import tcplearn.experiments.knobs

    monkeypatch.setattr(tcplearn.base.lab, "lab_available", lambda: (False, "forced off for this test"))
    before = sysctl.read_all()
    pg = sysctl_playground()
    assert pg.apply_mode == "root" and "restored" in pg.apply_reason
    new_fin = 7 if before["tcp_fin_timeout"] != 7 else 8
    pg.controls["tcp_fin_timeout"].value = new_fin
    pg.controls["duration"].value = 1
    pg.controls["rate"].value = 100
    pg.apply_toggle.value = True
    seen = {}

    def failing_run(**kwargs):
        seen["during"] = sysctl.read("tcp_fin_timeout")
        raise RuntimeError("the load failed half-way")

    monkeypatch.setattr(tcplearn.experiments.knobs, "run_load", failing_run)
    with pytest.raises(RuntimeError, match="half-way"):
        pg.run_live()
    assert seen["during"] == new_fin            # applied on the machine for the run
    assert sysctl.read_all() == before          # and restored after the failure
