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
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from ..core.mixing import WeightSchedule, validate_degree
from ..core.schedule import T
from ..library.atomic import atomic_write_bytes as _atomic_write_bytes
from ..untrusted import MAX_TEXT, display, loads_object, open_regular, take
from .errors import JobError, os_error_message

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


class MetadataError(JobError):
    """An image's DiffusionCLIP Desktop settings are missing, damaged or not what this app writes."""


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_KEYWORD_MAX = 80  # a PNG text keyword is 1–79 bytes and a NUL
_TEXT_CHUNK_MAX = MAX_TEXT + 1024  # our JSON (bounded as all untrusted JSON) plus the chunk's own fields


def _inflate(data: bytes, what: str) -> bytes:
    """zlib data of at most MAX_TEXT bytes once inflated: a zTXt/iTXt bomb stops at the bound."""
    z = zlib.decompressobj()
    try:
        out = z.decompress(data, MAX_TEXT + 1)
    except zlib.error:
        raise MetadataError(f"{what}: the settings text is damaged (bad compression)") from None
    if len(out) > MAX_TEXT or z.unconsumed_tail:
        raise MetadataError(f"{what}: the settings text is implausibly large (over {MAX_TEXT} bytes)")
    return out


def _text_value(ctype: bytes, body: bytes, what: str) -> str:
    """The text of a tEXt, zTXt or iTXt chunk body after its keyword and NUL (PNG spec §11.3.4)."""
    if ctype == b"tEXt":
        return body.decode("latin-1")
    if ctype == b"zTXt":
        return _inflate(body[1:], what).decode("latin-1")
    try:  # iTXt: compression flag, method, language NUL, translated keyword NUL, UTF-8 text
        compressed = body[0] == 1
        _lang, _translated, text = body[2:].split(b"\0", 2)
        return (_inflate(text, what) if compressed else text).decode("utf-8")
    except MetadataError:
        raise
    except (IndexError, ValueError):
        raise MetadataError(f"{what}: the settings text is damaged") from None


def _png_text(fh, key: str, what: str) -> Optional[str]:
    """The text chunk `key` of the PNG `fh`, found by walking the chunks and seeking over the others.

    Pillow is not used here: Image.open refuses a header over its pixel limit (DecompressionBombError)
    and `img.text` decodes every pixel to find chunks after the image data, while settings need neither.
    """
    if fh.read(8) != _PNG_SIGNATURE:
        raise MetadataError(f"{what}: not a PNG image (only PNGs this app wrote carry settings)")
    want = key.encode("latin-1")
    while True:
        head = fh.read(8)
        if len(head) < 8:  # truncated after the last complete chunk: no settings here
            return None
        length, ctype = struct.unpack(">I4s", head)
        if ctype == b"IEND":
            return None
        if ctype not in (b"tEXt", b"zTXt", b"iTXt"):
            fh.seek(length + 4, os.SEEK_CUR)  # data and CRC
            continue
        prefix = fh.read(min(length, _KEYWORD_MAX))
        keyword, nul, _ = prefix.partition(b"\0")
        if keyword != want or not nul:
            fh.seek(length - len(prefix) + 4, os.SEEK_CUR)
            continue
        if length > _TEXT_CHUNK_MAX:
            raise MetadataError(f"{what}: the settings text is implausibly large ({length} bytes)")
        data = prefix + fh.read(length - len(prefix))
        crc = fh.read(4)
        if len(data) < length or len(crc) < 4 or zlib.crc32(ctype + data) != struct.unpack(">I", crc)[0]:
            raise MetadataError(f"{what}: the settings text is damaged (truncated or bad checksum)")
        return _text_value(ctype, data[len(keyword) + 1:], what)


def read_metadata(path: str | os.PathLike) -> dict:
    """The settings a PNG this app wrote carries (see `parse_metadata`), read from its text chunk
    without decoding the image. Raises only MetadataError, whatever the file is."""
    what = display(os.fspath(path))
    try:
        with open_regular(path, what, error=MetadataError) as fh:
            text = _png_text(fh, METADATA_KEY, what)
    except OSError as exc:
        raise MetadataError(os_error_message(exc) or f"{what}: cannot be read ({exc.strerror or exc})") from None
    if text is None:
        raise MetadataError(f"{what}: carries no DiffusionCLIP Desktop settings")
    return parse_metadata(text, what)


# The fields the app reads back (`request_from_metadata`, the GUI's Load settings, `dclip info`), as
# edit_metadata, translate_metadata, the batch and the CLI write them: (type, lo, hi) for `take`.
# Text is bounded so a hand-edited PNG cannot carry a megabyte into a label. Other keys are kept
# as they are, for `dclip info` only.
_NAME_LEN = 200
_META_FIELDS: dict[str, tuple] = {
    "app_version": (str, None, None), "operation": (str, None, None), "base_id": (str, None, None),
    "base_sha256": (str, None, None), "precision": (str, None, None), "batch_id": (str, None, None),
    "settings_key": (str, None, None), "source_image": (str, None, None),
    "t0": (int, 1, T - 1), "project_t0": (int, 1, T - 1),
    "s_for": (int, 2, T), "s_gen": (int, 2, T), "project_steps": (int, 2, T),
    "rounds": (int, 1, 10_000), "batch_size": (int, 1, 1 << 16),
    "seed": (int, -(1 << 63), (1 << 64) - 1),  # what torch.manual_seed takes
    "paste_back": (bool, None, None), "fit": (str, None, None), "degree": (float, None, None),
}
_ATTRIBUTE_FIELDS: dict[str, tuple] = {
    "name": (str, None, None), "id": (str, None, None), "weights_sha256": (str, None, None),
    "weight": (float, None, None),
}
_MAX_ATTRIBUTES = 256


def _checked(obj: dict, table: dict, what: str) -> dict:
    out = dict(obj)
    for key, (kind, lo, hi) in table.items():
        value = take(obj, key, kind, what, default=None, lo=lo, hi=hi,
                     max_len=4096 if key == "source_image" else _NAME_LEN, error=MetadataError)
        if value is not None and kind is float:
            try:
                value = float(value)  # take lets an int through for a float, even one past float's range
            except OverflowError:
                raise MetadataError(f"{what}: '{key}' is not a finite number") from None
        if value is not None:
            out[key] = value
    return out


def check_metadata(meta: Any, what: str = "the image's settings") -> dict:
    """`meta` (JSON already parsed) checked field by field; a copy with weights as floats and the
    schedule as [[int, [float, …]], …]. Every field is optional (a reconstruction has no attributes);
    `request_from_metadata` says which an edit needs. Raises only MetadataError."""
    if not isinstance(meta, dict):
        raise MetadataError(f"{what}: not a JSON object")
    out = _checked(meta, _META_FIELDS, what)
    if out.get("degree") is not None:
        try:
            validate_degree(out["degree"])
        except ValueError as exc:
            raise MetadataError(f"{what}: {exc}") from None
    if out.get("fit") is not None and out["fit"] not in FIT_POLICIES:
        raise MetadataError(f"{what}: 'fit' is {display(out['fit'])!r}, not one of {', '.join(FIT_POLICIES)}")
    attrs = take(meta, "attributes", list, what, default=None, max_len=_MAX_ATTRIBUTES, error=MetadataError)
    if attrs is not None:
        checked = []
        for k, a in enumerate(attrs):
            where = f"{what}: attribute {k + 1}"
            if not isinstance(a, dict):
                raise MetadataError(f"{where} is a JSON {type(a).__name__}, not an object")
            a = _checked(a, _ATTRIBUTE_FIELDS, where)
            if not (a.get("id") or a.get("name")) or a.get("weight") is None:
                raise MetadataError(f"{where} needs a name or id and a weight")
            checked.append(a)
        out["attributes"] = checked
    if meta.get("schedule") is not None:
        try:
            sched = WeightSchedule.of(meta["schedule"])
            if attrs is not None:  # what edit_metadata writes: one weight per attribute in every row
                sched.validate(len(attrs))
        except ValueError as exc:
            raise MetadataError(f"{what}: 'schedule': {exc}") from None
        out["schedule"] = [[th, list(ws)] for th, ws in sched.rows]
    return out


def parse_metadata(text: str | bytes, what: str = "the image's settings") -> dict:
    """The JSON of an image's settings chunk, checked by `check_metadata`. Raises only MetadataError,
    for any input (the metadata of a PNG from the web is anyone's)."""
    return check_metadata(loads_object(text, what, error=MetadataError), what)


def unique_path(path: Path) -> Path:
    """`path`, or `name (2).ext`, `name (3).ext`… — never an existing file."""
    if not path.exists():
        return path
    k = 2
    while True:
        candidate = path.with_name(f"{path.stem} ({k}){path.suffix}")
        if not candidate.exists():
            return candidate
        k += 1
