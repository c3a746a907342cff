"""Triton serving stack: export models, serve them with Triton, call them, roll them out, load-test them.

One package a role (README, "Architecture"): ``serving`` runs inside Triton and is what model
versions carry; ``server`` launches and heals Triton; ``client`` calls it; ``converters`` and
``ensembles`` write the model repository; ``rollout`` and ``loadtest`` drive a running server.
"""

__version__ = "0.2.0"
