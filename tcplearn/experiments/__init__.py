"""The experiments of the series, one module per subject; each registers itself with
``tcplearn.base.experiment`` so that where it runs is decided in one place.

``start_here`` (notebook 00), ``close`` (01), ``timewait``, ``why_time_wait`` and ``old_duplicate``
(02), ``timeouts`` (with ``timeouts_node``) and ``connect`` (03), ``load`` (the load generator) and
its server ``loadserver``, ``sharing`` (a load's share of the machine and what else it holds),
``plateau``, ``knobs`` and ``remedy`` (04, 05), ``dead_peer`` (06, with ``dead_peer_model`` and
``dead_peer_runs``); ``tools/`` holds the lab
primitives they use.  Importing this package imports every module in it (a new one included,
without a line here), so the registry is complete.  The experiments themselves are
reached through ``tcplearn`` (``tcplearn.dead_peer``) or ``REGISTRY``; here a name is its module.
"""

import importlib
import pkgutil

# ``loadserver`` is a child process's entry point (``python -m``): importing it here first would
# make runpy warn in every load server; it registers nothing.
__all__ = [m.name for m in pkgutil.iter_modules(__path__) if m.name not in ("tools", "loadserver")]

for _name in __all__:
    importlib.import_module(f"{__name__}.{_name}")
