"""The main window: canvas / paint tabs, the prompt and mixing docks, menus, toolbar, status bar."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ...errors import BadInput, Kind
from ...jobs.errors import user_message
from .. import tasks
from ..models import image_files
from ..models.bases import base_info, usable_bases
from ..models.document import DocumentModel, Result
from ..models.faces import FacesModel
from ..models.finetune import FinetuneModel
from ..models.folders import open_dir, remember_dir
from ..models.library import LibraryModel
from ..models.mixing import MixingModel
from ..models.paint import PaintModel
from .canvas import HistoryStrip, ImageView
from .menus import build_menus
from .mixing_panel import MixingPanel
from .paint import PaintPanel
from .prompt_panel import PromptPanel, eta_text, show_progress, step_text

# Error-box titles by job kind; a failure of a kind not listed is titled "Error".
FAILED_TITLES = {"open": "Cannot open image", "finetune": "Fine-tuning failed", "edit": "Edit failed",
                 "translate": "Generation failed", "batch": "Batch failed", "import": "Import failed",
                 "verify": "Library verify failed", "base": "Base model", "rerun": "Edit again failed",
                 "live": "Preview failed"}
STARTED_TEXT = {"init": "Starting the engine…", "open": "Opening…", "edit": "Applying…", "translate": "Generating…",
                "finetune": "Fine-tuning…", "batch": "Batch editing…", "verify": "Verifying the library…",
                "live": "Previewing γ…", "rerun": "Editing again…"}
METRIC_NAMES = {"s_dir": "S_dir", "mae": "MAE", "ssim": "SSIM", "id": "ID", "lpips": "LPIPS"}


class MainWindow(QMainWindow):
    error_reported = Signal(str, str)  # title, message — every error dialog goes through report_error

    def __init__(self, settings, controller, qsettings: QSettings, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.settings, self.controller, self.qsettings = settings, controller, qsettings
        self.setWindowTitle("DiffusionCLIP Desktop")
        self.last_error_box: Optional[QMessageBox] = None
        self.doc = DocumentModel(self)
        self.faces = FacesModel(self.doc, self)
        self.finetune = FinetuneModel(self)
        self.mixing = MixingModel(self)
        self.library = LibraryModel(settings.library_dir, self)
        bases = usable_bases()
        default = settings.default_base if any(b.id == settings.default_base for b in bases) else bases[0].id
        self.finetune.base_id = default
        self.base = base_info(default)
        self.paint = PaintModel(self.base.resolution, self)

        # central: canvas and paint tabs
        self.view = ImageView()
        self.history = HistoryStrip(self.doc)
        self.metrics_label = QLabel("")  # the selected result's jobs.edit_metrics numbers
        self.metrics_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        canvas_page = QWidget()
        cl = QVBoxLayout(canvas_page)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.addWidget(self.view, 1)
        cl.addWidget(self.metrics_label)
        cl.addWidget(self.history)
        self.paint_panel = PaintPanel(self.paint, self.mixing, self.doc, controller)
        self.tabs = QTabWidget()
        self.tabs.addTab(canvas_page, "Canvas")
        self.tabs.addTab(self.paint_panel, "Paint")
        self.setCentralWidget(self.tabs)

        # docks
        self.prompt = PromptPanel(self.finetune, controller, bases)
        self.mixing_panel = MixingPanel(self.mixing, self.library, self.doc, controller, faces=self.faces)
        self.prompt_dock = self._dock("Fine-tune", "prompt_dock", self.prompt, Qt.DockWidgetArea.RightDockWidgetArea)
        self.mixing_dock = self._dock("Mix && apply", "mixing_dock", self.mixing_panel,
                                      Qt.DockWidgetArea.LeftDockWidgetArea)

        self.menu_actions = build_menus(self)
        self._build_status()

        # wiring
        self.doc.input_changed.connect(self._refresh_view)
        self.doc.selection_changed.connect(self._refresh_view)
        self.doc.undo_changed.connect(self._update_actions)
        self.paint.changed.connect(self._update_actions)
        self.tabs.currentChanged.connect(self._update_actions)
        self.history.apply_requested.connect(self.doc.use_result_as_input)
        self.history.save_requested.connect(lambda i: self.save_result(index=i))
        self.history.again_requested.connect(lambda: self.edit_again())
        self.mixing_panel.live.previewed.connect(self._on_live_preview)
        self.prompt.base_changed.connect(self.set_base)
        self.faces.changed.connect(lambda: self.view.set_faces(self.faces.boxes()))
        self.faces.mode_changed.connect(self._reopen)
        self.prompt.attribute_saved.connect(self._on_attribute_saved)
        self.library.modified.connect(controller.library_changed)
        controller.ready.connect(self._on_ready)
        controller.memory.connect(self.mem_label.setText)
        controller.started.connect(self._on_started)
        controller.progress.connect(self._on_progress)
        controller.preview.connect(self._on_preview)
        controller.training_images.connect(self._on_training_images)
        controller.finished.connect(self._on_finished)
        controller.failed.connect(self._on_failed)
        controller.cancelled.connect(self._on_cancelled)
        controller.busy_changed.connect(self._on_busy)
        self.mixing_panel.set_base(default)
        self._restore_layout()
        self._update_actions()
        self._refresh_view()

    # --- construction -----------------------------------------------------------------------
    def _dock(self, title: str, name: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(widget)
        scroll.setMinimumWidth(widget.sizeHint().width() + 20)
        dock.setWidget(scroll)
        self.addDockWidget(area, dock)
        return dock

    def _build_status(self) -> None:
        sb = self.statusBar()
        self.job_label = QLabel("Starting the engine…")
        self.job_bar = QProgressBar()
        self.job_bar.setMaximumWidth(220)
        self.job_bar.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.controller.cancel)
        self.device_label = QLabel("device: …")
        self.precision_label = QLabel("")
        self.mem_label = QLabel("")
        sb.addWidget(self.job_label, 1)
        sb.addWidget(self.job_bar)
        sb.addWidget(self.cancel_button)
        for w in (self.device_label, self.precision_label, self.mem_label):
            sb.addPermanentWidget(w)

    # --- layout memory ----------------------------------------------------------------------
    def _restore_layout(self) -> None:
        geo = self.qsettings.value("window/geometry")
        state = self.qsettings.value("window/state")
        if geo is not None:
            self.restoreGeometry(geo)
        else:
            self.resize(1400, 860)
        if state is not None:
            self.restoreState(state)

    def save_layout(self) -> None:
        self.qsettings.setValue("window/geometry", self.saveGeometry())
        self.qsettings.setValue("window/state", self.saveState())
        self.qsettings.sync()

    def closeEvent(self, event) -> None:  # noqa: N802
        self.save_layout()
        self.controller.cancel()
        super().closeEvent(event)

    # --- errors -----------------------------------------------------------------------------
    def report_error(self, title: str, message: str, details: str = "") -> QMessageBox:
        """Every error shown to the user goes through here (tests listen to `error_reported`)."""
        self.error_reported.emit(title, message)
        box = QMessageBox(QMessageBox.Icon.Critical, title, message, QMessageBox.StandardButton.Ok, self)
        if details:
            box.setDetailedText(details)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.open()  # non-blocking: the app stays usable and tests can close it
        self.last_error_box = box
        return box

    # --- base -------------------------------------------------------------------------------
    def set_base(self, base_id: str) -> None:
        if base_id == self.base.id and self.mixing_panel.base_id == base_id:
            return
        from ...zoo.registry import get_base

        faces_before = get_base(self.base.id).domain == "face"
        self.base = base_info(base_id)
        self.paint.set_resolution(self.base.resolution)
        self.mixing_panel.set_base(base_id)
        # under Auto the face workflow follows the base's domain (face_edit.faces_wanted): open the photo
        # again when that changes; On and Off do not depend on the base
        if self.faces.mode == "auto" and faces_before != (get_base(base_id).domain == "face"):
            self._reopen()

    def _reopen(self, *_) -> None:
        """Open the document's photo again, so that its faces are found (or not) under the new setting."""
        if self.doc.path and not self.controller.busy:
            self.open_image(self.doc.path)

    # --- file -------------------------------------------------------------------------------
    def open_image(self, path: Optional[str] = None) -> bool:
        if not path:
            path, _ = QFileDialog.getOpenFileName(self, "Open image", open_dir(self.qsettings),
                                                  "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff)")
            if not path:
                return False
        remember_dir(self.qsettings, path)
        ok = self.controller.submit("open", tasks.make_open_image(path, self.base.id, faces=self.faces.mode))
        if not ok:
            self.report_error("Busy", "Another job is running; open the image when it has finished.")
        return ok

    def save_result(self, path: Optional[str] = None, index: Optional[int] = None) -> Optional[str]:
        res = self.doc.results[index] if index is not None else self.doc.current
        if res is None:
            self.report_error("Save result", "There is no result to save yet.")
            return None
        if not path:
            stem = Path(self.doc.path).stem if self.doc.path else "result"
            path, _ = QFileDialog.getSaveFileName(self, "Save result", f"{stem}-edited.png", "PNG image (*.png)")
            if not path:
                return None
        try:
            image_files.save_result(res, path)
        except Exception as exc:  # noqa: BLE001 - disk full, permissions…: tell the user, keep going
            self.report_error("Save result", f"Could not save {path}: {exc}")
            return None
        self.job_label.setText(f"Saved {path}")
        return path

    def export_compare(self, path: Optional[str] = None) -> Optional[str]:
        res = self.doc.current
        if res is None or res.source is None:
            self.report_error("Export", "There is no result to export yet.")
            return None
        if not path:
            path, _ = QFileDialog.getSaveFileName(self, "Export before | after", "compare.png", "PNG image (*.png)")
            if not path:
                return None
        try:
            image_files.export_compare(res, path)
        except Exception as exc:  # noqa: BLE001
            self.report_error("Export", f"Could not save {path}: {exc}")
            return None
        return path

    def load_settings_from_image(self, path: Optional[str] = None) -> Optional[dict]:
        if not path:
            path, _ = QFileDialog.getOpenFileName(self, "Load settings from image", "", "PNG image (*.png)")
            if not path:
                return None
        try:
            meta = image_files.load_settings(self.mixing, path)
        except BadInput as exc:  # the only kind it raises, whatever the file holds
            self.report_error("Load settings", user_message(exc))
            return None
        self.job_label.setText(f"Loaded settings from {Path(path).name}")
        return meta

    def edit_again(self, path: Optional[str] = None) -> bool:
        """File → Edit again with these settings: redo the edit an output PNG records on the current image
        (a worker job; a missing or changed attribute or base is refused with one line)."""
        if self.doc.input is None:
            self.report_error("Edit again", "Open the image to edit first, then choose the output to copy.")
            return False
        if not path:
            path, _ = QFileDialog.getOpenFileName(self, "Edit again with the settings of", open_dir(self.qsettings),
                                                  "PNG image (*.png)")
            if not path:
                return False
        from ...jobs.metadata import read_metadata

        try:
            meta = read_metadata(path)
        except BadInput as exc:  # the only kind it raises, whatever the file holds
            self.report_error("Edit again", user_message(exc))
            return False
        name = Path(self.doc.path).name if self.doc.path else "image.png"
        ok = self.controller.submit("rerun", tasks.make_edit_again(self.doc.input, meta, name, Path(path).name))
        if not ok:
            self.report_error("Busy", "Another job is running; edit again when it has finished.")
        return ok

    # --- edit -------------------------------------------------------------------------------
    def _painting(self) -> bool:
        return self.tabs.currentWidget() is self.paint_panel

    def undo(self) -> None:
        (self.paint.undo if self._painting() else self.doc.undo)()
        self._update_actions()

    def redo(self) -> None:
        (self.paint.redo if self._painting() else self.doc.redo)()
        self._update_actions()

    def _update_actions(self, *_) -> None:
        src = self.paint if self._painting() else self.doc
        self.menu_actions.undo.setEnabled(src.can_undo())
        self.menu_actions.redo.setEnabled(src.can_redo())

    # --- dialogs ----------------------------------------------------------------------------
    def open_settings(self):
        from .settings_dialog import SettingsDialog

        dlg = SettingsDialog(self.settings, self)
        try:
            if dlg.exec():
                self.apply_settings(dlg.result_settings())
        finally:  # a modal dialog is done with once it closes: Qt deletes it, not Python's collector at exit
            dlg.deleteLater()

    def apply_settings(self, new) -> None:
        try:
            new.save()
        except OSError as exc:
            self.report_error("Settings", f"Could not save the settings: {exc}")
        self.settings = new
        self.controller.apply_settings(new)
        self.library.set_root(new.library_dir)
        self.controller.warm_up()

    def open_library(self):
        from .library_dialog import LibraryDialog

        self.library.refresh()
        dlg = LibraryDialog(self.library, self.controller, self.base.id, self.report_error, self)
        dlg.show()
        self._library_dialog = dlg
        return dlg

    def open_batch(self):
        from .batch_dialog import BatchDialog

        dlg = BatchDialog(self.mixing, self.controller, self.base.id, self)
        dlg.show()
        self._batch_dialog = dlg
        return dlg

    def open_base_models(self):
        from .base_models_dialog import BaseModelsDialog

        dlg = BaseModelsDialog(self.controller, self)
        dlg.show()
        self._base_dialog = dlg
        return dlg

    def about(self) -> None:
        from ... import __version__

        QMessageBox.about(self, "About DiffusionCLIP Desktop",
                          f"<b>DiffusionCLIP Desktop</b> {__version__}<br>Text-driven image manipulation with "
                          "fine-tuned diffusion models (Kim, Kwon & Ye, CVPR 2022).<br>Engine: "
                          f"{self.controller.info.get('device', '?')}, {self.controller.info.get('precision', '?')}.")

    # --- canvas -----------------------------------------------------------------------------
    def _refresh_view(self, *_) -> None:
        res = self.doc.current
        if res is not None:
            self.view.set_images(res.source if res.source is not None else self.doc.input, res.image)
        else:
            self.view.set_images(self.doc.input, None)
        self._show_metrics(res.metrics if res is not None else None)
        for action in (self.menu_actions.save, self.menu_actions.export, self.menu_actions.apply):
            action.setEnabled(res is not None)

    def _show_metrics(self, metrics: Optional[dict]) -> None:
        """The result's numbers under the canvas; what was not measured, and why, in the tooltip."""
        if not metrics:
            self.metrics_label.setText("")
            self.metrics_label.setToolTip("")
            return
        missing = metrics.get("unavailable") or {}
        text = metrics["line"]
        if missing:
            text += "   (not measured: " + ", ".join(METRIC_NAMES.get(k, k) for k in missing) + ")"
        self.metrics_label.setText(text)
        self.metrics_label.setToolTip("\n".join(f"{METRIC_NAMES.get(k, k)} not measured: {why}"
                                                for k, why in missing.items()))

    def _on_live_preview(self, degree: float, image: QImage) -> None:
        """A live-γ preview replaces the after image until the release's full generation comes."""
        self.view.set_preview(image, f"preview γ={degree:.2f}")

    # --- controller signals -----------------------------------------------------------------
    def _on_ready(self, info: dict) -> None:
        self.device_label.setText(f"device: {info.get('device')}")
        self.precision_label.setText(f"precision: {info.get('precision')}")
        self.mem_label.setText(info.get("memory", ""))
        try:
            self.library.refresh()
        except Exception as exc:  # noqa: BLE001 - an unreadable library folder must not stop the app
            self.report_error("Library", f"Cannot read the attribute library: {exc}")

    def _on_started(self, kind: str) -> None:
        self.job_label.setText(STARTED_TEXT.get(kind, f"{kind}…"))

    def _on_busy(self, busy: bool) -> None:
        show = busy and self.controller.kind not in ("init", "live")
        self.job_bar.setVisible(show)
        self.cancel_button.setVisible(show)
        self.menu_actions.open.setEnabled(not busy)
        if busy:
            self.job_bar.setRange(0, 0)
        else:
            self.view.set_preview(None)
            self._refresh_view()  # the training-image grid replaced the canvas's images

    def _on_progress(self, phase: str, step: int, total: int, eta: float) -> None:
        show_progress(self.job_bar, self.controller.fraction, step, total)
        self.job_label.setText(f"{self.controller.kind}: {step_text(phase, step, total)}  {eta_text(eta)}")

    def _on_preview(self, image: QImage) -> None:
        if self.controller.kind in ("edit", "translate"):
            if self.doc.input is not None and self.controller.kind == "edit":
                self.view.set_images(self.doc.input, None)
            self.view.set_preview(image, "preview x̂0")

    def _on_training_images(self, grid: QImage, summary: str) -> None:
        """What the fine-tune trains on, shown alone on the canvas until the job ends."""
        self.tabs.setCurrentIndex(0)
        self.view.set_images(None, None)
        self.view.set_preview(grid, "training images")
        self.view.fit()

    def _on_finished(self, kind: str, result) -> None:
        self.job_label.setText("Ready")
        if kind == "open":
            self.doc.clear_results()
            self.doc.set_input(result["image"], result["path"], faces=result.get("faces"))
            if self.faces.active:
                n = len(self.faces.rows)
                self.job_label.setText(self.faces.message() if n == 0 else
                                       f"{n} face{'s' if n != 1 else ''} found: tick the ones to edit")
            self.menu_actions.recent.add(result["path"])
            self.tabs.setCurrentIndex(0)
            self.view.fit()
        elif kind in ("edit", "translate"):
            self.tabs.setCurrentIndex(0 if kind == "edit" else self.tabs.currentIndex())
            self._refresh_view()
        elif kind == "rerun":
            for img, meta, label in zip(result.images, result.metadata, result.labels):
                self.doc.add_result(Result(img, label, meta, "edit"))
            self.tabs.setCurrentIndex(0)
            self.job_label.setText(f"Edited again: {result.labels[0]}")

    def _on_attribute_saved(self, result: dict) -> None:
        self.controller.library_changed()
        self.library.refresh()
        self.mixing.set_checked(result["name"], True)

    def _on_failed(self, kind: str, message: str, details: str, failure: str) -> None:
        self.job_label.setText("Failed")
        if failure == Kind.BAD_INPUT and kind in ("edit", "translate"):
            return  # the mixing panel explains refused mixing settings inline
        title = "Out of memory" if failure == Kind.OUT_OF_MEMORY else FAILED_TITLES.get(kind, "Error")
        self.report_error(title, message, details)

    def _on_cancelled(self, kind: str) -> None:
        self.job_label.setText("Cancelled")
