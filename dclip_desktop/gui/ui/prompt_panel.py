"""The prompt panel: base picker, source/target text, presets, the fine-tune settings (the recipe for
the pair unless set by hand), training images, and "Fine-tune" with one progress bar over all phases
+ ETA, what it trains on, a live loss plot, a per-epoch preview and Cancel."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ...core.config import CLIP_LOSS_FORMS, LR_SCHEDULES, MODES, FinetuneConfig  # pure Python: cheap here
from ..models.bases import BaseInfo
from ..models.finetune import FinetuneModel, FinetuneParams
from ..tasks import make_finetune
from .loss_plot import LossPlot

MODE_LABELS = {"efficient": "GPU-efficient (Alg. 2)", "full_chain": "Full chain (Alg. 1)"}
CLIP_LOSS_LABELS = {"neglog": "−log((1+cos)/2)", "dir": "1 − cos"}


def eta_text(seconds: float) -> str:
    if seconds < 0:
        return ""
    m, s = divmod(int(round(seconds)), 60)
    return f"ETA {m}:{s:02d}" if m < 60 else f"ETA {m // 60}h{m % 60:02d}"


def show_progress(bar: QProgressBar, fraction: float, step: int, total: int) -> None:
    """The job's overall fraction where it reports one (never goes back across phases), else the phase's."""
    if fraction >= 0:
        bar.setRange(0, 1000)
        bar.setValue(round(fraction * 1000))
    else:
        bar.setRange(0, max(1, total))
        bar.setValue(step)


class PromptPanel(QWidget):
    base_changed = Signal(str)
    attribute_saved = Signal(dict)  # {"id", "name", "base_id"}

    def __init__(self, model: FinetuneModel, controller, bases: list[BaseInfo],
                 parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.model, self.controller = model, controller
        self.bases = {b.id: b for b in bases}
        self._build_prompt(bases)
        self._build_settings(model.params.config)
        self._build_training_images(model.params)
        self._build_run(model)

        lay = QVBoxLayout(self)
        lay.addLayout(self._settings_form())
        lay.addLayout(self._run_row())
        lay.addWidget(self._progress_box())
        lay.addStretch(1)

        self._connect(model, controller)
        self._running = False
        self.set_base(model.params.base_id)
        self._show_recipe()

    # --- building -----------------------------------------------------------------------------
    def _build_prompt(self, bases: list[BaseInfo]) -> None:
        """Base picker, presets, the text pair and the attribute's name."""
        p = self.model.params
        self.base_combo = QComboBox()
        for b in bases:
            self.base_combo.addItem(b.title, b.id)
        self.preset_combo = QComboBox()
        self.source_edit = QLineEdit(p.source)
        self.source_edit.setPlaceholderText("e.g. red circle")
        self.target_edit = QLineEdit(p.target)
        self.target_edit.setPlaceholderText("e.g. blue circle")
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("attribute name, e.g. blue")

    def _build_settings(self, cfg: FinetuneConfig) -> None:
        """One widget per FinetuneConfig field the panel offers; the choices are the engine's."""
        self.t0_slider = QSlider(Qt.Orientation.Horizontal)
        self.t0_slider.setRange(1, 999)
        self.t0_spin = QSpinBox()
        self.t0_spin.setRange(1, 999)
        self.t0_slider.valueChanged.connect(self.t0_spin.setValue)
        self.t0_spin.valueChanged.connect(self.t0_slider.setValue)
        self.s_for = self._spin(1, 1000, cfg.s_for)
        self.s_gen = self._spin(1, 1000, cfg.s_gen)
        self.l1 = self._dspin(0, 100, cfg.lambda_l1, 0.05)
        self.face = self._dspin(0, 100, cfg.lambda_face, 0.05)
        self.clip_form = QComboBox()
        for key in CLIP_LOSS_FORMS:
            self.clip_form.addItem(CLIP_LOSS_LABELS.get(key, key), key)
        self.clip_form.setToolTip("form of the directional CLIP loss")
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(7)
        self.lr.setRange(0, 1)
        self.lr.setSingleStep(1e-4)
        self.lr.setSpecialValueText("auto")
        self.lr.setToolTip("auto: 4e-6 for full weights (paper), 1e-3 for LoRA")
        self.lr_schedule = QComboBox()
        self.lr_schedule.addItems(LR_SCHEDULES)
        self.epochs = self._spin(1, 100, cfg.epochs)
        self.mode = QComboBox()
        for key in MODES:
            self.mode.addItem(MODE_LABELS.get(key, key), key)
        self.lora = QSpinBox()
        self.lora.setRange(0, 256)
        self.lora.setSpecialValueText("full weights")
        self.lora.setValue(cfg.lora_rank or 0)
        self.batch = self._spin(1, 256, cfg.batch_size)
        self.seed = self._spin(0, 2**31 - 1, cfg.seed)

    def _build_training_images(self, p: FinetuneParams) -> None:
        self.sample_radio = QRadioButton("Sample from the base")
        self.folder_radio = QRadioButton("Folder")
        grp = QButtonGroup(self)
        grp.addButton(self.sample_radio)
        grp.addButton(self.folder_radio)
        self.sample_radio.setChecked(True)
        self.sample_count = self._spin(1, 10000, p.sample_count)
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("training photos…")
        self.browse_button = QPushButton("…")
        self.browse_button.setFixedWidth(28)
        self.browse_button.clicked.connect(self._browse)

    def _build_run(self, model: FinetuneModel) -> None:
        """Fine-tune and Cancel, the progress bar and status, the loss plot and the epoch preview."""
        self.finetune_button = QPushButton("Fine-tune")
        self.finetune_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.controller.cancel)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.images_label = QLabel("")  # what the fine-tune trains on (TrainingImages.summary)
        self.images_label.setWordWrap(True)
        self.plot = LossPlot(model)
        self.epoch_label = QLabel()
        self.epoch_label.setFixedSize(96, 96)
        self.epoch_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.epoch_label.setStyleSheet("background: #1e1e22; color: #888;")
        self.epoch_label.setText("epoch\npreview")

    @staticmethod
    def _row(*items) -> QHBoxLayout:
        """A row of widgets; a str is a label, a (widget, stretch) pair a stretched widget."""
        row = QHBoxLayout()
        for item in items:
            if isinstance(item, str):
                row.addWidget(QLabel(item))
            elif isinstance(item, tuple):
                row.addWidget(*item)
            else:
                row.addWidget(item)
        return row

    def _settings_form(self) -> QFormLayout:
        form = QFormLayout()
        form.addRow("Base model", self.base_combo)
        form.addRow("Preset", self.preset_combo)
        form.addRow("Source text", self.source_edit)
        form.addRow("Target text", self.target_edit)
        form.addRow("t0", self._row((self.t0_slider, 1), self.t0_spin))
        form.addRow("Steps", self._row("S_for", self.s_for, "S_gen", self.s_gen))
        form.addRow("Losses", self._row("λ_L1", self.l1, "λ_face", self.face, self.clip_form))
        form.addRow("Learning rate", self._row(self.lr, self.lr_schedule))
        form.addRow("Epochs", self._row(self.epochs, "batch", self.batch, "seed", self.seed))
        form.addRow("Mode", self.mode)
        form.addRow("LoRA rank", self.lora)
        imgs = QVBoxLayout()
        sample = self._row(self.sample_radio, self.sample_count)
        sample.addStretch(1)
        imgs.addLayout(sample)
        imgs.addLayout(self._row(self.folder_radio, (self.folder_edit, 1), self.browse_button))
        form.addRow("Training images", imgs)
        form.addRow("Name", self.name_edit)
        return form

    def _run_row(self) -> QHBoxLayout:
        return self._row(self.finetune_button, self.cancel_button)

    def _progress_box(self) -> QGroupBox:
        box = QGroupBox("Progress")
        bl = QVBoxLayout(box)
        bl.addWidget(self.progress)
        bl.addWidget(self.status)
        bl.addWidget(self.images_label)
        bl.addLayout(self._row((self.plot, 1), self.epoch_label))
        return box

    def _connect(self, model: FinetuneModel, controller) -> None:
        self.base_combo.currentIndexChanged.connect(self._on_base)
        self.preset_combo.activated.connect(self._on_preset)
        self.source_edit.textChanged.connect(lambda text: model.set_prompt(source=text))
        self.target_edit.textChanged.connect(lambda text: model.set_prompt(target=text))
        self._syncing = False  # while the model's recipe is shown: those changes are not the user's
        for key, signal, value in self._recipe_widgets():
            signal.connect(lambda *_, key=key, value=value: self._by_hand(key, value()))
        model.changed.connect(self._show_recipe)
        controller.busy_changed.connect(self._on_busy)
        controller.started.connect(self._on_started)
        controller.progress.connect(self._on_progress)
        controller.training_images.connect(self._on_training_images)
        controller.losses.connect(self._on_losses)
        controller.epoch_preview.connect(self._on_epoch)
        controller.finished.connect(self._on_finished)
        controller.failed.connect(self._on_failed)
        controller.cancelled.connect(self._on_cancelled)

    @staticmethod
    def _spin(lo: int, hi: int, value: int) -> QSpinBox:
        s = QSpinBox()
        s.setRange(lo, hi)
        s.setValue(value)
        return s

    @staticmethod
    def _dspin(lo: float, hi: float, value: float, step: float) -> QDoubleSpinBox:
        s = QDoubleSpinBox()
        s.setRange(lo, hi)
        s.setSingleStep(step)
        s.setDecimals(3)
        s.setValue(value)
        return s

    # --- the recipe ------------------------------------------------------------------------
    def _recipe_widgets(self):
        """(field, the widget's user-change signal, its value) for each recipe field."""
        return (("t0", self.t0_spin.valueChanged, self.t0_spin.value),
                ("lambda_l1", self.l1.valueChanged, self.l1.value),
                ("epochs", self.epochs.valueChanged, self.epochs.value),
                ("lr", self.lr.valueChanged, lambda: self.lr.value() or None),
                ("clip_loss_form", self.clip_form.currentIndexChanged, self.clip_form.currentData))

    def _by_hand(self, key: str, value) -> None:
        if not self._syncing:
            self.model.set_by_hand(key, value)

    def _show_recipe(self) -> None:
        """Show the model's recipe fields; a field set by hand says what the recipe would give."""
        cfg, recipe = self.model.params.config, self.model.recipe()
        self._syncing = True
        try:
            self.t0_spin.setValue(int(cfg.t0))
            self.l1.setValue(float(cfg.lambda_l1))
            self.epochs.setValue(int(cfg.epochs))
            self.lr.setValue(float(cfg.lr or 0))
            self.clip_form.setCurrentIndex(max(0, self.clip_form.findData(cfg.clip_loss_form)))
        finally:
            self._syncing = False
        widgets = {"t0": self.t0_spin, "lambda_l1": self.l1, "epochs": self.epochs, "lr": self.lr,
                   "clip_loss_form": self.clip_form}
        for key, w in widgets.items():
            shown = "auto" if key == "lr" and recipe[key] is None else recipe[key]
            w.setToolTip(f"set by hand; the recipe for this pair is {shown} (enter it to follow the recipe)"
                         if key in self.model.by_hand else "the recipe for this base and text pair")

    # --- base and presets -------------------------------------------------------------------
    @property
    def base_id(self) -> str:
        return self.base_combo.currentData() or self.model.params.base_id

    def set_base(self, base_id: str) -> None:
        i = self.base_combo.findData(base_id)
        if i >= 0:
            self.base_combo.setCurrentIndex(i)
            self._on_base(i)

    def _on_base(self, index: int) -> None:
        base = self.bases.get(self.base_combo.itemData(index))
        self.preset_combo.clear()
        self.preset_combo.addItem("(custom)", None)
        if base is not None:
            for pr in base.presets:
                self.preset_combo.addItem(f"{pr.name}  (t0={pr.t0})", pr)
            self.model.set_prompt(base_id=base.id)
            self.base_changed.emit(base.id)

    def _on_preset(self, index: int) -> None:
        pr = self.preset_combo.itemData(index)
        if pr is None:
            return
        # The text pair brings the settings: recipe_for finds the preset of exactly this pair.
        self.source_edit.setText(pr.source)
        self.target_edit.setText(pr.target)
        if not self.name_edit.text():
            self.name_edit.setText(pr.name)

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Training images")
        if d:
            self.folder_edit.setText(d)
            self.folder_radio.setChecked(True)

    # --- run --------------------------------------------------------------------------------
    def collect(self) -> None:
        """Copy the widgets' values into the model."""
        self.model.update(
            base_id=self.base_id, source=self.source_edit.text(), target=self.target_edit.text(),
            name=self.name_edit.text(), t0=self.t0_spin.value(), s_for=self.s_for.value(), s_gen=self.s_gen.value(),
            lambda_l1=self.l1.value(), lambda_face=self.face.value(), clip_loss_form=self.clip_form.currentData(),
            lr=self.lr.value() or None,
            lr_schedule=self.lr_schedule.currentText(), epochs=self.epochs.value(), mode=self.mode.currentData(),
            lora_rank=self.lora.value() or None, batch_size=self.batch.value(), seed=self.seed.value(),
            images_dir=self.folder_edit.text() if self.folder_radio.isChecked() else None,
            sample_count=self.sample_count.value(),
        )

    def start(self) -> bool:
        self.collect()
        problem = self.model.params.validate()
        if problem:
            self._set_status(problem, error=True)
            return False
        self.model.reset_losses()
        self.epoch_label.setText("epoch\npreview")
        self._running = self.controller.submit("finetune", make_finetune(self.model.params))
        if not self._running:
            self._set_status("Another job is running; wait for it or cancel it.", error=True)
        return self._running

    def _set_status(self, text: str, error: bool = False) -> None:
        self.status.setStyleSheet("color: #d9534f;" if error else "")
        self.status.setText(text)

    def _on_busy(self, busy: bool) -> None:
        self.finetune_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy and self.controller.kind == "finetune")

    def _on_started(self, kind: str) -> None:
        self._running = kind == "finetune"
        self.cancel_button.setEnabled(self._running)
        if self._running:
            self.progress.setRange(0, 0)
            self._set_status("Loading models…")
            self.images_label.setText("")

    def _on_progress(self, phase: str, step: int, total: int, eta: float) -> None:
        if not self._running:
            return
        show_progress(self.progress, self.controller.fraction, step, total)
        self.progress.setFormat(f"{phase} %p%" if self.controller.fraction >= 0 else f"{phase} %v/%m")
        self._set_status(f"{phase}: {step}/{total}  {eta_text(eta)}")

    def _on_training_images(self, grid, summary: str) -> None:
        if self._running:
            self.images_label.setText(summary[:1].upper() + summary[1:] + ".")
            self.images_label.setToolTip("the canvas shows them; the last one is held out for the epoch previews")

    def _on_losses(self, step: int, total: int, row: dict) -> None:
        if self._running:
            self.model.add_loss(step, total, row)

    def _on_epoch(self, epoch: int, image) -> None:
        if self._running:
            self.epoch_label.setPixmap(QPixmap.fromImage(image).scaled(
                96, 96, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation))
            self.epoch_label.setToolTip(f"held-out image after epoch {epoch}")

    def _done(self) -> None:
        self._running = False
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")

    def _on_finished(self, kind: str, result) -> None:
        if kind != "finetune":
            return
        self._done()
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self._set_status(f"Saved '{result['name']}' to the library.")
        self.attribute_saved.emit(result)

    def _on_failed(self, kind: str, message: str, details: str, failure: str) -> None:
        if kind == "finetune":
            self._done()
            self._set_status(message, error=True)

    def _on_cancelled(self, kind: str) -> None:
        if kind == "finetune":
            self._done()
            self._set_status("Cancelled; nothing was saved.")
