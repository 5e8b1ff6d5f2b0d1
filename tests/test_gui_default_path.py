"""Issue #16 item 3, the GUI: open the sample, choose the "Red → blue" preset, click Fine-tune, click
Apply, with every other setting as the window starts. The red circle must come out blue, in place."""

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests.gui_helpers import close_boxes

pytestmark = pytest.mark.slow  # acceptance: fine-tunes the demo base end to end

LONG = 600_000
SAMPLE = Path(__file__).resolve().parents[1] / "resources" / "samples" / "red_circle.png"


def test_preset_finetune_apply_turns_the_circle_blue(qtbot):
    from dclip_desktop.demo import world
    from dclip_desktop.gui.app import create_window, ensure_app
    from dclip_desktop.gui.imaging import qimage_to_array

    ensure_app()
    w = create_window()
    qtbot.addWidget(w)
    try:
        if w.controller.busy:  # the window loads the base on start
            with qtbot.waitSignal(w.controller.busy_changed, timeout=LONG, check_params_cb=lambda busy: not busy):
                pass
        with qtbot.waitSignal(w.controller.finished, timeout=LONG, check_params_cb=lambda k, r: k == "open"):
            assert w.open_image(str(SAMPLE))
        p = w.prompt
        index = next(i for i in range(p.preset_combo.count()) if p.preset_combo.itemText(i).startswith("Red → blue"))
        p.preset_combo.setCurrentIndex(index)
        p.preset_combo.activated.emit(index)  # what a user's pick emits
        assert p.sample_radio.isChecked()  # the default: training images sampled from the base
        with qtbot.waitSignal(w.controller.finished, timeout=LONG, check_params_cb=lambda k, r: k == "finetune"):
            qtbot.mouseClick(p.finetune_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: w.mixing_panel.apply_button.isEnabled(), timeout=10_000)
        with qtbot.waitSignal(w.controller.finished, timeout=LONG, check_params_cb=lambda k, r: k == "edit"):
            qtbot.mouseClick(w.mixing_panel.apply_button, Qt.MouseButton.LeftButton)
        before, after = qimage_to_array(w.doc.input), qimage_to_array(w.doc.current.image)
        mask = world.largest_component(world.foreground_mask(before))
        out = world.largest_component(world.foreground_mask(after))
        iou = (mask & out).sum() / (mask | out).sum()
        print("dominant colour", world.dominant_color(after, mask), "IoU", round(float(iou), 3))
        assert world.dominant_color(after, mask) == "blue"
        assert iou >= 0.75
        assert np.abs(before.astype(float) - after.astype(float))[~mask].mean() / 255 <= 0.05
    finally:
        close_boxes(w)
        w.controller.shutdown()
