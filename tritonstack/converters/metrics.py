"""How closely a converted model (candidate) agrees with its source (reference).

Pure numpy/scipy functions; they compute, they do not judge. Thresholds live with the gate
that enforces them. Bad input (wrong ranks, mismatched shapes, NaN, zero vectors) raises
``ValueError`` with a message naming the shapes or the offending row.

* :func:`embedding_agreement` - row-wise cosine, neighbourhood recall@10, Spearman of the
  pairwise-similarity structure.
* :func:`classification_agreement` - accuracy of each against labels, the difference in
  percentage points, and argmax agreement.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import rankdata

__all__ = [
    "ClassificationAgreement",
    "EmbeddingAgreement",
    "classification_agreement",
    "embedding_agreement",
]

RECALL_K = 10


@dataclass(frozen=True)
class EmbeddingAgreement:
    """Agreement between two embeddings of the same ``n`` inputs.

    Attributes:
        n: Number of rows compared.
        mean_cosine: Mean over rows ``i`` of ``cos(reference[i], candidate[i])``.
        min_cosine: Minimum of the same.
        recall_at_10: Mean over rows of ``|N_ref(i) & N_cand(i)| / k``, where ``N(i)`` is the
            set of the ``k`` rows most cosine-similar to row ``i`` (``i`` itself excluded) in
            that embedding space; ``k = min(10, n - 1)``.
        spearman: Spearman rank correlation between the reference and candidate pairwise
            cosine similarities over the ``n (n - 1) / 2`` pairs ``i < j``; NaN when either set
            of similarities is constant.
        k: Neighbourhood size actually used for ``recall_at_10`` (10 unless ``n <= 10``).
    """

    n: int
    mean_cosine: float
    min_cosine: float
    recall_at_10: float
    spearman: float
    k: int = RECALL_K

    def to_dict(self) -> dict[str, float | int]:
        """The fields as plain Python numbers (JSON-ready)."""
        return asdict(self)


@dataclass(frozen=True)
class ClassificationAgreement:
    """Agreement between two classifiers' logits on the same labelled inputs.

    Attributes:
        n: Number of examples.
        reference_accuracy: Fraction (0..1) of reference argmaxes equal to the labels.
        candidate_accuracy: Same for the candidate.
        delta_points: ``100 * (candidate_accuracy - reference_accuracy)``, percentage points;
            negative when the candidate is worse.
        agreement: Fraction of examples where both argmaxes are equal (labels not used).
    """

    n: int
    reference_accuracy: float
    candidate_accuracy: float
    delta_points: float
    agreement: float

    def to_dict(self) -> dict[str, float | int]:
        """The fields as plain Python numbers (JSON-ready)."""
        return asdict(self)


def _matrix_pair(reference: object, candidate: object, what: str) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(reference)
    cand = np.asarray(candidate)
    if ref.ndim != 2 or cand.ndim != 2 or ref.shape != cand.shape:
        raise ValueError(
            f"{what}: reference and candidate must be 2-D arrays of the same shape [n, d], "
            f"got reference {ref.shape} and candidate {cand.shape}"
        )
    if not (np.issubdtype(ref.dtype, np.number) and np.issubdtype(cand.dtype, np.number)):
        raise ValueError(f"{what}: expected numeric arrays, got {ref.dtype} and {cand.dtype}")
    ref = ref.astype(np.float64)
    cand = cand.astype(np.float64)
    for name, array in (("reference", ref), ("candidate", cand)):
        bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
        if bad.size:
            raise ValueError(f"{what}: {name} row {int(bad[0])} holds NaN or inf "
                             f"({bad.size} such rows)")
    return ref, cand


def _unit_rows(array: np.ndarray, name: str) -> np.ndarray:
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    zero = np.flatnonzero(norms[:, 0] == 0)
    if zero.size:
        raise ValueError(f"embedding_agreement: {name} row {int(zero[0])} is the zero vector; "
                         "cosine similarity is undefined for it")
    return array / norms


def _neighbours(similarity: np.ndarray, k: int) -> np.ndarray:
    """Indices of each row's ``k`` most similar other rows (ties broken by lower index)."""
    s = similarity.copy()
    np.fill_diagonal(s, -np.inf)
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    ra = rankdata(a)  # average ranks for ties
    rb = rankdata(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def embedding_agreement(reference: object, candidate: object) -> EmbeddingAgreement:
    """Compare two embeddings ``[n, d]`` of the same inputs (row ``i`` = input ``i``).

    Embeddings need not be normalised: every measure uses cosine similarity.

    Args:
        reference: The source model's embeddings, ``[n, d]`` with ``n >= 3``.
        candidate: The converted model's embeddings, same shape.

    Raises:
        ValueError: Shapes differ or are not 2-D, fewer than 3 rows, NaN/inf, or a zero row.
    """
    ref, cand = _matrix_pair(reference, candidate, "embedding_agreement")
    n = ref.shape[0]
    if n < 3:
        raise ValueError(f"embedding_agreement: needs at least 3 rows for neighbours and rank "
                         f"correlation, got shape {ref.shape}")
    ref = _unit_rows(ref, "reference")
    cand = _unit_rows(cand, "candidate")

    cosines = np.clip(np.einsum("ij,ij->i", ref, cand), -1.0, 1.0)
    sim_ref = ref @ ref.T
    sim_cand = cand @ cand.T

    k = min(RECALL_K, n - 1)
    nn_ref = _neighbours(sim_ref, k)
    nn_cand = _neighbours(sim_cand, k)
    overlap = [np.intersect1d(a, b, assume_unique=True).size for a, b in zip(nn_ref, nn_cand, strict=True)]
    recall = float(np.mean(overlap) / k)

    upper = np.triu_indices(n, k=1)
    spearman = _spearman(sim_ref[upper], sim_cand[upper])
    return EmbeddingAgreement(n=n, mean_cosine=float(cosines.mean()), min_cosine=float(cosines.min()),
                              recall_at_10=recall, spearman=spearman, k=k)


@dataclass(frozen=True)
class ScoreAgreement:
    """Agreement between two single-score models (cross-encoder rerankers) on the same inputs.

    Attributes:
        n: Number of scored inputs.
        spearman: Spearman rank correlation of the two score lists (the order a reranker gives).
        max_abs_error: Largest absolute difference of a score.
        mean_abs_error: Mean absolute difference.
    """

    n: int
    spearman: float
    max_abs_error: float
    mean_abs_error: float

    def to_dict(self) -> dict[str, float | int]:
        """The fields as plain Python numbers (JSON-ready)."""
        return asdict(self)


def score_agreement(reference: object, candidate: object) -> ScoreAgreement:
    """Compare two score lists ``[n]`` or ``[n, 1]`` of the same inputs.

    Raises:
        ValueError: Shapes differ, more than one score per row, fewer than 3 rows, or NaN/inf.
    """
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape:
        raise ValueError(f"score_agreement: shapes differ, {ref.shape} vs {cand.shape}")
    ref, cand = ref.reshape(len(ref), -1), cand.reshape(len(cand), -1)
    if ref.shape[1] != 1 or len(ref) < 3:
        raise ValueError(f"score_agreement: needs [n] or [n, 1] scores with n >= 3, got {ref.shape}")
    if not (np.isfinite(ref).all() and np.isfinite(cand).all()):
        raise ValueError("score_agreement: scores contain NaN or inf")
    diff = np.abs(ref[:, 0] - cand[:, 0])
    return ScoreAgreement(n=len(ref), spearman=_spearman(ref[:, 0], cand[:, 0]),
                          max_abs_error=float(diff.max()), mean_abs_error=float(diff.mean()))


def classification_agreement(reference_logits: object, candidate_logits: object,
                             labels: object) -> ClassificationAgreement:
    """Compare two classifiers' logits ``[n, classes]`` against integer labels ``[n]``.

    Probabilities work as well as logits: only the argmax is used.

    Raises:
        ValueError: Shapes differ or are not 2-D, no examples, labels not ``[n]`` integers in
            ``0..classes-1``, or NaN/inf logits.
    """
    ref, cand = _matrix_pair(reference_logits, candidate_logits, "classification_agreement")
    n, classes = ref.shape
    if n == 0:
        raise ValueError(f"classification_agreement: no examples (shape {ref.shape})")
    y = np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"classification_agreement: labels must have shape ({n},) to match logits "
                         f"{ref.shape}, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"classification_agreement: labels must be integers, got {y.dtype}")
    if y.min() < 0 or y.max() >= classes:
        raise ValueError(f"classification_agreement: labels must lie in 0..{classes - 1} for "
                         f"{classes} classes, got {int(y.min())}..{int(y.max())}")
    pred_ref = ref.argmax(axis=1)
    pred_cand = cand.argmax(axis=1)
    acc_ref = float(np.mean(pred_ref == y))
    acc_cand = float(np.mean(pred_cand == y))
    return ClassificationAgreement(
        n=n,
        reference_accuracy=acc_ref,
        candidate_accuracy=acc_cand,
        delta_points=100.0 * (acc_cand - acc_ref),
        agreement=float(np.mean(pred_ref == pred_cand)),
    )
