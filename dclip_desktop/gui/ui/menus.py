"""The main window's menu bar and toolbar: which actions there are, their shortcuts and where they sit.
The window keeps the slots (what an action does); this module only lays the actions out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QComboBox, QMainWindow, QMenu

from ..models.folders import add_recent, recent_files
from .canvas import MODE_LABELS, MODES


def _act(menu: QMenu, text: str, slot, shortcut=None, tip: str = "") -> QAction:
    a = QAction(text, menu.parentWidget())  # owned by the window, like the menu itself
    if shortcut is not None:
        a.setShortcut(QKeySequence(shortcut))
    if tip:
        a.setStatusTip(tip)
    a.triggered.connect(slot)
    menu.addAction(a)
    return a


class RecentMenu:
    """File → Open recent, kept in step with the list in the GUI's settings."""

    def __init__(self, menu: QMenu, qsettings, open_path: Callable[[str], object]) -> None:
        self.menu, self.qsettings, self._open = menu, qsettings, open_path
        self.fill()

    def fill(self) -> None:
        self.menu.clear()
        recent = recent_files(self.qsettings)
        for p in recent:
            self.menu.addAction(p, lambda p=p: self._open(p))
        self.menu.setEnabled(bool(recent))

    def add(self, path: str) -> None:
        add_recent(self.qsettings, path)
        self.fill()


@dataclass
class Actions:
    """The actions the window enables and disables as its state changes."""

    open: QAction
    save: QAction
    export: QAction
    undo: QAction
    redo: QAction
    apply: QAction
    recent: RecentMenu
    mode_combo: QComboBox


def build_menus(w: QMainWindow) -> Actions:
    """File, Edit, Batch, Models, View and Help on `w` (a MainWindow), then the toolbar."""
    mb = w.menuBar()
    f = mb.addMenu("&File")
    open_ = _act(f, "&Open image…", lambda: w.open_image(), QKeySequence.StandardKey.Open)
    recent = RecentMenu(f.addMenu("Open &recent"), w.qsettings, w.open_image)
    save = _act(f, "&Save result…", lambda: w.save_result(), QKeySequence.StandardKey.Save)
    export = _act(f, "&Export side by side…", lambda: w.export_compare())
    f.addSeparator()
    _act(f, "Load settings from image…", lambda: w.load_settings_from_image())
    _act(f, "Edit again with these settings…", lambda: w.edit_again(),
         tip="Redo the edit an output PNG records on the current image")
    f.addSeparator()
    _act(f, "&Quit", w.close, QKeySequence.StandardKey.Quit)
    e = mb.addMenu("&Edit")
    undo = _act(e, "&Undo", w.undo, QKeySequence.StandardKey.Undo)
    redo = _act(e, "&Redo", w.redo, QKeySequence.StandardKey.Redo)
    e.addSeparator()
    apply = _act(e, "Use result as input", lambda: w.doc.current and w.doc.use_result_as_input())
    e.addSeparator()
    _act(e, "Settings…", w.open_settings)
    b = mb.addMenu("&Batch")
    _act(b, "Edit a &folder…", w.open_batch)
    m = mb.addMenu("&Models")
    _act(m, "Attribute &library…", w.open_library)
    _act(m, "&Base models…", w.open_base_models)
    _act(m, "Download / verify…", w.open_base_models)
    v = mb.addMenu("&View")
    v.addAction(w.prompt_dock.toggleViewAction())
    v.addAction(w.mixing_dock.toggleViewAction())
    h = mb.addMenu("&Help")
    _act(h, "&About", w.about)
    mode_combo = _build_toolbar(w, (open_, save, undo, redo, apply))
    return Actions(open_, save, export, undo, redo, apply, recent, mode_combo)


def _build_toolbar(w: QMainWindow, actions) -> QComboBox:
    tb = w.addToolBar("Main")
    tb.setObjectName("main_toolbar")
    for a in actions:
        tb.addAction(a)
    tb.addSeparator()
    mode_combo = QComboBox()
    for key in MODES:
        mode_combo.addItem(MODE_LABELS[key], key)
    mode_combo.currentIndexChanged.connect(lambda i: w.view.set_mode(mode_combo.itemData(i)))
    tb.addWidget(mode_combo)
    tb.addAction("Zoom in", lambda: w.view.zoom_by(1.25))
    tb.addAction("Zoom out", lambda: w.view.zoom_by(0.8))
    tb.addAction("Fit", w.view.fit)
    return mode_combo
