"""DiffusionCLIP fine-tuning (section 3.1): Algorithm 1 (full chain) and Algorithm 2 (GPU-efficient).

The UNet being tuned is a copy of the base; the base itself stays untouched because inversion and
the γ blend need the original model.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .cancel import Cancelled, CancelToken, Progress, check, report
from .config import FinetuneConfig  # torch-free, so the GUI can build one cheaply; exported here too
from .ddim import Denoiser, ddim_generate, ddim_invert, ddim_step, generation_pairs
from .lora import full_delta, inject_lora, lora_factors, lora_parameters, remove_lora
from .mixing import ModelDenoiser
from .schedule import DEFAULT_SCHEDULE, Schedule

SAMPLE_STEPS = 40  # DDIM steps per training image sampled from the base


def lr_factor(schedule: str, epoch: int, iteration: int) -> float:
    """Multiplier on the base lr. paper_ramp: +20 % every 50 iterations (the paper's "increased
    linearly by 1.2 per 50 iterations"); ref_x1.3: ×1.3 per epoch as the reference code does."""
    if schedule == "paper_ramp":
        return 1.0 + 0.2 * (iteration // 50)
    if schedule == "ref_x1.3":
        return 1.3**epoch
    return 1.0


class EditLoss:
    """L = λ_clip·L_dir(x̂0, y_tar; x0, y_ref) + λ_L1·|x0 − x̂0| + λ_face·(1 − cos(F(x0), F(x̂0)))."""

    def __init__(self, clip_loss: Optional[nn.Module], cfg: FinetuneConfig, face_loss: Optional[nn.Module] = None):
        self.clip_loss = clip_loss
        self.face_loss = face_loss if cfg.lambda_face > 0 else None
        self.cfg = cfg

    def set_sources(self, x0: torch.Tensor) -> None:
        for loss in (self.clip_loss, self.face_loss):
            if loss is not None:
                loss.set_sources(x0)

    def __call__(self, x_hat: torch.Tensor, x0: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, dict]:
        parts: dict[str, torch.Tensor] = {}
        total = x_hat.new_zeros(())
        if self.clip_loss is not None and self.cfg.lambda_clip > 0:
            parts["clip"] = self.clip_loss(x_hat, index)
            total = total + self.cfg.lambda_clip * parts["clip"]
        if self.cfg.lambda_l1 > 0:
            parts["l1"] = F.l1_loss(x_hat, x0)
            total = total + self.cfg.lambda_l1 * parts["l1"]
        if self.face_loss is not None:
            parts["face"] = self.face_loss(x_hat, index)
            total = total + self.cfg.lambda_face * parts["face"]
        parts["total"] = total
        return total, parts


@dataclass
class FinetuneResult:
    model: nn.Module  # the tuned UNet, adapters merged
    weights: dict[str, torch.Tensor]  # LoRA factors or the dense full-weight delta
    kind: str  # "lora" or "full_delta"
    history: list[dict] = field(default_factory=list)  # one row per optimiser step


# on_step(step, total, losses) and on_epoch(epoch, preview) let the GUI plot and preview.
StepHook = Callable[[int, int, dict], None]
EpochHook = Callable[[int, torch.Tensor], None]


def precompute_latents(
    base: nn.Module | Denoiser,
    x0: torch.Tensor,
    t0: int,
    s_for: int,
    *,
    batch_size: int = 32,
    autocast_dtype: Optional[torch.dtype] = None,
    progress: Optional[Progress] = None,
    cancel: Optional[CancelToken] = None,
    schedule: Schedule = DEFAULT_SCHEDULE,
) -> torch.Tensor:
    """Invert the training images with the original model, in batches (Algorithm 1/2, line 1).

    Pass a Denoiser (a ModelDenoiser counts its UNet calls) instead of the model to invert with it."""
    den = ModelDenoiser(base, autocast_dtype) if isinstance(base, nn.Module) else base
    chunks = []
    n_chunks = math.ceil(len(x0) / batch_size)
    for c in range(n_chunks):
        part = x0[c * batch_size : (c + 1) * batch_size]

        def chunk_progress(step, total, preview, c=c):
            report(progress, c * total + step, n_chunks * total, preview)

        chunks.append(ddim_invert(den, part, t0, s_for, progress=chunk_progress, cancel=cancel, schedule=schedule))
    return torch.cat(chunks)


def sample_noise(n: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """x_T of n sampled training images, drawn one image at a time from one CPU generator, so image i of
    a seed is the same however many are asked for (the sample cache relies on it). One draw of n images
    equals this wherever an image holds a multiple of 16 values, as every base's does; otherwise torch
    fills the tail of a single draw differently."""
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randn(shape, generator=g) for _ in range(n)]) if n else torch.empty((0, *shape))


def sample_from_noise(
    base: nn.Module | Denoiser,
    noise: torch.Tensor,
    *,
    steps: int = SAMPLE_STEPS,
    batch_size: Optional[int] = None,
    autocast_dtype: Optional[torch.dtype] = None,
    progress: Optional[Progress] = None,
    cancel: Optional[CancelToken] = None,
    on_batch: Optional[Callable[[int, torch.Tensor], None]] = None,
) -> torch.Tensor:
    """DDIM samples x̂0 = G(x_T) of the base from pure noise at t = T−1 (eq. 13, η = 0), clamped to
    [-1, 1], in batches of `batch_size` (all at once by default). `on_batch(start, images)` receives each
    finished batch, so a cancel keeps the batches already done. Pass a Denoiser (a ModelDenoiser counts
    its UNet calls) instead of the model to sample with it."""
    den = ModelDenoiser(base, autocast_dtype) if isinstance(base, nn.Module) else base
    size = batch_size or max(1, len(noise))
    n_chunks = math.ceil(len(noise) / size)
    chunks = []
    for c in range(n_chunks):
        def chunk_progress(step, total, preview, c=c):
            report(progress, c * total + step, n_chunks * total, preview)

        x = ddim_generate(den, noise[c * size : (c + 1) * size], DEFAULT_SCHEDULE.num_steps - 1, steps,
                          progress=chunk_progress, cancel=cancel).clamp(-1, 1)
        if on_batch is not None:
            on_batch(c * size, x)
        chunks.append(x)
    return torch.cat(chunks) if chunks else noise.new_empty(noise.shape)


def sample_from_base(
    base: nn.Module,
    n: int,
    shape: tuple[int, int, int],
    *,
    steps: int = SAMPLE_STEPS,
    seed: int = 0,
    device: torch.device | str = "cpu",
    autocast_dtype: Optional[torch.dtype] = None,
    progress: Optional[Progress] = None,
    cancel: Optional[CancelToken] = None,
) -> torch.Tensor:
    """Training images when the user gives none: DDIM samples of the base model from pure noise.
    (`Session.sample` does the same through the sample cache.)"""
    return sample_from_noise(base, sample_noise(n, shape, seed).to(device), steps=steps,
                             autocast_dtype=autocast_dtype, progress=progress, cancel=cancel)


def _eps(model: nn.Module, x: torch.Tensor, t: int, autocast_dtype: Optional[torch.dtype]) -> torch.Tensor:
    return ModelDenoiser(model, autocast_dtype)(x, t)


def enable_block_checkpointing(model: nn.Module) -> None:
    """Turn on per-block gradient checkpointing (diffusers models and ADMUNet both provide it, also
    when wrapped, e.g. by ClassConditioned)."""
    for m in model.modules():
        if hasattr(m, "enable_gradient_checkpointing"):
            m.enable_gradient_checkpointing()


def _trainable(base: nn.Module, cfg: FinetuneConfig, device_type: str) -> tuple[nn.Module, list[nn.Parameter]]:
    """A copy of `base` with what the config trains: LoRA factors, or every weight."""
    model = copy.deepcopy(base)
    model.train(False)  # no dropout/batch-norm noise: the chain must stay deterministic
    if cfg.uses_block_checkpointing(device_type):
        enable_block_checkpointing(model)
    if cfg.lora_rank is not None:
        inject_lora(model, cfg.lora_rank, cfg.lora_alpha)
        return model, lora_parameters(model)
    model.requires_grad_(True)
    return model, [p for p in model.parameters() if p.requires_grad]


class _Optimiser:
    """Adam with the config's lr schedule, and the loss history it reports.

    On CUDA, loss values stay on the device until the end of each batch and come back in one transfer:
    a float() per optimiser step would stall the GPU queue S_gen times per batch. A CPU has no queue to
    stall, so there every row is reported as soon as its step is done."""

    def __init__(self, params, cfg: FinetuneConfig, total: int, on_step: Optional[StepHook], defer: bool) -> None:
        self.cfg, self.total, self.on_step, self.defer = cfg, total, on_step, defer
        self.base_lr = cfg.effective_lr()
        self.opt = torch.optim.Adam(params, lr=self.base_lr)
        self.step, self.epoch = 0, 0
        self.history: list[dict] = []
        self._pending: list[tuple[dict, dict]] = []

    def __call__(self, loss_value: torch.Tensor, parts: dict) -> None:
        for g in self.opt.param_groups:
            g["lr"] = self.base_lr * lr_factor(self.cfg.lr_schedule, self.epoch, self.step)
        self.opt.zero_grad(set_to_none=True)
        loss_value.backward()
        self.opt.step()
        self.step += 1
        meta = dict(step=self.step, epoch=self.epoch, lr=self.opt.param_groups[0]["lr"])
        self._pending.append(({k: v.detach() for k, v in parts.items()}, meta))
        if not self.defer:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        keys = list(self._pending[0][0])
        values = torch.stack([torch.stack([parts[k].float() for k in keys]) for parts, _ in self._pending]).tolist()
        for vals, (_, meta) in zip(values, self._pending):
            row = dict(zip(keys, vals), **meta)
            self.history.append(row)
            if self.on_step is not None:
                self.on_step(row["step"], self.total, row)
        self._pending.clear()


def _efficient_batch(model, x, target, idx, loss, optimise, pairs, autocast_dtype, schedule, progress, cancel):
    """Algorithm 2: one optimiser step per DDIM step, on that step's predicted x0."""
    for t, t_next in pairs:
        check(cancel)
        eps = _eps(model, x, t, autocast_dtype)
        x_next, f = ddim_step(x, eps, schedule.abar(t), schedule.abar(t_next))
        optimise(*loss(f, target, idx.to(f.device)))
        x = x_next.detach()
        report(progress, optimise.step, optimise.total, None)


def _full_chain_batch(model, x, target, idx, loss, optimise, pairs, autocast_dtype, schedule, progress, cancel,
                      checkpointing: bool):
    """Algorithm 1: the whole S_gen chain with autograd; checkpointing keeps one UNet pass of activations
    alive instead of S_gen."""
    check(cancel)
    for t, t_next in pairs:
        if checkpointing:
            eps = checkpoint(_eps, model, x, t, autocast_dtype, use_reentrant=False)
        else:
            eps = _eps(model, x, t, autocast_dtype)
        x, _ = ddim_step(x, eps, schedule.abar(t), schedule.abar(t_next))
        check(cancel)
    optimise(*loss(x, target, idx.to(x.device)))
    report(progress, optimise.step, optimise.total, None)


def finetune(
    base: nn.Module,
    x0: torch.Tensor,
    latents: torch.Tensor,
    loss: EditLoss,
    cfg: FinetuneConfig,
    *,
    preview_latent: Optional[torch.Tensor] = None,
    autocast_dtype: Optional[torch.dtype] = None,
    progress: Optional[Progress] = None,
    on_step: Optional[StepHook] = None,
    on_epoch: Optional[EpochHook] = None,
    cancel: Optional[CancelToken] = None,
    schedule: Schedule = DEFAULT_SCHEDULE,
) -> FinetuneResult:
    """Fine-tune a copy of `base` so that generating from `latents` moves x0 toward the target text.

    `preview_latent` (a held-out image inverted to t0) is decoded with the current model after every
    epoch and passed to `on_epoch`, so the user sees the edit forming. Raises Cancelled on cancel; the
    base is never modified.
    """
    cfg.validate()
    if len(x0) != len(latents):
        raise ValueError(f"{len(x0)} training images but {len(latents)} latents")
    torch.manual_seed(cfg.seed)
    model, params = _trainable(base, cfg, latents.device.type)
    loss.set_sources(x0)
    pairs = generation_pairs(cfg.t0, cfg.s_gen)
    n = len(x0)
    n_batches = math.ceil(n / cfg.batch_size)
    steps_per_batch = len(pairs) if cfg.mode == "efficient" else 1
    optimise = _Optimiser(params, cfg, cfg.epochs * n_batches * steps_per_batch, on_step,
                          defer=latents.device.type == "cuda")
    gen = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(cfg.epochs):
        optimise.epoch = epoch
        order = torch.randperm(n, generator=gen)
        for b in range(n_batches):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            args = (model, latents[idx].to(latents.device), x0[idx], idx, loss, optimise, pairs, autocast_dtype,
                    schedule, progress, cancel)
            if cfg.mode == "efficient":
                _efficient_batch(*args)
            else:
                _full_chain_batch(*args, checkpointing=cfg.checkpointing)
            optimise.flush()
        if on_epoch is not None and preview_latent is not None:
            with torch.no_grad():
                preview = ddim_generate(
                    ModelDenoiser(model, autocast_dtype), preview_latent, cfg.t0, cfg.s_gen, cancel=cancel
                )
            on_epoch(epoch, preview)
    return _result(model, base, cfg, optimise.history)


def _result(model: nn.Module, base: nn.Module, cfg: FinetuneConfig, history: list[dict]) -> FinetuneResult:
    """The tuned model (LoRA merged in) and its weights as the library stores them."""
    model.requires_grad_(False)
    if cfg.lora_rank is not None:
        weights, kind = lora_factors(model), "lora"
        remove_lora(model, merge=True)
    else:
        weights, kind = full_delta(model, base), "full_delta"
    model.eval()
    return FinetuneResult(model=model, weights=weights, kind=kind, history=history)


__all__ = [
    "Cancelled",
    "EditLoss",
    "FinetuneConfig",
    "FinetuneResult",
    "finetune",
    "precompute_latents",
    "sample_from_base",
    "sample_from_noise",
    "sample_noise",
]
