"""Safe rollouts on Triton: two versions of a model served at once, a weighted and sticky split,
shadow traffic with agreement metrics, a canary controller with automatic rollback, and an A/B
report. ``python -m tritonstack.rollout --help``; the README's "Rollouts" section walks through it.

Layers: ``rollout`` writes the model repository (the router step, the version policy, the
ensembles' wiring) and drives Triton through ``client``; the router step runs inside Triton.
"""

from tritonstack.rollout.errors import RolloutError
from tritonstack.serving.split import Split

__all__ = ["RolloutError", "Split"]
