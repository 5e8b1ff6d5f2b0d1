"""The stroke-painting document: a small RGB image at the base's resolution, the brush, undo, and the
settings of "Generate" (how many candidates, from which seed, how many rounds)."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QObject, QPointF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen

from ..properties import Observable, Property
from .history import History

MAX_UNDO = 50


def _brush_px(px) -> int:
    return max(1, int(px))


class PaintModel(Observable):
    """The canvas's pixels and undo, and the brush and Generate settings the paint panel binds to."""

    color = Property(QColor(220, 30, 30), QColor)
    brush_size = Property(4, _brush_px)
    eraser = Property(False, bool)
    seed_count = Property(4, int)  # candidates: one per seed
    first_seed = Property(0, int)
    rounds = Property(8, int)  # K rounds of stroke-conditioned generation
    changed = Signal()  # pixels changed

    def __init__(self, size: int = 32, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.background = QColor(245, 245, 245)
        self.brush_size = max(1, size // 8)
        self.resolution = size  # the base's: what a new blank canvas and "paint over" use
        self.image = self._blank(size)
        self.history: History[QImage] = History(MAX_UNDO)

    def _blank(self, size: int) -> QImage:
        img = QImage(size, size, QImage.Format.Format_RGB888)
        img.fill(self.background)
        return img

    @property
    def size(self) -> int:
        return self.image.width()

    def seeds(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seed_count))

    # --- brush ------------------------------------------------------------------------------
    def set_color(self, color: QColor) -> None:
        """Pick a colour (and leave the eraser)."""
        self.color = color
        self.eraser = False

    def set_brush_size(self, px: int) -> None:
        self.brush_size = px

    def set_eraser(self, on: bool) -> None:
        self.eraser = on

    # --- document ---------------------------------------------------------------------------
    def _snapshot(self) -> None:
        self.history.push(self.image.copy())

    def set_resolution(self, size: int) -> None:
        """Another base: a blank canvas at its resolution (undoable)."""
        if size != self.resolution:
            self.resolution = size
            self.new_blank(size)

    def new_blank(self, size: Optional[int] = None) -> None:
        self._snapshot()
        self.image = self._blank(size or self.size)
        self.changed.emit()

    def set_image(self, image: QImage, size: Optional[int] = None) -> None:
        """Paint over an image (scaled to the base resolution)."""
        self._snapshot()
        size = size or self.size
        img = image.convertToFormat(QImage.Format.Format_RGB888)
        if img.width() != size or img.height() != size:
            img = img.scaled(size, size, Qt.AspectRatioMode.IgnoreAspectRatio,
                             Qt.TransformationMode.SmoothTransformation)
        self.image = img.copy()
        self.changed.emit()

    def begin_stroke(self) -> None:
        self._snapshot()

    def stroke(self, p0: QPointF, p1: QPointF) -> None:
        """A segment of the current stroke, in image coordinates."""
        painter = QPainter(self.image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        pen = QPen(self.background if self.eraser else self.color, self.brush_size, Qt.PenStyle.SolidLine,
                   Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin)
        painter.setPen(pen)
        if p0 == p1:
            painter.drawPoint(p0)
        else:
            painter.drawLine(p0, p1)
        painter.end()
        self.changed.emit()

    def fill(self) -> None:
        self._snapshot()
        self.image.fill(self.color)
        self.changed.emit()

    def clear(self) -> None:
        self._snapshot()
        self.image.fill(self.background)
        self.changed.emit()

    def can_undo(self) -> bool:
        return self.history.can_undo()

    def can_redo(self) -> bool:
        return self.history.can_redo()

    def undo(self) -> None:
        if self.history.can_undo():
            self.image = self.history.undo(self.image)
            self.changed.emit()

    def redo(self) -> None:
        if self.history.can_redo():
            self.image = self.history.redo(self.image)
            self.changed.emit()
