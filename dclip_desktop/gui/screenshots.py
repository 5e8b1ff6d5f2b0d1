"""Open the real window and save PNGs of the main views: `python -m dclip_desktop.gui.screenshots OUT_DIR`.

Run under a real X server (e.g. `xvfb-run -s "-screen 0 1600x1000x24"`). When the demo weights are
installed it runs a tiny fine-tune and an edit, so the compare view shows a real result."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from PySide6.QtCore import QEventLoop, QPointF, QTimer
from PySide6.QtGui import QColor


def _wait(app, signal=None, timeout_s: float = 300.0, pred=None) -> bool:
    """Spin the event loop until `signal` fires (and `pred(*args)` holds) or the timeout."""
    done = {"ok": False}
    loop = QEventLoop()

    def hit(*args):
        if pred is None or pred(*args):
            done["ok"] = True
            loop.quit()

    if signal is not None:
        signal.connect(hit)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    if signal is not None:
        signal.disconnect(hit)
    return done["ok"]


def _settle(app, ms: int = 300) -> None:
    end = time.monotonic() + ms / 1000
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def _scene(path: Path) -> Path:
    import numpy as np
    from PIL import Image

    from ..demo.world import render, sample_spec

    img, _ = render(sample_spec(1_000_003, shape="circle", color="red", background="white"))
    Image.fromarray(np.asarray(img, dtype=np.uint8)).save(path)
    return path


def _idle(app, c, seconds: int) -> None:
    _wait(app, c.busy_changed, seconds, lambda busy: not busy)


def _train_and_apply(app, w, tmp: Path) -> None:
    """The demo's Red → blue preset, trained on a folder of red scenes (about a minute on a CPU), applied
    to the opened red circle."""
    c, p = w.controller, w.prompt
    if not w.mixing.rows and w.doc.input is not None:
        presets = [p.preset_combo.itemData(i) for i in range(p.preset_combo.count())]
        red = next((i for i, pr in enumerate(presets) if pr is not None and pr.source == "red"), None)
        if red is not None:
            p.preset_combo.setCurrentIndex(red)
            p._on_preset(red)
        p.name_edit.setText("blue")
        from ..demo.world import save_scenes

        p.folder_edit.setText(str(save_scenes(tmp / "train", 24, prefix="red", color="red")))
        p.folder_radio.setChecked(True)
        if p.start():
            _idle(app, c, 600)
    if w.mixing.rows and w.doc.input is not None:
        w.mixing.set_checked(w.mixing.rows[0].name, True)
        if w.mixing_panel.apply():
            _idle(app, c, 300)
    if w.last_error_box is not None:
        w.last_error_box.close()


def _shoot_canvas(app, w, out: Path) -> None:
    w.view.set_mode("slider")
    w.view.set_split(0.5)
    _settle(app)
    w.grab().save(str(out / "main-compare.png"))
    w.view.set_mode("side")
    _settle(app)
    w.grab().save(str(out / "main-side-by-side.png"))


def _shoot_strip(app, w, out: Path) -> None:
    """The γ strip of the applied edit in the results strip, with its metrics under the canvas."""
    if w.mixing.checked() and w.mixing_panel.apply_strip():
        _idle(app, w.controller, 300)
    w.view.set_mode("side")
    _settle(app)
    w.grab().save(str(out / "strip.png"))


def _two_faces(tmp: Path) -> Optional[Path]:
    """A photo with two faces (the public-domain astronaut beside its mirror image), when the checkout has it."""
    from PIL import Image, ImageOps

    src = Path(__file__).resolve().parents[2] / "tests" / "data" / "astronaut.jpg"
    if not src.is_file():
        return None
    face = Image.open(src).convert("RGB")
    both = Image.new("RGB", (face.width * 2, face.height))
    both.paste(face, (0, 0))
    both.paste(ImageOps.mirror(face), (face.width, 0))
    both.save(tmp / "two-faces.png")
    return tmp / "two-faces.png"


def _shoot_faces(app, w, out: Path, tmp: Path) -> None:
    """Faces On: the numbered boxes, face 2 unticked, and the edit pasted back into face 1 only."""
    photo = _two_faces(tmp)
    if photo is None:
        return
    w.tabs.setCurrentIndex(0)
    combo = w.mixing_panel.faces_combo
    combo.setCurrentIndex(combo.findData("on"))
    _idle(app, w.controller, 60)
    w.open_image(str(photo))
    _idle(app, w.controller, 120)
    if w.mixing_panel.face_checks:
        w.view.set_mode("slider")
        w.view.set_split(1.0)
        w.mixing_panel.face_checks[-1].setChecked(False)
        _settle(app)
        w.grab().save(str(out / "faces-found.png"))
        if w.mixing.checked() and w.mixing_panel.apply():
            _idle(app, w.controller, 300)
        w.view.set_mode("side")
        _settle(app)
        w.grab().save(str(out / "faces-edited.png"))
    combo.setCurrentIndex(combo.findData("auto"))


def _shoot_painting(app, w, out: Path) -> None:
    w.tabs.setCurrentWidget(w.paint_panel)
    pm, s = w.paint, w.base.resolution
    pm.new_blank(s)
    pm.set_color(QColor(220, 30, 30))
    pm.set_brush_size(max(2, s // 4))
    pm.begin_stroke()
    pm.stroke(QPointF(s * 0.3, s * 0.5), QPointF(s * 0.7, s * 0.45))
    if w.mixing.validate() is None:
        w.paint_panel.seeds_spin.setValue(4)
        w.paint_panel.rounds_spin.setValue(2)
        if w.paint_panel.generate():
            _idle(app, w.controller, 300)
    w.tabs.setCurrentWidget(w.paint_panel)
    _settle(app)
    w.grab().save(str(out / "painting.png"))


def _shoot_docks_and_dialogs(app, w, out: Path, tmp: Path) -> None:
    w.tabs.setCurrentIndex(0)
    if w.mixing.checked():
        w.mixing.split_by_t0()  # show the schedule editor, filled by Split by t0
    w.mixing_dock.raise_()
    _settle(app)
    w.mixing_dock.grab().save(str(out / "mixing.png"))
    lib = w.open_library()
    _settle(app)
    lib.grab().save(str(out / "library.png"))
    lib.close()
    batch = w.open_batch()
    batch.input_edit.setText(str(tmp))
    batch.output_edit.setText(str(tmp / "out"))
    _settle(app)
    batch.grab().save(str(out / "batch.png"))
    batch.close()


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    out = Path(argv[0] if argv else "resources/screenshots")
    out.mkdir(parents=True, exist_ok=True)
    from .app import create_window, ensure_app

    app = ensure_app([sys.argv[0]])
    app.setStyle("Fusion")
    w = create_window()
    w.resize(1500, 920)
    w.show()
    c = w.controller
    if c.busy:
        _idle(app, c, 120)
    _settle(app)
    tmp = Path(tempfile.mkdtemp(prefix="dclip-shots-"))
    w.open_image(str(_scene(tmp / "red-circle.png")))
    _idle(app, c, 120)
    if w.last_error_box is not None:
        w.last_error_box.close()
    _train_and_apply(app, w, tmp)
    _shoot_canvas(app, w, out)
    _shoot_strip(app, w, out)
    _shoot_painting(app, w, out)
    _shoot_docks_and_dialogs(app, w, out, tmp)
    _shoot_faces(app, w, out, tmp)
    w.close()
    c.shutdown()
    print("\n".join(str(p) for p in sorted(out.glob("*.png"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
