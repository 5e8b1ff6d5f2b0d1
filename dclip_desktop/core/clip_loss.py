"""The directional CLIP loss of DiffusionCLIP (section 3.1).

    ΔT = normalise(mean_templates[normalise(E_T(tpl(y_tar))) − normalise(E_T(tpl(y_ref)))])
    ΔI = normalise(normalise(E_I(x̂0)) − normalise(E_I(x0)))
    L_dir = 1 − cos(ΔI, ΔT)            (loss_form "dir")
    L     = −log((1 + cos(ΔI, ΔT)) / 2) (loss_form "neglog", the reference's monotone transform)

CLIP is frozen (eval mode, no parameter gradients) but gradients flow through it to the pixels.
ΔT is encoded once per (model, source, target, templates) and shared by every loss object;
E_I(x0) is encoded once per training image by `set_sources`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BadInput
from .config import CLIP_LOSS_FORMS

OPENAI_DATASET_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_DATASET_STD = (0.26862954, 0.26130258, 0.27577711)

# The 80 prompt templates CLIP used for ImageNet zero-shot classification.
IMAGENET_TEMPLATES: list[str] = [
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
]

Tokenizer = Callable[[list[str]], torch.Tensor]


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = (int(s) for s in size)
    return h, w


def clip_preprocess(
    x: torch.Tensor,
    image_size: int | Sequence[int],
    mean: Sequence[float] = OPENAI_DATASET_MEAN,
    std: Sequence[float] = OPENAI_DATASET_STD,
) -> torch.Tensor:
    """Differentiable CLIP input pipeline for images in [-1, 1], shape [N, 3, H, W].

    Mirrors open_clip's eval transform (Resize(shorter side, bicubic) → CenterCrop → Normalize) with
    torch ops: (x+1)/2, antialiased bicubic resize of the shorter side, center crop, normalise.
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected [N, 3, H, W] images, got {tuple(x.shape)}")
    out_h, out_w = _pair(image_size)
    x = (x + 1) / 2
    h, w = x.shape[-2:]
    target = max(out_h, out_w)  # the shorter side becomes this (torchvision Resize(int) semantics)
    if h <= w:
        new_h, new_w = target, int(target * w / h)
    else:
        new_h, new_w = int(target * h / w), target
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
    top = int(round((new_h - out_h) / 2.0))
    left = int(round((new_w - out_w) / 2.0))
    x = x[..., top : top + out_h, left : left + out_w]
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters())
    return p.device, p.dtype


def default_tokenizer(model: nn.Module) -> Tokenizer:
    """open_clip's BPE tokenizer (shared by OpenAI-style CLIPs) at the model's context length."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=int(getattr(model, "context_length", 77)))


class DirectionalCLIPLoss(nn.Module):
    """L_dir between (x0, y_ref) and (x̂0, y_tar), with cached text direction and source embeddings.

    Device/dtype: everything runs on the CLIP model's device and parameter dtype; inputs are cast to
    it and the loss comes back as a float32 scalar on x_hat's device.
    """

    # Number of encode_text calls made by every instance (one per new text pair); tests read it.
    text_encodes: int = 0
    # CLIP model -> {(source, target, templates): ΔT}. Weak keys: an unloaded model frees its entries.
    _direction_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __init__(
        self,
        clip_model: nn.Module,
        tokenizer: Tokenizer | None,
        source_text: str,
        target_text: str,
        templates: Sequence[str] = IMAGENET_TEMPLATES,
        loss_form: str = "dir",
        batch_size: int = 16,
    ):
        super().__init__()
        if loss_form not in CLIP_LOSS_FORMS:
            raise BadInput(f"loss_form must be one of {', '.join(CLIP_LOSS_FORMS)}, not {loss_form!r}")
        if not templates:
            raise ValueError("need at least one prompt template")
        clip_model.eval().requires_grad_(False)
        self.clip_model = clip_model
        self.tokenizer = tokenizer if tokenizer is not None else default_tokenizer(clip_model)
        self.source_text = source_text
        self.target_text = target_text
        self.templates = tuple(templates)
        self.loss_form = loss_form
        self.batch_size = batch_size
        self.image_size = _pair(getattr(clip_model.visual, "image_size", 224))
        self._sources: torch.Tensor | None = None
        self._delta_t = self._text_direction()

    def train(self, mode: bool = True) -> DirectionalCLIPLoss:
        super().train(mode)
        self.clip_model.eval()  # CLIP stays frozen whatever the caller does
        return self

    # --- text ------------------------------------------------------------------------------
    def _text_direction(self) -> torch.Tensor:
        key = (self.source_text, self.target_text, self.templates)
        per_model = self._direction_cache.setdefault(self.clip_model, {})
        if key not in per_model:
            per_model[key] = self._encode_direction()
        return per_model[key]

    @torch.no_grad()
    def _encode_direction(self) -> torch.Tensor:
        device, _ = _model_device_dtype(self.clip_model)
        prompts = [t.format(self.target_text) for t in self.templates]
        prompts += [t.format(self.source_text) for t in self.templates]
        tokens = self.tokenizer(prompts).to(device)
        DirectionalCLIPLoss.text_encodes += 1
        emb = F.normalize(self.clip_model.encode_text(tokens).float(), dim=-1)
        n = len(self.templates)
        delta = (emb[:n] - emb[n:]).mean(dim=0)
        return F.normalize(delta, dim=-1)

    def direction(self) -> torch.Tensor:
        """ΔT, a unit float32 vector on the CLIP model's device."""
        device, _ = _model_device_dtype(self.clip_model)
        return self._delta_t.to(device)

    # --- images ----------------------------------------------------------------------------
    def image_embed(self, x: torch.Tensor) -> torch.Tensor:
        """normalise(E_I(x)) for images in [-1, 1]; float32, differentiable w.r.t. x."""
        device, dtype = _model_device_dtype(self.clip_model)
        pixels = clip_preprocess(x.to(device=device, dtype=torch.float32), self.image_size)
        return F.normalize(self.clip_model.encode_image(pixels.to(dtype)).float(), dim=-1)

    @torch.no_grad()
    def embed_batched(self, x: torch.Tensor) -> torch.Tensor:
        """image_embed without autograd, in chunks of `batch_size`."""
        return torch.cat([self.image_embed(chunk) for chunk in x.split(self.batch_size)])

    def set_sources(self, x0: torch.Tensor) -> None:
        """Encode and cache normalise(E_I(x0)) for the N training images; forward's index refers to them."""
        self._sources = self.embed_batched(x0)

    def cos(self, x_hat: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """cos(ΔI, ΔT) per image, float32 on the CLIP device."""
        if self._sources is None:
            raise RuntimeError("call set_sources(x0) before computing the loss")
        src = self._sources[index.to(self._sources.device).long()]
        delta_i = F.normalize(self.image_embed(x_hat) - src, dim=-1)
        return delta_i @ self.direction()

    def forward(self, x_hat: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        c = self.cos(x_hat, index)
        if self.loss_form == "neglog":
            loss = -torch.log(((1 + c) / 2).clamp_min(1e-8))
        else:
            loss = 1 - c
        return loss.mean().to(device=x_hat.device, dtype=torch.float32)


__all__ = [
    "IMAGENET_TEMPLATES",
    "OPENAI_DATASET_MEAN",
    "OPENAI_DATASET_STD",
    "DirectionalCLIPLoss",
    "clip_preprocess",
    "default_tokenizer",
]
