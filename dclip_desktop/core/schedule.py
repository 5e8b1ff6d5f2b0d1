"""Noise schedule and DDIM timestep grids (METHOD.md, "Notation" and "Timestep grid")."""

from __future__ import annotations

import torch

# Pure Python, so the GUI can check settings without torch; imported here for the grid and for callers.
from .config import T, validate_steps, validate_t0


def linear_betas(beta_start: float = 1e-4, beta_end: float = 0.02, num_steps: int = T) -> torch.Tensor:
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)


class Schedule:
    """ᾱ_t for 0-based t, kept in float64; ᾱ_{-1} = 1 so the last DDIM step returns f at t = 0."""

    def __init__(self, betas: torch.Tensor | None = None) -> None:
        betas = linear_betas() if betas is None else betas.to(torch.float64)
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self.num_steps = len(betas)

    def abar(self, t: int) -> float:
        if t < 0:
            return 1.0
        if t >= self.num_steps:
            raise ValueError(f"timestep {t} outside 0..{self.num_steps - 1}")
        return float(self.alphas_cumprod[t])


DEFAULT_SCHEDULE = Schedule()


def timestep_grid(t0: int, n: int) -> list[int]:
    """n timesteps from 0 to t0 inclusive: [int(k·t0/(n−1)) for k in 0..n−1].

    Odd t0 such as 301 keep n from dividing t0, which the paper found gives better quality.
    """
    validate_t0(t0)
    validate_steps(n)
    return [int(k * t0 / (n - 1)) for k in range(n)]
