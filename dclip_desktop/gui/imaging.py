"""Conversions between engine tensors/PIL images and QImage. Called on the worker thread for
previews and results (QImage is safe to build off the GUI thread; QPixmap is not)."""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtGui import QImage


def array_to_qimage(arr: np.ndarray) -> QImage:
    """uint8 [H,W,3] → an owned QImage (RGB888)."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    h, w = arr.shape[:2]
    return QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def qimage_to_array(img: QImage) -> np.ndarray:
    """QImage → uint8 [H,W,3]."""
    img = img.convertToFormat(QImage.Format.Format_RGB888)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), dtype=np.uint8, count=bpl * h).reshape(h, bpl)
    return buf[:, : 3 * w].reshape(h, w, 3).copy()


def tensor_to_qimage(x, max_tiles: int = 4) -> QImage:
    """[3,H,W] or [N,3,H,W] in [-1,1] → QImage; a batch becomes a row of up to `max_tiles` tiles."""
    if x.dim() == 3:
        x = x[None]
    x = x[:max_tiles].detach().float().cpu().clamp(-1, 1)
    arr = ((x + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()  # N,H,W,3
    row = np.concatenate(list(arr), axis=1)
    return array_to_qimage(row)


def tensor_grid_qimage(x, max_tiles: int = 64, gap: int = 2) -> QImage:
    """[N,3,H,W] in [-1,1] → one QImage of up to `max_tiles` tiles in a near-square grid, `gap` px apart
    (64 tiles of a 256² base make a 2 k image; a thousand training photos would make 200 MB)."""
    x = x[:max_tiles].detach().float().cpu().clamp(-1, 1)
    n, _, h, w = x.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, 3), 30, np.uint8)
    tiles = ((x + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = tile
    return array_to_qimage(out)


def tensors_to_qimages(x) -> list[QImage]:
    return [tensor_to_qimage(t) for t in x]


def qimage_to_tensor(img: QImage, size: int | None = None):
    """QImage → [3,S,S] in [-1,1] (resized to `size` when it differs)."""
    from PIL import Image

    from ..jobs.images import pil_to_tensor

    pil = Image.fromarray(qimage_to_array(img), "RGB")
    if size is not None and pil.size != (size, size):
        pil = pil.resize((size, size), Image.BICUBIC)
    return pil_to_tensor(pil)


def pil_to_qimage(img) -> QImage:
    return array_to_qimage(np.asarray(img.convert("RGB")))


def qimage_to_pil(img: QImage):
    from PIL import Image

    return Image.fromarray(qimage_to_array(img), "RGB")


def side_by_side(a: QImage, b: QImage) -> QImage:
    """`a` left of `b` on one RGB image (File → Export side by side)."""
    from PySide6.QtGui import QPainter

    img = QImage(a.width() + b.width(), max(a.height(), b.height()), QImage.Format.Format_RGB888)
    p = QPainter(img)
    p.drawImage(0, 0, a)
    p.drawImage(a.width(), 0, b)
    p.end()
    return img
