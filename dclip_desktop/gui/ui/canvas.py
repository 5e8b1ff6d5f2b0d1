"""The image canvas: zoom and pan, before/after compare (slider or side by side), a live preview of
the predicted x0 while sampling, numbered boxes around the faces found in a photo, and the history
strip of results."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QMenu, QWidget

from ..models.document import DocumentModel

MODES = ("slider", "side", "before", "after")
MODE_LABELS = {"slider": "Compare: slider", "side": "Compare: side by side", "before": "Before", "after": "After"}


class ImageView(QWidget):
    """Shows `before` and `after`, compared by `mode`; a live `preview` replaces `after` while set."""

    zoom_changed = Signal(float)

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.before: Optional[QImage] = None
        self.after: Optional[QImage] = None
        self.preview: Optional[QImage] = None
        self.preview_label = ""
        self.mode = "slider"
        self.split = 0.5
        self.zoom: Optional[float] = None  # None: fit the window
        self.pan = QPointF(0, 0)
        self._drag: Optional[tuple[str, QPointF]] = None
        self.faces: list[tuple[tuple[float, float, float, float], bool]] = []  # (box in image pixels, ticked)
        self.setMinimumSize(240, 240)
        self.setMouseTracking(True)
        self.setAutoFillBackground(False)

    # --- state ------------------------------------------------------------------------------
    def set_images(self, before: Optional[QImage], after: Optional[QImage]) -> None:
        self.before, self.after = before, after
        self.update()

    def set_preview(self, image: Optional[QImage], label: str = "") -> None:
        self.preview, self.preview_label = image, label
        self.update()

    def set_faces(self, faces: list[tuple[tuple[float, float, float, float], bool]]) -> None:
        """Boxes to draw over the image, numbered from 1 in this order; an unticked one is dimmed."""
        self.faces = list(faces)
        self.update()

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(mode)
        self.mode = mode
        self.update()

    def set_split(self, split: float) -> None:
        self.split = min(1.0, max(0.0, split))
        self.update()

    def fit(self) -> None:
        self.zoom, self.pan = None, QPointF(0, 0)
        self.zoom_changed.emit(self.effective_zoom())
        self.update()

    def zoom_by(self, factor: float) -> None:
        self.zoom = min(64.0, max(0.1, self.effective_zoom() * factor))
        self.zoom_changed.emit(self.zoom)
        self.update()

    def _shown(self) -> tuple[Optional[QImage], Optional[QImage]]:
        after = self.preview if self.preview is not None else self.after
        return self.before, after

    def _ref(self) -> Optional[QImage]:
        b, a = self._shown()
        return b if b is not None else a

    def _panes(self) -> int:
        b, a = self._shown()
        return 2 if self.mode == "side" and b is not None and a is not None else 1

    def effective_zoom(self) -> float:
        if self.zoom is not None:
            return self.zoom
        ref = self._ref()
        if ref is None or ref.isNull():
            return 1.0
        n = self._panes()
        w = (self.width() - 16 - 8 * (n - 1)) / (n * ref.width())
        h = (self.height() - 16) / ref.height()
        return max(0.05, min(w, h))

    def image_rect(self, pane: int = 0) -> QRectF:
        ref = self._ref()
        if ref is None:
            return QRectF()
        z = self.effective_zoom()
        n = self._panes()
        w, h = ref.width() * z, ref.height() * z
        total_w = n * w + 8 * (n - 1)
        x0 = (self.width() - total_w) / 2 + self.pan.x() + pane * (w + 8)
        y0 = (self.height() - h) / 2 + self.pan.y()
        return QRectF(x0, y0, w, h)

    # --- painting ---------------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(42, 42, 46))
        before, after = self._shown()
        if before is None and after is None:
            p.setPen(QColor(170, 170, 170))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter,
                       "Open an image (Ctrl+O) or drop one here.\nThen fine-tune an attribute, or apply one from the mix.")
            p.end()
            return
        smooth = self.effective_zoom() < 3
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        mode = self.mode if (before is not None and after is not None) else ("after" if after is not None else "before")
        if mode == "side":
            for i, (img, tag) in enumerate(((before, "before"), (after, self._after_tag()))):
                r = self.image_rect(i)
                p.drawImage(r, img)
                self._tag(p, r, tag, left=True)
        elif mode == "slider":
            r = self.image_rect()
            p.drawImage(r, after)
            cut = r.left() + r.width() * self.split
            p.save()
            p.setClipRect(QRectF(r.left(), r.top(), cut - r.left(), r.height()))
            p.drawImage(r, before)
            p.restore()
            p.setPen(QPen(QColor(255, 255, 255), 2))
            p.drawLine(QPointF(cut, r.top()), QPointF(cut, r.bottom()))
            p.setBrush(QColor(255, 255, 255))
            p.drawEllipse(QPointF(cut, r.center().y()), 7, 7)
            self._tag(p, r, "before", left=True)
            self._tag(p, r, self._after_tag(), left=False)
        else:
            img = before if mode == "before" else after
            r = self.image_rect()
            p.drawImage(r, img)
            self._tag(p, r, mode if mode == "before" else self._after_tag(), left=True)
        self._draw_faces(p)
        p.end()

    def face_rect(self, box: tuple[float, float, float, float], pane: int = 0) -> QRectF:
        """A face's box (image pixels) in widget coordinates."""
        ref, r = self._ref(), self.image_rect(pane)
        if ref is None or ref.width() == 0:
            return QRectF()
        z = r.width() / ref.width()
        x1, y1, x2, y2 = box
        return QRectF(r.left() + x1 * z, r.top() + y1 * z, (x2 - x1) * z, (y2 - y1) * z)

    def _draw_faces(self, p: QPainter) -> None:
        if not self.faces or self.preview is not None:  # a preview is the aligned faces, not the photo
            return
        p.setBrush(Qt.BrushStyle.NoBrush)
        for pane in range(self._panes()):
            for number, (box, ticked) in enumerate(self.faces, 1):
                rect = self.face_rect(box, pane)
                pen = QPen(QColor(80, 220, 120) if ticked else QColor(160, 160, 160), 2)
                if not ticked:
                    pen.setStyle(Qt.PenStyle.DashLine)
                p.setPen(pen)
                p.drawRect(rect)
                fm = p.fontMetrics()
                tag = QRectF(rect.left(), rect.top() - fm.height() - 4, fm.horizontalAdvance(str(number)) + 10,
                             fm.height() + 4)
                p.fillRect(tag, pen.color())
                p.setPen(QColor(0, 0, 0))
                p.drawText(tag, Qt.AlignmentFlag.AlignCenter, str(number))

    def _after_tag(self) -> str:
        return (self.preview_label or "preview") if self.preview is not None else "after"

    def _tag(self, p: QPainter, r: QRectF, text: str, left: bool) -> None:
        fm = p.fontMetrics()
        w = fm.horizontalAdvance(text) + 10
        x = r.left() + 4 if left else r.right() - w - 4
        box = QRectF(x, r.top() + 4, w, fm.height() + 4)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(0, 0, 0, 150))
        p.drawRoundedRect(box, 3, 3)
        p.setPen(QColor(255, 255, 255))
        p.drawText(box, Qt.AlignmentFlag.AlignCenter, text)

    # --- interaction ------------------------------------------------------------------------
    def wheelEvent(self, event) -> None:  # noqa: N802
        self.zoom_by(1.25 if event.angleDelta().y() > 0 else 0.8)

    def mousePressEvent(self, event) -> None:  # noqa: N802
        pos = event.position()
        if event.button() == Qt.MouseButton.LeftButton and self.mode == "slider" and self.image_rect().contains(pos):
            self._drag = ("split", pos)
            self._set_split_at(pos)
        else:
            self._drag = ("pan", pos)
            self.setCursor(Qt.CursorShape.ClosedHandCursor)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self._drag is None:
            return
        kind, last = self._drag
        pos = event.position()
        if kind == "split":
            self._set_split_at(pos)
        else:
            self.pan += pos - last
            self._drag = ("pan", pos)
            self.update()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        self._drag = None
        self.unsetCursor()

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        self.fit()

    def _set_split_at(self, pos: QPointF) -> None:
        r = self.image_rect()
        if r.width() > 0:
            self.set_split((pos.x() - r.left()) / r.width())


def thumb_icon(img: QImage, size: int = 72) -> QIcon:
    mode = Qt.TransformationMode.FastTransformation if img.width() < size / 2 else \
        Qt.TransformationMode.SmoothTransformation
    return QIcon(QPixmap.fromImage(img.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, mode)))


class HistoryStrip(QListWidget):
    """Thumbnails of the document's results; any of them can be applied, saved or compared."""

    apply_requested = Signal(int)
    save_requested = Signal(int)
    again_requested = Signal()  # File → Edit again with these settings

    def __init__(self, doc: DocumentModel, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.doc = doc
        self.setViewMode(QListWidget.ViewMode.IconMode)
        self.setFlow(QListWidget.Flow.LeftToRight)
        self.setWrapping(False)
        self.setIconSize(QSize(72, 72))
        self.setFixedHeight(118)
        self.setMovement(QListWidget.Movement.Static)
        self.setSpacing(4)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)
        self.currentRowChanged.connect(self._on_row)
        doc.history_changed.connect(self._rebuild)
        doc.selection_changed.connect(self._select)
        self._rebuild()

    def _rebuild(self) -> None:
        self.blockSignals(True)
        self.clear()
        for r in self.doc.results:
            item = QListWidgetItem(thumb_icon(r.image), r.label[:18])
            item.setToolTip(r.label)
            self.addItem(item)
        self.setCurrentRow(self.doc.selected)
        self.blockSignals(False)

    def _select(self, index: int) -> None:
        if self.currentRow() != index:
            self.blockSignals(True)
            self.setCurrentRow(index)
            self.blockSignals(False)

    def _on_row(self, row: int) -> None:
        if row >= 0 and row != self.doc.selected:
            self.doc.select(row)

    def _menu(self, pos) -> None:
        row = self.indexAt(pos).row()
        m = QMenu(self)
        if row >= 0:
            m.addAction("Use as input (apply)", lambda: self.apply_requested.emit(row))
            m.addAction("Compare with its input", lambda: self.doc.select(row))
            m.addAction("Save…", lambda: self.save_requested.emit(row))
            m.addSeparator()
        m.addAction("Edit again with the settings of an output…", self.again_requested.emit)
        m.exec(self.viewport().mapToGlobal(pos))
