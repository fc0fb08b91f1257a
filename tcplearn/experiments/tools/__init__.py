"""The lab primitives: tools that experiments use, not experiments themselves.

``silence`` (a drop-all socket filter that makes a peer vanish like a pulled cable) is the
first of them here; the others named in docs/architecture.md follow it.  Nothing in this
folder registers an experiment, and nothing here imports an experiment module.
"""
