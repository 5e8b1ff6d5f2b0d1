"""Stroke painting: brush with colour and size, eraser, fill/clear, undo/redo, a blank canvas at the
base's resolution or paint over the loaded image, and "Generate" → candidates (one per seed)."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QColorDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..models.document import DocumentModel, Result
from ..models.mixing import MixingModel
from ..models.paint import PaintModel
from ..properties import bind, follow
from ..tasks import make_translate
from .canvas import thumb_icon

PALETTE = [(220, 30, 30), (30, 180, 40), (30, 60, 220), (240, 210, 20), (245, 245, 245), (15, 15, 15),
           (128, 128, 128)]


class PaintCanvas(QWidget):
    """Shows the PaintModel's image magnified, and turns mouse drags into strokes."""

    def __init__(self, model: PaintModel, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.model = model
        self._last: Optional[QPointF] = None
        self.setMinimumSize(256, 256)
        self.setCursor(Qt.CursorShape.CrossCursor)
        model.changed.connect(self.update)

    def image_rect(self) -> QRectF:
        s = self.model.size
        side = max(1.0, min(self.width(), self.height()) - 16)
        side = max(s, side // s * s)  # an integer magnification keeps the pixels square
        return QRectF((self.width() - side) / 2, (self.height() - side) / 2, side, side)

    def to_image(self, pos: QPointF) -> QPointF:
        r = self.image_rect()
        k = self.model.size / r.width()
        return QPointF((pos.x() - r.left()) * k, (pos.y() - r.top()) * k)

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(42, 42, 46))
        r = self.image_rect()
        p.drawImage(r, self.model.image)
        p.setPen(QPen(QColor(90, 90, 96), 1))
        p.drawRect(r)
        p.end()

    def mousePressEvent(self, event) -> None:  # noqa: N802
        if event.button() != Qt.MouseButton.LeftButton:
            return
        self.model.begin_stroke()
        self._last = self.to_image(event.position())
        self.model.stroke(self._last, self._last)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self._last is None:
            return
        pt = self.to_image(event.position())
        self.model.stroke(self._last, pt)
        self._last = pt

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        self._last = None


class PaintPanel(QWidget):
    """Tools + canvas + Generate, bound to a PaintModel. Generation uses the mixing panel's attribute(s)."""

    candidates_ready = Signal(int)

    def __init__(self, model: PaintModel, mixing: MixingModel, doc: DocumentModel, controller,
                 parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.model, self.mixing, self.doc, self.controller = model, mixing, doc, controller
        self.canvas = PaintCanvas(model)

        doc_row = QHBoxLayout()
        self.blank_button = QPushButton("New blank canvas")
        self.blank_button.clicked.connect(lambda: model.new_blank(model.resolution))
        self.over_button = QPushButton("Paint over current image")
        self.over_button.clicked.connect(self.paint_over_input)
        doc_row.addWidget(self.blank_button)
        doc_row.addWidget(self.over_button)
        doc_row.addStretch(1)

        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #d9534f;")

        self.candidates = QListWidget()
        self.candidates.setViewMode(QListWidget.ViewMode.IconMode)
        self.candidates.setFlow(QListWidget.Flow.LeftToRight)
        self.candidates.setWrapping(False)
        self.candidates.setIconSize(QSize(96, 96))
        self.candidates.setFixedHeight(140)
        self.candidates.itemDoubleClicked.connect(self._open_candidate)

        lay = QVBoxLayout(self)
        lay.addLayout(self._tool_row(model))
        lay.addLayout(doc_row)
        lay.addWidget(self.canvas, 1)
        lay.addLayout(self._generate_row(model))
        lay.addWidget(self.message)
        lay.addWidget(QLabel("Candidates (double-click to compare on the canvas):"))
        lay.addWidget(self.candidates)
        controller.busy_changed.connect(lambda busy: self.generate_button.setEnabled(not busy))
        controller.finished.connect(self._on_finished)
        controller.failed.connect(self._on_failed)
        self._first_index = -1

    @staticmethod
    def _spin(lo: int, hi: int) -> QSpinBox:
        s = QSpinBox()
        s.setRange(lo, hi)
        return s

    def _tool_row(self, model: PaintModel) -> QHBoxLayout:
        """Colour, palette, brush size, eraser, fill / clear / undo / redo."""
        tools = QHBoxLayout()
        self.color_button = QToolButton()
        self.color_button.setToolTip("Brush colour")
        self.color_button.clicked.connect(self._pick_color)
        follow(model, "color", self.color_button, self._show_color)
        tools.addWidget(self.color_button)
        for rgb in PALETTE:
            b = QToolButton()
            b.setFixedSize(20, 20)
            b.setStyleSheet(f"background: rgb{rgb}; border: 1px solid #555;")
            b.clicked.connect(lambda _=False, c=rgb: model.set_color(QColor(*c)))
            tools.addWidget(b)
        tools.addWidget(QLabel("Size"))
        self.size_spin = self._spin(1, 64)
        bind(model, "brush_size", self.size_spin)
        tools.addWidget(self.size_spin)
        self.eraser_button = QToolButton()
        self.eraser_button.setText("Eraser")
        self.eraser_button.setCheckable(True)
        bind(model, "eraser", self.eraser_button)
        tools.addWidget(self.eraser_button)
        for text, slot in (("Fill", model.fill), ("Clear", model.clear), ("Undo", model.undo), ("Redo", model.redo)):
            b = QToolButton()
            b.setText(text)
            b.clicked.connect(slot)
            tools.addWidget(b)
        tools.addStretch(1)
        return tools

    def _generate_row(self, model: PaintModel) -> QHBoxLayout:
        """How many candidates, the rounds K of stroke-conditioned generation, the first seed, Generate."""
        self.seeds_spin = self._spin(1, 16)
        self.rounds_spin = self._spin(1, 20)
        self.seed_spin = self._spin(0, 2**31 - 1)
        self.generate_button = QPushButton("Generate")
        self.generate_button.setDefault(True)
        self.generate_button.clicked.connect(self.generate)
        gen = QHBoxLayout()
        for label, spin, name in (("Candidates", self.seeds_spin, "seed_count"), ("Rounds K", self.rounds_spin, "rounds"),
                                  ("First seed", self.seed_spin, "first_seed")):
            bind(model, name, spin)
            gen.addWidget(QLabel(label))
            gen.addWidget(spin)
        gen.addWidget(self.generate_button)
        gen.addStretch(1)
        return gen

    def _show_color(self, color: QColor) -> None:
        pm = QPixmap(16, 16)
        pm.fill(color)
        self.color_button.setIcon(pm)

    def _pick_color(self) -> None:
        c = QColorDialog.getColor(self.model.color, self, "Brush colour")
        if c.isValid():
            self.model.set_color(c)

    def paint_over_input(self) -> None:
        if self.doc.input is not None:
            self.model.set_image(self.doc.input, self.model.resolution)

    def generate(self) -> bool:
        problem = self.mixing.validate()
        if problem:
            self.message.setText(f"Choose the target attribute(s) in the mixing panel: {problem}")
            return False
        self.message.setText("")
        m = self.model
        return self.controller.submit("translate", make_translate(m.image, self.mixing.edit_kwargs(), m.seeds(), m.rounds))

    def _on_finished(self, kind: str, result) -> None:
        if kind != "translate":
            return
        self.candidates.clear()
        strokes = self.model.image.copy()
        self._first_index = len(self.doc.results)
        for img, meta, label in zip(result.images, result.metadata, result.labels):
            self.doc.add_result(Result(img, f"strokes {label}", meta, "translate", strokes), select=False)
            self.candidates.addItem(QListWidgetItem(thumb_icon(img, 96), label))
        if result.images:
            self.doc.select(self._first_index)
        self.candidates_ready.emit(len(result.images))

    def _on_failed(self, kind: str, message: str, details: str, failure: str) -> None:
        if kind == "translate":
            self.message.setText(message)

    def _open_candidate(self, item: QListWidgetItem) -> None:
        self.doc.select(self._first_index + self.candidates.row(item))
