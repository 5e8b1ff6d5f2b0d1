"""Widgets and the worker plumbing (offscreen). Engine flows are in test_gui_flows.py."""

import threading
import time
from types import SimpleNamespace

from PySide6.QtCore import QPoint, QSettings, Qt
from PySide6.QtGui import QColor, QImage

from dclip_desktop.errors import BadInput, Kind
from dclip_desktop.gui.models.document import DocumentModel, Result
from dclip_desktop.gui.models.finetune import FinetuneModel
from dclip_desktop.gui.models.paint import PaintModel
from dclip_desktop.gui.ui.canvas import HistoryStrip, ImageView
from dclip_desktop.gui.ui.loss_plot import LossPlot
from dclip_desktop.gui.ui.paint import PaintCanvas
from dclip_desktop.gui.worker import JobController


def _controller(qtbot):
    session = SimpleNamespace(settings=SimpleNamespace(preview_every=1), forget_attributes=lambda: None)
    c = JobController(session=session)
    yield_ = c
    return yield_


def test_worker_runs_off_the_gui_thread_and_cancels(qtbot):
    c = _controller(qtbot)
    try:
        seen = {}

        def job(session, ctx):
            seen["thread"] = threading.current_thread()
            for i in range(1000):
                ctx.cancel.check()
                ctx.progress("work", i + 1, 1000)
                time.sleep(0.005)
            return "done"

        with qtbot.waitSignal(c.progress, timeout=5000):
            assert c.submit("test", job)
        assert not c.submit("test", job)  # one job at a time
        with qtbot.waitSignal(c.cancelled, timeout=5000) as blocker:
            c.cancel()
        assert blocker.args == ["test"]
        assert seen["thread"] is not threading.main_thread()
        assert not c.busy

        def refused(session, ctx):
            raise BadInput("weights must sum to 1")

        with qtbot.waitSignal(c.failed, timeout=5000) as blocker:
            c.submit("edit", refused)
        assert blocker.args == ["edit", "weights must sum to 1", "", "bad input"]  # job, message, details, kind
        with qtbot.waitSignal(c.finished, timeout=5000) as blocker:
            c.submit("ok", lambda s, ctx: 42)
        assert blocker.args == ["ok", 42]
    finally:
        c.shutdown()


def test_worker_reports_failures_by_kind(qtbot):
    """The kind comes from the exception's type (jobs.errors.classify), never from its text."""
    import torch

    from dclip_desktop.jobs.errors import OOM_ADVICE

    c = _controller(qtbot)
    try:
        def failing(exc):
            def job(session, ctx):
                raise exc

            with qtbot.waitSignal(c.failed, timeout=5000) as blocker:
                assert c.submit("edit", job)
            return blocker.args

        # a plain ValueError is a bug, whatever it says: its type and text, and the traceback to report
        job, message, details, kind = failing(ValueError("weights must sum to 1"))
        assert (job, kind) == ("edit", Kind.BUG.value)
        assert message == "Unexpected error (ValueError): weights must sum to 1"
        assert details.startswith("Traceback") and "in job" in details
        assert details.rstrip().endswith("ValueError: weights must sum to 1")
        job, message, details, kind = failing(TypeError("edit_tensor() got an unexpected keyword argument 'x'"))
        assert kind == Kind.BUG.value and message.startswith("Unexpected error (TypeError): edit_tensor()")
        assert "TypeError" in details
        # "out of memory" in a message is not what makes a failure out of memory: the type is
        assert failing(RuntimeError("the queue is out of memory slots"))[3] == Kind.BUG.value
        assert failing(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))[1:] == \
            [OOM_ADVICE, "", Kind.OUT_OF_MEMORY.value]
        with qtbot.waitSignal(c.finished, timeout=5000) as blocker:  # and the worker goes on
            c.submit("ok", lambda s, ctx: 42)
        assert blocker.args == ["ok", 42]
    finally:
        c.shutdown()


def test_library_verify_runs_on_the_worker(qtbot, tmp_path):
    """Verify re-hashes every weights file: a job on the worker thread, its button off until it ends."""
    import torch

    from dclip_desktop.gui.models.library import LibraryModel
    from dclip_desktop.gui.ui.library_dialog import LibraryDialog
    from dclip_desktop.library.store import Library

    class WatchedLibrary(Library):
        def verify(self):
            self.thread = threading.current_thread()
            return super().verify()

    root = tmp_path / "lib"
    library = WatchedLibrary(root)
    weights = {"x.lora_A": torch.ones(1, 2), "x.lora_B": torch.ones(2, 1), "x.lora_scale": torch.tensor(1.0)}
    library.save_attribute("fine", weights, "lora", {"base_id": "demo-shapes"})
    bad = library.save_attribute("flipped", weights, "lora", {"base_id": "demo-shapes"})
    data = bytearray(bad.weights_path.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes: only a fresh hash sees it
    bad.weights_path.write_bytes(bytes(data))
    session = SimpleNamespace(settings=SimpleNamespace(preview_every=1), forget_attributes=lambda: None,
                              library=library)
    c = JobController(session=session)
    try:
        model = LibraryModel(str(root))
        model.refresh()
        dlg = LibraryDialog(model, c)
        qtbot.addWidget(dlg)
        with qtbot.waitSignal(c.finished, timeout=10000, check_params_cb=lambda kind, r: kind == "verify"):
            dlg.verify_button.click()
            assert not dlg.verify_button.isEnabled() and c.kind == "verify"
        assert library.thread is not threading.main_thread()
        assert dlg.verify_button.isEnabled()
        text = dlg.info.text()
        assert text.startswith("Verified 2 attribute(s): ") and "flipped: " in text and "fine" not in text, text
    finally:
        c.shutdown()


def test_previews_are_throttled_qimages(qtbot):
    import torch

    c = _controller(qtbot)
    try:
        got = []
        c.preview.connect(got.append)

        def job(session, ctx):
            for i in range(200):
                ctx.progress("generating", i + 1, 200, torch.zeros(2, 3, 8, 8))
            return None

        with qtbot.waitSignal(c.finished, timeout=5000):
            c.submit("edit", job)
        assert 1 <= len(got) <= 10  # ≤ 10/s, and the last step always comes through
        assert isinstance(got[-1], QImage) and got[-1].width() == 16
    finally:
        c.shutdown()


def test_overall_progress_and_training_images_reach_the_gui_thread(qtbot):
    import torch

    c = _controller(qtbot)
    try:
        fractions, grids = [], []
        c.overall.connect(fractions.append)
        c.training_images.connect(lambda img, summary: grids.append((img, summary)))

        def job(session, ctx):
            ctx.track([("sampling", 2), ("inverting", 1), ("training", 3), ("saved", 0)])
            ctx.on_images(SimpleNamespace(images=torch.zeros(5, 3, 8, 8), summary=lambda: "kept 5 of 30"))
            for name, total in (("sampling", 40), ("inverting", 39), ("training", 72)):
                for step in range(1, total + 1):  # each phase counts from 1 again
                    ctx.progress(name, step, total)
                    time.sleep(0.001)
            ctx.progress("saved", 1, 1)

        with qtbot.waitSignal(c.finished, timeout=10000):
            c.submit("finetune", job)
        assert len(fractions) > 3 and fractions == sorted(fractions) and fractions[-1] == 1.0
        (img, summary), = grids
        assert isinstance(img, QImage) and (img.width(), img.height()) == (3 * 8 + 2 * 2, 2 * 8 + 2)  # 3×2 grid
        assert summary == "kept 5 of 30"
    finally:
        c.shutdown()


def test_paint_canvas_mouse_strokes(qtbot):
    model = PaintModel(32)
    model.set_color(QColor(30, 60, 220))
    canvas = PaintCanvas(model)
    qtbot.addWidget(canvas)
    canvas.resize(320, 320)
    canvas.show()
    r = canvas.image_rect()
    start = QPoint(int(r.left() + r.width() * 0.2), int(r.center().y()))
    end = QPoint(int(r.left() + r.width() * 0.8), int(r.center().y()))
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(canvas, end)
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=end)
    assert model.image.pixelColor(16, 16) == QColor(30, 60, 220)
    assert model.can_undo()


def test_canvas_compare_modes_and_history(qtbot):
    doc = DocumentModel()
    a = QImage(32, 32, QImage.Format.Format_RGB888)
    a.fill(QColor("red"))
    b = QImage(32, 32, QImage.Format.Format_RGB888)
    b.fill(QColor("blue"))
    doc.set_input(a)
    doc.add_result(Result(b, "blue"))
    view, strip = ImageView(), HistoryStrip(doc)
    qtbot.addWidget(view)
    qtbot.addWidget(strip)
    view.resize(400, 300)
    view.set_images(a, b)
    for mode in ("slider", "side", "before", "after"):
        view.set_mode(mode)
        grab = view.grab().toImage()
        assert not grab.isNull()
    view.set_mode("slider")
    view.set_split(0.5)
    img = view.grab().toImage()
    r = view.image_rect()
    left = img.pixelColor(int(r.left() + 5), int(r.center().y() + 20))
    right = img.pixelColor(int(r.right() - 5), int(r.center().y() + 20))
    assert left.red() > 200 and right.blue() > 200
    view.zoom_by(2.0)
    assert view.zoom is not None
    view.fit()
    assert view.zoom is None
    assert strip.count() == 1


def test_loss_plot_draws(qtbot):
    m = FinetuneModel()
    plot = LossPlot(m)
    qtbot.addWidget(plot)
    plot.resize(300, 120)
    for i in range(1, 6):
        m.add_loss(i, 10, {"total": 1.0 / i, "clip": 0.5})
    assert m.losses[-1] == (5, 0.2)
    assert not plot.grab().toImage().isNull()


def test_qsettings_isolated_per_test(qapp):
    from dclip_desktop.gui.app import gui_settings
    from dclip_desktop.jobs.settings import config_dir

    s = gui_settings()
    assert s.fileName().startswith(str(config_dir()))
    assert s.format() == QSettings.Format.IniFormat
