"""Measured placement: where a label or a legend can go without covering what a figure shows."""

from __future__ import annotations


def _polyline_distance(point, xs, ys) -> float:
    """Distance from ``point`` to the polyline through (xs, ys), all in one coordinate system."""
    import numpy as np

    p = np.asarray(point, dtype=float)
    pts = np.column_stack([xs, ys]).astype(float)
    if len(pts) == 1:
        return float(np.hypot(*(pts[0] - p)))
    a, b = pts[:-1], pts[1:]
    ab = b - a
    t = np.clip(((p - a) * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-12), 0, 1)
    return float(np.hypot(*(a + t[:, None] * ab - p).T).min())


def _label_clearance(anchor, lift: float, half: float, others, size) -> float:
    """How far a label ``half`` wide, centred ``lift`` above ``anchor``, and its anchor stay from
    the ``others`` polylines (all in inches); negative when the label would leave the axes."""
    import numpy as np

    (ax_, ay), (width, height) = anchor, size
    cy = ay + lift
    if not 0.15 <= cy <= height - 0.15 or not half + 0.05 <= ax_ <= width - half - 0.05:
        return -1.0
    points = [(lx, cy) for lx in np.linspace(ax_ - half, ax_ + half, 9)] + [anchor]
    return min((_polyline_distance(p, *o) for p in points for o in others), default=1.0) - 0.05 * abs(lift)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


#: Where ``legend_in_empty_spot`` looks inside the axes, in this order (matplotlib's own order
#: for ``loc="best"``), before it gives up and puts the legend outside, to the right.
_INSIDE = ("upper right", "upper left", "lower left", "lower right", "center right", "center left",
           "lower center", "upper center", "center")


def _renderer(fig):
    """A renderer for measuring ``fig``'s artists before it is drawn (the figures here are not
    pyplot's, so they may have no canvas that renders yet)."""
    get = getattr(fig.canvas, "get_renderer", None)
    if get is None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        get = FigureCanvasAgg(fig).get_renderer
    return get()


def obstacles(ax, renderer):
    """What a legend must not cover in ``ax``, in display pixels: ``(polylines, points, boxes)``.

    Every visible line gives its polyline (reference lines included) and, with markers, its
    points with the markers' radius; every scatter its points; every text and annotation
    (with its arrow) its box.  Shaded spans, bars and the grid are background."""
    import numpy as np
    from matplotlib.collections import PathCollection

    px_per_pt = ax.figure.dpi / 72
    polylines, points, boxes = [], [], []
    for line in ax.get_lines():
        if not line.get_visible():
            continue
        verts = line.get_transform().transform_path(line.get_path()).vertices
        verts = verts[np.isfinite(verts).all(axis=1)]
        if line.get_linestyle() not in ("None", "none", "", " ") and len(verts) > 1:
            polylines.append(verts)
        if line.get_marker() not in (None, "None", "none", "", " "):
            radius = line.get_markersize() * px_per_pt / 2
            points += [(x, y, radius) for x, y in verts]
    for coll in ax.collections:
        if isinstance(coll, PathCollection) and coll.get_visible() and len(coll.get_offsets()):
            radius = float(np.sqrt(max(coll.get_sizes(), default=36.0))) * px_per_pt / 2
            offsets = coll.get_offset_transform().transform(coll.get_offsets())
            points += [(x, y, radius) for x, y in offsets]
    for text in ax.texts:
        if not text.get_visible():
            continue
        if hasattr(text, "update_positions"):  # an annotation: its arrow goes where the text is drawn
            text.update_positions(renderer)
            if text.arrow_patch is not None:
                boxes.append(text.arrow_patch.get_window_extent(renderer))
        if text.get_text().strip():
            boxes.append(text.get_window_extent(renderer))
    return polylines, points, boxes


def covers(box, polylines, points, boxes) -> bool:
    """Whether the display-pixel Bbox ``box`` touches any of ``obstacles``' answer."""
    from matplotlib.path import Path

    return (any(Path(v).intersects_bbox(box, filled=False) for v in polylines)
            or any(box.padded(r).contains(x, y) for x, y, r in points)
            or any(box.overlaps(b) for b in boxes))


def legend_in_empty_spot(ax, *, handles=None, margin: float = 8.0, **kwargs):
    """``ax.legend(...)`` where it covers nothing the figure shows: the first of the usual spots
    inside the axes whose box (``margin`` pixels wider all round) meets no line, point or text
    of ``ax`` as laid out now, else outside the axes on the right, the figure laid out again to
    make room.  Call it once the figure is laid out (after ``tight_layout``).  Returns the Legend;
    ``legend.tcplearn_spot`` is the spot it took (``"outside"`` for the last resort)."""
    fig = ax.figure
    renderer = _renderer(fig)
    blocked = obstacles(ax, renderer)
    args = () if handles is None else (handles, [h.get_label() for h in handles])
    for loc in _INSIDE:
        legend = ax.legend(*args, loc=loc, **kwargs)
        if not covers(legend.get_window_extent(renderer).padded(margin), *blocked):
            legend.tcplearn_spot = loc
            return legend
    legend = ax.legend(*args, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **kwargs)
    legend.tcplearn_spot = "outside"
    fig.tight_layout()
    return legend
