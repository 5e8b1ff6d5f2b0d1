"""Pixel measures of demo-world edits (independent of CLIP): did the red circle turn blue, and did
it stay where it was? Used by `dclip demo`, the app's self-test and the acceptance tests."""

from __future__ import annotations

import numpy as np
import torch

from . import world


def scene_overrides(text: str) -> dict:
    """World overrides that make scenes match a preset's source text ("red", "circle", "gray background")."""
    words = text.lower().split()
    out = {}
    for w in words:
        if w in world.COLORS:
            out["color"] = w
        elif w in world.SHAPES:
            out["shape"] = w
    if "background" in words:
        for w in words:
            if w in world.BACKGROUNDS:
                out["background"] = w
    return out


def _dilate(mask: np.ndarray) -> np.ndarray:
    m = mask.copy()
    m[1:] |= mask[:-1]
    m[:-1] |= mask[1:]
    m[:, 1:] |= mask[:, :-1]
    m[:, :-1] |= mask[:, 1:]
    return m


def measure_edit(before: torch.Tensor, after: torch.Tensor, masks: torch.Tensor, target_text: str) -> dict:
    """Per-batch pixel metrics of an edit whose target is a colour, a shape or a background.

    - success: share of scenes where the target attribute is measured in the result (dominant colour
      inside the original mask; shape of the result's foreground; background from the border, and the
      shape still there: at least half the original mask stands out from the new background, so an
      edit that paints the whole image the background colour does not count);
    - iou: foreground mask of the result vs the original shape mask (the shape stayed in place);
    - background_mae: mean |after − before| in [0,1] units outside the (1-px dilated) original mask.
    """
    target = scene_overrides(target_text)
    b8, a8 = world.to_uint8(before), world.to_uint8(after)
    success, ious, bg_mae = [], [], []
    for i in range(len(b8)):
        mask = masks[i].cpu().numpy().astype(bool)
        bg = world.background_of(a8[i])
        fg = world.foreground_mask(a8[i], bg)
        ok = True
        if "color" in target:
            ok &= mask.any() and world.dominant_color(a8[i], mask) == target["color"]
        if "shape" in target:
            ok &= fg.any() and world.shape_of_mask(fg) == target["shape"]
        if "background" in target:
            ok &= bg == target["background"] and bool(mask.any()) and fg[mask].mean() >= 0.5
        success.append(bool(ok))
        union = (fg | mask).sum()
        ious.append(float((fg & mask).sum() / union) if union else 1.0)
        outside = ~_dilate(mask)
        diff = np.abs(a8[i].astype(np.float64) - b8[i].astype(np.float64)) / 255.0
        bg_mae.append(float(diff[outside].mean()) if outside.any() else 0.0)
    return {
        "n": len(b8),
        "success": float(np.mean(success)) if success else 0.0,
        "iou": float(np.mean(ious)) if ious else 0.0,
        "background_mae": float(np.mean(bg_mae)) if bg_mae else 0.0,
        "per_scene_success": success,
    }


def colour_progress(images: torch.Tensor, masks: torch.Tensor, source: str, target: str) -> float:
    """Mean position of the in-mask colour along source→target RGB (0 = source colour, 1 = target):
    the continuous-transition measure."""
    src, tgt = (np.asarray(world.COLORS[c], dtype=np.float64) for c in (source, target))
    axis = tgt - src
    imgs = world.to_uint8(images).astype(np.float64)
    vals = []
    for img, m in zip(imgs, masks.cpu().numpy().astype(bool)):
        if m.any():
            vals.append(float(((img[m].mean(0) - src) @ axis) / (axis @ axis)))
    return float(np.mean(vals)) if vals else 0.0


def grid(rows: list[torch.Tensor], scale: int = 4) -> np.ndarray:
    """Rows of [N,3,H,W] images → one uint8 H×W×3 grid, upscaled by nearest neighbour, 2-px gaps."""
    n = max(len(r) for r in rows)
    h, w = rows[0].shape[-2:]
    gap = 2
    out = np.full(((h * scale + gap) * len(rows) - gap, (w * scale + gap) * n - gap, 3), 255, np.uint8)
    for r, imgs in enumerate(rows):
        for c, img in enumerate(world.to_uint8(imgs)):
            big = img.repeat(scale, 0).repeat(scale, 1)
            y, x = r * (h * scale + gap), c * (w * scale + gap)
            out[y : y + h * scale, x : x + w * scale] = big
    return out


def clean_shape(image, color: str, *, min_component: float = 0.95, min_fill: float = 0.8) -> bool:
    """Is the image one clean shape of `color`: its foreground is (almost) one connected component, and
    at least `min_fill` of the foreground pixels are nearest to `color` in the palette (even fill)?"""
    img = world.to_uint8(image[None])[0] if isinstance(image, torch.Tensor) else np.asarray(image)
    fg = world.foreground_mask(img, world.background_of(img))
    if fg.sum() < 4:
        return False
    if world.largest_component(fg).sum() < min_component * fg.sum():
        return False
    return float((world.nearest_colors(img[fg]) == list(world.COLORS).index(color)).mean()) >= min_fill
