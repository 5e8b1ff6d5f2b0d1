"""Denoisers: one model, the continuous transition (γ blend) and multi-attribute noise combination.

Eq. 14: ε = Σ_i γ_i(t)·ε_θ̂i with Σ_i γ_i(t) = 1 at every t. The predicted x0 f is linear in ε
with the same weights, so mixing ε alone also mixes f exactly.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .ddim import Denoiser

WEIGHT_TOLERANCE = 1e-3


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


@dataclass(frozen=True)
class WeightSchedule:
    """Time-dependent mixing weights γ_i(t): rows of (threshold, weights), highest threshold first.

    Row k applies for t ≥ threshold_k (checked from the top); the last threshold must be 0 so every
    t has weights.
    """

    rows: tuple[tuple[int, tuple[float, ...]], ...]

    @classmethod
    def constant(cls, weights: Sequence[float]) -> WeightSchedule:
        return cls.of([(0, weights)])

    @classmethod
    def of(cls, rows: Sequence[tuple[int, Sequence[float]]]) -> WeightSchedule:
        return cls(tuple((int(th), tuple(float(w) for w in ws)) for th, ws in rows))

    @classmethod
    def by_t0(cls, t0s: Sequence[int], weights: Sequence[float]) -> WeightSchedule:
        """Coarse to fine: each step t goes to the attribute(s) with the smallest t0 ≥ t.

        An attribute only ever learned steps t ≤ its t0, and a large-t0 change (background, shape)
        is settled in the early, noisy steps while a small-t0 one (colour) acts late. Giving each
        band of steps wholly to one attribute applies each at full strength instead of the halved
        strength of constant weights. Attributes sharing a t0 share its band by their weights.
        """
        if len(t0s) != len(weights) or not t0s:
            raise ValueError(f"by_t0 needs one weight per attribute, got {len(t0s)} t0s and {len(weights)} weights")
        levels = sorted({int(t) for t in t0s}, reverse=True)
        rows = []
        for k, level in enumerate(levels):
            owners = [w if int(t) == level else 0.0 for t, w in zip(t0s, weights)]
            total = sum(owners)
            if not total > 0:
                raise ValueError(f"the attributes with t0 {level} have no positive weight")
            threshold = levels[k + 1] + 1 if k + 1 < len(levels) else 0
            rows.append((threshold, [w / total for w in owners]))
        return cls.of(rows)

    def validate(self, n_models: int) -> None:
        if not self.rows:
            raise ValueError("the mixing schedule has no rows")
        thresholds = [th for th, _ in self.rows]
        if any(a <= b for a, b in zip(thresholds, thresholds[1:])):
            raise ValueError(f"schedule thresholds must be strictly decreasing, got {thresholds}")
        if thresholds[-1] != 0:
            raise ValueError(f"the last schedule threshold must be 0 so every t is covered, got {thresholds[-1]}")
        for th, ws in self.rows:
            if len(ws) != n_models:
                raise ValueError(f"row t≥{th} has {len(ws)} weights for {n_models} models")
            if any(not math.isfinite(w) for w in ws):
                raise ValueError(f"row t≥{th} has a non-finite weight: {list(ws)}")
            if abs(sum(ws) - 1.0) > WEIGHT_TOLERANCE:
                raise ValueError(f"weights at t≥{th} must sum to 1, they sum to {sum(ws):.4g}: {list(ws)}")

    def at(self, t: int) -> tuple[float, ...]:
        for th, ws in self.rows:
            if t >= th:
                return ws
        raise ValueError(f"no schedule row covers t={t}")


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


def validate_degree(degree: float) -> None:
    if not (isinstance(degree, (int, float)) and math.isfinite(degree) and 0.0 <= degree <= 1.0):
        raise ValueError(f"the degree of change γ must be in [0, 1], got {degree!r}")


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
