"""Where File → Open starts: the folder of the last image opened, remembered in the GUI's settings
(gui.ini) across restarts; on a first run, the bundled sample scenes, so a new user has something to
open on the demo base."""

from __future__ import annotations

from pathlib import Path

LAST_DIR_KEY = "last_dir"


def open_dir(qsettings) -> str:
    """The folder the Open dialog starts in ("" lets Qt choose, when neither exists)."""
    last = qsettings.value(LAST_DIR_KEY, "")
    if last and Path(str(last)).is_dir():
        return str(last)
    from ...demo.tiny_clip import samples_dir

    samples = samples_dir()
    return str(samples) if samples is not None else ""


def remember_dir(qsettings, image_path: str) -> None:
    qsettings.setValue(LAST_DIR_KEY, str(Path(image_path).resolve().parent))
    qsettings.sync()  # a crash later must not lose it
