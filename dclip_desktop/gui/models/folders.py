"""What File → Open remembers in the GUI's settings (gui.ini) across restarts: the folder it starts in
(the last image's; on a first run, the bundled sample scenes, so a new user has something to open on
the demo base) and the recently opened images."""

from __future__ import annotations

from pathlib import Path

LAST_DIR_KEY = "last_dir"
RECENT_KEY = "recent"
MAX_RECENT = 8


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


def recent_files(qsettings) -> list[str]:
    """The recently opened images, newest first."""
    value = qsettings.value(RECENT_KEY, [])
    return [value] if isinstance(value, str) else list(value or [])  # QSettings' INI gives one item as a str


def add_recent(qsettings, path: str) -> list[str]:
    """Put `path` first (once) and keep the newest MAX_RECENT; returns the new list."""
    recent = ([path] + [p for p in recent_files(qsettings) if p != path])[:MAX_RECENT]
    qsettings.setValue(RECENT_KEY, recent)
    return recent
