"""A live loss plot drawn with QPainter (no plotting library)."""

from __future__ import annotations

import math
from typing import Optional

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QWidget

from ..models.finetune import FinetuneModel


class LossPlot(QWidget):
    def __init__(self, model: FinetuneModel, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.model = model
        self.setMinimumHeight(110)
        model.losses_changed.connect(self.update)

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor(30, 30, 34))
        fm = p.fontMetrics()
        plot = QRectF(self.rect()).adjusted(fm.horizontalAdvance("0.000") + 10, 8, -8, -fm.height() - 6)
        p.setPen(QPen(QColor(80, 80, 86), 1))
        p.drawRect(plot)
        pts = self.model.losses
        p.setPen(QColor(170, 170, 170))
        if not pts:
            p.drawText(plot, Qt.AlignmentFlag.AlignCenter, "loss appears here while fine-tuning")
            p.end()
            return
        values = [v for _, v in pts if math.isfinite(v)] or [0.0]
        lo, hi = min(values), max(values)
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        n = max(self.model.total_steps, pts[-1][0], 1)

        def xy(step: int, v: float) -> QPointF:
            x = plot.left() + plot.width() * (step / n)
            y = plot.bottom() - plot.height() * ((v - lo) / (hi - lo))
            return QPointF(x, y)

        p.drawText(QRectF(0, plot.top() - 4, plot.left() - 4, fm.height()), Qt.AlignmentFlag.AlignRight, f"{hi:.3g}")
        p.drawText(QRectF(0, plot.bottom() - fm.height() + 4, plot.left() - 4, fm.height()),
                   Qt.AlignmentFlag.AlignRight, f"{lo:.3g}")
        p.drawText(QRectF(plot.left(), plot.bottom() + 2, plot.width(), fm.height()), Qt.AlignmentFlag.AlignRight,
                   f"step {pts[-1][0]}/{n}   loss {pts[-1][1]:.4g}")
        path = QPainterPath()
        for i, (s, v) in enumerate(pts):
            if not math.isfinite(v):
                continue
            path.moveTo(xy(s, v)) if i == 0 else path.lineTo(xy(s, v))
        p.setPen(QPen(QColor(90, 170, 255), 2))
        p.drawPath(path)
        if len(pts) == 1:
            p.setBrush(QColor(90, 170, 255))
            p.drawEllipse(xy(*pts[0]), 3, 3)
        p.end()
