"""The experiments of the series, one module per subject; each registers itself with
``tcplearn.base.experiment`` so that where it runs is decided in one place.

``start_here`` (notebook 00), ``close`` (01), ``timewait``, ``why_time_wait`` and ``old_duplicate``
(02), ``timeouts``, ``connect`` and the peer ``trickle`` (03), ``load`` (the load generator) and its server ``loadserver``, ``sharing`` (a load's share of
the machine and what else it holds), ``plateau``, ``knobs`` and ``remedy`` (04, 05), ``dead_peer`` (06).  Importing this
package imports them all, so the registry is complete.
"""

from .close import run_scenario
from .connect import connect_timeout
from .dead_peer import dead_peer
from .knobs import with_settings
from .old_duplicate import old_duplicate
from .plateau import time_wait_by_closer, watch_plateau
from .remedy import sources_remedy
from .start_here import capture_one_connection, first_look, lab_side_by_side
from .timeouts import compare
from .timewait import fin_wait_2_vs_setting, measure_time_wait, myth_demo, sample_countdown, server_restart
from .why_time_wait import lost_last_ack, time_wait_assassination

__all__ = ["run_scenario", "dead_peer", "capture_one_connection", "first_look", "lab_side_by_side", "time_wait_by_closer",
           "watch_plateau", "with_settings", "compare", "fin_wait_2_vs_setting", "myth_demo", "sample_countdown",
           "measure_time_wait",            "server_restart", "connect_timeout", "sources_remedy", "lost_last_ack", "old_duplicate",
           "time_wait_assassination"]
