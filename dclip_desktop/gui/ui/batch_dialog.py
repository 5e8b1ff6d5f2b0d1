"""Batch → Edit a folder…: input and output folders, the attribute mix (from the mixing panel),
fit policy, Faces Auto / On / Off, resume, progress with ETA, a per-file error list, and Cancel. The engine is jobs.batch_job."""

from __future__ import annotations

from typing import Optional

from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..models.faces import FACE_MODE_LABELS
from ..models.mixing import MixingModel
from ..tasks import make_batch
from .fields import folder_field
from .prompt_panel import eta_text

FIT_POLICIES = ("center-crop", "pad", "squash")  # mirrors jobs.images


class BatchDialog(QDialog):
    def __init__(self, mixing: MixingModel, controller, base_id: Optional[str] = None,
                 parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Batch edit a folder")
        self.resize(720, 520)
        self.mixing, self.controller, self.base_id = mixing, controller, base_id
        self.input_edit = QLineEdit()
        self.output_edit = QLineEdit()
        self.attr_label = QLabel()
        self.attr_label.setWordWrap(True)
        self.fit = QComboBox()
        self.fit.addItems(FIT_POLICIES)
        self.faces = QComboBox()
        for key, label in FACE_MODE_LABELS.items():
            self.faces.addItem(label, key)
        self.faces.setToolTip("Auto: on face bases, when facenet-pytorch is installed. Each photo's faces are\n"
                              "aligned, edited and pasted back; the photo keeps its size (fit does not apply).")
        self.recursive = QCheckBox("Include subfolders")
        self.paste_back = QCheckBox("Paste the edit back into the full-size photo")
        self.resume = QCheckBox("Resume (skip files already in the output folder)")
        self.resume.setChecked(True)
        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, 256)
        self.batch_size.setValue(8)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        form = QFormLayout()
        form.addRow("Input folder", folder_field(self, self.input_edit))
        form.addRow("Output folder", folder_field(self, self.output_edit))
        form.addRow("Attribute / mix", self.attr_label)
        form.addRow("Fit policy", self.fit)
        form.addRow("Faces", self.faces)
        form.addRow("", self.recursive)
        form.addRow("", self.paste_back)
        form.addRow("", self.resume)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Seed", self.seed)
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.errors = QTableWidget(0, 3)
        self.errors.setHorizontalHeaderLabels(["File", "Status", "Reason"])
        self.errors.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.errors.verticalHeader().setVisible(False)
        self.errors.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(controller.cancel)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        buttons.addWidget(close)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addWidget(QLabel("Files with problems:"))
        lay.addWidget(self.errors, 1)
        lay.addLayout(buttons)
        self.summary: Optional[dict] = None
        self._running = False
        controller.started.connect(self._on_started)
        controller.busy_changed.connect(self._on_busy)
        controller.progress.connect(self._on_progress)
        controller.message.connect(self._on_message)
        controller.finished.connect(self._on_finished)
        controller.failed.connect(self._on_failed)
        controller.cancelled.connect(self._on_cancelled)
        mixing.changed.connect(self._describe)
        self._describe()
        self._on_busy(controller.busy)

    def _describe(self) -> None:
        problem = self.mixing.validate()
        if problem:
            self.attr_label.setText(f"<span style='color:#d9534f'>Choose attributes in the mixing panel: {problem}</span>")
        else:
            kw = self.mixing.edit_kwargs()
            text = ", ".join(f"{n} ({w:g})" for n, w in kw["attributes"])
            if kw["schedule"]:
                text += f", time-dependent schedule ({len(kw['schedule'])} rows)"
            self.attr_label.setText(text + f", γ = {kw['degree']:g}")

    def start(self) -> bool:
        problem = self.mixing.validate()
        if problem or not self.input_edit.text() or not self.output_edit.text():
            self.status.setText(problem or "Choose the input and output folders.")
            return False
        self.errors.setRowCount(0)
        self.summary = None
        batch = {"input_dir": self.input_edit.text(), "output_dir": self.output_edit.text(),
                 "recursive": self.recursive.isChecked(), "fit": self.fit.currentText(),
                 "paste_back": self.paste_back.isChecked(), "resume": self.resume.isChecked(),
                 "batch_size": self.batch_size.value(), "seed": self.seed.value(),
                 "faces": self.faces.currentData()}
        edit = dict(self.mixing.edit_kwargs(), base_id=self.base_id)
        ok = self.controller.submit("batch", make_batch(batch, edit))
        if not ok:
            self.status.setText("Another job is running; wait for it or cancel it.")
        return ok

    def _on_started(self, kind: str) -> None:
        self._running = kind == "batch"
        if self._running:
            self.progress.setRange(0, 0)
            self.status.setText("Starting…")

    def _on_busy(self, busy: bool) -> None:
        self.start_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy and self.controller.kind == "batch")

    def _on_progress(self, phase: str, step: int, total: int, eta: float) -> None:
        if self._running:
            self.progress.setRange(0, max(1, total))
            self.progress.setValue(step)
            self.status.setText(f"{phase}: {step}/{total}  {eta_text(eta)}")

    def _on_message(self, name: str, payload) -> None:
        if not self._running or name != "file":
            return
        relpath, status, reason = payload
        if status in ("done", "ok", "skipped") and not reason:
            return
        r = self.errors.rowCount()
        self.errors.insertRow(r)
        for j, text in enumerate((relpath, status, reason)):
            self.errors.setItem(r, j, QTableWidgetItem(text))

    def _on_finished(self, kind: str, result) -> None:
        if kind != "batch":
            return
        self._running = False
        self.summary = result
        errs = result.get("errors") or []
        if self.errors.rowCount() == 0:
            for item in errs:
                r = self.errors.rowCount()
                self.errors.insertRow(r)
                parts = list(item) if isinstance(item, (tuple, list)) else [str(item)]
                for j, text in enumerate((parts + ["", "failed", ""])[:3] if len(parts) == 1 else parts[:3]):
                    self.errors.setItem(r, j, QTableWidgetItem(str(text)))
        rate = result.get("images_per_s")
        self.status.setText(f"Done: {result.get('done')} edited, {result.get('skipped')} skipped, "
                            f"{result.get('failed')} failed" + (f" ({rate:.2f} images/s)" if rate else ""))

    def _on_failed(self, kind: str, message: str, details: str, failure: str) -> None:
        if kind == "batch":
            self._running = False
            self.status.setText(message)

    def _on_cancelled(self, kind: str) -> None:
        if kind == "batch":
            self._running = False
            self.status.setText("Cancelled; finished files are kept and a resumed run skips them.")
