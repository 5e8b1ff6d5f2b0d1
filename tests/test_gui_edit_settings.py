"""The edit settings in the mix panel (issue 20): t0, S_for, S_gen, η, DDPM ancestral and the seed go
into the edit and come back with Load settings from a PNG `dclip edit` wrote; the metrics under the
canvas are the CLI's numbers for the same edit; Edit again redoes an output's edit, or says in one line
why not. Real jobs on the demo base, offscreen."""

import json
import re

import numpy as np
import pytest
from PIL import Image

from dclip_desktop.cli.main import main
from tests.gui_helpers import close_boxes, ready_window
from tests.test_gui_live_degree import LONG, RED_CIRCLE, STEPS, save_random_attribute

CLI_STEPS = ["--s-for", str(STEPS), "--s-gen", str(STEPS)]


def _run(qtbot, w, fn, kind):
    with qtbot.waitSignal(w.controller.finished, timeout=LONG, check_params_cb=lambda k, r: k == kind) as blocker:
        assert w.controller.submit(kind, fn)
    return blocker.args[1]


@pytest.fixture
def window(qtbot):
    w = ready_window(qtbot, LONG)
    _run(qtbot, w, save_random_attribute, "test")  # into the library the CLI reads too ($DCLIP_LIBRARY_DIR)
    w.library.refresh()
    with qtbot.waitSignal(w.controller.finished, timeout=LONG, check_params_cb=lambda k, r: k == "open"):
        assert w.open_image(str(RED_CIRCLE))
    yield w
    close_boxes(w)
    w.controller.shutdown()


def _cli(*argv) -> None:
    assert main(["edit", str(RED_CIRCLE), "--attr", "rnd", "-q", *argv]) == 0


def _apply(qtbot, w):
    with qtbot.waitSignal(w.controller.finished, timeout=LONG, check_params_cb=lambda k, r: k == "edit"):
        assert w.mixing_panel.apply(), w.mixing_panel.message.text()


def _pixels(img) -> np.ndarray:
    from dclip_desktop.gui.imaging import qimage_to_array

    return qimage_to_array(img)


def test_load_settings_restores_the_sampling_and_apply_redoes_the_cli_edit(qtbot, window, tmp_path):
    w, p = window, window.mixing_panel
    out = tmp_path / "eta.png"
    _cli("--t0", "250", *CLI_STEPS, "--eta", "0.5", "--seed", "3", "-o", str(out))
    assert w.load_settings_from_image(str(out)) is not None
    assert (p.t0_spin.value(), p.s_for_spin.value(), p.s_gen_spin.value()) == (250, STEPS, STEPS)
    assert p.eta_spin.value() == 0.5 and not p.ddpm_check.isChecked() and p.seed_spin.value() == 3
    assert w.mixing.edit_kwargs()["sampler"] == "ddim" and p.checks["rnd"].isChecked()
    _apply(qtbot, w)
    meta = w.doc.current.metadata
    assert (meta["t0"], meta["eta"], meta["sampler"], meta["seed"]) == (250, 0.5, "ddim", 3)
    # the same edit, noise and all: the CLI's pixels
    assert np.array_equal(_pixels(w.doc.current.image), np.asarray(Image.open(out).convert("RGB")))

    ddpm = tmp_path / "ddpm.png"
    _cli(*CLI_STEPS, "--sampler", "ddpm", "--seed", "7", "-o", str(ddpm))
    w.load_settings_from_image(str(ddpm))
    assert p.ddpm_check.isChecked() and not p.eta_spin.isEnabled() and p.seed_spin.value() == 7
    assert p.t0_spin.value() == 300  # the attribute's, as the PNG records it
    p.t0_spin.setValue(0)  # "attribute's"
    assert p.t0_spin.text() == "attribute's" and w.mixing.t0 is None
    kw = w.mixing.edit_kwargs()
    assert (kw["sampler"], kw["eta"], kw["seed"], kw["t0"]) == ("ddpm", 0.0, 7, None)


def test_metrics_under_the_canvas_are_the_clis(qtbot, window, tmp_path):
    w = window
    report = tmp_path / "m.json"
    _cli(*CLI_STEPS, "-o", str(tmp_path / "cli.png"), "--json", str(report))
    doc = json.loads(report.read_text())
    (row,) = doc["images"]
    w.mixing.set_checked("rnd", True)
    w.mixing_panel.s_for_spin.setValue(STEPS)
    w.mixing_panel.s_gen_spin.setValue(STEPS)
    _apply(qtbot, w)
    shown = dict(re.findall(r"(S_dir|MAE|SSIM|ID|LPIPS) (-?\d+\.\d{3})", w.metrics_label.text()))
    names = {"s_dir": "S_dir", "mae": "MAE", "ssim": "SSIM", "id": "ID", "lpips": "LPIPS"}
    assert shown == {names[k]: f"{v:.3f}" for k, v in row.items() if k in names}
    assert set(shown) >= {"S_dir", "MAE", "SSIM"}
    for name, why in doc["unavailable"].items():  # what the CLI could not measure, the tooltip says why
        assert f"{names[name]} not measured: {why}" in w.metrics_label.toolTip()


def test_edit_again_redoes_an_output_or_says_why_not(qtbot, window, tmp_path):
    from dclip_desktop.jobs.images import save_png
    from dclip_desktop.jobs.metadata import read_metadata

    w = window
    out = tmp_path / "made.png"
    _cli("--t0", "200", *CLI_STEPS, "--eta", "0.3", "--seed", "5", "-o", str(out))
    with qtbot.waitSignal(w.controller.finished, timeout=LONG, check_params_cb=lambda k, r: k == "rerun"):
        assert w.edit_again(str(out))
    res = w.doc.current
    assert res.label == "as made.png" and res.metadata["t0"] == 200 and res.metadata["seed"] == 5
    assert np.array_equal(_pixels(res.image), np.asarray(Image.open(out).convert("RGB")))

    meta = read_metadata(out)
    meta["attributes"][0]["weights_sha256"] = "0" * 64  # made by another attribute of that name
    changed = save_png(Image.open(out), tmp_path / "changed.png", meta)
    errors = []
    w.error_reported.connect(lambda title, message: errors.append((title, message)))
    with qtbot.waitSignal(w.controller.failed, timeout=LONG):
        assert w.edit_again(str(changed))
    (title, message), = errors
    assert title == "Edit again failed" and "has changed since this image was made" in message
    assert "\n" not in message and len(w.doc.results) == 1


def test_sample_steps_and_batch_faces_reach_the_jobs(qtbot, window, tmp_path):
    w = window
    p = w.prompt
    assert p.sample_steps.text() == "default (40)"  # the engine's SAMPLE_STEPS, once it is loaded
    assert w.finetune.params.to_request().sample_steps == 40
    p.sample_steps.setValue(12)
    assert w.finetune.params.to_request().sample_steps == 12
    w.finetune.update(source="red", target="blue", name="b")
    assert w.finetune.params.validate() is None
    p.sample_steps.setValue(1)
    assert "sample steps" in (w.finetune.params.validate() or "")

    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.open(RED_CIRCLE).save(src / "circle.png")
    w.mixing.set_checked("rnd", True)
    w.mixing_panel.s_for_spin.setValue(STEPS)
    w.mixing_panel.s_gen_spin.setValue(STEPS)
    dlg = w.open_batch()
    dlg.input_edit.setText(str(src))
    for mode, status in (("on", "failed"), ("off", "done")):  # no face in a circle: "on" fails the file
        dlg.output_edit.setText(str(dst / mode))
        dlg.faces.setCurrentIndex(dlg.faces.findData(mode))
        with qtbot.waitSignal(w.controller.finished, timeout=LONG, check_params_cb=lambda k, r: k == "batch"):
            assert dlg.start()
        assert dlg.summary[status] == 1, dlg.summary
    assert Image.open(dst / "off" / "circle.png").size == (32, 32)
    dlg.close()
