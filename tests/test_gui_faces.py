"""Faces from any photo in the GUI (issue 19): Faces Auto / On / Off, numbered boxes on the canvas and
a tick per face, Apply on the ticked faces only, the no-face message, and the identity-loss label.

Real jobs on the demo base (32², domain 'shapes', so Faces is set to On) with a random LoRA attribute
and facenet-pytorch's MTCNN, whose weights ship in its wheel: this runs offline."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dclip_desktop.jobs.face_pick import NO_FACE_MESSAGE, identity_loss
from tests.attributes import save_random_lora
from tests.gui_helpers import close_boxes

PHOTO = Path(__file__).parent / "data" / "astronaut.jpg"
LONG = 120_000


def _save_random_attribute() -> None:
    """A random LoRA on the demo base, in the test's library: a visible edit in a few steps."""
    from dclip_desktop.jobs.session import Session
    from dclip_desktop.jobs.settings import Settings

    save_random_lora(Session(Settings(device="cpu", precision="fp32", offline=True)), seed=1, std=0.05, steps=3)


@pytest.fixture
def window(qtbot):
    pytest.importorskip("facenet_pytorch")
    from dclip_desktop.gui.app import create_window, ensure_app

    _save_random_attribute()
    ensure_app()
    w = create_window()
    qtbot.addWidget(w)
    with qtbot.waitSignal(w.controller.busy_changed, timeout=LONG, check_params_cb=lambda busy: not busy):
        pass
    w.library.refresh()
    w.mixing.set_checked("rnd", True)
    combo = w.mixing_panel.faces_combo
    combo.setCurrentIndex(combo.findData("on"))
    assert w.faces.mode == "on"
    yield w
    close_boxes(w)
    w.controller.shutdown()


def _open(qtbot, w, path: Path) -> None:
    with qtbot.waitSignal(w.controller.finished, timeout=LONG, check_params_cb=lambda k, r: k == "open"):
        assert w.open_image(str(path))


def _two_faces(tmp_path: Path) -> tuple[Path, np.ndarray]:
    photo = Image.open(PHOTO).convert("RGB")
    two = Image.new("RGB", (1024, 512))
    two.paste(photo, (0, 0))
    two.paste(photo.transpose(Image.FLIP_LEFT_RIGHT), (512, 0))
    path = tmp_path / "two.png"
    two.save(path)
    return path, np.asarray(two, dtype=int)


def test_two_faces_get_boxes_and_ticks_and_apply_edits_only_the_ticked_one(qtbot, window, tmp_path):
    from dclip_desktop.gui.imaging import qimage_to_array

    w = window
    path, original = _two_faces(tmp_path)
    _open(qtbot, w, path)
    panel = w.mixing_panel
    # the full photo is the input, with a numbered box and a tick per face, all ticked
    assert (w.doc.input.width(), w.doc.input.height()) == (1024, 512)
    assert [cb.text() for cb in panel.face_checks] == ["Face 1", "Face 2"]
    assert all(cb.isChecked() for cb in panel.face_checks) and not panel.face_box.isHidden()
    assert [ticked for _, ticked in w.view.faces] == [True, True]
    (b1, _), (b2, _) = w.view.faces
    assert b1[2] < 512 <= b2[0]  # face 1 is the left one
    # the canvas draws the boxes: the top edge of face 1's box is painted in the ticked colour
    w.view.resize(800, 500)
    shot = w.view.grab().toImage()
    r = w.view.face_rect(b1)
    edge = shot.pixelColor(int(r.center().x()), int(round(r.top())))
    assert edge.green() > 180 and edge.red() < 120

    panel.face_checks[1].setChecked(False)
    assert [ticked for _, ticked in w.view.faces] == [True, False]
    with qtbot.waitSignal(w.controller.finished, timeout=LONG, check_params_cb=lambda k, r: k == "edit"):
        assert panel.apply()
    res = w.doc.current
    assert "1 face" in res.label and res.metadata["faces"] == 1
    out = qimage_to_array(res.image).astype(int)
    assert out.shape == original.shape  # the full photo, with the edit pasted back
    assert w.view.after is res.image
    diff = np.abs(out - original).sum(2)
    x1, y1, x2, y2 = (int(v) for v in b1)
    assert diff[y1:y2, x1:x2].mean() > 5  # face 1 changed
    assert diff[:, 512:].max() == 0  # face 2's half of the photo is the original's, exactly
    assert diff[:10].max() == 0 and diff[-40:].max() == 0


def test_a_photo_with_no_face_says_so_and_apply_runs_nothing(qtbot, window, tmp_path):
    w = window
    sky = tmp_path / "sky.png"
    Image.new("RGB", (300, 200), (90, 140, 200)).save(sky)
    _open(qtbot, w, sky)
    assert w.job_label.text() == NO_FACE_MESSAGE
    assert w.mixing_panel.message.text() == NO_FACE_MESSAGE
    assert not w.mixing_panel.apply_button.isEnabled() and w.mixing_panel.face_box.isHidden()
    assert not w.mixing_panel.apply() and not w.controller.busy and w.doc.results == []
    # Faces Off opens it again as a whole picture at the base's size, and Apply can run
    combo = w.mixing_panel.faces_combo
    with qtbot.waitSignal(w.controller.finished, timeout=LONG, check_params_cb=lambda k, r: k == "open"):
        combo.setCurrentIndex(combo.findData("off"))
    assert w.doc.faces is None and w.doc.input.width() == w.base.resolution
    assert w.mixing_panel.message.text() == "" and w.mixing_panel.apply_button.isEnabled()


def test_the_identity_label_follows_lambda_face(panel):
    pytest.importorskip("facenet_pytorch")
    panel.model.lambda_face = 0.3
    assert panel.identity_label.text() == "identity loss: on (λ 0.3)"
    panel.face.setValue(0)  # typed into the λ_face box
    assert panel.identity_label.text() == "identity loss: off (λ 0)"


def test_the_identity_label_says_how_to_install_facenet_where_it_is_missing(panel, monkeypatch):
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)  # the environment lacks it: import fails
    with pytest.raises(ImportError):
        import facenet_pytorch  # noqa: F401
    panel.model.lambda_face = 0.3
    assert panel.identity_label.text() == ("identity loss: unavailable (install facenet-pytorch: "
                                           "pip install --no-deps facenet-pytorch==2.6.0)")
    assert identity_loss(0.0).state == "off"  # no λ, nothing missing
