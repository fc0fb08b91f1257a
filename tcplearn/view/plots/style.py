"""The series' one visual identity per TCP state, shared legend handles, and how a returned
Figure becomes a picture in a notebook (IPython's PNG formatter)."""

from __future__ import annotations

from dataclasses import dataclass

from matplotlib.figure import Figure

from ...base.states import TcpState

__all__ = ["STATE_STYLE", "StateStyle", "legend_handles"]


def _png(fig: Figure) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def _register_with_ipython() -> None:
    """Let a notebook show a returned Figure as a picture.  Figures here are not made by
    pyplot, so nothing else registers IPython's PNG formatter for them."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["image/png"].for_type(Figure, _png)


_register_with_ipython()


@dataclass(frozen=True)
class StateStyle:
    color: str
    linestyle: str
    marker: str
    text: str = "black"


_OI = {"black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73",
       "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7",
       "grey": "#999999"}
# Paul Tol's "muted" scheme (https://personal.sron.nl/~pault/), also colour-blind safe: the
# colours of it that stay apart from Okabe-Ito's give the states Okabe-Ito has no room for.
_TOL = {"indigo": "#332288", "wine": "#882255", "olive": "#999933", "pale grey": "#DDDDDD"}

#: One visual identity per state, used by every figure of the series: no two states share
#: a colour, a marker or a (colour, line style, marker) triple.  The close states get the
#: eight Okabe-Ito colours; the opening states and the Linux-only ones get Tol's.
STATE_STYLE: dict[TcpState, StateStyle] = {
    TcpState.ESTABLISHED: StateStyle(_OI["green"], "-", "o", "white"),
    TcpState.SYN_SENT: StateStyle(_OI["sky"], "--", "^"),
    TcpState.SYN_RECEIVED: StateStyle(_TOL["indigo"], "--", "v", "white"),
    TcpState.FIN_WAIT_1: StateStyle(_OI["orange"], "-", "s"),
    TcpState.FIN_WAIT_2: StateStyle(_OI["vermillion"], "-", "D", "white"),
    TcpState.TIME_WAIT: StateStyle(_OI["purple"], "-", "P"),
    TcpState.CLOSED: StateStyle(_OI["black"], ":", "x", "white"),
    TcpState.CLOSE_WAIT: StateStyle(_OI["yellow"], "-.", "h"),
    TcpState.LAST_ACK: StateStyle(_OI["blue"], "-.", "p", "white"),
    TcpState.LISTEN: StateStyle(_TOL["olive"], "-", "*"),
    TcpState.CLOSING: StateStyle(_TOL["wine"], "--", "X", "white"),
    TcpState.NEW_SYN_RECV: StateStyle(_TOL["pale grey"], ":", "<"),
    TcpState.BOUND_INACTIVE: StateStyle(_OI["grey"], ":", "."),
}


def legend_handles(states=None):
    """Line handles for a legend of ``states`` (default: the RFC states) in their styles."""
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=STATE_STYLE[s].color, linestyle=STATE_STYLE[s].linestyle,
                   marker=STATE_STYLE[s].marker, label=s.label) for s in (states or TcpState.rfc_states())]
