"""Reading user images into model tensors and writing results, with a stated conversion policy.

Policy (applied in this order):
- EXIF orientation is applied, so the picture looks as it does in a photo viewer.
- Transparency (RGBA, LA, palette with transparency) is composited over white.
- Grayscale is replicated to RGB; CMYK and other modes go through PIL's RGB conversion; 16-bit and
  32-bit images are scaled to 8 bits by their full range (not clipped at 255).
- Fit to the base's square resolution: "center-crop" (default; resize the shorter side, crop the
  middle), "pad" (fit inside, pad with the border's mean colour) or "squash" (ignore aspect ratio).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from ..library.atomic import atomic_write_bytes as _atomic_write_bytes
from .errors import JobError

FIT_POLICIES = ("center-crop", "pad", "squash")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
# Decompression-bomb guard: 64 MP is more than any camera photo an edit needs.
MAX_PIXELS = 64_000_000
METADATA_KEY = "dclip"


@dataclass
class LoadedImage:
    tensor: torch.Tensor  # [3, S, S] in [-1, 1]
    original_size: tuple[int, int]  # (width, height) after EXIF orientation
    box: tuple[float, float, float, float]  # region of the original the tensor shows (l, t, r, b)
    fit: str


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.round().astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "RGB" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open, fully decode and normalise an image file; raises JobError with the reason on bad input."""
    path = Path(path)
    if not path.exists():
        raise JobError(f"{path}: no such file")
    if path.is_dir():
        raise JobError(f"{path}: is a folder, not an image")
    try:
        if path.stat().st_size == 0:
            raise JobError(f"{path.name}: empty file (0 bytes)")
        with open(path, "rb") as fh:
            data = fh.read()
    except PermissionError:
        raise JobError(f"{path.name}: cannot be read (permission denied)") from None
    except OSError as exc:
        raise JobError(f"{path.name}: cannot be read ({exc.strerror or exc})") from None
    return decode_image(data, path.name)


def decode_image(data: bytes, name: str = "image") -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise JobError(f"{name}: {w}×{h} is too large ({w * h / 1e6:.0f} MP > {MAX_PIXELS / 1e6:.0f} MP limit)")
            img.load()  # decode now, so a truncated file fails here and not later
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except JobError:
        raise
    except UnidentifiedImageError:
        raise JobError(f"{name}: not an image file (or a format this app cannot read)") from None
    except Image.DecompressionBombError as exc:
        raise JobError(f"{name}: refused as a decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise JobError(f"{name}: corrupt or truncated image ({exc})") from None


def fit_image(img: Image.Image, size: int, fit: str = "center-crop") -> tuple[Image.Image, tuple]:
    if fit not in FIT_POLICIES:
        raise JobError(f"unknown fit policy {fit!r}; choose one of {', '.join(FIT_POLICIES)}")
    w, h = img.size
    if fit == "squash":
        return img.resize((size, size), Image.BICUBIC), (0.0, 0.0, float(w), float(h))
    if fit == "center-crop":
        side = min(w, h)
        box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
        return img.resize((size, size), Image.BICUBIC, box=box), box
    side = max(w, h)
    arr = np.asarray(img)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]]).mean(axis=0)
    canvas = Image.new("RGB", (side, side), tuple(int(c) for c in border))
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    box = (-(side - w) / 2, -(side - h) / 2, w + (side - w) / 2, h + (side - h) / 2)
    return canvas.resize((size, size), Image.BICUBIC), box


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    arr = torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.uint8).copy())
    return arr.permute(2, 0, 1).float() / 127.5 - 1.0


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    """[3,H,W] (or [1,3,H,W]) in [-1, 1] → 8-bit RGB, rounded (not truncated)."""
    if x.dim() == 4:
        x = x[0]
    arr = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(arr.permute(1, 2, 0).numpy(), "RGB")


def load_image(path: str | os.PathLike, size: int, fit: str = "center-crop") -> LoadedImage:
    img = open_image(path)
    fitted, box = fit_image(img, size, fit)
    return LoadedImage(pil_to_tensor(fitted), img.size, box, fit)


def load_images(paths, size: int, fit: str = "center-crop") -> torch.Tensor:
    return torch.stack([load_image(p, size, fit).tensor for p in paths])


def list_images(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise JobError(f"{folder}: not a folder")
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def image_sha256(x: torch.Tensor) -> str:
    """Content hash of the model input (after the fit policy): the latent cache key's image part."""
    return hashlib.sha256(x.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """The library's atomic write, with temp files named `.<name>.*.part` (hidden in photo folders;
    the batch job sweeps stale ones by that pattern)."""
    path = Path(path)
    return _atomic_write_bytes(path, data, prefix=f".{path.name}.")


def encode_png(img: Image.Image, metadata: dict | None = None) -> bytes:
    info = PngImagePlugin.PngInfo()
    if metadata:
        info.add_text(METADATA_KEY, json.dumps(metadata, sort_keys=True))
        info.add_text("Software", f"DiffusionCLIP Desktop {metadata.get('app_version', '')}".strip())
    buf = io.BytesIO()
    img.save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def save_png(img: Image.Image | torch.Tensor, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Atomic PNG write carrying the settings that made it in a text chunk (read by `dclip info`)."""
    if isinstance(img, torch.Tensor):
        img = tensor_to_pil(img)
    return atomic_write_bytes(path, encode_png(img, metadata))
