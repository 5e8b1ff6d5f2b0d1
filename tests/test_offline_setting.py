"""Offline mode is a setting, not a process-wide switch: turning it off in Settings takes effect in the
running app (it once stayed on until a restart, because the session had put it into os.environ)."""

from __future__ import annotations

import os

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from dclip_desktop.jobs.settings import Settings
from dclip_desktop.zoo import download
from tests.gui_helpers import close_boxes
from tests.test_download import _fake_repo, fake_base, hub, payload  # noqa: F401 - pytest fixtures

LONG = 60_000


@pytest.fixture
def window(qtbot, hub):  # noqa: F811 - the fixture imported above
    from dclip_desktop.gui.app import create_window, ensure_app

    Settings(offline=True).save()  # the user's saved choice when the app starts
    ensure_app()
    w = create_window()
    qtbot.addWidget(w)
    with qtbot.waitSignal(w.controller.busy_changed, timeout=LONG, check_params_cb=lambda busy: not busy):
        pass
    yield w
    close_boxes(w)
    w.controller.shutdown()


def _download(qtbot, dialog, base_id: str, outcome):
    qtbot.waitUntil(lambda: not dialog.controller.busy, timeout=LONG)  # new settings warm the engine up first
    row = next(i for i in range(dialog.table.rowCount()) if dialog.table.item(i, 1).text() == base_id)
    dialog.table.selectRow(row)
    with qtbot.waitSignal(outcome, timeout=LONG, check_params_cb=lambda kind, *_: kind == "base") as blocker:
        dialog.run("download")
    return blocker.args


def _settings_dialog_unticks_offline(w):
    def answer():
        dlg = QApplication.activeModalWidget()
        assert dlg is not None and dlg.windowTitle() == "Settings"
        assert dlg.offline.isChecked()  # the dialog shows the setting the app runs with
        dlg.offline.setChecked(False)
        dlg.accept()

    QTimer.singleShot(0, answer)
    w.open_settings()


def test_turning_offline_off_in_settings_takes_effect_at_once(qtbot, window, hub, fake_base):  # noqa: F811
    weights = payload(20_000, seed=5)
    _fake_repo(hub, "acme/fake-ddpm", {"config.json": b"{}", "diffusion_pytorch_model.safetensors": weights})
    dialog = window.open_base_models()  # Models → Base models…

    _, message, _, failure = _download(qtbot, dialog, "test-fake", window.controller.failed)
    assert failure == "missing weights" and "offline" in message
    assert hub.requests == []  # offline: not one request reached the hub
    assert not download.is_installed("test-fake")

    _settings_dialog_unticks_offline(window)
    assert Settings.load().offline is False and "DCLIP_OFFLINE" not in os.environ

    kind, result = _download(qtbot, dialog, "test-fake", window.controller.finished)
    assert kind == "base"
    assert download.is_installed("test-fake")
    assert (download.model_dir("test-fake") / "diffusion_pytorch_model.safetensors").read_bytes() == weights
    assert hub.requests  # this time it went to the hub

    # and back on: the next job is offline again, in the same running app
    Settings(offline=True).save()
    window.apply_settings(Settings.load())
    (download.model_dir("test-fake") / "config.json").unlink()
    asked = len(hub.requests)
    _, _, _, failure = _download(qtbot, dialog, "test-fake", window.controller.failed)
    assert failure == "missing weights" and len(hub.requests) == asked
