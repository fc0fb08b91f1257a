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
