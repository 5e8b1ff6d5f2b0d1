"""The bundled demo world: one coloured shape on a plain background, at 32×32, with captions.

Everything here is pure numpy/torch and deterministic by seed. The colours are saturated and far
apart in RGB, so tests can measure an edit by pixels (did the red circle turn blue, did it stay put)
without asking CLIP.

Seeds below 1_000_000 are for training; seeds ≥ HELDOUT_SEED_START are held out for evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import BadInput

RESOLUTION = 32
HELDOUT_SEED_START = 1_000_000
SUPERSAMPLE = 4

SHAPES = ("circle", "square", "triangle")

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 180, 40),
    "blue": (30, 60, 220),
    "yellow": (240, 210, 20),
}

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "gray": (128, 128, 128),
}

ALL_COLORS: dict[str, tuple[int, int, int]] = {**COLORS, **BACKGROUNDS}

# Prompt templates for CLIP training and for DiffusionCLIP's directional loss on the demo world.
PROMPT_TEMPLATES: tuple[str, ...] = (
    "{}",
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a drawing of a {}.",
    "a sketch of a {}.",
    "a painting of a {}.",
    "a rendering of a {}.",
    "a cartoon of a {}.",
    "a photo of the {}.",
    "a close-up photo of a {}.",
    "a small picture of a {}.",
    "a low resolution photo of a {}.",
    "a blurry photo of a {}.",
    "a pixelated photo of a {}.",
    "a bright photo of a {}.",
    "a clean picture of a {}.",
    "a simple drawing of a {}.",
    "a tiny image of a {}.",
    "a digital illustration of a {}.",
    "a clip art of a {}.",
    "a graphic of a {}.",
    "a toy {}.",
    "art of a {}.",
    "a plain {}.",
    "this is a {}.",
    "there is a {}.",
    "a {} in the picture.",
    "an icon of a {}.",
    "a flat {}.",
    "a centered {}.",
    "a good photo of a {}.",
)


@dataclass(frozen=True)
class SceneSpec:
    """One scene: a shape of a colour on a background.

    cx, cy are the centre in [0, 1] image units; size is the half-extent (radius of the circle, half
    side of the square, circumradius of the triangle) in the same units. `rotation` (radians) applies
    to the triangle only; squares stay axis-aligned so fill ratios separate shapes.
    """

    shape: str
    color: str
    background: str
    cx: float
    cy: float
    size: float
    rotation: float = 0.0

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise BadInput(f"unknown shape {self.shape!r}; expected one of {SHAPES}")
        if self.color not in COLORS:
            raise BadInput(f"unknown colour {self.color!r}; expected one of {tuple(COLORS)}")
        if self.background not in BACKGROUNDS:
            raise BadInput(f"unknown background {self.background!r}; expected one of {tuple(BACKGROUNDS)}")


def sample_spec(seed: int, **overrides) -> SceneSpec:
    """A random scene, deterministic by seed. Keyword overrides force any field (shape="circle")."""
    rng = np.random.default_rng([int(seed), 0x5CE7E])
    shape = SHAPES[rng.integers(len(SHAPES))]
    color = tuple(COLORS)[rng.integers(len(COLORS))]
    background = tuple(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
    size = float(rng.uniform(0.18, 0.32))
    margin = size + 0.04
    cx = float(rng.uniform(margin, 1.0 - margin))
    cy = float(rng.uniform(margin, 1.0 - margin))
    rotation = float(rng.uniform(-0.35, 0.35))
    fields = dict(shape=shape, color=color, background=background, cx=cx, cy=cy, size=size, rotation=rotation)
    fields.update(overrides)
    if fields["shape"] != "triangle":
        fields["rotation"] = 0.0
    return SceneSpec(**fields)


def _coverage(spec: SceneSpec, size: int, ss: int = SUPERSAMPLE) -> np.ndarray:
    """Fractional coverage of each pixel by the shape, from an ss×ss supersampled inside-test."""
    n = size * ss
    coords = (np.arange(n) + 0.5) / n
    x, y = np.meshgrid(coords, coords)  # y down, x right
    dx, dy = x - spec.cx, y - spec.cy
    r = spec.size
    if spec.shape == "circle":
        inside = dx * dx + dy * dy <= r * r
    elif spec.shape == "square":
        inside = (np.abs(dx) <= r) & (np.abs(dy) <= r)
    else:
        # Equilateral triangle pointing up, circumradius r, rotated; centred on its centroid.
        inside = np.ones_like(dx, dtype=bool)
        c, s = math.cos(spec.rotation), math.sin(spec.rotation)
        verts = []
        for k in range(3):
            a = -math.pi / 2 + 2 * math.pi * k / 3
            vx, vy = r * math.cos(a), r * math.sin(a)
            verts.append((c * vx - s * vy, s * vx + c * vy))
        for k in range(3):
            (x1, y1), (x2, y2) = verts[k], verts[(k + 1) % 3]
            cross = (x2 - x1) * (dy - y1) - (y2 - y1) * (dx - x1)
            inside &= cross >= 0
    return inside.reshape(size, ss, size, ss).mean(axis=(1, 3))


def render(spec: SceneSpec, size: int = RESOLUTION) -> tuple[np.ndarray, np.ndarray]:
    """Render a scene: (uint8 image H×W×3, bool mask H×W of pixels at least half covered)."""
    cov = _coverage(spec, size)[..., None]
    fg = np.asarray(COLORS[spec.color], dtype=np.float64)
    bg = np.asarray(BACKGROUNDS[spec.background], dtype=np.float64)
    img = cov * fg + (1.0 - cov) * bg
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), cov[..., 0] >= 0.5


def caption(spec: SceneSpec) -> str:
    return f"a {spec.color} {spec.shape} on a {spec.background} background"


def caption_variants(spec: SceneSpec) -> list[str]:
    """The full caption and the partial phrases that DiffusionCLIP prompts use (colour, shape, …)."""
    return [
        caption(spec),
        spec.color,
        spec.shape,
        f"{spec.color} {spec.shape}",
        f"{spec.background} background",
        f"{spec.color} {spec.shape} on {spec.background}",
        f"{spec.shape} on a {spec.background} background",
        f"{spec.color} shape",
    ]


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 N×H×W×3 (or H×W×3) → float N×3×H×W in [−1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(images)).float()
    if t.ndim == 3:
        t = t[None]
    return t.permute(0, 3, 1, 2) / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float N×3×H×W (or 3×H×W) in [−1, 1] → uint8 N×H×W×3 (or H×W×3)."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return x.permute(*range(x.ndim - 3), -2, -1, -3).numpy()


def make_scenes(
    seeds: Iterable[int], size: int = RESOLUTION, **overrides
) -> tuple[torch.Tensor, torch.Tensor, list[SceneSpec]]:
    """Render many scenes: (float N×3×H×W in [−1, 1], bool N×H×W masks, specs)."""
    specs = [sample_spec(s, **overrides) for s in seeds]
    rendered = [render(sp, size) for sp in specs]
    if not rendered:
        return torch.zeros(0, 3, size, size), torch.zeros(0, size, size, dtype=torch.bool), []
    imgs = np.stack([r[0] for r in rendered])
    masks = np.stack([r[1] for r in rendered])
    return to_tensor(imgs), torch.from_numpy(masks), specs


def save_scenes(folder, n: int, prefix: str = "scene", **overrides) -> Path:
    """A folder of `n` scenes as PNG files (seeds 0..n−1): the training photos a user would point a
    fine-tune at, for the screenshots and the tests."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    x, _, _ = make_scenes(range(n), **overrides)
    for i, img in enumerate(to_uint8(x)):
        Image.fromarray(img).save(folder / f"{prefix}-{i:02d}.png")
    return folder


# ---------------------------------------------------------------- measuring helpers


def _nearest(rgb, palette: dict[str, tuple[int, int, int]]) -> str:
    v = np.asarray(rgb, dtype=np.float64).reshape(3)
    names = list(palette)
    d = [float(np.sum((v - np.asarray(palette[n], dtype=np.float64)) ** 2)) for n in names]
    return names[int(np.argmin(d))]


def _as_uint8_hwc(image) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        return to_uint8(image)
    return np.asarray(image)


def classify_color(rgb, palette: Optional[dict[str, tuple[int, int, int]]] = None) -> str:
    """Nearest named colour (shape colours and backgrounds together, unless a palette is given)."""
    return _nearest(rgb, ALL_COLORS if palette is None else palette)


def dominant_color(image, mask=None) -> str:
    """Most common shape colour among the masked pixels (by per-pixel nearest colour, not mean)."""
    img = _as_uint8_hwc(image).astype(np.float64)
    m = np.ones(img.shape[:2], bool) if mask is None else np.asarray(mask, bool)
    px = img[m]
    if len(px) == 0:
        raise ValueError("empty mask: no pixels to classify")
    counts = np.bincount(nearest_colors(px), minlength=len(COLORS))
    return list(COLORS)[int(counts.argmax())]


def nearest_colors(pixels: np.ndarray) -> np.ndarray:
    """Index into COLORS of the nearest shape colour for each RGB pixel (N×3)."""
    pal = np.asarray(list(COLORS.values()), dtype=np.float64)
    return ((np.asarray(pixels, np.float64)[:, None, :] - pal[None]) ** 2).sum(-1).argmin(1)


def background_of(image) -> str:
    """Nearest background colour to the median of the border pixels."""
    img = _as_uint8_hwc(image).astype(np.float64)
    border = np.concatenate([img[0], img[-1], img[1:-1, 0], img[1:-1, -1]])
    return _nearest(np.median(border, axis=0), BACKGROUNDS)


def foreground_mask(image, background_name: Optional[str] = None, threshold: float = 60.0) -> np.ndarray:
    """Pixels farther than `threshold` (RGB Euclidean) from the background colour."""
    img = _as_uint8_hwc(image).astype(np.float64)
    if background_name is None:
        background_name = background_of(img)
    bg = np.asarray(BACKGROUNDS[background_name], dtype=np.float64)
    return np.sqrt(((img - bg) ** 2).sum(-1)) > threshold


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Largest 4-connected component of a bool mask (small flood fill; images are 32²)."""
    h, w = mask.shape
    labels = np.zeros((h, w), np.int32)
    best, best_n, cur = 0, 0, 0
    for y0, x0 in zip(*np.nonzero(mask)):
        if labels[y0, x0]:
            continue
        cur += 1
        stack, n = [(y0, x0)], 0
        labels[y0, x0] = cur
        while stack:
            y, x = stack.pop()
            n += 1
            for yy, xx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and not labels[yy, xx]:
                    labels[yy, xx] = cur
                    stack.append((yy, xx))
        if n > best_n:
            best, best_n = cur, n
    return labels == best if best else np.zeros_like(mask)


def shape_features(mask) -> tuple[float, float]:
    """(fill ratio in the bounding box, fill ratio in the minimum-area enclosing rotated box).

    Fill in the axis-aligned box: square ≈ 1, circle ≈ π/4, triangle ≈ 0.5. The rotated-box fill
    lets a slightly rotated triangle still read ≈ 0.5.
    """
    m = largest_component(np.asarray(mask, bool))
    ys, xs = np.nonzero(m)
    if len(ys) == 0:
        return 0.0, 0.0
    area = float(len(ys))
    box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    # Rotated boxes: pixel corners projected on directions over 0..90°.
    pts = np.concatenate([np.stack([xs + a, ys + b], 1) for a in (0, 1) for b in (0, 1)]).astype(np.float64)
    best = float(box)
    for ang in np.linspace(0, math.pi / 2, 46)[:-1]:
        u = np.array([math.cos(ang), math.sin(ang)])
        v = np.array([-u[1], u[0]])
        pu, pv = pts @ u, pts @ v
        best = min(best, float((pu.max() - pu.min()) * (pv.max() - pv.min())))
    return area / float(box), area / best


def shape_of_mask(mask) -> str:
    """Classify a (foreground) mask as circle, square or triangle from its fill ratios."""
    fill_box, fill_rot = shape_features(mask)
    if fill_box == 0.0:
        raise ValueError("empty mask: no shape to classify")
    fill = max(fill_box, fill_rot)
    if fill >= 0.9:
        return "square"
    if fill >= 0.66:
        return "circle"
    return "triangle"


def describe(image) -> dict[str, str]:
    """Measure a rendered or generated scene: background, shape colour, shape."""
    img = _as_uint8_hwc(image)
    bg = background_of(img)
    fg = foreground_mask(img, bg)
    if not fg.any():
        return {"background": bg, "color": "none", "shape": "none"}
    return {"background": bg, "color": dominant_color(img, fg), "shape": shape_of_mask(fg)}


# ---------------------------------------------------------------- stroke drawings


def stroke_blob(seed: int, color: str, background: str, size: int = RESOLUTION) -> np.ndarray:
    """A crude painted blob (wobbly edge, uneven fill), like a user's brush strokes. uint8 H×W×3."""
    if color not in COLORS or background not in BACKGROUNDS:
        raise BadInput(f"unknown colour {color!r} or background {background!r}")
    rng = np.random.default_rng([int(seed), 0xB10B])
    n = size * SUPERSAMPLE
    coords = (np.arange(n) + 0.5) / n
    x, y = np.meshgrid(coords, coords)
    cx, cy = rng.uniform(0.35, 0.65, 2)
    r0 = rng.uniform(0.18, 0.28)
    ang = np.arctan2(y - cy, x - cx)
    rad = np.hypot(x - cx, y - cy)
    wobble = np.zeros_like(ang)
    for k in range(2, 6):
        wobble += rng.uniform(0.02, 0.07) * np.sin(k * ang + rng.uniform(0, 2 * math.pi))
    inside = rad <= r0 * (1.0 + wobble)
    cov = inside.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))[..., None]
    fg = np.asarray(COLORS[color], np.float64)
    # Uneven fill: brush-like streaks of lighter/darker paint plus a few holes.
    streak = np.sin(np.linspace(0, rng.uniform(6, 14), size))[None, :, None] * rng.uniform(10, 30)
    jitter = rng.normal(0, 12, (size, size, 3))
    paint = np.clip(fg + streak + jitter, 0, 255)
    holes = rng.random((size, size, 1)) < 0.04
    cov = np.where(holes, cov * 0.3, cov)
    bg = np.asarray(BACKGROUNDS[background], np.float64)
    img = cov * paint + (1 - cov) * bg
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


__all__ = [
    "RESOLUTION", "HELDOUT_SEED_START", "SHAPES", "COLORS", "BACKGROUNDS", "PROMPT_TEMPLATES",
    "largest_component", "nearest_colors",
    "SceneSpec", "sample_spec", "render", "caption", "caption_variants", "make_scenes", "to_tensor",
    "to_uint8", "classify_color", "dominant_color", "background_of", "foreground_mask", "shape_features",
    "shape_of_mask", "describe", "stroke_blob", "replace",
]
