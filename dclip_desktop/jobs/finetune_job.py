"""Fine-tune one attribute and save it to the library (GUI "Fine-tune", `dclip finetune`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from ..core.cancel import CancelToken
from ..core.ddim import ddim_generate
from ..core.finetune import EditLoss, FinetuneConfig, finetune, sample_from_base
from ..core.mixing import ModelDenoiser
from .errors import JobError
from .images import load_images, tensor_to_pil
from .progress import JobProgress, phase
from .session import Session


@dataclass
class FinetuneRequest:
    base_id: str
    source: str
    target: str
    name: str
    config: FinetuneConfig = field(default_factory=FinetuneConfig)
    images: Optional[list[Path]] = None  # training photos; None → sample from the base
    tensors: Optional[torch.Tensor] = None  # or images already in memory [N,3,S,S] in [-1, 1]
    sample_count: int = 24
    fit: str = "center-crop"
    precompute_batch: int = 32

    def validate(self) -> None:
        if not self.source.strip() or not self.target.strip():
            raise JobError("source and target text must not be empty")
        if self.source.strip() == self.target.strip():
            raise JobError("source and target text are the same: there is no direction to learn")
        if not self.name.strip():
            raise JobError("give the attribute a name")
        if self.images is not None and not self.images:
            raise JobError("the training folder holds no images")
        if self.tensors is not None and len(self.tensors) == 0:
            raise JobError("no training images given")
        if self.images is None and self.tensors is None and self.sample_count < 1:
            raise JobError("sample at least one training image from the base")
        self.config.validate()


def training_images(session: Session, req: FinetuneRequest, progress, cancel) -> torch.Tensor:
    """[N+1,3,S,S]: the training images plus one held out for the per-epoch preview."""
    spec = session.spec(req.base_id)
    size = int(spec.resolution)
    if req.images is not None or req.tensors is not None:
        x = req.tensors if req.tensors is not None else load_images(req.images, size, req.fit)
        x = x.to(session.device)
        # With one photo, train on it and preview it too: nothing else to hold out.
        return x if len(x) > 1 else torch.cat([x, x])
    return sample_from_base(
        session.base(req.base_id), req.sample_count + 1, (3, size, size), seed=req.config.seed,
        device=session.device, autocast_dtype=session.autocast_dtype, progress=phase(progress, "sampling"),
        cancel=cancel,
    )


def run_finetune(
    session: Session,
    req: FinetuneRequest,
    *,
    progress: Optional[JobProgress] = None,
    on_step: Optional[Callable[[int, int, dict], None]] = None,
    on_epoch: Optional[Callable[[int, torch.Tensor], None]] = None,
    cancel: Optional[CancelToken] = None,
):
    """Returns the saved library entry. A cancel raises Cancelled before anything is written."""
    req.validate()
    cfg = req.config
    if session.library.find(req.name) is not None:
        raise JobError(f"an attribute named '{req.name}' already exists; pick another name")
    from ..core.clip_loss import DirectionalCLIPLoss

    base = session.base(req.base_id)
    images = training_images(session, req, progress, cancel)
    x0, held_out = images[:-1], images[-1:]
    latents = session.invert(
        req.base_id, images, cfg.t0, cfg.s_for, batch_size=req.precompute_batch,
        progress=phase(progress, "inverting"), cancel=cancel,
    )
    clip_model, tokenizer = session.clip(session.clip_name(req.base_id))
    clip_loss = DirectionalCLIPLoss(clip_model, tokenizer, req.source, req.target, loss_form=cfg.clip_loss_form)
    face_loss = None
    if cfg.lambda_face > 0:
        from ..core.face_loss import FaceIDLoss

        embedder, detector = session.face()
        face_loss = FaceIDLoss(embedder, detector, device=session.device)
    previews: list[torch.Tensor] = []

    def epoch_hook(epoch: int, preview: torch.Tensor) -> None:
        previews.append(preview)
        if on_epoch is not None:
            on_epoch(epoch, preview)

    result = finetune(
        base, x0, latents[:-1], EditLoss(clip_loss, cfg, face_loss), cfg,
        preview_latent=latents[-1:], autocast_dtype=session.autocast_dtype, progress=phase(progress, "training"),
        on_step=on_step, on_epoch=epoch_hook, cancel=cancel,
    )
    after = previews[-1] if previews else ddim_generate(
        ModelDenoiser(result.model, session.autocast_dtype), latents[-1:], cfg.t0, cfg.s_gen
    )
    meta = {
        "base_id": req.base_id,
        "base_sha256": session.base_sha(req.base_id),
        "source": req.source,
        "target": req.target,
        "t0": cfg.t0,
        "s_for": cfg.s_for,
        "s_gen": cfg.s_gen,
        "lambdas": {"clip": cfg.lambda_clip, "l1": cfg.lambda_l1, "face": cfg.lambda_face},
        "clip_loss_form": cfg.clip_loss_form,
        "lr": cfg.effective_lr(),
        "lr_schedule": cfg.lr_schedule,
        "epochs": cfg.epochs,
        "mode": cfg.mode,
        "lora_rank": cfg.lora_rank,
        "seed": cfg.seed,
        "train_images": len(x0),
        "train_source": "sampled" if req.images is None and req.tensors is None else "photos",
        "final_loss": result.history[-1]["total"] if result.history else None,
    }
    thumbs = {"before": tensor_to_pil(held_out[0]), "after": tensor_to_pil(after[0])}
    weights = {k: v.detach().cpu() for k, v in result.weights.items()}
    entry = session.library.save_attribute(req.name, weights, result.kind, meta, thumbs)
    if progress is not None:
        progress("saved", 1, 1, after)
    return entry
