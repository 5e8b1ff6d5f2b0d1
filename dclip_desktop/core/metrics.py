"""Evaluation metrics of the paper: reconstruction (MAE, SSIM), S_dir and face identity similarity.

Images are [N, 3, H, W] tensors in [-1, 1]; every function returns a Python float.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .clip_loss import IMAGENET_TEMPLATES, DirectionalCLIPLoss, Tokenizer
from .face_loss import FaceIDLoss, center_box


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {tuple(a.shape)} vs {tuple(b.shape)}")
    return a.detach().float(), b.detach().to(a.device).float()


def mae(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute error in [0, 1] units for images in [-1, 1]: mean|a − b| / 2."""
    a, b = _check_pair(a, b)
    return float((a - b).abs().mean() / 2)


def _gaussian_window(size: int, sigma: float, device, dtype) -> torch.Tensor:
    r = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> float:
    """Mean SSIM (Wang et al. 2004) with a gaussian window, on images in [-1, 1] mapped to [0, 1].

    Valid-region statistics (no padding), per channel, averaged over pixels, channels and batch.
    Images smaller than the window use the largest odd window that fits.
    """
    a, b = _check_pair(a, b)
    if a.ndim == 3:
        a, b = a[None], b[None]
    a, b = (a.double() + 1) / 2, (b.double() + 1) / 2
    c = a.shape[1]
    size = min(window, a.shape[-2], a.shape[-1])
    size = size if size % 2 else size - 1
    if size < 1:
        raise ValueError("images too small for SSIM")
    w = _gaussian_window(size, sigma, a.device, a.dtype).expand(c, 1, size, size)

    def filt(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, w, groups=c)

    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float((num / den).mean())


@torch.no_grad()
def s_dir(
    clip_model: nn.Module,
    x_src: torch.Tensor,
    x_edit: torch.Tensor,
    source_text: str,
    target_text: str,
    templates: Sequence[str] = IMAGENET_TEMPLATES,
    tokenizer: Tokenizer | None = None,
) -> float:
    """Directional CLIP similarity: mean over images of cos(E_I(x_edit) − E_I(x_src), ΔT).

    ΔT comes from DirectionalCLIPLoss's shared cache, so a pair already used for training is not
    re-encoded. `tokenizer` defaults to open_clip's BPE tokenizer at the model's context length.
    """
    if x_src.shape != x_edit.shape:
        raise ValueError(f"shape mismatch: {tuple(x_src.shape)} vs {tuple(x_edit.shape)}")
    loss = DirectionalCLIPLoss(clip_model, tokenizer, source_text, target_text, templates=templates)
    delta = loss.embed_batched(x_edit) - loss.embed_batched(x_src)
    return float((F.normalize(delta, dim=-1) @ loss.direction()).mean())


@torch.no_grad()
def id_similarity(face_loss_or_embedder: FaceIDLoss | nn.Module, a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean cosine of face embeddings of a[i] and b[i].

    With a FaceIDLoss, faces are located by MTCNN on `a` (the source) and both images are cropped with
    those boxes, as in training. With a bare embedder, both use the central 80 % square.
    """
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {tuple(a.shape)} vs {tuple(b.shape)}")
    if isinstance(face_loss_or_embedder, FaceIDLoss):
        face = face_loss_or_embedder
        boxes, _ = face.detect_boxes(a)
    else:
        face = FaceIDLoss(
            face_loss_or_embedder, detector=None, device=next(face_loss_or_embedder.parameters()).device
        )
        boxes = torch.tensor([center_box(*a.shape[-2:])] * len(a), dtype=torch.float32)
    return float((face.embed(a, boxes) * face.embed(b, boxes)).sum(dim=-1).mean())


__all__ = ["id_similarity", "mae", "s_dir", "ssim"]
