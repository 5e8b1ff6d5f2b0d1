"""Edit → Settings…: device, precision, library and latent-cache folders, offline mode, preview frequency."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLineEdit,
    QSpinBox,
    QWidget,
)

from ...jobs.settings import LAYOUTS, PRECISIONS, PREVIEW_EVERY_MAX
from .fields import folder_field

DEVICES = ("auto", "cpu", "cuda", "cuda:0", "cuda:1", "mps")  # suggestions: the box takes any cuda:N


class SettingsDialog(QDialog):
    def __init__(self, settings, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.settings = settings
        self.device = QComboBox()
        self.device.setEditable(True)
        self.device.addItems(DEVICES)
        self.device.setCurrentText(settings.device)
        self.precision = QComboBox()
        self.precision.addItems(PRECISIONS)
        self.precision.setCurrentText(settings.precision)
        self.library_dir = QLineEdit(settings.library_dir or "")
        self.library_dir.setPlaceholderText("default (platform data folder)")
        self.cache_dir = QLineEdit(settings.cache_dir or "")
        self.cache_dir.setPlaceholderText("default (platform cache folder)")
        self.offline = QCheckBox("Never touch the network (use only downloaded files)")
        self.offline.setChecked(bool(settings.offline))
        self.memory_layout = QComboBox()
        self.memory_layout.addItems(LAYOUTS)
        self.memory_layout.setCurrentText(settings.memory_layout if settings.memory_layout in LAYOUTS else "auto")
        self.memory_layout.setToolTip("auto: channels_last on a CPU, contiguous on a GPU (what dclip bench measured)")
        self.compile_batches = QCheckBox("Compile the UNet for batch edits (1–2 min once per run, then faster)")
        self.compile_batches.setChecked(bool(settings.compile_batches))
        self.preview_every = QSpinBox()
        self.preview_every.setRange(1, PREVIEW_EVERY_MAX)
        self.preview_every.setValue(int(settings.preview_every))
        self.preview_every.setSuffix(" steps")
        form = QFormLayout(self)
        form.addRow("Device", self.device)
        form.addRow("Precision", self.precision)
        form.addRow("Library folder", folder_field(self, self.library_dir))
        form.addRow("Latent cache folder", folder_field(self, self.cache_dir))
        form.addRow("Offline", self.offline)
        form.addRow("Memory layout", self.memory_layout)
        form.addRow("Batch speed", self.compile_batches)
        form.addRow("Live preview every", self.preview_every)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        box.accepted.connect(self.accept)
        box.rejected.connect(self.reject)
        form.addRow(box)

    def result_settings(self):
        """The edited copy of the settings (not yet saved)."""
        return replace(
            self.settings, device=self.device.currentText().strip() or "auto", precision=self.precision.currentText(),
            library_dir=self.library_dir.text().strip() or None, cache_dir=self.cache_dir.text().strip() or None,
            offline=self.offline.isChecked(), memory_layout=self.memory_layout.currentText(),
            compile_batches=self.compile_batches.isChecked(),
            preview_every=self.preview_every.value(),
        )
