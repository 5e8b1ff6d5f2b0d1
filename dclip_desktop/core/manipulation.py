"""Image manipulation (fig. 4a): invert x0 to x_t0 with the original model, then generate from x_t0 with
the edited denoiser (a fine-tuned model, a γ blend or a mix of attributes; `mixing.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch

from .cancel import CancelToken, Progress, report
from .ddim import Denoiser, ddim_generate
from .finetune import precompute_latents


def generate(
    edited: Denoiser,
    latents: torch.Tensor,
    t0: int,
    s_gen: int,
    *,
    batch_size: int,
    eta: float = 0.0,
    seeds: Optional[Sequence[int]] = None,
    progress: Optional[Progress] = None,
    cancel: Optional[CancelToken] = None,
) -> torch.Tensor:
    """x̂0 in [-1, 1] from the inverted latents, `batch_size` at a time (one progress over all chunks).
    With η > 0, latent i's fresh noise comes from a generator seeded with seeds[i] (0, 1, … by
    default), so an output depends on its own seed only, never on the batch it ran in."""
    out, n_chunks = [], -(-len(latents) // batch_size)
    seeds = list(range(len(latents))) if seeds is None else list(seeds)
    if len(seeds) != len(latents):
        raise ValueError(f"{len(seeds)} seeds for {len(latents)} latents")
    for c in range(n_chunks):
        def chunk_progress(step, total, preview, c=c):
            report(progress, c * total + step, n_chunks * total, preview)

        part = latents[c * batch_size:(c + 1) * batch_size]
        gens = [torch.Generator().manual_seed(s) for s in seeds[c * batch_size:(c + 1) * batch_size]] if eta else None
        out.append(ddim_generate(edited, part, t0, s_gen, eta=eta, generator=gens, progress=chunk_progress,
                                 cancel=cancel))
    return torch.cat(out).clamp(-1, 1)


def manipulate(
    original: Denoiser,
    edited: Denoiser,
    x0: torch.Tensor,
    t0: int,
    s_for: int,
    s_gen: int,
    *,
    batch_size: int = 16,
    progress: Optional[Progress] = None,
    cancel: Optional[CancelToken] = None,
) -> torch.Tensor:
    """Invert with `original`, generate with `edited`. Jobs invert through the session's latent cache
    instead and call `generate`; this is the whole step for callers without one."""
    latents = precompute_latents(original, x0, t0, s_for, batch_size=batch_size, cancel=cancel)
    return generate(edited, latents, t0, s_gen, batch_size=batch_size, progress=progress, cancel=cancel)
