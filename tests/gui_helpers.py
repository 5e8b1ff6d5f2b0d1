"""Shared helpers for the GUI tests: is the demo world available, and a window factory."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def engine_ready() -> bool:
    """The zoo and the demo weights are there (they land from other issues)."""
    needed = ("dclip_desktop.zoo.registry", "dclip_desktop.zoo.loading", "dclip_desktop.zoo.device",
              "dclip_desktop.library.store")
    if any(importlib.util.find_spec(m) is None for m in needed):
        return False
    demo = ROOT / "models" / "demo"
    return (demo / "unet").is_dir() and any(demo.glob("clip*"))


needs_engine = pytest.mark.skipif(not engine_ready(), reason="the zoo or the demo weights are not installed yet")


def close_boxes(window) -> None:
    box = getattr(window, "last_error_box", None)
    if box is not None and box.isVisible():
        box.close()
