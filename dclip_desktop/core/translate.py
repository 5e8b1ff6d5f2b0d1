"""Unseen-domain translation and stroke-conditioned generation (fig. 4b/c).

The source (a painting, a stroke drawing) is first projected into the pretrained domain by K rounds
of DDPM noising to t0 ≈ 500 and denoising with the original model; the result is then edited like
a photo: deterministic inversion with the original model, generation with the fine-tuned one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Optional

import torch

from ..errors import BadInput
from .cancel import CancelToken, Progress, report
from .ddim import Denoiser, ddim_generate, ddim_invert
from .schedule import DEFAULT_SCHEDULE, Schedule, validate_steps, validate_t0


def _seeded_noise(shape: torch.Size, seeds: Sequence[int], round_index: int, device) -> torch.Tensor:
    # One generator per candidate so a candidate's result does not depend on how many were asked for.
    per = [torch.randn(shape[1:], generator=torch.Generator().manual_seed(s * 1009 + round_index)) for s in seeds]
    return torch.stack(per).to(device)


def project_to_domain(
    original: Denoiser,
    x_src: torch.Tensor,
    seeds: Sequence[int],
    *,
    t0: int = 500,
    rounds: int = 8,
    steps: int = 10,
    schedule: Schedule = DEFAULT_SCHEDULE,
    progress: Optional[Progress] = None,
    cancel: Optional[CancelToken] = None,
) -> torch.Tensor:
    """K rounds of x ← DDIM_orig(√ᾱ_t0·x + √(1−ᾱ_t0)·z): one candidate per seed, all in one batch.

    `x_src` is one image [1,3,H,W] (or one per seed); returns [len(seeds),3,H,W].
    """
    validate_t0(t0, schedule.num_steps)
    validate_steps(steps)
    if rounds < 1:
        raise BadInput(f"rounds must be ≥ 1, got {rounds}")
    x = x_src.float().expand(len(seeds), *x_src.shape[1:]) if len(x_src) == 1 else x_src.float()
    abar = schedule.abar(t0)
    for k in range(rounds):
        z = _seeded_noise(x.shape, seeds, k, x.device)
        xt = math.sqrt(abar) * x + math.sqrt(1.0 - abar) * z

        def round_progress(step, total, preview, k=k):
            report(progress, k * total + step, rounds * total, preview)

        x = ddim_generate(original, xt, t0, steps, schedule=schedule, progress=round_progress, cancel=cancel)
    return x.clamp(-1, 1)


def translate(
    original: Denoiser,
    target: Denoiser,
    x_src: torch.Tensor,
    seeds: Sequence[int],
    *,
    edit_t0: int,
    s_for: int = 40,
    s_gen: int = 40,
    project_t0: int = 500,
    rounds: int = 8,
    project_steps: int = 10,
    eta: float = 0.0,
    schedule: Schedule = DEFAULT_SCHEDULE,
    progress: Optional[Progress] = None,
    cancel: Optional[CancelToken] = None,
    phase_progress: Optional[Callable[[str], Optional[Progress]]] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (projected, edited), each [len(seeds),3,H,W]: the in-domain image and its edit.

    `phase_progress(name)` gives each of "projecting", "inverting" and "generating" its own progress (a
    job weights them into one bar); otherwise `progress` sees thirds of one fraction. With η > 0 the
    edit's fresh noise of candidate i comes from its own seed, like its projection's."""
    names = ("projecting", "inverting", "generating")

    def phase(i: int) -> Optional[Progress]:
        if phase_progress is not None:
            return phase_progress(names[i])
        return lambda step, total, preview: report(progress, i * total + step, len(names) * total, preview)

    projected = project_to_domain(
        original, x_src, seeds, t0=project_t0, rounds=rounds, steps=project_steps,
        schedule=schedule, progress=phase(0), cancel=cancel,
    )
    latents = ddim_invert(original, projected, edit_t0, s_for, schedule=schedule, progress=phase(1), cancel=cancel)
    gens = [torch.Generator().manual_seed(s * 1009 + rounds) for s in seeds] if eta else None
    edited = ddim_generate(target, latents, edit_t0, s_gen, eta=eta, generator=gens, schedule=schedule,
                           progress=phase(2), cancel=cancel)
    return projected, edited.clamp(-1, 1)
