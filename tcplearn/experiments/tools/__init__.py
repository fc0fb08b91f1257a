"""The lab primitives: tools that experiments use, not experiments themselves.

``connection_pair`` (``ConnectionPair``: one loopback connection closed a step at a time,
each step checked against RFC 9293's table), ``trickle`` (``TrickleServer``: a peer that
sends on a schedule),
``silence`` (a drop-all socket filter that makes a peer vanish like a pulled cable),
``inject`` (a captured segment delivered again through a raw socket, its TCP checksum
recomputed), ``counters`` (the kernel's TcpExt and Tcp counters as deltas), ``captures``
(one connection's segments; captures made one after another joined), ``sockets`` (a
connected pair, one connection's rows and state, polling with a deadline), ``node`` (real
Node.js: a script started or run to its end, its JSON lines read) and ``records``
(a measurement dataclass as plain data for the recorder).  Nothing in this folder registers
an experiment, and nothing here imports an experiment module.
"""
