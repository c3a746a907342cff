"""Thin Triton adapters, each copied into a version as ``model.py`` (:mod:`tritonstack.converters.carry`)."""
