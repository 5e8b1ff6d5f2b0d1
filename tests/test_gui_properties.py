"""Observable GUI models (gui/properties.py): a Property emits `<name>_changed` once per real change, and
bind() keeps a widget and a model property equal both ways without feedback loops."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from PySide6.QtGui import QColor
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLabel, QLineEdit, QSlider, QSpinBox

from dclip_desktop.core.config import FinetuneConfig
from dclip_desktop.gui.models.finetune import FinetuneModel
from dclip_desktop.gui.properties import Observable, Property, bind, bind_combo, follow
from tests.gui_helpers import recipe_fields as _expected


class Knobs(Observable):
    count = Property(3)
    weight = Property(1.0, float)
    text = Property("")
    on = Property(False, bool)
    choice = Property("b")
    items = Property([])


def _record(signal) -> list:
    seen = []
    signal.connect(seen.append)
    return seen


def test_a_property_signals_each_real_change_once(qapp):
    k = Knobs()
    seen = _record(k.count_changed)
    k.count = 3  # the value it holds: no signal
    k.count = 4
    k.count = 4
    k.count = 5
    assert seen == [4, 5] and k.count == 5
    weights = _record(k.weight_changed)
    k.weight = 1  # converted to 1.0 first: equal, no signal
    k.weight = "0.5"
    assert weights == [0.5] and isinstance(k.weight, float)
    items = _record(k.items_changed)
    k.items = []
    k.items = [[500, [1.0]]]
    k.items = [[500, [1.0]]]  # an equal new list is no change either
    assert items == [[[500, [1.0]]]]
    assert Knobs().items == [] and Knobs().items is not Knobs().items  # a mutable default is not shared


def test_a_bound_spin_box_and_the_model_follow_each_other_without_loops(qtbot):
    k = Knobs()
    spin = QSpinBox()
    qtbot.addWidget(spin)
    spin.setRange(0, 100)
    model_says, widget_says = _record(k.count_changed), _record(spin.valueChanged)
    bind(k, "count", spin)
    assert spin.value() == 3 and widget_says == [3] and model_says == []  # the model's value, shown once
    spin.setValue(7)  # the user
    assert k.count == 7 and model_says == [7] and widget_says == [3, 7]
    k.count = 9  # the model
    assert spin.value() == 9 and model_says == [7, 9] and widget_says == [3, 7, 9]
    k.count = 9
    spin.setValue(9)
    assert model_says == [7, 9] and widget_says == [3, 7, 9]  # nothing echoes


def test_a_value_the_widget_rounds_stays_exact_in_the_model(qtbot):
    k = Knobs()
    spin = QDoubleSpinBox()
    qtbot.addWidget(spin)
    spin.setDecimals(3)
    bind(k, "weight", spin)
    k.weight = 0.3334
    assert spin.value() == 0.333 and k.weight == 0.3334  # shown rounded; not written back
    spin.setValue(0.25)
    assert k.weight == 0.25


def test_text_check_combo_slider_and_label_bindings(qtbot):
    k = Knobs()
    edit, check, combo, data, slider, label = QLineEdit(), QCheckBox(), QComboBox(), QComboBox(), QSlider(), QLabel()
    for w in (edit, check, combo, data, slider, label):
        qtbot.addWidget(w)
    combo.addItems(["a", "b", "c"])
    data.addItem("first", "a")
    data.addItem("second", "b")
    slider.setRange(0, 100)
    bind(k, "text", edit)
    bind(k, "on", check)
    bind(k, "choice", combo)
    bind_combo(k, "choice", data)
    bind(k, "weight", slider, to_widget=lambda w: round(w * 100), to_model=lambda v: v / 100)
    bind(k, "count", label, to_widget=str)
    assert (combo.currentText(), data.currentData(), slider.value(), label.text()) == ("b", "b", 100, "3")
    edit.setText("red")
    check.setChecked(True)
    slider.setValue(25)
    assert (k.text, k.on, k.weight) == ("red", True, 0.25)
    edit.setCursorPosition(1)
    k.text = "red"  # the text it shows: the cursor stays where the user put it
    assert edit.cursorPosition() == 1
    data.setCurrentIndex(0)
    assert k.choice == "a" and combo.currentText() == "a"
    combo.setCurrentText("c")
    assert k.choice == "c" and data.currentData() == "a"  # no item for "c": the combo stays
    k.count = 12
    assert label.text() == "12"


def test_a_binding_goes_with_its_widget(qtbot):
    k = Knobs()
    spin = QSpinBox()
    shown = []
    follow(k, "count", spin, shown.append)
    bind(k, "count", spin)
    spin.deleteLater()
    qtbot.wait(10)
    k.count = 8  # no error from a deleted widget, and nothing shown for it
    assert shown == [3]


def test_observable_fields_mirror_the_config(qapp):
    m = FinetuneModel()
    assert m.params.config == dataclasses.replace(FinetuneConfig(), **m.recipe())
    for f in dataclasses.fields(FinetuneConfig):
        assert hasattr(m, f"{f.name}_changed")
    seen = _record(m.s_for_changed)
    m.s_for = 12
    assert seen == [12] and m.params.config.s_for == 12


# --- the recipe through bound widgets -------------------------------------------------------------
def test_a_recipe_change_reaches_the_widgets_not_set_by_hand(panel):
    m = panel.model
    m.source, m.target = "red", "blue"
    first = _expected("demo-shapes", "red", "blue")
    assert (panel.t0_spin.value(), panel.epochs.value(), panel.l1.value()) == \
        (first["t0"], first["epochs"], first["lambda_l1"])
    panel.t0_spin.setValue(351)  # the user's own t0
    assert m.t0 == 351 and m.by_hand == {"t0"} and panel.t0_slider.value() == 351
    t0_seen, epochs_seen = _record(m.t0_changed), _record(m.epochs_changed)
    m.source, m.target = "circle", "triangle"  # the model's text pair, not the widgets': a new recipe
    second = _expected("demo-shapes", "circle", "triangle")
    assert second["t0"] != 351 and second["clip_loss_form"] != first["clip_loss_form"]
    assert panel.t0_spin.value() == panel.t0_slider.value() == m.t0 == 351 and t0_seen == []
    assert panel.clip_form.currentData() == m.clip_loss_form == second["clip_loss_form"]
    assert panel.epochs.value() == m.epochs == second["epochs"]
    assert epochs_seen == ([] if first["epochs"] == second["epochs"] else [second["epochs"]])
    assert (panel.source_edit.text(), panel.target_edit.text()) == ("circle", "triangle")
    assert "set by hand" in panel.t0_spin.toolTip() and str(second["t0"]) in panel.t0_spin.toolTip()
    assert "set by hand" not in panel.epochs.toolTip()
    panel.t0_slider.setValue(second["t0"])  # back to the recipe's value: it follows the recipe again
    assert m.by_hand == frozenset() and "set by hand" not in panel.t0_spin.toolTip()
    m.source, m.target = "red", "blue"
    assert panel.t0_spin.value() == first["t0"]


def test_panels_hold_no_state_of_their_own(panel, qtbot):
    """What the Fine-tune button submits is the model's, with nothing copied out of the widgets."""
    panel.name_edit.setText("blue")
    panel.lora.setValue(0)
    panel.lr.setValue(0.002)
    panel.folder_radio.setChecked(True)
    panel.folder_edit.setText("/photos")
    p = panel.model.params
    assert (p.name, p.config.lora_rank, p.config.lr, p.images_dir) == ("blue", None, 0.002, "/photos")
    panel.model.images_dir = None
    assert panel.sample_radio.isChecked() and not panel.folder_radio.isChecked()
    panel.model.lr = None
    assert panel.lr.text() == "auto"


def test_mixing_and_paint_widgets_follow_their_models(qtbot):
    from PySide6.QtCore import QObject, Signal

    from dclip_desktop.gui.models.document import DocumentModel
    from dclip_desktop.gui.models.library import LibraryModel
    from dclip_desktop.gui.models.mixing import MixingModel
    from dclip_desktop.gui.models.paint import PaintModel
    from dclip_desktop.gui.ui.mixing_panel import MixingPanel
    from dclip_desktop.gui.ui.paint import PaintPanel

    class Controller(QObject):
        busy_changed, finished, failed = Signal(bool), Signal(str, object), Signal(str, str, str, str)
        busy = False

    c, mixing, doc = Controller(), MixingModel(), DocumentModel()
    mp = MixingPanel(mixing, LibraryModel(), doc, c)
    qtbot.addWidget(mp)
    mixing.set_entries([SimpleNamespace(id=f"id{i}", name=n, t0=400, base_id="demo-shapes", source="red", target=n)
                        for i, n in enumerate(("blue", "green", "gray"))])
    for name in ("blue", "green", "gray"):
        mp.checks[name].setChecked(True)  # a tick shares the weights
    assert [r.weight for r in mixing.rows] == [0.3333, 0.3333, 0.3334]
    assert [mp.weights[n].value() for n in ("blue", "green", "gray")] == [0.333, 0.333, 0.333]
    assert mixing.validate() is None  # the model's weights, not the rounded ones shown
    mixing.set_degree(0.25)
    assert mp.degree_slider.value() == 25 and mp.degree_label.text() == "0.25"
    mp.degree_slider.setValue(60)
    assert mixing.degree == 0.6
    mp.schedule_check.setChecked(True)
    assert mixing.use_schedule and len(mixing.schedule) == 2 and mp.table.rowCount() == 2
    assert not mp.weights["blue"].isEnabled()
    mixing.set_use_schedule(False)
    assert not mp.schedule_check.isChecked() and mp.weights["blue"].isEnabled()

    paint = PaintModel(32)
    pp = PaintPanel(paint, mixing, doc, c)
    qtbot.addWidget(pp)
    pp.size_spin.setValue(9)
    pp.eraser_button.setChecked(True)
    pp.seeds_spin.setValue(3)
    pp.seed_spin.setValue(10)
    assert (paint.brush_size, paint.eraser, paint.seeds()) == (9, True, [10, 11, 12])
    paint.set_color(QColor(30, 60, 220))  # picking a colour leaves the eraser
    assert not pp.eraser_button.isChecked()
    assert pp.color_button.icon().pixmap(16, 16).toImage().pixelColor(8, 8) == QColor(30, 60, 220)
    paint.set_brush_size(0)
    assert paint.brush_size == 1 and pp.size_spin.value() == 1
