"""A deliberately slow candidate for the canary tests: the real digits CNN plus a heavy branch
whose output is multiplied by zero, so it answers exactly like the CNN but takes several
milliseconds more per image (an image upsampled to 288x288 through three 32-channel
convolutions, about 1.5 G multiply-adds: 9.5-10.7 ms an image on AMD Zen 5 as INT8 on one ORT
thread (batches of 1 and 8, measured), where 96x96 took
0.9 ms, too little to show once classify_digit became one step)."""

from __future__ import annotations

import torch
from torch import nn

from tritonstack.converters.sources.digits import factory as digits_factory


class SlowDigits(nn.Module):
    def __init__(self, base: nn.Module):
        super().__init__()
        self.base = base
        self.heavy = nn.Sequential(
            nn.Upsample(scale_factor=36), nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, probabilities, label = self.base(image)  # the served DigitsClassifier's outputs
        return logits + 0.0 * self.heavy(image.unsqueeze(1) / 16), probabilities, label


def factory():
    base, spec = digits_factory()
    return SlowDigits(base).eval(), spec
