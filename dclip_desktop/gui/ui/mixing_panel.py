"""The attribute-mixing panel: the current base's library attributes with a checkbox and a weight,
a time-dependent schedule editor (threshold t → weights), the degree of change γ (live once an edit is
applied: gui.live_degree), the edit settings (t0, S_for, S_gen, η, DDPM ancestral, seed), Faces Auto /
On / Off with a tick per face found in the photo, Apply and the γ strip."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractSlider,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from ...errors import Kind
from ..live_degree import FULL, LIVE_KIND, PREVIEW, LiveDegree
from ..models.document import DocumentModel, Result
from ..models.faces import FACE_MODE_LABELS, FacesModel
from ..models.library import LibraryModel
from ..models.mixing import MixingModel
from ..properties import bind, bind_combo, follow
from ..tasks import make_edit, make_preview


def _percent(degree: float) -> int:
    """γ on the 0–100 slider (a γ the engine refuses, NaN, shows at 0; the model keeps it)."""
    return round(degree * 100) if math.isfinite(degree) else 0


class MixingPanel(QWidget):
    """Layout over a MixingModel: the ticks, weights, schedule switch and γ are bound to its properties."""

    applied = Signal(int)  # index of the new result

    def __init__(self, model: MixingModel, library: LibraryModel, doc: DocumentModel, controller,
                 parent: Optional[QWidget] = None, faces: Optional[FacesModel] = None) -> None:
        super().__init__(parent)
        self.model, self.library, self.doc, self.controller = model, library, doc, controller
        self.faces = faces if faces is not None else FacesModel(doc, self)
        self.face_checks: list[QCheckBox] = []
        self.base_id: Optional[str] = None
        self.checks: dict[str, QCheckBox] = {}
        self.weights: dict[str, QDoubleSpinBox] = {}

        self.attr_box = QGroupBox("Attributes")
        self.attr_grid = QGridLayout(self.attr_box)
        self.empty_label = QLabel("No attributes for this base yet: fine-tune one in the prompt panel.")
        self.empty_label.setWordWrap(True)
        equal = QPushButton("Equalize weights")
        equal.clicked.connect(model.equalize)
        self.schedule_check = QCheckBox("Time-dependent schedule (t ≥ threshold → weights)")
        self._build_schedule(model)
        self.degree_slider = QSlider(Qt.Orientation.Horizontal)
        self.degree_slider.setRange(0, 100)
        self.degree_label = QLabel()
        self._build_faces()
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #d9534f;")
        self.apply_button = QPushButton("Apply to image")
        self.apply_button.clicked.connect(lambda: self.apply())
        self.strip_button = QPushButton("γ strip")
        self.strip_button.setToolTip("The same edit at γ = 0, 0.25, …, 1, one result each\n"
                                     "in the results strip; one inversion, the latent cache serves the rest")
        self.strip_button.clicked.connect(lambda: self.apply_strip())
        self._build_settings(model)
        # live γ: what was last applied, by (image, settings but γ); a drag previews only from that
        self._submitted = self._applied = None
        self.live = LiveDegree(controller, self._live_job, self)
        self.degree_slider.sliderMoved.connect(lambda _: self._slide(PREVIEW))
        self.degree_slider.sliderReleased.connect(lambda: self._slide(FULL))
        self.degree_slider.actionTriggered.connect(self._on_slider_action)

        deg = QHBoxLayout()
        deg.addWidget(QLabel("Degree of change γ"))
        deg.addWidget(self.degree_slider, 1)
        deg.addWidget(self.degree_label)
        lay = QVBoxLayout(self)
        lay.addWidget(self.attr_box)
        lay.addWidget(equal, 0, Qt.AlignmentFlag.AlignLeft)
        lay.addWidget(self.schedule_check)
        lay.addWidget(self.schedule_box)
        lay.addLayout(deg)
        lay.addWidget(self.settings_box)
        lay.addLayout(self.faces_row)
        lay.addWidget(self.face_box)
        lay.addWidget(self.message)
        buttons = QHBoxLayout()
        buttons.addWidget(self.apply_button, 1)
        buttons.addWidget(self.strip_button)
        lay.addLayout(buttons)
        lay.addStretch(1)

        bind(model, "use_schedule", self.schedule_check)
        follow(model, "use_schedule", self.schedule_box, self.schedule_box.setVisible)
        bind(model, "degree", self.degree_slider, to_widget=_percent, to_model=lambda v: v / 100)
        bind(model, "degree", self.degree_label, to_widget=lambda d: f"{d:.2f}")
        model.rows_changed.connect(self._rebuild_rows)
        model.changed.connect(self._refresh)
        model.message_changed.connect(self._on_message)
        library.changed.connect(self.reload)
        doc.input_changed.connect(self._refresh)
        doc.input_changed.connect(self._forget_applied)
        controller.busy_changed.connect(self._refresh)
        self.faces.rows_changed.connect(self._rebuild_faces)
        self.faces.changed.connect(self._refresh)
        controller.finished.connect(self._on_finished)
        controller.failed.connect(self._on_failed)
        self._rebuild_rows()
        self._rebuild_faces()

    def _build_settings(self, model: MixingModel) -> None:
        """t0, S_for, S_gen, η, DDPM ancestral and the seed, bound to the model (EditRequest's fields)."""
        self.t0_spin = QSpinBox()
        self.t0_spin.setRange(0, 999)
        self.t0_spin.setSpecialValueText("attribute's")
        self.t0_spin.setToolTip("The return step t0 of the edit; the attribute's own (the largest of a mix's) by\n"
                                "default. A fine-tuned model can be reused at another t0 (the paper's §4.1).")
        self.s_for_spin, self.s_gen_spin = QSpinBox(), QSpinBox()
        for sp in (self.s_for_spin, self.s_gen_spin):
            sp.setRange(2, 1000)
        self.s_for_spin.setToolTip("DDIM steps of the inversion (its latent is cached per image, t0 and S_for)")
        self.s_gen_spin.setToolTip("DDIM steps of the generation")
        self.eta_spin = QDoubleSpinBox()
        self.eta_spin.setRange(0.0, 1.0)
        self.eta_spin.setDecimals(2)
        self.eta_spin.setSingleStep(0.1)
        self.eta_spin.setToolTip("η of the DDIM generation: 0 is deterministic (the paper's), > 0 adds fresh noise\n"
                                 "from the seed (variations)")
        self.ddpm_check = QCheckBox("DDPM ancestral")
        self.ddpm_check.setToolTip("Ancestral sampling: DDIM with η = 1 over the same S_gen steps")
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setToolTip("With η > 0 or DDPM: the noise's seed (image i of a request uses seed + i)")
        self.settings_box = QGroupBox("Edit settings")
        form = QFormLayout(self.settings_box)
        form.addRow("t0", self.t0_spin)
        steps = QHBoxLayout()
        for label, sp in (("S_for", self.s_for_spin), ("S_gen", self.s_gen_spin)):
            steps.addWidget(QLabel(label))
            steps.addWidget(sp)
        form.addRow("Steps", steps)
        noise = QHBoxLayout()
        noise.addWidget(self.eta_spin)
        noise.addWidget(self.ddpm_check)
        form.addRow("η", noise)
        form.addRow("Seed", self.seed_spin)
        bind(model, "t0", self.t0_spin, to_widget=lambda v: int(v or 0), to_model=lambda v: v or None)
        for name, widget in (("s_for", self.s_for_spin), ("s_gen", self.s_gen_spin), ("eta", self.eta_spin),
                             ("ddpm", self.ddpm_check), ("seed", self.seed_spin)):
            bind(model, name, widget)
        follow(model, "ddpm", self.eta_spin, lambda on: self.eta_spin.setEnabled(not on))

    def _build_faces(self) -> None:
        """Faces Auto / On / Off, and the ticks of the faces found (shown only when there are some)."""
        self.faces_combo = QComboBox()
        for key, label in FACE_MODE_LABELS.items():
            self.faces_combo.addItem(label, key)
        self.faces_combo.setToolTip("Auto: on face bases, when facenet-pytorch is installed. Each face is found,\n"
                                    "aligned, edited at the base's size and pasted back into the full photo.\n"
                                    "Off: the whole picture is edited at the base's size.")
        bind_combo(self.faces, "mode", self.faces_combo)
        self.faces_row = QHBoxLayout()
        self.faces_row.addWidget(QLabel("Faces"))
        self.faces_row.addWidget(self.faces_combo)
        self.faces_row.addStretch(1)
        self.face_box = QGroupBox("Faces to edit")
        self.face_layout = QHBoxLayout(self.face_box)

    def _rebuild_faces(self) -> None:
        for cb in self.face_checks:
            self.face_layout.removeWidget(cb)
            cb.deleteLater()
        self.face_checks = []
        for r in self.faces.rows:
            cb = QCheckBox(f"Face {r.number}")
            bind(r, "checked", cb)
            self.face_layout.addWidget(cb)
            self.face_checks.append(cb)
        self.face_box.setVisible(bool(self.face_checks))

    def _build_schedule(self, model: MixingModel) -> None:
        """The schedule table (t ≥ threshold → weights) and its buttons."""
        self.table = QTableWidget(0, 1)
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(90)
        self.table.cellChanged.connect(self._on_cell)
        add = QPushButton("Add row")
        add.clicked.connect(model.add_schedule_row)
        rem = QPushButton("Remove row")
        rem.clicked.connect(lambda: self.table.currentRow() >= 0 and model.remove_schedule_row(self.table.currentRow()))
        reset = QPushButton("Reset")
        reset.clicked.connect(model.reset_schedule)
        self.split_button = split = QPushButton("Split by t0")
        split.setToolTip("Coarse to fine: the attribute with the largest t0 takes the early, noisy steps, each\n"
                         "other one the steps below its own t0; each acts at full strength in its band.")
        split.clicked.connect(model.split_by_t0)
        self.schedule_box = QWidget()
        sl = QVBoxLayout(self.schedule_box)
        sl.setContentsMargins(0, 0, 0, 0)
        sl.addWidget(self.table)
        br = QHBoxLayout()
        for b in (add, rem, reset, split):
            br.addWidget(b)
        br.addStretch(1)
        sl.addLayout(br)

    # --- library → rows ---------------------------------------------------------------------
    def set_base(self, base_id: str) -> None:
        self.base_id = base_id
        self.reload()

    def reload(self) -> None:
        self.model.set_entries(self.library.for_base(self.base_id))

    def _rebuild_rows(self) -> None:
        """One check box and weight per row, bound to the row (they go with the row's widgets)."""
        while self.attr_grid.count():
            w = self.attr_grid.takeAt(0).widget()
            if w is not None and w is not self.empty_label:
                w.deleteLater()
        self.checks.clear()
        self.weights.clear()
        if not self.model.rows:
            self.attr_grid.addWidget(self.empty_label, 0, 0, 1, 3)
            self.empty_label.show()
        else:
            self.empty_label.hide()
        for i, r in enumerate(self.model.rows):
            cb = QCheckBox(r.name)
            cb.setToolTip(f"{r.label}  (t0={r.t0})")
            bind(r, "checked", cb)
            sp = QDoubleSpinBox()
            sp.setRange(-2.0, 2.0)
            sp.setDecimals(3)
            sp.setSingleStep(0.05)
            bind(r, "weight", sp)
            hint = QLabel(r.label)
            hint.setStyleSheet("color: #888;")
            self.attr_grid.addWidget(cb, i, 0)
            self.attr_grid.addWidget(hint, i, 1)
            self.attr_grid.addWidget(sp, i, 2)
            self.checks[r.name] = cb
            self.weights[r.name] = sp
        self._refresh()

    # --- what follows from the model as a whole ---------------------------------------------
    def _refresh(self, *_) -> None:
        """Which weights can be edited, the schedule table, Apply's state and the inline message."""
        m = self.model
        for r in m.rows:
            sp = self.weights.get(r.name)
            if sp is not None:
                sp.setEnabled(r.checked and not m.use_schedule)
        self._fill_table()
        can = not self.controller.busy and m.validate() is None and self.doc.input is not None and not self.faces.message()
        self.apply_button.setEnabled(can)
        self.strip_button.setEnabled(can)
        self._show_message(m.message() or self.faces.message())

    def _fill_table(self) -> None:
        from PySide6.QtWidgets import QTableWidgetItem

        names = [r.name for r in self.model.checked()]
        self.table.blockSignals(True)
        self.table.setColumnCount(1 + len(names))
        self.table.setHorizontalHeaderLabels(["t ≥"] + names)
        self.table.setRowCount(len(self.model.schedule))
        for i, (th, ws) in enumerate(self.model.schedule):
            self.table.setItem(i, 0, QTableWidgetItem(str(th)))
            for j, w in enumerate(ws):
                self.table.setItem(i, j + 1, QTableWidgetItem(f"{w:g}"))
        self.table.blockSignals(False)

    def _on_cell(self, row: int, col: int) -> None:
        text = self.table.item(row, col).text().strip()
        try:
            self.model.set_schedule_cell(row, col, float(text))
        except ValueError:
            self.model.set_engine_message(f"'{text}' is not a number (row {row + 1}).")

    def _on_message(self, text: str) -> None:
        self._show_message(text or self.faces.message())

    def _show_message(self, text: str) -> None:
        self.message.setText(text)

    # --- apply ------------------------------------------------------------------------------
    def _problem(self) -> Optional[str]:
        if self.model.validate():
            return self.model.validate()
        if self.doc.input is None:
            return "Open an image first."
        return self.faces.message() or None

    def _edit_job(self, **kw):
        """make_edit for the document's input with the panel's settings (its faces where they apply)."""
        edit = dict(self.model.edit_kwargs(), base_id=self.base_id)
        if self.faces.active:
            name = Path(self.doc.path).name if self.doc.path else "image"
            return make_edit(self.doc.input, edit, self.faces.picked(), name, **kw)
        return make_edit(self.doc.input, edit, **kw)

    def apply(self, degrees: Optional[list[float]] = None) -> bool:
        problem = self._problem()
        if problem:
            self._show_message(problem)
            return False
        ok = self.controller.submit("edit", self._edit_job(degrees=degrees))
        self._submitted = self._live_key() if ok else None
        return ok

    def apply_strip(self) -> bool:
        """The same edit at each γ of the engine's STRIP_DEGREES, one result each."""
        from ...jobs.edit_job import STRIP_DEGREES  # imports torch: not before the user asks

        return self.apply(list(STRIP_DEGREES))

    # --- live γ -----------------------------------------------------------------------------
    def _live_key(self):
        """What an applied result must match for the slider to preview from it: the image, the settings
        but γ, and the faces ticked."""
        kw = {k: v for k, v in self.model.edit_kwargs().items() if k != "degree"}
        faces = tuple(r.checked for r in self.faces.rows) if self.faces.active else None
        return self.doc.input.cacheKey() if self.doc.input is not None else None, repr(kw), self.base_id, faces

    @property
    def live_ready(self) -> bool:
        """An Apply result exists for the current image and settings: moving γ regenerates it."""
        return self._applied is not None and self._applied == self._live_key()

    def _forget_applied(self) -> None:
        self._applied = self._submitted = None

    def _slide(self, kind: str) -> None:
        if self.live_ready:
            self.live.request(kind)

    def _on_slider_action(self, action: int) -> None:
        """A click on the groove or a key: the full generation (a drag previews, then its release does)."""
        if action != QAbstractSlider.SliderAction.SliderMove and not self.degree_slider.isSliderDown():
            self._slide(FULL)

    def _live_job(self, kind: str):
        if not self.live_ready or self._problem():
            return None
        if kind == PREVIEW:
            edit = dict(self.model.edit_kwargs(), base_id=self.base_id)
            faces = self.faces.picked() if self.faces.active else None
            name = Path(self.doc.path).name if self.doc.path else "image"
            return LIVE_KIND, make_preview(self.doc.input, edit, faces, name)
        self._submitted = self._live_key()
        return "edit", self._edit_job()

    def _on_finished(self, kind: str, result) -> None:
        if kind == "edit":
            self._applied, self._submitted = self._submitted, None
            idx = -1
            metrics = result.metrics or [None] * len(result.images)
            for img, meta, label, m in zip(result.images, result.metadata, result.labels, metrics):
                idx = self.doc.add_result(Result(img, label, meta, "edit", metrics=m))
            self.applied.emit(idx)

    def _on_failed(self, kind: str, message: str, details: str, failure: str) -> None:
        if kind in ("edit", "translate") and failure == Kind.BAD_INPUT:
            self.model.set_engine_message(message)  # settings the engine refused, explained inline


__all__ = ["MixingPanel"]
