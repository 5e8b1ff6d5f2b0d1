"""The prompt panel: base picker, source/target text, presets, the fine-tune settings (the recipe for
the pair unless set by hand), training images, and "Fine-tune" with one progress bar over all phases
+ ETA, what it trains on, a live loss plot, a per-epoch preview and Cancel."""

from __future__ import annotations

from operator import not_
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

from ...core.config import CLIP_LOSS_FORMS, LR_SCHEDULES, MODES  # pure Python: cheap here
from ...jobs.face_pick import identity_loss  # torch-free
from ..models.bases import BaseInfo
from ..models.finetune import FinetuneModel
from ..properties import bind, bind_combo, follow
from ..tasks import make_finetune
from .loss_plot import LossPlot

MODE_LABELS = {"efficient": "GPU-efficient (Alg. 2)", "full_chain": "Full chain (Alg. 1)"}
CLIP_LOSS_LABELS = {"neglog": "−log((1+cos)/2)", "dir": "1 − cos"}


def eta_text(seconds: float) -> str:
    if seconds < 0:
        return ""
    m, s = divmod(int(round(seconds)), 60)
    return f"ETA {m}:{s:02d}" if m < 60 else f"ETA {m // 60}h{m % 60:02d}"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f}" if n < 100e6 else f"{n / 1e6:.0f}"


def step_text(phase: str, step: int, total: int) -> str:
    """A progress event as the status line shows it: a download's bytes in MB, other steps as counted."""
    from ..worker import DOWNLOADING

    if phase.startswith(DOWNLOADING):
        return f"{phase} {_mb(step)}/{_mb(total)} MB" if total > 0 else f"{phase} {_mb(step)} MB"
    return f"{phase} {step}/{total}"


def show_progress(bar: QProgressBar, fraction: float, step: int, total: int) -> None:
    """The job's overall fraction where it reports one (never goes back across phases), else the phase's."""
    if fraction >= 0:
        bar.setRange(0, 1000)
        bar.setValue(round(fraction * 1000))
    elif total > 2**31 - 1:  # bytes of a big download: beyond a QProgressBar's int range
        bar.setRange(0, 1000)
        bar.setValue(round(1000 * step / total))
    else:
        bar.setRange(0, max(1, total))
        bar.setValue(step)


class PromptPanel(QWidget):
    """Layout over a FinetuneModel: every setting is a widget bound to one of the model's properties."""

    base_changed = Signal(str)
    attribute_saved = Signal(dict)  # {"id", "name", "base_id"}

    def __init__(self, model: FinetuneModel, controller, bases: list[BaseInfo],
                 parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.model, self.controller = model, controller
        self.bases = {b.id: b for b in bases}
        self._build_prompt(bases)
        self._build_settings()
        self._build_training_images()
        self._build_run(model)

        lay = QVBoxLayout(self)
        lay.addLayout(self._settings_form())
        lay.addLayout(self._run_row())
        lay.addWidget(self._progress_box())
        lay.addStretch(1)

        self._running = False
        self._bind(model)
        self._connect(model, controller)
        self._show_presets(model.base_id)
        self._show_hints()

    # --- building -----------------------------------------------------------------------------
    def _build_prompt(self, bases: list[BaseInfo]) -> None:
        """Base picker, presets, the text pair and the attribute's name."""
        self.base_combo = QComboBox()
        for b in bases:
            self.base_combo.addItem(b.title, b.id)
        self.preset_combo = QComboBox()
        self.source_edit = QLineEdit()
        self.source_edit.setPlaceholderText("e.g. red circle")
        self.target_edit = QLineEdit()
        self.target_edit.setPlaceholderText("e.g. blue circle")
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("attribute name, e.g. blue")

    def _build_settings(self) -> None:
        """One widget per FinetuneConfig field the panel offers; the choices are the engine's."""
        self.t0_slider = QSlider(Qt.Orientation.Horizontal)
        self.t0_slider.setRange(1, 999)
        self.t0_spin = self._spin(1, 999)
        self.s_for = self._spin(1, 1000)
        self.s_gen = self._spin(1, 1000)
        self.l1 = self._dspin(0, 100, 0.05)
        self.face = self._dspin(0, 100, 0.05)
        self.identity_label = QLabel("")  # what λ_face does here (jobs.face_pick.identity_loss)
        self.identity_label.setWordWrap(True)
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
        self.epochs = self._spin(1, 100)
        self.mode = QComboBox()
        for key in MODES:
            self.mode.addItem(MODE_LABELS.get(key, key), key)
        self.lora = self._spin(0, 256)
        self.lora.setSpecialValueText("full weights")
        self.batch = self._spin(1, 256)
        self.seed = self._spin(0, 2**31 - 1)

    def _build_training_images(self) -> None:
        self.sample_radio = QRadioButton("Sample from the base")
        self.folder_radio = QRadioButton("Folder")
        grp = QButtonGroup(self)
        grp.addButton(self.sample_radio)
        grp.addButton(self.folder_radio)
        self.sample_count = self._spin(1, 10000)
        self.sample_steps = self._spin(0, 1000)
        self.sample_steps.setSpecialValueText("default")  # the number shows once the engine is loaded
        self.sample_steps.setMinimumWidth(self.sample_steps.fontMetrics().horizontalAdvance("default (40)") + 40)
        self.sample_steps.setToolTip("DDIM steps per training image sampled from the base: fewer are faster but\n"
                                     "blurrier. Samples are cached per base, seed and steps.")
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
        form.addRow("", self.identity_label)
        form.addRow("Learning rate", self._row(self.lr, self.lr_schedule))
        form.addRow("Epochs", self._row(self.epochs, "batch", self.batch, "seed", self.seed))
        form.addRow("Mode", self.mode)
        form.addRow("LoRA rank", self.lora)
        imgs = QVBoxLayout()
        sample = self._row(self.sample_radio, self.sample_count, "steps", self.sample_steps)
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

    def _bind(self, m: FinetuneModel) -> None:
        """Each widget ↔ its model property (0 in the lr and LoRA boxes shows None: auto, full weights)."""
        bind_combo(m, "base_id", self.base_combo)
        for name, widget in (("source", self.source_edit), ("target", self.target_edit), ("name", self.name_edit),
                             ("t0", self.t0_slider), ("t0", self.t0_spin), ("s_for", self.s_for),
                             ("s_gen", self.s_gen), ("lambda_l1", self.l1), ("lambda_face", self.face),
                             ("lr_schedule", self.lr_schedule), ("epochs", self.epochs), ("batch_size", self.batch),
                             ("seed", self.seed), ("sample_count", self.sample_count), ("folder", self.folder_edit),
                             ("use_folder", self.folder_radio)):
            bind(m, name, widget)
        bind_combo(m, "clip_loss_form", self.clip_form)
        bind_combo(m, "mode", self.mode)
        bind(m, "sample_steps", self.sample_steps, to_widget=lambda v: int(v or 0), to_model=lambda v: v or None)
        bind(m, "lr", self.lr, to_widget=lambda v: float(v or 0), to_model=lambda v: v or None)
        bind(m, "lora_rank", self.lora, to_widget=lambda v: int(v or 0), to_model=lambda v: v or None)
        bind(m, "use_folder", self.sample_radio, to_widget=not_, to_model=not_)
        follow(m, "lambda_face", self.identity_label, self._show_identity)

    def _show_sample_default(self, *_) -> None:
        from ...core.finetune import SAMPLE_STEPS  # torch is loaded by now: the engine is ready

        self.sample_steps.setSpecialValueText(f"default ({SAMPLE_STEPS})")

    def _show_identity(self, lambda_face: float) -> None:
        loss = identity_loss(lambda_face)
        self.identity_label.setText(loss.text)
        self.identity_label.setStyleSheet("color: #d9534f;" if loss.state == "unavailable" else "color: #888;")

    def _connect(self, model: FinetuneModel, controller) -> None:
        self.preset_combo.activated.connect(self._on_preset)
        model.base_id_changed.connect(self._on_base)
        for signal in (model.by_hand_changed, model.base_id_changed, model.source_changed, model.target_changed):
            signal.connect(self._show_hints)
        controller.busy_changed.connect(self._on_busy)
        controller.ready.connect(self._show_sample_default)
        controller.started.connect(self._on_started)
        controller.progress.connect(self._on_progress)
        controller.training_images.connect(self._on_training_images)
        controller.losses.connect(self._on_losses)
        controller.epoch_preview.connect(self._on_epoch)
        controller.finished.connect(self._on_finished)
        controller.failed.connect(self._on_failed)
        controller.cancelled.connect(self._on_cancelled)

    @staticmethod
    def _spin(lo: int, hi: int) -> QSpinBox:
        s = QSpinBox()
        s.setRange(lo, hi)
        return s

    @staticmethod
    def _dspin(lo: float, hi: float, step: float) -> QDoubleSpinBox:
        s = QDoubleSpinBox()
        s.setRange(lo, hi)
        s.setSingleStep(step)
        s.setDecimals(3)
        return s

    # --- the recipe ------------------------------------------------------------------------
    def _show_hints(self, *_) -> None:
        """A recipe field set by hand says what the recipe would give."""
        recipe, by_hand = self.model.recipe(), self.model.by_hand
        widgets = {"t0": self.t0_spin, "lambda_l1": self.l1, "lambda_face": self.face, "epochs": self.epochs, "lr": self.lr,
                   "clip_loss_form": self.clip_form}
        for key, w in widgets.items():
            shown = "auto" if key == "lr" and recipe[key] is None else recipe[key]
            w.setToolTip(f"set by hand; the recipe for this pair is {shown} (enter it to follow the recipe)"
                         if key in by_hand else "the recipe for this base and text pair")

    # --- base and presets -------------------------------------------------------------------
    @property
    def base_id(self) -> str:
        return self.model.base_id

    def _show_presets(self, base_id: str) -> None:
        base = self.bases.get(base_id)
        self.preset_combo.clear()
        self.preset_combo.addItem("(custom)", None)
        for pr in base.presets if base is not None else ():
            self.preset_combo.addItem(f"{pr.name}  (t0={pr.t0})", pr)

    def _on_base(self, base_id: str) -> None:
        self._show_presets(base_id)
        self.base_changed.emit(base_id)

    def _on_preset(self, index: int) -> None:
        pr = self.preset_combo.itemData(index)
        if pr is None:
            return
        # The text pair brings the settings: recipe_for finds the preset of exactly this pair.
        self.model.source = pr.source
        self.model.target = pr.target
        if not self.model.name:
            self.model.name = pr.name

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Training images")
        if d:
            self.model.images_dir = d

    # --- run --------------------------------------------------------------------------------
    def start(self) -> bool:
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
        self._set_status(f"{step_text(phase, step, total)}  {eta_text(eta)}")

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
