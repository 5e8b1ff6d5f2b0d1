"""DiffusionCLIP fine-tuning (section 3.1): Algorithm 1 (full chain) and Algorithm 2 (GPU-efficient).

The UNet being tuned is a copy of the base; the base itself stays untouched because inversion and
the γ blend need the original model.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .cancel import Cancelled, CancelToken, Progress, check, report
from .ddim import ddim_generate, ddim_invert, ddim_step, generation_pairs
from .lora import full_delta, inject_lora, lora_factors, lora_parameters, remove_lora
from .mixing import ModelDenoiser
from .schedule import DEFAULT_SCHEDULE, Schedule, validate_steps, validate_t0

MODES = ("efficient", "full_chain")
LR_SCHEDULES = ("constant", "paper_ramp", "ref_x1.3")
SAMPLE_STEPS = 40  # DDIM steps per training image sampled from the base


@dataclass
class FinetuneConfig:
    """Paper defaults; the per-attribute t0 comes from the preset."""

    t0: int = 400
    s_for: int = 40
    s_gen: int = 6
    lambda_clip: float = 3.0
    clip_loss_form: str = "neglog"  # the reference's −log((1+cos)/2); "dir" is 1 − cos
    lambda_l1: float = 0.3
    lambda_face: float = 0.0  # 0.3 for faces when the identity net is available
    lr: Optional[float] = None  # None: 4e-6 (paper) for full weights, 1e-3 for LoRA
    lr_schedule: str = "constant"
    epochs: int = 1
    mode: str = "efficient"
    checkpointing: bool = True  # full chain only: recompute each UNet pass in backward (memory ≈ one pass)
    # Efficient mode: recompute each UNet block in backward. None = on CUDA only: on an H100 at 256²,
    # batch 8 with it needs 7 GiB and runs faster per image than batch 4 without it (10 GiB); a CPU
    # has the RAM and would pay the recomputation.
    block_checkpointing: Optional[bool] = None
    lora_rank: Optional[int] = 8  # None trains all weights
    lora_alpha: Optional[float] = None
    batch_size: int = 8
    seed: int = 0

    def uses_block_checkpointing(self, device_type: str) -> bool:
        if self.mode != "efficient":
            return False  # full chain checkpoints whole UNet passes instead (`checkpointing`)
        return device_type == "cuda" if self.block_checkpointing is None else self.block_checkpointing

    def effective_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 4e-6 if self.lora_rank is None else 1e-3

    def validate(self) -> None:
        validate_t0(self.t0)
        validate_steps(self.s_for, "S_for")
        validate_steps(self.s_gen, "S_gen")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch size must be ≥ 1")
        if self.effective_lr() <= 0:
            raise ValueError(f"learning rate must be > 0, got {self.effective_lr()}")
        if self.lora_rank is not None and self.lora_rank < 1:
            raise ValueError(f"LoRA rank must be ≥ 1, got {self.lora_rank}")
        for name in ("lambda_clip", "lambda_l1", "lambda_face"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be ≥ 0")

    def to_dict(self) -> dict:
        return asdict(self)


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
    base: nn.Module | ModelDenoiser,
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

    Pass a ModelDenoiser instead of the model to count its UNet calls."""
    den = base if isinstance(base, ModelDenoiser) else ModelDenoiser(base, autocast_dtype)
    chunks = []
    n_chunks = math.ceil(len(x0) / batch_size)
    for c in range(n_chunks):
        part = x0[c * batch_size : (c + 1) * batch_size]

        def chunk_progress(step, total, preview, c=c):
            report(progress, c * total + step, n_chunks * total, preview)

        chunks.append(ddim_invert(den, part, t0, s_for, progress=chunk_progress, cancel=cancel, schedule=schedule))
    return torch.cat(chunks)


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
    """Training images when the user gives none: DDIM samples of the base model from pure noise."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((n, *shape), generator=g).to(device)
    return ddim_generate(
        ModelDenoiser(base, autocast_dtype), noise, DEFAULT_SCHEDULE.num_steps - 1, steps,
        progress=progress, cancel=cancel,
    ).clamp(-1, 1)


def _eps(model: nn.Module, x: torch.Tensor, t: int, autocast_dtype: Optional[torch.dtype]) -> torch.Tensor:
    return ModelDenoiser(model, autocast_dtype)(x, t)


def enable_block_checkpointing(model: nn.Module) -> None:
    """Turn on per-block gradient checkpointing (diffusers models and ADMUNet both provide it, also
    when wrapped, e.g. by ClassConditioned)."""
    for m in model.modules():
        if hasattr(m, "enable_gradient_checkpointing"):
            m.enable_gradient_checkpointing()


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
    model = copy.deepcopy(base)
    model.train(False)  # no dropout/batch-norm noise: the chain must stay deterministic
    if cfg.uses_block_checkpointing(latents.device.type):
        enable_block_checkpointing(model)
    if cfg.lora_rank is not None:
        inject_lora(model, cfg.lora_rank, cfg.lora_alpha)
        params = lora_parameters(model)
    else:
        model.requires_grad_(True)
        params = [p for p in model.parameters() if p.requires_grad]
    base_lr = cfg.effective_lr()
    opt = torch.optim.Adam(params, lr=base_lr)
    loss.set_sources(x0)

    pairs = generation_pairs(cfg.t0, cfg.s_gen)
    n = len(x0)
    n_batches = math.ceil(n / cfg.batch_size)
    steps_per_batch = len(pairs) if cfg.mode == "efficient" else 1
    total = cfg.epochs * n_batches * steps_per_batch
    history: list[dict] = []
    gen = torch.Generator().manual_seed(cfg.seed)
    step = 0

    # On CUDA, loss values stay on the device until the end of each batch and come back in one
    # transfer: a float() per optimiser step would stall the GPU queue S_gen times per batch. A CPU
    # has no queue to stall, so there every row is reported as soon as its step is done.
    pending: list[tuple[dict, dict]] = []
    defer = latents.device.type == "cuda"

    def optimise(loss_value: torch.Tensor, parts: dict) -> None:
        nonlocal step
        for g in opt.param_groups:
            g["lr"] = base_lr * lr_factor(cfg.lr_schedule, epoch, step)
        opt.zero_grad(set_to_none=True)
        loss_value.backward()
        opt.step()
        step += 1
        pending.append(({k: v.detach() for k, v in parts.items()}, dict(step=step, epoch=epoch,
                                                                          lr=opt.param_groups[0]["lr"])))
        if not defer:
            flush()

    def flush() -> None:
        if not pending:
            return
        keys = list(pending[0][0])
        values = torch.stack([torch.stack([parts[k].float() for k in keys]) for parts, _ in pending]).tolist()
        for vals, (_, meta) in zip(values, pending):
            row = dict(zip(keys, vals), **meta)
            history.append(row)
            if on_step is not None:
                on_step(row["step"], total, row)
        pending.clear()

    for epoch in range(cfg.epochs):
        order = torch.randperm(n, generator=gen)
        for b in range(n_batches):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            x = latents[idx].to(latents.device)
            target = x0[idx]
            if cfg.mode == "efficient":
                # Algorithm 2: one optimiser step per DDIM step, on that step's predicted x0.
                for t, t_next in pairs:
                    check(cancel)
                    eps = _eps(model, x, t, autocast_dtype)
                    x_next, f = ddim_step(x, eps, schedule.abar(t), schedule.abar(t_next))
                    optimise(*loss(f, target, idx.to(f.device)))
                    x = x_next.detach()
                    report(progress, step, total, None)
            else:
                # Algorithm 1: the whole S_gen chain with autograd; checkpointing keeps one UNet
                # pass of activations alive instead of S_gen.
                check(cancel)
                for t, t_next in pairs:
                    if cfg.checkpointing:
                        eps = checkpoint(_eps, model, x, t, autocast_dtype, use_reentrant=False)
                    else:
                        eps = _eps(model, x, t, autocast_dtype)
                    x, _ = ddim_step(x, eps, schedule.abar(t), schedule.abar(t_next))
                    check(cancel)
                optimise(*loss(x, target, idx.to(x.device)))
                report(progress, step, total, None)
            flush()
        if on_epoch is not None and preview_latent is not None:
            with torch.no_grad():
                preview = ddim_generate(
                    ModelDenoiser(model, autocast_dtype), preview_latent, cfg.t0, cfg.s_gen, cancel=cancel
                )
            on_epoch(epoch, preview)

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
]
