"""Shared helpers for the GUI tests."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ready_window(qtbot, timeout_ms: int = 120_000):
    """The real main window, shown to qtbot, once its engine has loaded (the worker went idle)."""
    from dclip_desktop.gui.app import create_window, ensure_app

    ensure_app()
    w = create_window()
    qtbot.addWidget(w)
    with qtbot.waitSignal(w.controller.busy_changed, timeout=timeout_ms, check_params_cb=lambda busy: not busy):
        pass
    return w


def close_boxes(window) -> None:
    box = window.last_error_box
    if box is not None and box.isVisible():
        box.close()


def recipe_fields(base_id: str, source: str, target: str) -> dict:
    """recipe_for's overrides on FinetuneConfig: what `dclip finetune --src --tgt` would train with."""
    from dclip_desktop.core.config import FinetuneConfig
    from dclip_desktop.gui.models.finetune import RECIPE_FIELDS
    from dclip_desktop.zoo.registry import get_base, recipe_for

    cfg = FinetuneConfig(**recipe_for(get_base(base_id), source, target))
    return {k: getattr(cfg, k) for k in RECIPE_FIELDS}
