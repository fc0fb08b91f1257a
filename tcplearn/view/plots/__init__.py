"""Figures: the RFC 9293 state diagram drawn from ``TRANSITIONS``, sequence diagrams, and the
figures of each notebook, one module per subject.

Every figure is returned, never shown here: figures are plain ``matplotlib.figure.Figure``
objects, not registered with pyplot, so a notebook shows each once.  Every TCP state has one
visual identity (``STATE_STYLE``: a colour of its own from the colour-blind-safe Okabe-Ito
and Paul Tol palettes, a line style and a marker of its own) used by every plot of the
series.  Arrows carry a ``gid`` naming what they draw, so tests can check a figure's content.

The modules import downwards only: ``style`` (colours, legends, the notebook's PNG) and
``layout`` (measured placement) at the bottom, ``sequence`` above them, then one module per
notebook subject: ``state_diagram`` (01), ``timewait`` (02), ``timeouts`` (03), ``load``
(04), ``dead_peer`` (06).
"""

from __future__ import annotations

from .dead_peer import dead_peer_lane, dead_peer_timeline
from .load import counts_plot, load_plot, sources_remedy_plot
from .sequence import sequence_diagram
from .state_diagram import CLOSE_STATES, NOTATION, state_diagram
from .style import STATE_STYLE, StateStyle, legend_handles
from .timeouts import syn_timeline, timeout_timeline
from .timewait import countdown_plot, myth_plot, simulation_diagram

__all__ = ["STATE_STYLE", "StateStyle", "CLOSE_STATES", "NOTATION", "state_diagram", "sequence_diagram",
           "legend_handles", "countdown_plot", "myth_plot", "simulation_diagram", "timeout_timeline",
           "counts_plot", "load_plot", "syn_timeline", "dead_peer_timeline", "dead_peer_lane",
           "sources_remedy_plot"]
