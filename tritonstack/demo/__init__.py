"""The demo, defined once: its data (``demo.data``) and its pipelines' contract (``demo.contract``).

Imported by converters (calibration and evaluation data), ensembles (the pipelines' IO), loadtest
(real payloads), scripts and tests. It imports nothing of the project.
"""
