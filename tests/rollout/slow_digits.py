"""A deliberately slow candidate for the canary tests: the real digits CNN plus a heavy branch
whose output is multiplied by zero, so it answers exactly like the CNN but takes several
milliseconds more per image (an image upsampled to 96x96 through three 32-channel convolutions,
about 170 M multiply-adds)."""

from __future__ import annotations

import torch
from torch import nn

from converters.sources.digits import factory as digits_factory


class SlowDigits(nn.Module):
    def __init__(self, base: nn.Module):
        super().__init__()
        self.base = base
        self.heavy = nn.Sequential(
            nn.Upsample(scale_factor=12), nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.base(image) + 0.0 * self.heavy(image)


def factory():
    base, spec = digits_factory()
    return SlowDigits(base).eval(), spec
