"""Results to PNG files and settings back from them: what File → Save result, Export side by side and
Load settings from image do, without the dialogs. The settings travel in the PNG's text chunk, written
and checked field by field by jobs.images (imported when used: it needs torch)."""

from __future__ import annotations

from pathlib import Path

from ..imaging import qimage_to_pil, side_by_side
from .document import Result
from .mixing import MixingModel


def save_result(res: Result, path: str) -> Path:
    """`res` as a PNG carrying its settings, written atomically."""
    from ...jobs.images import save_png

    return save_png(qimage_to_pil(res.image), path, res.metadata)


def export_compare(res: Result, path: str) -> Path:
    """Before | after of `res` as one PNG carrying the result's settings."""
    from ...jobs.images import save_png

    return save_png(qimage_to_pil(side_by_side(res.source, res.image)), path, res.metadata)


def load_settings(mixing: MixingModel, path: str) -> dict:
    """Tick, weigh, schedule and set γ in `mixing` as the image at `path` was made; returns its settings.

    Raises jobs.metadata.MetadataError (a BadInput, one line naming the file) before changing anything."""
    from ...jobs.metadata import read_metadata

    meta = read_metadata(path)  # checked field by field: the types and ranges apply_settings relies on
    mixing.apply_settings(meta)
    return meta
