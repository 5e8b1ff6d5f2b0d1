"""`dclip-desktop`: start the Qt application on the demo base (or the saved default base).

Qt is imported only once a window is wanted: `--help` and `--version` work without a display, and a
machine missing the xcb libraries gets one line naming the apt command instead of Qt's plugin abort.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ORG, APP = "DiffusionCLIP Desktop", "dclip-desktop"
ICON = Path(__file__).resolve().parents[2] / "resources" / "icons" / "dclip-desktop.svg"
# Qt's own options that take a value (QGuiApplication docs); they go to QApplication untouched.
QT_VALUE_OPTIONS = frozenset({"-platform", "-platformpluginpath", "-platformtheme", "-plugin", "-style",
                              "-stylesheet", "-display", "-geometry", "-qwindowgeometry", "-qwindowtitle",
                              "-qwindowicon", "-session", "-qmljsdebugger"})


def gui_settings():
    """The window layout and recent files: an INI file beside settings.json (DCLIP_CONFIG_DIR isolates tests)."""
    from PySide6.QtCore import QSettings

    from ..jobs.settings import config_dir

    path = os.environ.get("DCLIP_GUI_SETTINGS") or str(config_dir() / "gui.ini")
    return QSettings(path, QSettings.Format.IniFormat)


def ensure_app(argv=None):
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

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


def split_qt_options(args: list[str]) -> tuple[list[str], list[str]]:
    """(our arguments, Qt's): Qt's `-platform offscreen` must not be read as an image path."""
    ours, qt = [], []
    it = iter(args)
    for a in it:
        if a in QT_VALUE_OPTIONS:
            qt += [a, next(it, "")]
        elif a.startswith("-") and not a.startswith("--") and a not in ("-", "-h"):
            qt.append(a)  # Qt's flags (-reverse, -nograb, …) use one dash; ours use two (and -h)
        else:
            ours.append(a)
    return ours, qt


def parse_args(args: list[str]) -> argparse.Namespace:
    from .. import __version__

    p = argparse.ArgumentParser(
        prog="dclip-desktop", description="DiffusionCLIP Desktop: text-driven image editing with fine-tuned "
        "diffusion models (the command line is `dclip`). Qt's own options (-platform NAME, -style NAME, …) "
        "are passed to Qt.")
    p.add_argument("image", nargs="?", help="an image to open at start")
    p.add_argument("--self-test", action="store_true",
                   help="check headless that this installation can fine-tune and edit, then exit 0 or 1")
    p.add_argument("--version", action="version", version=f"dclip-desktop {__version__}")
    return p.parse_args(args)


def main(argv=None) -> int:
    argv = list(argv if argv is not None else sys.argv)
    ours, qt_args = split_qt_options(argv[1:])
    args = parse_args(ours)  # --help and --version exit here, before any Qt
    if args.self_test:
        return self_test([argv[0], *qt_args])
    from .qt_platform import window_problem

    problem = window_problem(os.environ, qt_args)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    app = ensure_app([argv[0], *qt_args])
    app.setStyle("Fusion")
    window = create_window()
    window.show()
    if args.image:
        window.open_image(args.image)
    code = app.exec()
    window.controller.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
