"""Shared helpers for the GUI tests."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def close_boxes(window) -> None:
    box = window.last_error_box
    if box is not None and box.isVisible():
        box.close()
