"""The figures, checked from their own artists: colours, arrowheads, labels that do not
collide and sit on their own lines, and the annotations a figure promises."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.path import Path

from tcplearn import model, plots
from tcplearn.base.experiment import REGISTRY
from tcplearn.base.states import TRANSITIONS, TcpState

S = TcpState


@pytest.fixture(scope="module", autouse=True)
def _warm_mathtext():
    """The arc labels are mathtext (event over action), whose fonts matplotlib opens once
    per process and keeps; open them before conftest's per-test descriptor check."""
    _drawn(plots.state_diagram(close_only=True, path=[S.ESTABLISHED, S.FIN_WAIT_1]))


def _drawn(fig):
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


# ---------------------------------------------------------------- one identity per state


def test_every_state_has_its_own_colour_marker_and_identity():
    colours = [plots.STATE_STYLE[s].color.lower() for s in TcpState]
    assert set(plots.STATE_STYLE) == set(TcpState)
    assert len(set(colours)) == len(colours)
    rfc = [plots.STATE_STYLE[s].color.lower() for s in TcpState.rfc_states()]
    assert len(set(rfc)) == len(rfc) == 11
    assert len({plots.STATE_STYLE[s].marker for s in TcpState}) == len(TcpState)
    identities = {(st.color, st.marker, st.linestyle) for st in plots.STATE_STYLE.values()}
    assert len(identities) == len(TcpState)


def test_legend_handles_use_the_shared_styles():
    for handle, state in zip(plots.legend_handles(), TcpState.rfc_states(), strict=True):
        assert handle.get_color() == plots.STATE_STYLE[state].color and handle.get_label() == state.label


# ---------------------------------------------------------------- the state diagram


def _arrows(fig):
    return [p for p in fig.axes[0].patches
            if isinstance(p, FancyArrowPatch) and (p.get_gid() or "").startswith("arc:")]


def _boxes(fig):
    return [p for p in fig.axes[0].patches
            if isinstance(p, FancyBboxPatch) and (p.get_gid() or "").startswith("state:")]


def _head(arrow) -> np.ndarray:
    """The arrowhead's vertices in display coordinates: the last sub-path of the drawn arrow."""
    path = arrow.get_transform().transform_path(arrow.get_path())
    starts = [i for i, (_, code) in enumerate(path.iter_segments(simplify=False)) if code == Path.MOVETO]
    verts = [v for v, _ in path.iter_segments(simplify=False)]
    return np.array([v[-2:] for v in verts[starts[-1]:]])


def _check_arrowheads(fig):
    _drawn(fig)
    boxes = _boxes(fig)
    arrows = _arrows(fig)
    assert arrows
    for arrow in arrows:
        style = arrow.get_arrowstyle()
        assert ">" in style.arrow.split("-")[-1], (arrow.get_gid(), style.arrow)  # a head at the end
        head = _head(arrow)
        assert len(head) >= 3, arrow.get_gid()
        for box in boxes:
            for point in head:
                assert not box.contains_point(point), f"{arrow.get_gid()}'s head is under {box.get_gid()}"
        gid = arrow.get_gid().split(":")
        if gid[2] not in ("ABORT", "RCV_RST") or gid[3] == "LISTEN":  # an arc, not a stub: it reaches its box
            target = [b for b in boxes if b.get_gid().split(":")[1] == gid[3]]
            tip = min(head, key=lambda p: _dist_to(p, target))
            assert _dist_to(tip, target) < 12, f"{arrow.get_gid()} stops {_dist_to(tip, target):.0f} px short"


def _dist_to(point, boxes) -> float:
    """Pixels from ``point`` to the nearest of ``boxes``' window extents."""
    def one(bb):
        dx = max(bb.x0 - point[0], 0, point[0] - bb.x1)
        dy = max(bb.y0 - point[1], 0, point[1] - bb.y1)
        return math.hypot(dx, dy)
    return min(one(b.get_window_extent()) for b in boxes)


def _check_no_text_overlaps(fig, gap: float = 8.0):
    """No two texts (nor a text and a legend) come within ``gap`` pixels of each other."""
    renderer = _drawn(fig)
    texts = [t for t in fig.axes[0].texts + fig.texts if t.get_visible() and t.get_text().strip()]
    extents = [(t.get_gid() or t.get_text(), t.get_window_extent(renderer)) for t in texts]
    extents += [(f"legend {i}", leg.get_window_extent(renderer)) for i, leg in enumerate(fig.legends)]
    for (name_a, a), (name_b, b) in itertools.combinations(extents, 2):
        assert not a.padded(gap / 2).overlaps(b.padded(gap / 2)), f"{name_a!r} overlaps {name_b!r}"


@pytest.mark.parametrize("kwargs", [{}, {"highlight": {S.TIME_WAIT: "client", S.CLOSED: "server"}},
                                    {"show_rst": False}])
def test_state_diagram_arrowheads_are_visible(kwargs):
    _check_arrowheads(plots.state_diagram(**kwargs))


@pytest.mark.parametrize("kwargs", [{}, {"highlight": {S.TIME_WAIT: "client", S.CLOSED: "server"}}])
def test_state_diagram_labels_do_not_overlap(kwargs):
    _check_no_text_overlaps(plots.state_diagram(**kwargs))


def test_state_diagram_explains_the_notation_and_labels_every_figure_arc():
    fig = plots.state_diagram()
    captions = [t for t in fig.texts if t.get_gid() == "caption:notation"]
    assert len(captions) == 1 and "rcv FIN / snd ACK" in captions[0].get_text().replace("\n", " ")
    labels = {t.get_gid() for t in fig.axes[0].texts if (t.get_gid() or "").startswith("label:")}
    for state, event, target in TRANSITIONS.arcs():
        if event.name not in ("ABORT", "RCV_RST") or target is S.LISTEN:
            assert f"label:{state.name}:{event.name}:{target.name}" in labels
    # no stray text: every text is a state name, an arc label, a CLOSED tag or a highlight
    assert all((t.get_gid() or "").split(":")[0] in ("name", "label", "tag", "highlight")
               for t in fig.axes[0].texts)


CLIENT_PATH = [S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.TIME_WAIT, S.CLOSED]
SERVER_PATH = [S.ESTABLISHED, S.CLOSE_WAIT, S.LAST_ACK, S.CLOSED]
SIMULTANEOUS = [S.ESTABLISHED, S.FIN_WAIT_1, S.CLOSING, S.TIME_WAIT]


@pytest.mark.parametrize("path", [CLIENT_PATH, SERVER_PATH, SIMULTANEOUS, [S.ESTABLISHED, S.CLOSED]])
def test_close_only_view(path):
    fig = plots.state_diagram(close_only=True, path=path)
    gids = {p.get_gid() for p in fig.axes[0].patches}
    shown = {g.split(":")[1] for g in gids if g and g.startswith("state:")}
    assert shown == {s.name for s in plots.CLOSE_STATES}
    for state, _event, target in fig.tcplearn_arcs:
        assert state in plots.CLOSE_STATES and target in plots.CLOSE_STATES
    assert [arc[0] for arc in fig.tcplearn_path][:1] == [S.ESTABLISHED]
    on_path = [g for g in gids if g and g.startswith("arc:") and g.endswith(":path")]
    assert len(on_path) == len(fig.tcplearn_path) >= 1
    _check_arrowheads(fig)
    _check_no_text_overlaps(fig)


def test_close_only_path_follows_the_run():
    fig = plots.state_diagram(close_only=True,
                              path=[S.SYN_SENT, S.ESTABLISHED, S.ESTABLISHED] + CLIENT_PATH[1:])
    assert [(s, e.name, t) for s, e, t in fig.tcplearn_path] == [
        (S.ESTABLISHED, "CLOSE", S.FIN_WAIT_1), (S.FIN_WAIT_1, "RCV_ACK_OF_FIN", S.FIN_WAIT_2),
        (S.FIN_WAIT_2, "RCV_FIN", S.TIME_WAIT), (S.TIME_WAIT, "TIMEOUT_2MSL", S.CLOSED)]
    # an observer that missed FIN-WAIT-1 still gets the route the table allows
    fig = plots.state_diagram(close_only=True, path=[S.ESTABLISHED, S.FIN_WAIT_2])
    assert [e.name for _, e, _ in fig.tcplearn_path] == ["CLOSE", "RCV_ACK_OF_FIN"]
    with pytest.raises(ValueError, match="no way from TIME-WAIT to ESTABLISHED"):
        plots.state_diagram(close_only=True, path=[S.TIME_WAIT, S.ESTABLISHED])


def test_close_only_path_from_a_real_history():
    from tcplearn.experiments.close import ConnectionPair

    with ConnectionPair() as pair:
        pair.client_close()
        pair.server_close()
    fig = plots.state_diagram(close_only=True, path=[s.client_state for s in pair.history])
    assert fig.tcplearn_path[-1][2] is S.TIME_WAIT
    _check_arrowheads(fig)


# ---------------------------------------------------------------- the myth figure


def _myth_table():
    exp = REGISTRY["myth_demo"]
    result = exp.replay(exp.arguments(fin_timeout=5), "a test asks for the recording")
    assert result.value is not None, "the recorded myth_demo(fin_timeout=5) run is missing"
    return result.value.table


def _segment_distance(p, path_xy) -> float:
    best = math.inf
    for a, b in zip(path_xy[:-1], path_xy[1:], strict=True):
        ab, ap = b - a, p - a
        t = 0.0 if not ab.any() else min(max(float(ap @ ab / (ab @ ab)), 0.0), 1.0)
        best = min(best, float(np.hypot(*(a + t * ab - p))))
    return best if len(path_xy) > 1 else float(np.hypot(*(path_xy[0] - p)))


@pytest.mark.parametrize("reverse", [False, True])
def test_myth_plot_labels_sit_on_their_own_lines(reverse):
    table = _myth_table()
    if reverse:  # the placement follows the data, not the order of the sockets
        table = table.iloc[::-1].sort_values("t", kind="stable")
    fig = plots.myth_plot(table, 5)
    renderer = _drawn(fig)
    ax = fig.axes[0]
    lines: dict[str, list[np.ndarray]] = {}
    for line in ax.get_lines():
        gid = line.get_gid() or ""
        if gid.startswith("timer:"):
            name = gid.split(":")[1]
            lines.setdefault(name, []).append(ax.transData.transform(np.column_stack(line.get_data())))
    assert set(lines) == set(table["socket"])
    labels = {t.get_gid().removeprefix("label:"): t for t in ax.texts
              if (t.get_gid() or "").startswith("label:")}
    assert set(labels) == set(lines)
    for name, text in labels.items():
        assert text.get_text() == name
        anchor = ax.transData.transform(text.xy)
        bb = text.get_window_extent(renderer)
        centre = np.array([(bb.x0 + bb.x1) / 2, (bb.y0 + bb.y1) / 2])
        for where, point in (("anchor", anchor), ("text", centre)):
            dist = {other: min(_segment_distance(point, part) for part in parts)
                    for other, parts in lines.items()}
            nearest = min(dist, key=dist.get)
            assert nearest == name, f"{name!r}'s {where} is nearer {nearest!r} ({dist})"
        assert min(_segment_distance(anchor, part) for part in lines[name]) < 1.0  # on its own line
        assert ax.bbox.contains(*centre)
    _check_no_text_overlaps(fig)


# ---------------------------------------------------------------- the old-duplicate simulation


def _texts(fig) -> dict[str, str]:
    return {t.get_gid(): t.get_text() for t in fig.axes[0].texts + fig.texts if t.get_gid()}


@pytest.mark.parametrize("msl", [2.0, 3.0])
def test_old_duplicate_figure_shows_msl_isns_and_one_long_arrow(msl):
    sim = model.old_duplicate(False, msl=msl)
    fig = plots.simulation_diagram(sim)
    ax = fig.axes[0]
    texts = _texts(fig)
    assert f"MSL = {msl:g} s" in texts["msl"] and f"MSL = {msl:g} s" in texts["note:model"]
    assert "ISN 1000" in texts["isn:1"] and "ISN 900" in texts["isn:2"] and "holds seq 1001" in texts["isn:2"]
    assert "accepted" in texts["note:arrival"]
    copies = [p for p in ax.patches
              if (p.get_gid() or "").startswith("segment:") and "old copy" in p.get_gid()]
    assert len(copies) == 1  # one arrow, not a short one at the end
    (x0, y0), (x1, y1) = copies[0]._posA_posB
    assert (x0, x1) == (0.0, 1.0) and ">" in copies[0].get_arrowstyle().arrow  # client to server, with a head
    # it starts where connection 1 sends its data and ends after connection 2 opened: across the close
    rows = {t.get_gid(): t.get_position()[1] for t in ax.texts if (t.get_gid() or "").startswith("state:")}
    steps = sorted(t.get_position()[1] for t in ax.texts if t.get_gid() == "state:client:ESTABLISHED")
    closed = [t.get_position()[1] for t in ax.texts if t.get_gid() == "state:client:CLOSED"]
    assert rows and y0 < steps[1] < closed[0] < steps[2] < y1  # sent before connection 1's data step
    assert fig.tcplearn_segments == sum(len(s.segments) for s in sim.steps)
    _check_no_text_overlaps(fig, gap=0)


def test_old_duplicate_with_time_wait_shows_the_copy_expire_during_time_wait():
    fig = plots.simulation_diagram(model.old_duplicate(True))
    ax = fig.axes[0]
    texts = _texts(fig)
    assert "2×MSL = 4 s" in texts["time-wait"] and "MSL = 2 s" in texts["msl"]
    assert "t=2 s" in texts["note:expired"]
    copies = [p for p in ax.patches if (p.get_gid() or "").endswith("(old copy) (expired)")]
    assert len(copies) == 1
    (_, y0), (_, y_end) = copies[0]._posA_posB
    bar = next(line for line in ax.get_lines() if line.get_gid() == "time-wait-bar")
    tw_from, tw_to = bar.get_ydata()
    assert y0 < tw_from < y_end < tw_to  # it dies while the client still holds TIME-WAIT
    syn_rows = [t.get_position()[1] for t in ax.texts if t.get_text() == "SYN"]
    assert all(y > tw_to for y in syn_rows)  # connection 2 opens only after TIME-WAIT
    _check_no_text_overlaps(fig, gap=0)


def test_lost_last_ack_figure_is_unchanged_in_kind():
    fig = plots.simulation_diagram(model.lost_last_ack(False))
    assert "msl" not in _texts(fig)
    assert any((p.get_gid() or "").endswith("ACK (lost)") for p in fig.axes[0].patches)
