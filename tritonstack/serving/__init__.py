"""Everything that executes inside Triton, and nothing else: the pure functions behind the
Python-backend models (request checks, batching, the INT8 kernel probe, the golden check,
metrics, the text front, the rollout split) and, in ``models/``, their thin Triton adapters.

It imports nothing else of the project and runs on Python 3.10 (NVIDIA's image) and 3.11.
Every Python-backend model version carries its own copy beside its ``model.py``
(:mod:`tritonstack.converters.carry` says why), so modules here import each other relatively.
"""
