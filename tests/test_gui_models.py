"""GUI state models, without widgets or the engine."""

from types import SimpleNamespace

from PySide6.QtCore import QPointF
from PySide6.QtGui import QColor, QImage

from dclip_desktop.gui.models.document import DocumentModel, Result
from dclip_desktop.gui.models.mixing import MixingModel
from dclip_desktop.gui.models.paint import PaintModel


def _entry(i, name):
    return SimpleNamespace(id=f"id{i}", name=name, t0=400, base_id="demo-shapes", source="red", target=name)


def test_mixing_validation_and_request(qapp):
    m = MixingModel()
    m.set_entries([_entry(0, "blue"), _entry(1, "green")])
    assert m.validate() == "Tick at least one attribute."
    m.set_checked("blue", True)
    m.set_checked("green", True)
    assert m.validate() is None
    assert m.edit_kwargs()["attributes"] == [("blue", 0.5), ("green", 0.5)]
    m.set_weight("green", 0.7)
    assert "sum to 1" in m.validate()
    m.set_use_schedule(True)
    m.schedule = [[500, [1.0, 0.0]], [0, [0.0, 1.0]]]
    assert m.validate() is None
    assert m.edit_kwargs()["schedule"] == [(500, [1.0, 0.0]), (0, [0.0, 1.0])]
    m.set_schedule_cell(1, 0, 100)
    assert "last schedule threshold must be 0" in m.validate()
    # Split by t0: the coarser attribute takes the steps above the finer one's t0
    m.rows[0].t0 = 600
    m.equalize()
    m.split_by_t0()
    assert m.use_schedule and m.validate() is None
    assert m.edit_kwargs()["schedule"] == [(401, [1.0, 0.0]), (0, [0.0, 1.0])]
    # a relisting keeps the ticks by id
    m.set_entries([_entry(0, "blue (renamed)"), _entry(1, "green")])
    assert [r.checked for r in m.rows] == [True, True]


def test_paint_model_strokes_undo_redo(qapp):
    p = PaintModel(32)
    before = p.image.copy()
    p.set_color(QColor(30, 60, 220))
    p.set_brush_size(4)
    p.begin_stroke()
    p.stroke(QPointF(4, 16), QPointF(28, 16))
    assert p.image.pixelColor(16, 16) == QColor(30, 60, 220)
    p.undo()
    assert p.image == before
    p.redo()
    assert p.image.pixelColor(16, 16) == QColor(30, 60, 220)
    p.set_eraser(True)
    p.begin_stroke()
    p.stroke(QPointF(16, 16), QPointF(16, 16))
    assert p.image.pixelColor(16, 16) == p.background
    p.fill()
    assert p.image.pixelColor(0, 0) == p.color
    p.clear()
    assert p.image.pixelColor(0, 0) == p.background


def test_document_history_and_undo(qapp):
    d = DocumentModel()
    a, b = QImage(8, 8, QImage.Format.Format_RGB888), QImage(8, 8, QImage.Format.Format_RGB888)
    a.fill(QColor("red"))
    b.fill(QColor("blue"))
    d.set_input(a, "a.png")
    d.add_result(Result(b, "blue"))
    assert d.current.source == a
    d.use_result_as_input()
    assert d.input == b and d.can_undo()
    d.undo()
    assert d.input == a and d.can_redo()
    d.redo()
    assert d.input == b
