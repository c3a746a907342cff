"""What a model's traffic looks like, and how far live traffic has moved from it.

One definition of each feature serves both ends:

* at export, the ``profile`` step measures the features on the held-out data and writes
  ``profile.json`` beside the model (the reference: bin edges and proportions);
* in serving, the python-ort runner (which copies this file beside ``model.py`` as
  ``drift.py``) measures the same features on every batch it runs, keeps the last
  ``window`` rows, and exports the Population Stability Index of each feature against the
  reference on Triton's own ``/metrics`` (``triton_stack_drift_psi``).

Features (per row): ``tokens`` (attention-mask length), ``unknown_rate`` (share of the row's
tokens that are the unknown token), ``<input>_mean`` / ``<input>_std`` (float inputs: images),
``centroid_distance`` (embeddings: 1 - cosine to the reference centroid), ``predicted_class``
and ``confidence`` (classifiers: argmax and max softmax), ``score`` (one-logit heads).

PSI = sum over bins of (live - ref) * ln(live / ref). The usual reading: < 0.1 no shift,
0.1-0.25 moderate, > 0.25 a shift worth an alert (the alert rules use 0.25).

Only numpy here: the file must import inside a Triton Python-backend stub with nothing else.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import numpy as np

PROFILE_FILE = "profile.json"
BINS = 10
EPSILON = 1e-4  # a bin empty on one side still has a finite PSI term
DEFAULT_WINDOW = 1000  # rows the live distribution is measured over
DEFAULT_MIN_ROWS = 200  # no score before the window holds this many rows
PSI_ALERT = 0.25


def row_features(inputs: Mapping[str, np.ndarray], output: np.ndarray, kind: str,
                 unk_id: int | None = None, centroid: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Each feature's value per row of one batch (float64 [n])."""
    features: dict[str, np.ndarray] = {}
    mask = inputs.get("attention_mask")
    ids = inputs.get("input_ids")
    if mask is not None:
        lengths = mask.reshape(len(mask), -1).sum(axis=1).astype(np.float64)
        features["tokens"] = lengths
        if ids is not None and unk_id is not None:
            unknown = ((ids == unk_id) & (mask != 0)).reshape(len(ids), -1).sum(axis=1)
            features["unknown_rate"] = unknown / np.maximum(lengths, 1.0)
    for name, array in inputs.items():
        if array.dtype.kind == "f" and array.ndim >= 2:
            flat = array.reshape(len(array), -1).astype(np.float64)
            features[f"{name}_mean"] = flat.mean(axis=1)
            features[f"{name}_std"] = flat.std(axis=1)
    rows = output.reshape(len(output), -1).astype(np.float64)
    if kind == "embedding" and centroid is not None:
        norms = np.linalg.norm(rows, axis=1) * float(np.linalg.norm(centroid))
        features["centroid_distance"] = 1.0 - (rows @ centroid) / np.maximum(norms, 1e-12)
    elif kind == "classification" and rows.shape[1] > 1:
        shifted = np.exp(rows - rows.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        features["predicted_class"] = rows.argmax(axis=1).astype(np.float64)
        features["confidence"] = probabilities.max(axis=1)
    elif kind == "score":
        features["score"] = rows[:, 0]
    return features


def reference_profile(features: Mapping[str, np.ndarray], *, kind: str, classes: int = 0,
                      unk_id: int | None = None, centroid: np.ndarray | None = None,
                      window: int = DEFAULT_WINDOW, min_rows: int = DEFAULT_MIN_ROWS) -> dict:
    """The profile.json content: for each feature, bin edges (deciles of the reference, or one
    bin per class) and the reference's share of rows in each bin, plus summary figures."""
    described = {}
    for name, values in features.items():
        values = np.asarray(values, dtype=np.float64)
        if name == "predicted_class":
            edges = [c + 0.5 for c in range(max(classes, 2) - 1)]
        else:
            # deciles; bins are (edge_i-1, edge_i], so a reference piled on one value (no unknown
            # tokens at all) still separates from any live row above it
            inner = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1]))
            edges = [float(e) for e in inner]
        counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
        described[name] = {
            "edges": edges, "reference": [float(c) for c in counts / max(len(values), 1)],
            "mean": float(values.mean()), "std": float(values.std()),
            "p50": float(np.quantile(values, 0.5)), "p99": float(np.quantile(values, 0.99))}
    return {"format": 1, "kind": kind, "rows": int(min(len(v) for v in features.values())) if features else 0,
            "window": window, "min_rows": min_rows, "psi_alert": PSI_ALERT, "unk_id": unk_id,
            "centroid": None if centroid is None else [float(x) for x in centroid],
            "features": described}


def psi(live: np.ndarray, reference: np.ndarray) -> float:
    """Population Stability Index of two bin-share vectors."""
    live = np.maximum(np.asarray(live, dtype=np.float64), EPSILON)
    reference = np.maximum(np.asarray(reference, dtype=np.float64), EPSILON)
    return float(np.sum((live - reference) * np.log(live / reference)))


class DriftWindow:
    """The last ``window`` rows' bin of each feature, as a ring; PSI against the reference."""

    def __init__(self, profile: Mapping[str, object]):
        self.profile = profile
        self.window = int(profile.get("window") or DEFAULT_WINDOW)  # type: ignore[arg-type]
        self.min_rows = int(profile.get("min_rows") or DEFAULT_MIN_ROWS)  # type: ignore[arg-type]
        features = profile["features"]  # type: ignore[index]
        self.edges = {name: np.asarray(f["edges"], dtype=np.float64) for name, f in features.items()}
        self.reference = {name: np.asarray(f["reference"], dtype=np.float64) for name, f in features.items()}
        self.bins = {name: np.zeros(self.window, dtype=np.int16) for name in features}
        self.counts = {name: np.zeros(len(self.reference[name]), dtype=np.int64) for name in features}
        self.seen = 0
        unk = profile.get("unk_id")
        self.unk_id = None if unk is None else int(unk)  # type: ignore[arg-type]
        centroid = profile.get("centroid")
        self.centroid = None if centroid is None else np.asarray(centroid, dtype=np.float64)
        self.kind = str(profile.get("kind", "embedding"))

    def observe(self, inputs: Mapping[str, np.ndarray], output: np.ndarray) -> None:
        """Add one batch's rows (the oldest rows beyond the window drop out)."""
        values = row_features(inputs, output, self.kind, self.unk_id, self.centroid)
        n = len(output)
        if n == 0:
            return
        for name, edges in self.edges.items():
            if name not in values:
                continue
            new = np.searchsorted(edges, values[name], side="left").astype(np.int16)
            if n >= self.window:  # the batch alone fills the window
                self.bins[name][:] = new[-self.window:]
                self.counts[name][:] = np.bincount(self.bins[name], minlength=len(self.counts[name]))
                continue
            index = self.seen + np.arange(n)  # each row's global index; its slot is index % window
            slots = index % self.window
            replaced = index >= self.window  # that slot held a row of the window: it leaves
            size = len(self.counts[name])
            self.counts[name] += (np.bincount(new, minlength=size)
                                  - np.bincount(self.bins[name][slots[replaced]], minlength=size))
            self.bins[name][slots] = new
        self.seen += n

    @property
    def rows(self) -> int:
        return min(self.seen, self.window)

    def scores(self) -> dict[str, float]:
        """PSI per feature whose window holds ``min_rows`` rows (no score before, nor for a
        feature these batches do not have)."""
        return {name: psi(counts / counts.sum(), self.reference[name])
                for name, counts in self.counts.items() if counts.sum() >= self.min_rows}


def load_profile(folder: str) -> dict | None:
    """The version folder's profile.json (None without one: the model is served unmonitored)."""
    path = os.path.join(folder, PROFILE_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        profile = json.load(f)
    return profile if profile.get("features") else None

