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
    assert ("ISN 1000" in texts["isn:1"] and "ISN 900" in texts["isn:2"]
            and "expects seq 1001" in texts["isn:2"])
    # the ACK field is checked too
    assert "ACK 5001" in texts["isn:1"] and "accepts ACK 5001" in texts["isn:2"]
    assert "read as new data" in texts["note:arrival"]
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


# ---------------------------------------------------------------- legends that cover nothing


def _replayed(name, *args, **kwargs):
    exp = REGISTRY[name]
    result = exp.replay(exp.arguments(*args, **kwargs), "a test asks for the recording")
    assert result.value is not None, f"the recorded {name}{args}{kwargs} run is missing"
    return result.value


def _drawn_points(line, renderer) -> np.ndarray:
    """A line as drawn, in pixels: its vertices and, where it has a line style, a point every
    pixel or so along each segment (a legend may sit between two readings, not across the line)."""
    verts = line.get_transform().transform_path(line.get_path()).vertices
    verts = verts[np.isfinite(verts).all(axis=1)]
    if line.get_linestyle() in ("None", "none", "", " ") or len(verts) < 2:
        return verts
    parts = [np.linspace(a, b, max(2, int(np.hypot(*(b - a))) + 1))
             for a, b in zip(verts[:-1], verts[1:], strict=True)]
    return np.vstack(parts)


def _what_the_legend_covers(fig) -> list[str]:
    """Every line (by gid, else label) with a drawn point, or a marker, under the legend of
    ``fig``'s first axes, and every text under it."""
    renderer = _drawn(fig)
    ax = fig.axes[0]
    box = ax.get_legend().get_window_extent(renderer)
    covered = []
    for line in ax.get_lines():
        marked = line.get_marker() not in (None, "None", "none", "")
        radius = line.get_markersize() * fig.dpi / 144 if marked else 0.0
        if any(box.padded(radius + 1).contains(x, y) for x, y in _drawn_points(line, renderer)):
            covered.append(line.get_gid() or line.get_label())
    for text in ax.texts:
        if text.get_text().strip() and text.get_window_extent(renderer).overlaps(box):
            covered.append(text.get_gid() or text.get_text())
    return covered


@pytest.mark.parametrize("seconds", [None, 6.0])
def test_countdown_legend_covers_no_reading(seconds):
    """The full minute runs down the diagonal; a short (fast) run stays along the top, where an
    upper-right legend hid its last readings."""
    frame = _replayed("sample_countdown")
    if seconds is not None:
        frame = frame[frame["t"] <= seconds]
    fig = plots.countdown_plot(frame)
    assert fig.axes[0].get_legend() is not None
    assert _what_the_legend_covers(fig) == []


@pytest.mark.parametrize("seconds", [None, 3.0])
def test_myth_legend_covers_no_line_label_or_note(seconds):
    """A short run puts the peer's FIN, and its note, on the right: where the legend was."""
    table = _myth_table()
    if seconds is not None:
        table = table[table["t"] <= seconds]
    fig = plots.myth_plot(table, 5)
    texts = {t.get_gid() for t in fig.axes[0].texts}
    assert "note:fin-arrives" in texts
    assert _what_the_legend_covers(fig) == []


def test_plateau_figure_draws_the_plateau_without_reuse_and_its_legend_covers_no_line():
    from tcplearn.view.show import plateau_figure

    run = _replayed("watch_plateau", rate=200)
    assert run.result.elapsed >= 60  # long enough to reach a plateau: the line is drawn
    fig = plateau_figure(run)
    ax = fig.axes[0]
    (reference,) = [line for line in ax.get_lines() if line.get_gid() == "reference"]
    assert set(reference.get_ydata()) == {run.result.rate * 60}
    assert reference.get_label() == f"no reuse: rate × 60 s = {run.result.rate * 60:,.0f}"
    assert ax.get_ylim()[1] > run.result.rate * 60  # inside the frame, not on its edge
    assert reference.get_label() in [t.get_text() for t in ax.get_legend().get_texts()]
    assert _what_the_legend_covers(fig) == []
    without = plots.counts_plot(run.samples, model=run.model, states=[S.TIME_WAIT])
    assert "reference" not in {line.get_gid() for line in without.axes[0].get_lines()}
    # a fast run's 3 s load never nears rate × 60 s: no line to flatten its curve
    import copy

    short = copy.copy(run)
    short.result = copy.copy(run.result)
    short.result.elapsed = 3.0
    assert "reference" not in {line.get_gid() for line in plateau_figure(short).axes[0].get_lines()}


@pytest.mark.parametrize("call", range(len(REGISTRY["with_settings"].calls)))
def test_load_legends_cover_no_line(call):
    """Port exhaustion: connections run along the top, then the errors do; neither is hidden."""
    c = REGISTRY["with_settings"].calls[call]
    result = _replayed("with_settings", *c.args, **c.kwargs)
    assert _what_the_legend_covers(plots.load_plot(result)) == []
    if result.samples is not None and len(result.samples):
        fig = plots.counts_plot(result.samples, states=[S.TIME_WAIT])
        assert _what_the_legend_covers(fig) == []


# ---------------------------------------------------------------- crossing segments (notebook 01)


def _segment_arrows(fig) -> list:
    return [p for p in fig.axes[0].patches if (p.get_gid() or "").startswith("segment:")]


def _cross(p1, p2, p3, p4) -> bool:
    """Whether the segments p1-p2 and p3-p4 intersect in their interiors."""
    def side(a, b, c):
        return np.sign((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))
    return side(p1, p2, p3) * side(p1, p2, p4) < 0 and side(p3, p4, p1) * side(p3, p4, p2) < 0


def _crossing_pairs(fig) -> list[tuple[str, str]]:
    arrows = _segment_arrows(fig)
    return [(a.get_gid(), b.get_gid()) for a, b in itertools.combinations(arrows, 2)
            if _cross(*a._posA_posB, *b._posA_posB)]


@pytest.mark.parametrize("captured", [True, False])
def test_simultaneous_close_draws_the_two_fins_crossing(captured):
    """Both FINs were sent before either arrived: captured, neither acknowledges the other's
    (ack=1 both ways); predicted, RFC 9293's logic sends both on the two close() calls."""
    run = _replayed("run_scenario", "simultaneous")
    if captured:
        fins = [s for s in run.segments_by_step[1] if "FIN" in s.flags]
        assert len(fins) == 2 and all(s.ack == fins[0].seq for s in fins), fins  # as the recording has it
    fig = plots.sequence_diagram(run if captured else run.history)
    arrows = _segment_arrows(fig)
    pairs = _crossing_pairs(fig)
    assert len(pairs) == 1, pairs
    (a, b), = pairs
    assert "FIN" in a and "FIN" in b and a.split(":")[2] != b.split(":")[2]  # one each way
    assert [(arrows[i].get_gid(), arrows[j].get_gid()) for i, j in fig.tcplearn_crossing] == pairs
    # in flight together: each starts before the other ends
    (a0, a1), (b0, b1) = (next(p._posA_posB for p in arrows if p.get_gid() == g) for g in (a, b))
    assert max(a0[1], b0[1]) < min(a1[1], b1[1])
    assert len(arrows) == fig.tcplearn_segments == 7
    texts = _texts(fig)
    assert "before the other arrived" in texts["note:crossing"]
    _check_no_text_overlaps(fig, gap=4)


OTHER_CLOSES = [c.args[0] for c in REGISTRY["run_scenario"].calls if c.args[0] != "simultaneous"]


@pytest.mark.parametrize("name", OTHER_CLOSES)
@pytest.mark.parametrize("captured", [True, False])
def test_other_closes_draw_no_crossing(name, captured):
    """One segment answers the other (its ack covers it): one after the other, never crossed;
    the three-way close's FIN,ACK included."""
    run = _replayed("run_scenario", name)
    fig = plots.sequence_diagram(run if captured else run.history)
    assert _crossing_pairs(fig) == [] and fig.tcplearn_crossing == []


# ---------------------------------------------------------------- the silent peer (notebook 06)


def _dead_peer_runs() -> dict:
    exp = REGISTRY["dead_peer"]
    return {c.args[0]: exp.replay(exp.arguments(*c.args, **c.kwargs), "a test replays it").value
            for c in exp.calls}


def _same_colour(rgb, colour: str) -> bool:
    from matplotlib.colors import to_rgb

    return bool(np.allclose(rgb, to_rgb(colour)))


def test_dead_peer_orphan_is_a_visible_bar_in_its_states_colour():
    """Node's kernel held FIN-WAIT-1 for a few hundredths of a second after destroy(): a bar
    as wide as the FIN's marker at least, the lane's height, in FIN-WAIT-1's own colour."""
    runs = _dead_peer_runs()
    fig = plots.dead_peer_timeline(list(runs.values()))
    renderer = _drawn(fig)
    ax = fig.axes[0]
    node = runs["node_idle"]
    lane = plots.dead_peer_lane(node)
    shown = [row["t"] for row in node.timeline_rows if row["state"] == "FIN_WAIT_1"]
    assert shown and fig.tcplearn_orphans[lane] == (min(shown), max(shown))
    (bar,) = [p for p in ax.patches if p.get_gid() == f"orphan:{lane}"]
    assert bar.get_x() == pytest.approx(min(shown)) and bar.get_width() >= max(shown) - min(shown)
    box = bar.get_window_extent(renderer)
    fin = next(c for c in ax.collections if c.get_gid() == f"segments:{lane}:fin")
    marker_px = math.sqrt(fin.get_sizes()[0]) * fig.dpi / 72
    assert box.width >= marker_px and box.height >= 3 * marker_px, (box, marker_px)
    r, g, b, alpha = bar.get_facecolor()
    assert alpha >= 0.5 and _same_colour((r, g, b), plots.STATE_STYLE[S.FIN_WAIT_1].color)
    note = next(t for t in ax.texts if t.get_gid() == f"still:{lane}")
    assert note.get_window_extent(renderer).x0 >= box.x1  # the note starts after the bar
    assert any("FIN-WAIT-1" in t.get_text() for t in ax.get_legend().get_texts())


def test_dead_peer_gap_labels_sit_by_their_own_gaps():
    """Each gap between resends has its bracket, from one resend to the next; its label is
    nearer that bracket than any other, consecutive gaps alternate sides of the lane, and no
    label touches another text or a marker."""
    runs = _dead_peer_runs()
    fig = plots.dead_peer_timeline(list(runs.values()))
    renderer = _drawn(fig)
    ax = fig.axes[0]
    for method in ("user_timeout", "retransmissions"):
        r = runs[method]
        lane = plots.dead_peer_lane(r)
        y = [t.get_text() for t in ax.get_yticklabels()].index(lane)
        resends = sorted([*r.sent("data"), *r.sent("retransmission")])
        labels = [t for t in ax.texts if t.get_gid() == f"gap:{lane}"]
        spans = [line for line in ax.get_lines() if line.get_gid() == f"gap:{lane}-span"]
        assert len(labels) == len(spans) == len(resends) - 1 >= 3
        for i, (span, (a, b)) in enumerate(zip(spans, itertools.pairwise(resends), strict=True)):
            assert min(span.get_xdata()) == pytest.approx(a) and max(span.get_xdata()) == pytest.approx(b)
            assert labels[i].get_text() == f"+{b - a:.2f}"
        pixels = [ax.transData.transform(np.column_stack(s.get_data())) for s in spans]
        for i, label in enumerate(labels):
            bb = label.get_window_extent(renderer)
            centre = np.array([(bb.x0 + bb.x1) / 2, (bb.y0 + bb.y1) / 2])
            dist = [_segment_distance(centre, p) for p in pixels]
            assert int(np.argmin(dist)) == i, (lane, label.get_text(), dist)
        sides = [np.sign(label.get_position()[1] - y) for label in labels]
        assert all(s != t for s, t in itertools.pairwise(sides)), sides
        wait = next(t for t in ax.texts if t.get_gid() == f"wait:{lane}")
        (wait_span,) = [line for line in ax.get_lines() if line.get_gid() == f"wait:{lane}-span"]
        assert sorted(set(wait_span.get_xdata())) == pytest.approx([resends[-1], r.detected_after])
        assert wait.get_position()[1] > y  # above: below the lane sits the predicted star
    texts = [t for t in ax.texts if t.get_text().strip()]
    for a, b in itertools.combinations(texts, 2):
        assert not a.get_window_extent(renderer).overlaps(b.get_window_extent(renderer)), (a.get_text(),
                                                                                           b.get_text())
    marks = [(x, y, math.sqrt(c.get_sizes()[0]) * fig.dpi / 144) for c in ax.collections
             for x, y in ax.transData.transform(c.get_offsets())]
    for t in texts:
        if (t.get_gid() or "").startswith(("gap:", "wait:")):
            bb = t.get_window_extent(renderer)
            assert not any(bb.padded(radius).contains(x, y) for x, y, radius in marks), t.get_text()


# ---------------------------------------------------------------- readable arc labels (notebook 01)


@pytest.mark.parametrize("kwargs", [{}, {"close_only": True, "path": CLIENT_PATH},
                                    {"highlight": {S.TIME_WAIT: "client + server"}}])
def test_state_diagram_arc_labels_are_readable_and_clear_of_the_boxes(kwargs):
    """Every arc label (event over action) and CLOSED tag is at least 9 pt at the figure's own
    size, and none sits on a state's box (nor on another label: the overlap test above)."""
    fig = plots.state_diagram(**kwargs)
    renderer = _drawn(fig)
    ax = fig.axes[0]
    labels = [t for t in ax.texts if (t.get_gid() or "").startswith(("label:", "tag:"))]
    assert labels
    assert min(t.get_fontsize() for t in labels) >= 9, sorted({t.get_fontsize() for t in labels})
    boxes = [(b.get_gid(), b.get_window_extent(renderer)) for b in _boxes(fig)]
    heads = [(a.get_gid(), _head(a)) for a in _arrows(fig)]
    for text in labels:
        bb = text.get_window_extent(renderer)
        for gid, box in boxes:
            assert not bb.overlaps(box), f"{text.get_gid()} sits on {gid}"
        for gid, head in heads:  # a label's white box would hide an arrowhead
            assert not any(bb.contains(x, y) for x, y in head), f"{text.get_gid()} hides {gid}'s head"
    _check_no_text_overlaps(fig)
