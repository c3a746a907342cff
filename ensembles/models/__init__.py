"""Triton Python-backend adapters. Each ``<name>.py`` is copied as ``model.py`` into the repository.

They import the installed ``ensembles`` package (the launcher puts the virtualenv first on the
stub's PATH), so the real work stays in ``ensembles.processing``, tested without Triton.
"""
