"""CLIP zero-shot matching: which images does the source text describe?

DiffusionCLIP learns the direction source → target from training images that show the source. When a
user gives no photos, the app samples them from the base, and those samples show whatever the base
draws (on the demo world a red shape only one time in four). Training on them teaches "any colour →
blue", which the tuned model then renders as something else. So the samples are ranked by CLIP's
zero-shot probability of the source text against the target text and a contrast set (the other values
of the same kind: the other colours, the other hair colours, …), and only the best matches are kept.

    p(c | x) = softmax_c(s · cos(E_I(x), E_T(c)))    E_T(c) = normalise(mean_templates normalise(E_T(tpl(c))))

with s CLIP's own learned logit scale, as in CLIP's zero-shot classifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .clip_loss import IMAGENET_TEMPLATES, Tokenizer, clip_preprocess, default_tokenizer


@torch.no_grad()
def text_embeddings(
    clip_model: nn.Module, tokenizer: Tokenizer | None, texts: Sequence[str],
    templates: Sequence[str] = IMAGENET_TEMPLATES,
) -> torch.Tensor:
    """[K, D] unit class embeddings: each text averaged over the prompt templates."""
    tokenizer = tokenizer if tokenizer is not None else default_tokenizer(clip_model)
    device = next(clip_model.parameters()).device
    out = []
    for text in texts:
        tokens = tokenizer([t.format(text) for t in templates]).to(device)
        emb = F.normalize(clip_model.encode_text(tokens).float(), dim=-1).mean(dim=0)
        out.append(F.normalize(emb, dim=-1))
    return torch.stack(out)


@torch.no_grad()
def zero_shot_probs(
    clip_model: nn.Module, tokenizer: Tokenizer | None, images: torch.Tensor, texts: Sequence[str],
    templates: Sequence[str] = IMAGENET_TEMPLATES, batch_size: int = 64,
) -> torch.Tensor:
    """[N, K] probabilities p(texts[k] | images[n]) for images in [-1, 1]."""
    clip_model.eval()
    classes = text_embeddings(clip_model, tokenizer, texts, templates)
    p = next(clip_model.parameters())
    size = getattr(clip_model.visual, "image_size", 224)
    scale = clip_model.logit_scale.exp().float() if hasattr(clip_model, "logit_scale") else torch.tensor(100.0)
    rows = []
    for chunk in images.split(batch_size):
        pixels = clip_preprocess(chunk.to(device=p.device, dtype=torch.float32), size)
        emb = F.normalize(clip_model.encode_image(pixels.to(p.dtype)).float(), dim=-1)
        rows.append((scale.to(emb.device) * emb @ classes.T).softmax(dim=-1).cpu())
    return torch.cat(rows)


@dataclass
class Selection:
    """The outcome of matching N images against the source text (index 0 of `texts`)."""

    texts: list[str]
    probs: torch.Tensor  # [N, K]
    order: torch.Tensor  # image indices, best match of the source first
    matched: int  # images whose most likely text is the source

    def best(self, n: int) -> torch.Tensor:
        """Indices of the best min(n, matched) matches: never an image that does not match."""
        return self.order[: min(n, self.matched)]


def rank_by_source(probs: torch.Tensor, texts: Sequence[str]) -> Selection:
    """Rank images by p(source | x) (column 0) and count those where the source wins."""
    is_match = probs.argmax(dim=1) == 0
    # Matches first, then by probability: a non-match never ranks above a match.
    key = probs[:, 0] + is_match.float()
    order = torch.argsort(key, descending=True, stable=True)
    return Selection(list(texts), probs, order, int(is_match.sum()))


def contrast_texts(source: str, target: str, groups: Sequence[Sequence[str]]) -> list[str]:
    """[source, target, *contrast]: the contrast is every other member of the group that holds the
    source (or the target), so "red" is told apart from green and yellow, not only from blue."""
    s, t = source.strip().lower(), target.strip().lower()
    texts = [source.strip(), target.strip()]
    for group in groups:
        members = [g.strip() for g in group]
        lowered = [g.lower() for g in members]
        if s in lowered or t in lowered:
            texts += [g for g, low in zip(members, lowered) if low not in (s, t) and g not in texts]
    return texts


__all__ = ["Selection", "contrast_texts", "rank_by_source", "text_embeddings", "zero_shot_probs"]
