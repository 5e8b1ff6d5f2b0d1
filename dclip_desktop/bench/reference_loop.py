"""The faithful reference loop: the work of the official DiffusionCLIP code, done the way it does it.

Written from the description in issue 7, not from that code. Everything here is deliberately plain:

- float32, batch 1, no autocast, no channels_last;
- the source image's CLIP embedding is re-encoded at every loss evaluation;
- CLIP is not frozen: its parameters require grad, so every backward also computes (and then
  discards) CLIP weight gradients;
- full-weight Adam over every UNet parameter;
- the full chain keeps all S_gen UNet activations alive (no gradient checkpointing);
- precompute runs a reconstruction pass (the latent decoded back with the original model) after
  each inversion;
- the loss is read back to the host (`.item()`) after every optimiser step.

The text direction ΔT is computed once per text pair, as the reference does; the bench passes it in.
The DDIM arithmetic comes from the engine so both loops walk exactly the same timestep grid.
"""

from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F
from torch import nn

from ..core.clip_loss import clip_preprocess
from ..core.ddim import ddim_step, generation_pairs, inversion_pairs
from ..core.schedule import DEFAULT_SCHEDULE as S


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _eps(model: nn.Module, x: torch.Tensor, t: int) -> torch.Tensor:
    out = model(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long))
    out = getattr(out, "sample", out)
    return out[:, : x.shape[1]]


@torch.no_grad()
def ref_invert(model: nn.Module, x0: torch.Tensor, t0: int, s_for: int) -> torch.Tensor:
    """Deterministic DDIM inversion of ONE image (batch 1, fp32)."""
    x = x0
    for t, tn in inversion_pairs(t0, s_for):
        x, _ = ddim_step(x, _eps(model, x, t), S.abar(t), S.abar(tn))
    return x


@torch.no_grad()
def ref_generate(model: nn.Module, xt: torch.Tensor, t0: int, s_gen: int) -> torch.Tensor:
    x = xt
    for t, tn in generation_pairs(t0, s_gen):
        x, _ = ddim_step(x, _eps(model, x, t), S.abar(t), S.abar(tn))
    return x


def ref_precompute(model: nn.Module, images: torch.Tensor, t0: int, s_for: int) -> tuple[torch.Tensor, dict]:
    """Invert each image alone, then decode its latent back (the reference's reconstruction pass).

    Returns the latents and the seconds spent in each phase.
    """
    dev = images.device
    latents, t_inv, t_rec = [], 0.0, 0.0
    for i in range(len(images)):
        _sync(dev)
        a = time.perf_counter()
        lat = ref_invert(model, images[i : i + 1], t0, s_for)
        _sync(dev)
        b = time.perf_counter()
        ref_generate(model, lat, t0, s_for)  # reconstruction, saved to disk by the reference
        _sync(dev)
        t_rec += time.perf_counter() - b
        t_inv += b - a
        latents.append(lat)
    return torch.cat(latents), {"inversion_s": t_inv, "reconstruction_s": t_rec}


def ref_edit(original: nn.Module, tuned: nn.Module, images: torch.Tensor, t0: int, s_for: int, s_gen: int):
    """Invert with the original model, generate with the fine-tuned one, one image at a time."""
    out = []
    for i in range(len(images)):
        lat = ref_invert(original, images[i : i + 1], t0, s_for)
        out.append(ref_generate(tuned, lat, t0, s_gen))
    return torch.cat(out)


class ReferenceDirectionalLoss:
    """−log((1+cos(ΔI, ΔT))/2) with the source embedding recomputed on every call, CLIP trainable."""

    def __init__(self, clip_model: nn.Module, delta_t: torch.Tensor) -> None:
        self.clip = clip_model
        self.clip.requires_grad_(True)  # not frozen, as in the reference
        self.delta_t = delta_t
        size = getattr(clip_model.visual, "image_size", 224)
        self.size = size if isinstance(size, int) else tuple(size)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.clip.encode_image(clip_preprocess(x, self.size)), dim=-1)

    def __call__(self, x_hat: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        src = self._embed(x0)  # re-encoded every step
        d_i = F.normalize(self._embed(x_hat) - src, dim=-1)
        cos = d_i @ self.delta_t.to(d_i)
        return -torch.log(((1 + cos) / 2).clamp_min(1e-8)).mean()


def ref_finetune_epoch(
    base: nn.Module,
    clip_model: nn.Module,
    delta_t: torch.Tensor,
    images: torch.Tensor,
    latents: torch.Tensor,
    *,
    t0: int,
    s_gen: int,
    mode: str,
    lr: float = 4e-6,
    lambda_clip: float = 3.0,
    lambda_l1: float = 0.3,
) -> list[float]:
    """One epoch of the reference fine-tune: batch 1, full-weight Adam, unfrozen CLIP.

    mode "efficient": an optimiser step after every DDIM step, on that step's predicted x0;
    mode "full_chain": autograd through all S_gen steps with every activation kept, one step per image.
    Returns the loss of every optimiser step (read back to the host each time, as the reference logs it).
    """
    model = copy.deepcopy(base)
    model.train(False)
    model.requires_grad_(True)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    clip_loss = ReferenceDirectionalLoss(clip_model, delta_t)
    pairs = generation_pairs(t0, s_gen)
    losses: list[float] = []

    def step(x_hat: torch.Tensor, x0: torch.Tensor) -> None:
        loss = lambda_clip * clip_loss(x_hat, x0) + lambda_l1 * (x_hat - x0).abs().mean()
        opt.zero_grad()
        clip_model.zero_grad(set_to_none=True)  # its gradients were computed for nothing
        loss.backward()
        opt.step()
        losses.append(loss.item())

    for i in range(len(images)):
        x0 = images[i : i + 1]
        x = latents[i : i + 1]
        if mode == "efficient":
            for t, tn in pairs:
                x_next, f = ddim_step(x, _eps(model, x, t), S.abar(t), S.abar(tn))
                step(f, x0)
                x = x_next.detach()
        elif mode == "full_chain":
            for t, tn in pairs:
                x, _ = ddim_step(x, _eps(model, x, t), S.abar(t), S.abar(tn))
            step(x, x0)
        else:
            raise ValueError(f"unknown mode {mode!r}")
    clip_model.requires_grad_(False)
    clip_model.zero_grad(set_to_none=True)
    return losses
