"""End-to-end GUI flows on the demo base with real jobs (no engine mocks), offscreen.

Every wait is on the controller's GUI-thread signals. Step counts are tiny so the file stays fast on
2 CPU cores; error dialogs are opened non-modally by MainWindow.report_error and closed here."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor

from tests.gui_helpers import close_boxes

LONG = 120_000


@pytest.fixture
def window(qtbot):
    from dclip_desktop.gui.app import create_window, ensure_app

    ensure_app()
    w = create_window()
    qtbot.addWidget(w)
    w.controller.preview_every = 1
    with qtbot.waitSignal(w.controller.busy_changed, timeout=LONG, check_params_cb=lambda busy: not busy):
        pass
    yield w
    close_boxes(w)
    w.controller.shutdown()


def _red_circle(path: Path) -> Path:
    from dclip_desktop.demo.world import render, sample_spec

    spec = sample_spec(1_000_003, shape="circle", color="red", background="white")
    img, _ = render(spec)
    Image.fromarray(np.asarray(img, dtype=np.uint8)).save(path)
    return path


def _finetune(qtbot, w, name="blue", source="red circle", target="blue circle"):
    p = w.prompt
    p.source_edit.setText(source)
    p.target_edit.setText(target)
    p.name_edit.setText(name)
    p.t0_spin.setValue(300)
    p.s_for.setValue(10)
    p.s_gen.setValue(3)
    p.lora.setValue(4)
    p.sample_count.setValue(3)
    p.batch.setValue(4)
    seen = _Watch(w)
    with qtbot.waitSignal(w.controller.finished, timeout=LONG, check_params_cb=lambda k, r: k == "finetune"):
        assert p.start()
    seen.close()
    with qtbot.waitSignal(w.library.changed, timeout=5000, raising=False):
        pass
    # One bar over sampling, inversion and training: it never went back, and it reached the end.
    assert seen.overall and seen.overall == sorted(seen.overall) and seen.overall[-1] == 1.0
    for bar in zip(*seen.bars):  # the status bar's and the dock's
        assert list(bar) == sorted(bar) and bar[-1] == 1000
    # What it trained on was shown: a grid of the training images on the canvas, the summary in the dock.
    assert len(seen.images) == 1
    grid, summary, label = seen.images[0]
    assert label == "training images" and grid.width() > w.base.resolution
    assert p.images_label.text().lower().startswith(summary[:20].lower())
    assert w.view.preview is None  # and the canvas is back to the user's image afterwards
    return name


class _Watch:
    """Records what a fine-tune shows while it runs (connected after the window's own slots)."""

    def __init__(self, w) -> None:
        self.w, self.overall, self.bars, self.images = w, [], [], []
        c = w.controller
        self._links = [(c.overall, self.overall.append), (c.progress, self._bar), (c.training_images, self._grid)]
        for signal, slot in self._links:
            signal.connect(slot)

    def _bar(self, *_):
        self.bars.append((self.w.job_bar.value(), self.w.prompt.progress.value()))

    def _grid(self, image, summary):
        self.images.append((self.w.view.preview, summary, self.w.view.preview_label))

    def close(self) -> None:
        for signal, slot in self._links:
            signal.disconnect(slot)


def _open(qtbot, w, path):
    with qtbot.waitSignal(w.controller.finished, timeout=LONG, check_params_cb=lambda k, r: k == "open"):
        assert w.open_image(str(path))


def _apply(qtbot, w):
    with qtbot.waitSignal(w.controller.finished, timeout=LONG, check_params_cb=lambda k, r: k == "edit"):
        assert w.mixing_panel.apply(), w.mixing_panel.message.text()


def _mean_rgb(img):
    from dclip_desktop.gui.imaging import qimage_to_array

    return qimage_to_array(img).reshape(-1, 3).astype(float).mean(0)


@pytest.mark.slow
def test_open_finetune_apply_save(qtbot, window, tmp_path):
    from dclip_desktop.demo import world
    from dclip_desktop.demo.evaluate import colour_progress
    from dclip_desktop.gui.imaging import qimage_to_array

    w = window
    _open(qtbot, w, _red_circle(tmp_path / "red.png"))
    assert w.doc.input is not None and w.doc.input.width() == w.base.resolution
    losses = []
    w.controller.losses.connect(lambda s, t, row: losses.append(row))
    photos = tmp_path / "photos"  # train from a folder of red scenes, as a user would
    photos.mkdir()
    for seed in range(6):
        Image.fromarray(world.render(world.sample_spec(seed, color="red"))[0]).save(photos / f"{seed}.png")
    w.prompt.folder_radio.setChecked(True)
    w.prompt.folder_edit.setText(str(photos))
    w.prompt.epochs.setValue(2)
    w.prompt.s_gen.setValue(4)
    _finetune(qtbot, w, source="red", target="blue")
    assert losses and w.finetune.losses, "the live loss plot got no rows"
    assert "blue" in w.mixing.names() and w.mixing.row("blue").checked
    _apply(qtbot, w)
    res = w.doc.current
    assert res is not None and res.kind == "edit"
    before, after = _mean_rgb(w.doc.input), _mean_rgb(res.image)
    assert np.abs(before - after).max() > 0.5, "the edit changed nothing"
    # ... and it moved in the target direction: the shape's colour went from red toward blue.
    import torch

    _, mask = world.render(world.sample_spec(1_000_003, shape="circle", color="red", background="white"))
    as_tensor = [torch.from_numpy(qimage_to_array(q)).permute(2, 0, 1)[None].float() / 127.5 - 1
                 for q in (w.doc.input, res.image)]
    masks = torch.from_numpy(mask)[None]
    assert colour_progress(as_tensor[1], masks, "red", "blue") > colour_progress(as_tensor[0], masks, "red", "blue")
    out = w.save_result(str(tmp_path / "out.png"))
    from dclip_desktop.jobs.metadata import read_metadata

    assert read_metadata(out)["attributes"][0]["name"] == "blue"
    w.doc.use_result_as_input()
    w.undo()
    assert w.doc.can_redo()


def test_cancel_finetune_leaves_no_entry(qtbot, window):
    w = window
    p = w.prompt
    p.source_edit.setText("red circle")
    p.target_edit.setText("blue circle")
    p.name_edit.setText("never")
    p.s_for.setValue(40)
    p.sample_count.setValue(64)
    with qtbot.waitSignal(w.controller.progress, timeout=LONG):
        assert p.start()
    with qtbot.waitSignal(w.controller.cancelled, timeout=LONG):
        p.cancel_button.click()
    assert not w.controller.busy and p.finetune_button.isEnabled()
    w.library.refresh()
    assert all(e.name != "never" for e in w.library.entries)
    assert "Cancelled" in p.status.text()


@pytest.mark.slow
def test_paint_generate_mix_and_library_ops(qtbot, window, tmp_path):
    w = window
    _finetune(qtbot, w, "blue")
    _finetune(qtbot, w, "green", target="green circle")
    # mix two attributes on an image
    _open(qtbot, w, _red_circle(tmp_path / "red.png"))
    w.mixing.set_checked("blue", True)
    w.mixing.set_checked("green", True)
    assert w.mixing.edit_kwargs()["attributes"] == [("blue", 0.5), ("green", 0.5)]
    _apply(qtbot, w)
    assert "blue:0.5 + green:0.5" in w.doc.current.label
    # inline validation
    w.mixing.set_weight("green", 0.9)
    assert "sum to 1" in w.mixing_panel.message.text() and not w.mixing_panel.apply_button.isEnabled()
    w.mixing.equalize()
    # the schedule editor's Split by t0 (both attributes were trained at t0 300: one band, shared)
    w.mixing_panel.schedule_check.setChecked(True)
    qtbot.mouseClick(w.mixing_panel.split_button, Qt.MouseButton.LeftButton)
    assert w.mixing.edit_kwargs()["schedule"] == [(0, [0.5, 0.5])] and w.mixing_panel.table.rowCount() == 1
    assert w.mixing_panel.table.item(0, 0).text() == "0" and w.mixing_panel.message.text() == ""
    w.mixing_panel.schedule_check.setChecked(False)
    # paint strokes → candidates
    w.tabs.setCurrentWidget(w.paint_panel)
    pm = w.paint
    pm.new_blank(w.base.resolution)
    pm.set_color(QColor(220, 30, 30))
    pm.set_brush_size(10)
    pm.begin_stroke()
    pm.stroke(QPointF(10, 16), QPointF(22, 16))
    w.paint_panel.seeds_spin.setValue(2)
    w.paint_panel.rounds_spin.setValue(1)
    w.mixing.set_checked("green", False)
    with qtbot.waitSignal(w.controller.finished, timeout=LONG, check_params_cb=lambda k, r: k == "translate"):
        assert w.paint_panel.generate()
    assert w.paint_panel.candidates.count() == 2
    # library rename / delete / import show up in the mixing panel
    dlg = w.open_library()
    dlg.select("blue")
    with qtbot.waitSignal(w.library.changed, timeout=5000):
        dlg._rename("azure")
    assert "azure" in w.mixing.names() and "blue" not in w.mixing.names()
    bundle = tmp_path / "azure.dclip"
    dlg.select("azure")
    with qtbot.waitSignal(w.controller.finished, timeout=LONG, check_params_cb=lambda k, r: k == "export"):
        dlg._export(str(bundle))  # on the worker: a full-weights bundle is hundreds of MB
    assert bundle.is_file() and dlg.info.text() == f"Exported to {bundle}"
    with qtbot.waitSignal(w.library.changed, timeout=5000):
        dlg._delete()
    assert "azure" not in w.mixing.names()
    with qtbot.waitSignal(w.library.changed, timeout=5000):
        dlg._import(str(bundle))
    assert "azure" in w.mixing.names()
    dlg.close()


def test_job_error_shows_dialog_and_app_goes_on(qtbot, window, tmp_path):
    w = window
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with qtbot.waitSignal(w.error_reported, timeout=LONG) as blocker:
        w.open_image(str(bad))
    assert "broken.png" in blocker.args[1]
    assert w.last_error_box is not None and w.last_error_box.isVisible()
    close_boxes(w)
    assert not w.controller.busy
    _open(qtbot, w, _red_circle(tmp_path / "ok.png"))  # still usable
    assert w.doc.path.endswith("ok.png")


def test_failures_are_shown_by_their_kind(qtbot, window, tmp_path):
    """Real job functions on the real worker: refused settings are explained in the mixing panel, a bug
    and running out of memory open the error box (a bug with its traceback), and the app goes on."""
    from types import SimpleNamespace

    import torch

    from dclip_desktop.gui import tasks
    from dclip_desktop.jobs.errors import OOM_ADVICE

    w = window
    _open(qtbot, w, _red_circle(tmp_path / "red.png"))
    boxes = []
    w.error_reported.connect(lambda title, message: boxes.append((title, message)))

    def fails(submit):
        with qtbot.waitSignal(w.controller.failed, timeout=LONG) as blocker:
            assert submit()
        return blocker.args

    # BadInput: the panel still lists an attribute that is gone from the library (removed by `dclip library rm`)
    gone = SimpleNamespace(id="0" * 12, name="gone", t0=300, base_id=w.base.id, source="red", target="gone")
    w.mixing.set_entries([gone])
    w.mixing.set_checked("gone", True)
    job, message, details, kind = fails(w.mixing_panel.apply)
    assert (job, kind, details) == ("edit", "bad input", "") and "gone" in message
    assert w.mixing_panel.message.text() == message and not boxes
    # A bug (here a TypeError: a field the engine's EditRequest does not have) opens the box, with the traceback
    edit = {**w.mixing.edit_kwargs(), "base_id": w.base.id, "no_such_setting": 1}
    job, message, details, kind = fails(lambda: w.controller.submit("edit", tasks.make_edit(w.doc.input, edit)))
    assert kind == "bug" and message.startswith("Unexpected error (TypeError): ") and "no_such_setting" in message
    assert boxes == [("Edit failed", message)]
    assert w.last_error_box.isVisible() and w.last_error_box.detailedText() == details
    assert details.startswith("Traceback") and "TypeError" in details and "tasks.py" in details
    assert "Unexpected error" not in w.mixing_panel.message.text()
    close_boxes(w)

    def out_of_memory(session, ctx):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    assert fails(lambda: w.controller.submit("edit", out_of_memory))[3] == "out of memory"
    assert boxes[-1] == ("Out of memory", OOM_ADVICE) and w.last_error_box.isVisible()
    assert OOM_ADVICE not in w.mixing_panel.message.text()
    close_boxes(w)
    _open(qtbot, w, _red_circle(tmp_path / "again.png"))  # still usable
    assert w.doc.path.endswith("again.png")
