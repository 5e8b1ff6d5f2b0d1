"""Live γ (issue 20): after an Apply, dragging the degree slider previews the edit at each position from
the cached latent, releasing it runs the full generation with no inversion, and the γ strip is one
click. Real jobs on the demo base (32²), offscreen; the attribute is a random LoRA saved to the library
by a job on the window's own worker, so its UNet calls are the ones counted."""

from pathlib import Path

import numpy as np
import pytest

from tests.gui_helpers import close_boxes, ready_window

LONG = 120_000
RED_CIRCLE = Path(__file__).resolve().parents[1] / "resources" / "samples" / "red_circle.png"
STEPS = 6  # S_for and S_gen: the file stays fast on 2 CPU cores


def _run(qtbot, w, fn, kind="test"):
    """Run `fn(session, ctx)` on the window's worker; its result."""
    with qtbot.waitSignal(w.controller.finished, timeout=LONG, check_params_cb=lambda k, r: k == kind) as blocker:
        assert w.controller.submit(kind, fn)
    return blocker.args[1]


def save_random_attribute(session, ctx, name="rnd", std=0.05, seed=1):
    """A random LoRA saved by a job on the window's worker, with a text pair (for S_dir)."""
    from tests.attributes import save_random_lora

    return save_random_lora(session, name, seed=seed, std=std, steps=STEPS, source="red circle",
                            target="blue circle")


def inversion_calls(session, ctx):
    return session.inversion_calls


@pytest.fixture
def window(qtbot):
    w = ready_window(qtbot, LONG)
    name = _run(qtbot, w, save_random_attribute)
    w.library.refresh()
    w.mixing.set_checked(name, True)
    w.mixing_panel.s_for_spin.setValue(STEPS)
    w.mixing_panel.s_gen_spin.setValue(STEPS)
    with qtbot.waitSignal(w.controller.finished, timeout=LONG, check_params_cb=lambda k, r: k == "open"):
        assert w.open_image(str(RED_CIRCLE))
    yield w
    close_boxes(w)
    w.controller.shutdown()


def _apply(qtbot, w):
    with qtbot.waitSignal(w.controller.finished, timeout=LONG, check_params_cb=lambda k, r: k == "edit"):
        w.mixing_panel.apply_button.click()


def _pixels(img) -> np.ndarray:
    from dclip_desktop.gui.imaging import qimage_to_array

    return qimage_to_array(img).astype(np.float64)


def test_dragging_previews_every_position_and_release_does_not_invert(qtbot, window):
    w, panel, slider = window, window.mixing_panel, window.mixing_panel.degree_slider
    _apply(qtbot, w)
    assert panel.live_ready and len(w.doc.results) == 1
    calls = _run(qtbot, w, inversion_calls)
    assert calls == STEPS - 1  # the Apply's own inversion, once

    previews = []
    slider.setSliderDown(True)  # what a mouse press on the handle does: sliderPressed, then moves
    positions = list(range(0, 100, 11))
    assert len(positions) == 10
    for pos in positions:
        with qtbot.waitSignal(panel.live.previewed, timeout=LONG) as got:
            slider.setSliderPosition(pos)
        degree, image = got.args
        assert degree == pytest.approx(pos / 100) and w.mixing.degree == pytest.approx(pos / 100)
        assert w.view.preview.cacheKey() == image.cacheKey()  # on the canvas, in place of the after image
        previews.append(image)
    assert len(previews) == 10 and len(w.doc.results) == 1  # previews are not results
    # the colour moves away from the γ = 0 picture steadily as γ grows
    first = _pixels(previews[0])
    dist = [float(np.abs(_pixels(p) - first).mean()) for p in previews]
    assert dist == sorted(dist) and dist[-1] > dist[1] > 0, dist

    with qtbot.waitSignal(w.controller.finished, timeout=LONG, check_params_cb=lambda k, r: k == "edit"):
        slider.setSliderDown(False)  # the release: the full generation at γ = 0.99
    assert len(w.doc.results) == 2 and w.doc.current.label.endswith("γ=0.99")
    assert w.doc.current.metadata["degree"] == pytest.approx(0.99)
    assert w.view.preview is None and w.view.after.cacheKey() == w.doc.current.image.cacheKey()
    # at the demo size a preview is the full generation: the release gives the last preview's pixels
    assert np.array_equal(_pixels(w.doc.current.image), _pixels(previews[-1]))
    assert "MAE" in w.metrics_label.text()
    assert _run(qtbot, w, inversion_calls) == calls  # neither the drag nor the release inverted


def test_a_fast_drag_coalesces_to_the_latest_degree(qtbot, window):
    w, panel, slider = window, window.mixing_panel, window.mixing_panel.degree_slider
    _apply(qtbot, w)
    seen = []
    panel.live.previewed.connect(lambda g, img: seen.append(g))
    jobs = []
    w.controller.started.connect(jobs.append)
    slider.setSliderDown(True)
    for pos in (20, 30, 40, 50, 60):  # faster than the 100 ms throttle: one job, for the last
        slider.setSliderPosition(pos)
    qtbot.waitUntil(lambda: bool(seen) and not w.controller.busy and not panel.live.timer.isActive(), timeout=LONG)
    assert seen == [pytest.approx(0.6)] and jobs == ["live"]
    slider.setSliderDown(False)
    qtbot.waitUntil(lambda: len(w.doc.results) == 2 and not w.controller.busy, timeout=LONG)


def test_before_an_apply_the_slider_stores_the_degree_and_the_strip_is_one_click(qtbot, window):
    from dclip_desktop.jobs.edit_job import STRIP_DEGREES

    w, panel, slider = window, window.mixing_panel, window.mixing_panel.degree_slider
    jobs = []
    w.controller.started.connect(jobs.append)
    slider.setSliderDown(True)
    slider.setSliderPosition(40)
    slider.setSliderDown(False)
    qtbot.wait(300)  # past the throttle
    assert not panel.live_ready and jobs == [] and w.mixing.degree == pytest.approx(0.4)

    with qtbot.waitSignal(w.controller.finished, timeout=LONG, check_params_cb=lambda k, r: k == "edit"):
        panel.strip_button.click()
    assert [r.metadata["degree"] for r in w.doc.results] == list(STRIP_DEGREES)
    assert w.history.count() == len(STRIP_DEGREES)
    assert _run(qtbot, w, inversion_calls) == STEPS - 1  # one inversion for the five
    ssim = [r.metrics["values"]["ssim"] for r in w.doc.results]
    assert ssim[0] > 0.95 and ssim == sorted(ssim, reverse=True), ssim  # γ = 0: the reconstruction
    w.doc.select(2)
    assert f"SSIM {ssim[2]:.3f}" in w.metrics_label.text()
    assert w.mixing.degree == pytest.approx(0.4)  # the strip leaves the panel's γ alone
    panel.s_gen_spin.setValue(STEPS + 1)  # settings other than the applied ones: not live
    assert not panel.live_ready


def test_preview_rule():
    from dclip_desktop.gui.live_degree import PREVIEW_STEPS, preview_steps

    assert preview_steps(32, 40) == 40  # the demo: every preview is the full generation
    assert preview_steps(256, 40) == PREVIEW_STEPS == 5
    assert preview_steps(128, 3) == 3
