"""Deterministic DDIM inversion (eq. 12), DDIM generation with η (eq. 13) and DDPM forward noising.

All update arithmetic runs in float32 with float64 schedule constants, whatever precision the UNet
runs in: bf16 errors in ᾱ compound over 40+ steps and break reconstruction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Optional, Union

import torch

from ..errors import BadInput
from .cancel import CancelToken, Progress, check, report
from .schedule import DEFAULT_SCHEDULE, Schedule, timestep_grid, validate_t0

# A denoiser maps (x_t, t) to the predicted noise ε, as float32 of x's shape.
Denoiser = Callable[[torch.Tensor, int], torch.Tensor]


def predict_x0(x: torch.Tensor, eps: torch.Tensor, abar_t: float) -> torch.Tensor:
    """f_θ(x_t, t) = (x_t − √(1−ᾱ_t)·ε) / √ᾱ_t, unclipped (clipping breaks exact inversion)."""
    return (x - math.sqrt(1.0 - abar_t) * eps) / math.sqrt(abar_t)


def ddim_step(
    x: torch.Tensor,
    eps: torch.Tensor,
    abar_t: float,
    abar_next: float,
    eta: float = 0.0,
    noise: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM move from ᾱ_t to ᾱ_next (up for inversion, down for generation). Returns (x_next, f)."""
    f = predict_x0(x, eps, abar_t)
    if eta == 0.0:
        return math.sqrt(abar_next) * f + math.sqrt(1.0 - abar_next) * eps, f
    c1 = eta * math.sqrt((1.0 - abar_t / abar_next) * (1.0 - abar_next) / (1.0 - abar_t))
    c2 = math.sqrt(max(1.0 - abar_next - c1 * c1, 0.0))
    if noise is None:
        noise = torch.randn_like(x)
    return math.sqrt(abar_next) * f + c2 * eps + c1 * noise, f


def inversion_pairs(t0: int, steps: int) -> list[tuple[int, int]]:
    """(t, t_next) pairs going up the grid: steps−1 moves from 0 to t0."""
    seq = timestep_grid(t0, steps)
    return list(zip(seq[:-1], seq[1:]))


def generation_pairs(t0: int, steps: int) -> list[tuple[int, int]]:
    """(t, t_next) pairs going down the grid: steps moves from t0 to −1 (ᾱ_{−1} = 1)."""
    seq = timestep_grid(t0, steps)
    return list(zip(reversed(seq), [*reversed(seq[:-1]), -1]))


def ddim_invert(
    denoiser: Denoiser,
    x0: torch.Tensor,
    t0: int,
    steps: int,
    *,
    eta: float = 0.0,
    schedule: Schedule = DEFAULT_SCHEDULE,
    progress: Optional[Progress] = None,
    cancel: Optional[CancelToken] = None,
) -> torch.Tensor:
    """Deterministic DDIM forward process x0 → x_t0 with the original model (eq. 12)."""
    if eta != 0.0:
        raise BadInput(f"DDIM inversion must be deterministic: η has to be 0 (got η = {eta:g})")
    pairs = inversion_pairs(t0, steps)
    x = x0.float()
    with torch.no_grad():
        for i, (t, t_next) in enumerate(pairs):
            check(cancel)
            eps = denoiser(x, t)
            x, f = ddim_step(x, eps, schedule.abar(t), schedule.abar(t_next))
            report(progress, i + 1, len(pairs), f)
    return x


def ddim_generate(
    denoiser: Denoiser,
    xt: torch.Tensor,
    t0: int,
    steps: int,
    *,
    eta: float = 0.0,
    generator: Union[None, torch.Generator, Sequence[torch.Generator]] = None,
    schedule: Schedule = DEFAULT_SCHEDULE,
    progress: Optional[Progress] = None,
    cancel: Optional[CancelToken] = None,
) -> torch.Tensor:
    """DDIM reverse process x_t0 → x̂0 (eq. 13); η > 0 adds fresh noise drawn from `generator`, or
    from one generator per image (a sequence), so an image's noise does not depend on its batch."""
    if eta < 0:
        raise BadInput(f"η must be ≥ 0, got {eta}")
    pairs = generation_pairs(t0, steps)
    x = xt.float()
    with torch.no_grad():
        for i, (t, t_next) in enumerate(pairs):
            check(cancel)
            eps = denoiser(x, t)
            noise = None
            if eta > 0 and t_next >= 0:
                if isinstance(generator, Sequence):
                    noise = torch.stack([torch.randn(x.shape[1:], generator=g) for g in generator]).to(x.device)
                else:
                    noise = torch.randn(x.shape, generator=generator, device="cpu").to(x.device)
            x, f = ddim_step(x, eps, schedule.abar(t), schedule.abar(t_next), eta if t_next >= 0 else 0.0, noise)
            report(progress, i + 1, len(pairs), f)
    return x


def ddpm_noise(
    x0: torch.Tensor,
    t0: int,
    generator: Optional[torch.Generator] = None,
    schedule: Schedule = DEFAULT_SCHEDULE,
) -> torch.Tensor:
    """q(x_t0 | x0) = √ᾱ_t0·x0 + √(1−ᾱ_t0)·z — uses ᾱ_t0 itself (the reference used ᾱ_{t0−1})."""
    validate_t0(t0, schedule.num_steps)
    abar = schedule.abar(t0)
    z = torch.randn(x0.shape, generator=generator, device="cpu").to(x0.device)
    return math.sqrt(abar) * x0.float() + math.sqrt(1.0 - abar) * z
