"""`dclip-desktop`: start the Qt application on the demo base (or the saved default base)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QSettings
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

ORG, APP = "DiffusionCLIP Desktop", "dclip-desktop"
ICON = Path(__file__).resolve().parents[2] / "resources" / "icons" / "dclip-desktop.svg"


def gui_settings() -> QSettings:
    """The window layout and recent files: an INI file beside settings.json (DCLIP_CONFIG_DIR isolates tests)."""
    from ..jobs.settings import config_dir

    path = os.environ.get("DCLIP_GUI_SETTINGS") or str(config_dir() / "gui.ini")
    return QSettings(path, QSettings.Format.IniFormat)


def ensure_app(argv=None) -> QApplication:
    app = QApplication.instance() or QApplication(list(argv if argv is not None else sys.argv))
    QCoreApplication.setOrganizationName(ORG)
    QCoreApplication.setApplicationName(APP)
    if ICON.is_file():
        app.setWindowIcon(QIcon(str(ICON)))
    return app


def create_window(settings=None):
    """The main window with its worker controller started (used by main(), tests and screenshots)."""
    from ..jobs.settings import Settings
    from .ui.main_window import MainWindow
    from .worker import JobController

    settings = settings or Settings.load()
    controller = JobController(settings)
    window = MainWindow(settings, controller, gui_settings())
    controller.setParent(window)
    controller.warm_up()
    return window


def self_test(argv) -> int:
    """Headless check of the whole stack (GUI construction included); exit code 0 or 1 with a reason."""
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from ..selftest import run_self_test

    app = ensure_app(argv)
    window = create_window()  # the GUI must build, even though the check itself runs headless
    try:
        ok, reason = run_self_test(log=lambda m: print(f"self-test: {m}", flush=True))
    except Exception as exc:  # any failure is a reason, not a crash
        ok, reason = False, f"{type(exc).__name__}: {exc}"
    finally:
        window.controller.shutdown()
        app.quit()
    print(("PASS: " if ok else "FAIL: ") + reason, flush=True)
    return 0 if ok else 1


def main(argv=None) -> int:
    args = list(argv if argv is not None else sys.argv)[1:]
    if "--self-test" in args:
        return self_test(argv)
    app = ensure_app(argv)
    app.setStyle("Fusion")
    window = create_window()
    window.show()
    if args and not args[0].startswith("-"):
        window.open_image(args[0])
    code = app.exec()
    window.controller.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
