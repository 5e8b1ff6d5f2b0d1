"""Denoisers: one model, the continuous transition (γ blend) and multi-attribute noise combination.

Eq. 14: ε = Σ_i γ_i(t)·ε_θ̂i with Σ_i γ_i(t) = 1 at every t. The predicted x0 f is linear in ε
with the same weights, so mixing ε alone also mixes f exactly. The weights γ_i(t) (WeightSchedule) and
their rules live in config.py, pure Python, so the GUI checks a mix by the same rules without torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Optional

import torch
from torch import nn

from .config import WeightSchedule, validate_degree
from .ddim import Denoiser


class ModelDenoiser:
    """Wraps a UNet (diffusers UNet2DModel or the ADM module) as a Denoiser.

    Learned-sigma models output 2·C channels; ε is the first C. `autocast_dtype` runs the UNet in
    bf16/fp16 while returning float32 ε for the DDIM arithmetic.
    """

    def __init__(self, model: nn.Module, autocast_dtype: Optional[torch.dtype] = None) -> None:
        self.model = model
        self.autocast_dtype = autocast_dtype
        self.calls = 0  # UNet evaluations, counted so tests and the bench can see cache hits

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        self.calls += 1
        tt = torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.long)
        ctx = (
            torch.autocast(device_type=x.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with ctx:
            out = self.model(x, tt)
        out = getattr(out, "sample", out)
        return out[:, : x.shape[1]].float()


class MixtureDenoiser:
    """ε = Σ_i γ_i(t)·ε_i; denoisers whose weight is 0 at t are not evaluated."""

    def __init__(self, denoisers: Sequence[Denoiser], schedule: WeightSchedule) -> None:
        schedule.validate(len(denoisers))
        self.denoisers = list(denoisers)
        self.schedule = schedule

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        total = None
        for den, w in zip(self.denoisers, self.schedule.at(t)):
            if w == 0.0:
                continue
            eps = den(x, t)
            # A one-hot weight returns the model's ε untouched (bit-exact γ=0/γ=1 endpoints).
            term = eps if w == 1.0 else w * eps
            total = term if total is None else total + term
        assert total is not None  # rows sum to 1, so some weight is non-zero
        return total


def blend(original: Denoiser, finetuned: Denoiser, degree: float) -> Denoiser:
    """Continuous transition: ε = γ·ε_ft + (1−γ)·ε_orig."""
    validate_degree(degree)
    return MixtureDenoiser([original, finetuned], WeightSchedule.constant([1.0 - degree, degree]))


def attribute_mix(
    original: Denoiser,
    attributes: Sequence[Denoiser],
    schedule: WeightSchedule,
    degree: float = 1.0,
) -> Denoiser:
    """Noise combination of several attributes (eq. 14), then the γ blend toward the original model."""
    validate_degree(degree)
    schedule.validate(len(attributes))
    if degree == 1.0:
        return attributes[0] if schedule.rows == ((0, (1.0,)),) else MixtureDenoiser(attributes, schedule)
    rows = [(th, [1.0 - degree, *(degree * w for w in ws)]) for th, ws in schedule.rows]
    return MixtureDenoiser([original, *attributes], WeightSchedule.of(rows))
