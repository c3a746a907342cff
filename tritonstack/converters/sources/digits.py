"""The digits demo model: a small CNN for scikit-learn's 8x8 digits, trained in seconds on CPU.

``tritonstack.converters.sources.digits:factory`` is a torch source for the export pipeline: it returns the
trained :class:`DigitsCNN` and a :class:`~converters.sources.torch_module.TorchInputSpec` whose
calibration data is the digits calib split and whose evaluation data is the labelled test split
(see :func:`demo.data.digits_split`).

Trained weights are cached on disk, keyed by a hash of the model and training code, the
hyperparameters, the seeds and the torch version, so repeated exports skip training; with no
cache (or a stale or unreadable one) the model trains from scratch. The cache folder is
``$TRITON_SERVING_STACK_CACHE`` if set, else ``$XDG_CACHE_HOME/triton-serving-stack``, else
``~/.cache/triton-serving-stack``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tritonstack.converters.sources.torch_module import TensorSpec, TorchInputSpec
from tritonstack.demo.data import DigitsSplit, digits_split

__all__ = [
    "DigitsCNN",
    "DigitsClassifier",
    "TrainConfig",
    "cache_dir",
    "digits_accuracy",
    "factory",
    "mislabelled",
    "predict_logits",
    "retrained",
    "train_digits_cnn",
    "weights_path",
]

log = logging.getLogger(__name__)

CACHE_ENV = "TRITON_SERVING_STACK_CACHE"
PIXEL_MAX = 16.0  # scikit-learn digits' pixel scale


class DigitsCNN(nn.Module):
    """``image`` float32 ``[B, 1, 8, 8]`` in 0..1 -> ``logits`` float32 ``[B, 10]``.

    conv(1->16, 3x3) - ReLU - conv(16->32, 3x3) - ReLU - maxpool 2 - linear(512->64) - ReLU -
    linear(64->10). Only Conv/Relu/MaxPool/Flatten/Gemm in ONNX: exports at any opset and
    quantizes to INT8 (no BatchNorm, no dropout at inference).
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of images scaled to 0..1."""
        return self.classifier(self.features(image))


class DigitsClassifier(nn.Module):
    """The served graph: raw pixels in, logits, probabilities and the label out.

    ``image`` float32 ``[B, 8, 8]`` on scikit-learn's 0..16 scale -> ``logits`` ``[B, 10]``,
    ``probabilities`` ``[B, 10]`` (softmax) and ``label`` int64 ``[B, 1]`` (argmax). Scaling
    and the head are a few graph nodes instead of two Python-backend steps around the model:
    those steps cost ~2/3 of a request's server CPU for a CNN that computes in ~10 us.
    ``logits`` stays the first output: the export's gates, golden check and drift profile
    read it.
    """

    def __init__(self, cnn: nn.Module) -> None:
        super().__init__()
        self.cnn = cnn

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self.cnn(image.unsqueeze(1) / PIXEL_MAX)
        return logits, torch.softmax(logits, dim=1), torch.argmax(logits, dim=1, keepdim=True)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training hyperparameters (all part of the weights' cache key)."""

    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")


def _fit(model: DigitsCNN, split: DigitsSplit, config: TrainConfig, seed: int) -> None:
    """Adam on cross-entropy over the train split, reshuffled each epoch from ``seed``."""
    x = torch.from_numpy(np.array(split.x_train))
    y = torch.from_numpy(np.array(split.y_train))
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate,
                                 weight_decay=config.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), config.batch_size):
            idx = order[start:start + config.batch_size]
            optimizer.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            optimizer.step()
    model.eval()


def cache_dir() -> Path:
    """Where trained weights are kept (see the module docstring for the order of lookup)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "triton-serving-stack"


# The code that decides the weights, read once: editing the model or the training loop
# invalidates the cache.
_TRAINING_CODE = inspect.getsource(DigitsCNN) + inspect.getsource(_fit)


def _cache_key(config: TrainConfig, seed: int, split_seed: int, label_shift: int = 0) -> str:
    h = hashlib.sha256()
    parts = [_TRAINING_CODE, repr(config), f"seed={seed}", f"split_seed={split_seed}",
             f"torch={torch.__version__}"]
    if label_shift:
        parts.append(f"label_shift={label_shift}")
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def weights_path(seed: int = 0, config: TrainConfig | None = None, *, split_seed: int = 0,
                 directory: Path | None = None, label_shift: int = 0) -> Path:
    """The cache file for these seeds and hyperparameters (it may not exist yet)."""
    key = _cache_key(config or TrainConfig(), seed, split_seed, label_shift)
    return (directory or cache_dir()) / f"digits_cnn-{key}.pt"


def _load(path: Path) -> DigitsCNN | None:
    if not path.is_file():
        return None
    model = DigitsCNN()
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:  # truncated/corrupt file: retrain rather than fail the export
        log.warning("ignoring unreadable cached weights %s (%s); retraining", path, exc)
        return None
    return model.eval()


def _save(model: DigitsCNN, path: Path) -> None:
    """Write atomically, so a concurrent reader never sees half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".tmp",
                                         delete=False) as tmp:
            torch.save(model.state_dict(), tmp)
        os.replace(tmp.name, path)
    except OSError as exc:  # read-only home, full disk: the model is still good
        log.warning("could not cache digits CNN weights at %s (%s)", path, exc)


def predict_logits(model: nn.Module, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Logits ``[n, 10]`` (float32) for images ``[n, 1, 8, 8]`` in 0..1."""
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            out.append(model(torch.from_numpy(np.array(images[start:start + batch_size]))).numpy())
    return np.concatenate(out).astype(np.float32)


def digits_accuracy(model: nn.Module, split: DigitsSplit | None = None) -> float:
    """Test-split accuracy (0..1) of ``model`` (default split: ``digits_split(0)``)."""
    split = split or digits_split(0)
    return float(np.mean(predict_logits(model, split.x_test).argmax(axis=1) == split.y_test))


def train_digits_cnn(seed: int = 0, epochs: int = TrainConfig.epochs, *, split_seed: int = 0,
                     config: TrainConfig | None = None, use_cache: bool = True,
                     directory: Path | None = None, label_shift: int = 0) -> DigitsCNN:
    """A :class:`DigitsCNN` trained on the train split, from the disk cache when possible.

    Training is deterministic (CPU, ``seed`` drives the initial weights and the batch order)
    and leaves the global torch RNG untouched. It takes a few seconds on 2 cores.

    Args:
        seed: Seed for weight initialisation and batch order.
        epochs: Passes over the train split (shorthand for ``config.epochs``).
        split_seed: Seed of :func:`demo.data.digits_split`; keep it equal to the split
            used for evaluation, or the test set overlaps the training data.
        config: Full hyperparameters; ``epochs`` overrides its ``epochs``.
        use_cache: Read and write the weights cache.
        directory: Cache folder (default :func:`cache_dir`).
        label_shift: Train on label ``(y + shift) % 10``: a model with a label-mapping bug.

    Returns:
        The trained model in eval mode.
    """
    config = dataclasses.replace(config or TrainConfig(), epochs=epochs)
    path = weights_path(seed, config, split_seed=split_seed, directory=directory, label_shift=label_shift)
    if use_cache and (cached := _load(path)) is not None:
        log.info("digits CNN: cached weights %s", path)
        return cached
    split = _shifted(digits_split(split_seed), label_shift)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitsCNN()
        _fit(model, split, config, seed)
    log.info("digits CNN trained (%d epochs, seed %d): test accuracy %.2f%%",
             config.epochs, seed, 100 * digits_accuracy(model, split))
    if use_cache:
        _save(model, path)
    return model


def _shifted(split: DigitsSplit, label_shift: int) -> DigitsSplit:
    if not label_shift:
        return split
    return dataclasses.replace(split, y_train=(np.asarray(split.y_train) + label_shift) % 10,
                               y_calib=(np.asarray(split.y_calib) + label_shift) % 10,
                               y_test=(np.asarray(split.y_test) + label_shift) % 10)


def factory(seed: int = 0, label_shift: int = 0) -> tuple[nn.Module, TorchInputSpec]:
    """The trained digits CNN as the served :class:`DigitsClassifier` and its export spec
    (``image`` [batch, 8, 8] pixels 0..16 -> ``logits``, ``probabilities``, ``label``)."""
    model = DigitsClassifier(train_digits_cnn(seed=seed, label_shift=label_shift)).eval()
    return model, classifier_spec(_shifted(digits_split(seed=0), label_shift))


def classifier_spec(split: DigitsSplit) -> TorchInputSpec:
    """The export spec of a :class:`DigitsClassifier`: pixels outside 0..16 (or NaN) are refused
    by the runner, as the Python preprocessing step refused them before."""
    def raw(x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float32) * np.float32(PIXEL_MAX))[:, 0]  # exact: k/16 * 16

    return TorchInputSpec(
        inputs=(TensorSpec("image", ("batch", 8, 8), "float32", low=0.0, high=PIXEL_MAX,
                           valid_range=(0.0, PIXEL_MAX)),),
        output_names=("logits", "probabilities", "label"),
        task="image-classification",
        calibration_data=lambda: {"image": raw(split.x_calib)},
        evaluation_data=lambda: ({"image": raw(split.x_test)}, np.array(split.y_test)),
    )


def retrained() -> tuple[nn.Module, TorchInputSpec]:
    """The same CNN trained from another seed: a new version that should agree with the served
    one on nearly every image (a rollout's good candidate)."""
    return factory(seed=1)


def mislabelled() -> tuple[nn.Module, TorchInputSpec]:
    """A deliberately broken candidate for rollout drills: trained and evaluated with every label
    shifted by one (a label-mapping bug upstream). Its own held-out accuracy looks as good as the
    real model's, so the export's gates pass it; served beside the real model it disagrees on
    nearly every image, which is what a canary's agreement SLO is for."""
    return factory(seed=0, label_shift=1)
