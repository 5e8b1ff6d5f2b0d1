"""Denoisers: one model, the continuous transition (γ blend) and multi-attribute noise combination.

Eq. 14: ε = Σ_i γ_i(t)·ε_θ̂i with Σ_i γ_i(t) = 1 at every t. The predicted x0 f is linear in ε
with the same weights, so mixing ε alone also mixes f exactly.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .ddim import Denoiser
from .schedule import T

WEIGHT_TOLERANCE = 1e-3


def _shown(value) -> str:
    """`value` for an error message, cut short (an int too long for str() shows as its type)."""
    try:
        text = str(value)
    except ValueError:
        text = type(value).__name__
    return text if len(text) <= 40 else text[:39] + "…"


def _number(value, what: str) -> float:
    """`value` as a finite float; bools and text are refused (JSON `true` is not a weight)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{what} should be a number, not {type(value).__name__}")
    try:
        out = float(value)
    except OverflowError:  # an int beyond float range
        out = math.inf
    if not math.isfinite(out):
        raise ValueError(f"{what} is not a finite number")
    return out


def _rows(rows) -> tuple[tuple[int, tuple[float, ...]], ...]:
    """Schedule rows checked for shape: each (integer threshold in 0..T−1, sequence of finite weights).
    Rows come from the CLI, PNG metadata and the GUI, so a wrong shape is the user's ValueError, not a
    TypeError from deep inside."""
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
        raise ValueError(f"a mixing schedule is a list of [threshold, [weights…]] rows, not {type(rows).__name__}")
    out = []
    for k, row in enumerate(rows):
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence) or len(row) != 2:
            raise ValueError(f"schedule row {k + 1} is not [threshold, [weights…]]: {_shown(row)}")
        th, ws = row
        if isinstance(th, bool) or not isinstance(th, numbers.Integral) or not 0 <= th <= T - 1:
            raise ValueError(f"schedule row {k + 1}: the threshold must be an integer in 0..{T - 1}, got {_shown(th)}")
        if isinstance(ws, (str, bytes)) or not isinstance(ws, Sequence):
            raise ValueError(f"schedule row {k + 1}: the weights must be a list of numbers")
        out.append((int(th), tuple(_number(w, f"schedule row {k + 1}: a weight") for w in ws)))
    return tuple(out)


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
        """Rows normalised to (int, (float, …)); ValueError for a wrong shape (see `validate` for the rules)."""
        return cls(_rows(rows))

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
        _rows(self.rows)  # the dataclass can be built directly, bypassing `of`
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
    """γ in [0, 1], the range the CLI help, the GUI slider and the README give: the continuous
    transition interpolates between the original and the fine-tuned model. NaN, ±inf and bools are
    refused (a NaN γ would turn every pixel NaN)."""
    try:
        value = _number(degree, "γ")
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"the degree of change γ must be a number in [0, 1], got {_shown(degree)}")


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
