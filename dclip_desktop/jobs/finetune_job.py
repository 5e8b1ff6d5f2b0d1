"""Fine-tune one attribute and save it to the library (GUI "Fine-tune", `dclip finetune`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from ..core.cancel import CancelToken
from ..core.config import check_prompt
from ..core.ddim import ddim_generate
from ..core.finetune import SAMPLE_STEPS, EditLoss, FinetuneConfig, finetune
from ..core.mixing import ModelDenoiser
from ..core.schedule import validate_steps
from .edit_metrics import measure_texts
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
    # Sampled training images: draw this many times what is needed and keep the best CLIP matches of the
    # source text. Photos are kept as given unless filter_photos is set.
    oversample: int = 6
    # DDIM steps per sampled image: fewer are faster but blurrier. Samples are cached (Session.sample).
    sample_steps: int = SAMPLE_STEPS
    filter_photos: bool = False
    fit: str = "center-crop"
    precompute_batch: int = 32
    # Full fine-tunes: keep the dense fp16 delta instead of the smallest low-rank one within tolerance.
    dense: bool = False

    def validate(self) -> None:
        check_prompt(self.source, self.target, self.name)  # the GUI checks the same, before it submits
        if self.images is not None and not self.images:
            raise JobError("the training folder holds no images")
        if self.tensors is not None and len(self.tensors) == 0:
            raise JobError("no training images given")
        if self.images is None and self.tensors is None and self.sample_count < 1:
            raise JobError("sample at least one training image from the base")
        if self.oversample < 1:
            raise JobError("oversampling must be at least 1 (1 keeps every sample)")
        try:
            validate_steps(self.sample_steps, "sample steps")
        except ValueError as exc:
            raise JobError(f"{exc} (the default is {SAMPLE_STEPS}; fewer are faster but blurrier)") from None
        self.config.validate()


@dataclass
class TrainingImages:
    """What a fine-tune trains on: the kept images (the last one held out for the epoch previews) and
    how they were chosen, for the GUI, the CLI's report and the attribute's manifest."""

    images: torch.Tensor  # [N+1,3,S,S] in [-1, 1]
    source: str  # "sampled" or "photos"
    considered: int  # images sampled (or photos given)
    matched: int  # of those, the ones CLIP reads as the source text (= considered when not filtered)
    texts: Optional[list[str]] = None  # [source, target, *contrast] when filtered
    cached: int = 0  # of the sampled images, those the sample cache already held (no UNet call spent)

    def summary(self) -> str:
        kept = len(self.images)
        if self.texts is None:
            return f"training on {kept} {self.source}"
        return (f"kept {kept} of {self.considered} {self.source} images: {self.matched} look like "
                f"'{self.texts[0]}' to CLIP (against {', '.join(repr(t) for t in self.texts[1:])})")

    def cache_summary(self) -> Optional[str]:
        """One line when some sampled images came from the sample cache, else None."""
        if not self.cached:
            return None
        return f"training images: {self.cached} of {self.considered} from the sample cache"


def _select(session: Session, req: FinetuneRequest, x: torch.Tensor, needed: int, least: int, what: str,
            hint: str):
    """Keep the best `needed` CLIP matches of the source text among x; a JobError when fewer than
    `least` match.

    Only a vocabulary (the source's kind: colours, hair colours) makes "matches" a verdict. Without one
    the target is usually an edit of the source ("face" → "angry face"), every sample shows the source,
    and CLIP's preference between the two says nothing about it: the best-ranked images are kept."""
    from ..core.zero_shot import contrast_texts, rank_by_source, zero_shot_probs
    from ..zoo.registry import vocabulary_for

    spec = session.spec(req.base_id)
    vocab = vocabulary_for(spec, req.source, req.target)
    texts = contrast_texts(req.source, req.target, [vocab.values] if vocab else [])
    clip_model, tokenizer = session.clip(session.clip_name(req.base_id))
    sel = rank_by_source(zero_shot_probs(clip_model, tokenizer, x, texts), texts)
    if vocab is None:
        return x[sel.order[:needed]], sel, texts
    if sel.matched < least:
        raise JobError(
            f"only {sel.matched} of {len(x)} {what} look like '{req.source}' to CLIP (against "
            f"{', '.join(repr(t) for t in texts[1:])}); {hint}")
    return x[sel.best(needed)], sel, texts


def training_images(session: Session, req: FinetuneRequest, progress, cancel) -> TrainingImages:
    """The training images plus one held out for the per-epoch preview, chosen as TrainingImages says."""
    spec = session.spec(req.base_id)
    size = int(spec.resolution)
    if req.images is not None or req.tensors is not None:
        x = req.tensors if req.tensors is not None else load_images(req.images, size, req.fit)
        x = x.to(session.device)
        considered = matched = len(x)
        texts = None
        if req.filter_photos:
            x, sel, texts = _select(session, req, x, len(x), 1, "photos",
                                    "give photos that show the source, or turn the filter off")
            matched = sel.matched
        # With one photo, train on it and preview it too: nothing else to hold out.
        x = x if len(x) > 1 else torch.cat([x, x])
        return TrainingImages(x, "photos", considered, matched, texts)
    needed = req.sample_count + 1
    sampled, cached = session.sample(
        req.base_id, needed * req.oversample, (3, size, size), seed=req.config.seed, steps=req.sample_steps,
        batch_size=req.precompute_batch, progress=phase(progress, "sampling"), cancel=cancel,
    )
    if req.oversample == 1:
        return TrainingImages(sampled, "sampled", len(sampled), len(sampled), cached=cached)
    # A third of the wanted count still teaches the direction (gray → black backgrounds reached 100 %
    # from 13 of 25); fewer means the source text does not describe what the base draws (the demo base
    # draws a gray background about one time in ten).
    kept, sel, texts = _select(
        session, req, sampled, needed, max(2, needed // 3), "images sampled from the base",
        "raise the oversampling, or use a source text that describes what the base draws, or give photos")
    if len(kept) < 2:
        kept = torch.cat([kept, kept])
    return TrainingImages(kept, "sampled", len(sampled), sel.matched, texts, cached=cached)


def _manifest(session: Session, req: FinetuneRequest, chosen: TrainingImages, result, train_images: int) -> dict:
    """What the attribute's manifest records of how it was made."""
    cfg = req.config
    return {
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
        "train_images": train_images,
        "train_source": chosen.source,
        "train_considered": chosen.considered,
        "train_matched": chosen.matched,
        "sample_steps": req.sample_steps if chosen.source == "sampled" else None,
        "final_loss": result.history[-1]["total"] if result.history else None,
    }


def _full_storage(session: Session, req: FinetuneRequest, base, delta: dict, latent: torch.Tensor):
    """(weights, kind, storage record) of a full fine-tune: the smallest low-rank form whose held-out
    preview, generated from the same cached latent, stays within tolerance of the dense delta's."""
    from ..core.low_rank import renderer
    from ..library import weights as wf

    if req.dense:
        return delta, "full_delta", dict(wf.DENSE_REQUESTED)
    cfg = req.config

    def preview(model) -> torch.Tensor:
        return ddim_generate(ModelDenoiser(model, session.autocast_dtype), latent, cfg.t0, cfg.s_gen)

    return wf.compact_delta(delta, renderer(base, preview), "held-out preview vs the dense delta's")


def run_finetune(
    session: Session,
    req: FinetuneRequest,
    *,
    progress: Optional[JobProgress] = None,
    on_step: Optional[Callable[[int, int, dict], None]] = None,
    on_epoch: Optional[Callable[[int, torch.Tensor], None]] = None,
    on_images: Optional[Callable[[TrainingImages], None]] = None,
    cancel: Optional[CancelToken] = None,
    on_metrics: Optional[Callable[[int, object], None]] = None,
):
    """Returns the saved library entry. A cancel raises Cancelled before anything is written."""
    req.validate()
    cfg = req.config
    if session.library.find(req.name) is not None:
        raise JobError(f"an attribute named '{req.name}' already exists; pick another name")
    from ..core.clip_loss import DirectionalCLIPLoss

    session.prepare(req.base_id, clip=True, face=cfg.lambda_face > 0)  # all of them, before the first UNet call
    base = session.base(req.base_id)
    chosen = training_images(session, req, progress, cancel)
    if on_images is not None:
        on_images(chosen)
    images = chosen.images
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

    epoch_metrics: list[dict] = []

    def epoch_hook(epoch: int, preview: torch.Tensor) -> None:
        previews.append(preview)
        # the held-out image's S_dir, MAE and SSIM after each epoch: the library entry keeps the curve
        m = measure_texts(session, req.base_id, [(req.source, req.target, 1.0)], held_out, preview)
        epoch_metrics.append({"epoch": epoch + 1, **m.as_dict()})  # counted from 1, as the bars count
        if on_metrics is not None:
            on_metrics(epoch, m)
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
    meta = _manifest(session, req, chosen, result, len(x0))
    meta["metrics"] = epoch_metrics[-1] if epoch_metrics else None
    meta["epoch_metrics"] = epoch_metrics
    thumbs = {"before": tensor_to_pil(held_out[0]), "after": tensor_to_pil(after[0])}
    weights = {k: v.detach().cpu() for k, v in result.weights.items()}
    if progress is not None:
        progress("saving", 0, 1, after)
    kind = result.kind
    if kind == "full_delta":
        weights, kind, meta["storage"] = _full_storage(session, req, base, weights, latents[-1:])
    entry = session.library.save_attribute(req.name, weights, kind, meta, thumbs)
    if progress is not None:
        progress("saving", 1, 1, after)
    return entry
