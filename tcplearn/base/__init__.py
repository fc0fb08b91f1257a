"""The base layer: what tcplearn knows about TCP and the machine, with no experiment in it.

``states`` (the vocabulary and RFC 9293's table) and ``rfc`` (what the RFC predicts),
``observe`` (the kernel's TCP table), ``sysctl``, ``kernel`` (compiled-in facts and
counters), ``lab`` (the private network lab and packet capture), ``model`` (pure
functions), ``recordings`` (the store of recorded Linux runs: data and I/O only) and
``experiment`` (where an experiment may run, the one ladder, the registry).  Nothing
here imports ``tcplearn.experiments`` or ``tcplearn.view``.
"""
