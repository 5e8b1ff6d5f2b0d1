"""Models → Library…: the attribute library as a table with thumbnails; rename, delete, export,
import (.dclip and official .pth) and verify. Damaged entries are listed as such.

Verify re-hashes every weights file and a .pth import needs the base model: both run on the worker."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..models.library import LibraryModel
from ..tasks import make_export, make_import, make_verify_library
from ..worker import describe

COLUMNS = ("", "Name", "Base", "Source → target", "t0", "Kind", "Size", "Created", "Status")


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _thumb(e) -> QIcon:
    pm = QPixmap(64, 32)
    pm.fill(QColor(40, 40, 44))
    from PySide6.QtGui import QPainter

    p = QPainter(pm)
    for i, which in enumerate(("before", "after")):
        path = e.thumbnail(which)
        if path:
            img = QImage(path)
            if not img.isNull():
                p.drawImage(i * 32, 0, img.scaled(32, 32, Qt.AspectRatioMode.KeepAspectRatio))
    p.end()
    return QIcon(pm)


class LibraryDialog(QDialog):
    def __init__(self, library: LibraryModel, controller, base_id: Optional[str] = None,
                 report_error=None, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Attribute library")
        self.resize(860, 420)
        self.library, self.controller, self.base_id = library, controller, base_id
        self.report_error = report_error or (lambda title, msg, details="": QMessageBox.warning(self, title, msg))
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setIconSize(QSize(64, 32))
        self.table.verticalHeader().setDefaultSectionSize(38)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        buttons = QHBoxLayout()
        for text, slot in (("Rename…", self._rename), ("Delete", self._delete), ("Export…", self._export),
                           ("Import…", self._import), ("Verify", self._verify), ("Refresh", library.refresh)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            buttons.addWidget(b)
            if text == "Verify":
                self.verify_button = b
        buttons.addStretch(1)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        buttons.addWidget(close)
        lay = QVBoxLayout(self)
        lay.addWidget(self.table)
        lay.addWidget(self.info)
        lay.addLayout(buttons)
        library.changed.connect(self._fill)
        controller.finished.connect(self._on_finished)
        controller.failed.connect(self._on_failed)
        controller.busy_changed.connect(self._on_busy)
        self._fill()

    def _fill(self) -> None:
        entries = self.library.entries
        self.table.setRowCount(len(entries))
        for i, e in enumerate(entries):
            cells = ["", e.name, e.base_id, e.direction, str(e.t0), e.kind, _human(e.size_bytes),
                     e.created[:16].replace("T", " "), f"damaged: {e.damaged}" if e.damaged else "ok"]
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, e.id)
                if e.damaged:
                    item.setForeground(QColor(217, 83, 79))
                    item.setToolTip(e.damaged)
                self.table.setItem(i, j, item)
            self.table.item(i, 0).setIcon(_thumb(e))
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        n_bad = sum(1 for e in entries if e.damaged)
        self.info.setText(f"{len(entries)} attribute(s)" + (f", {n_bad} damaged" if n_bad else "")
                          + f" — library: {self.library.library.root}")

    def selected_id(self) -> Optional[str]:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return self.table.item(rows[0].row(), 1).data(Qt.ItemDataRole.UserRole)

    def select(self, name: str) -> None:
        for i in range(self.table.rowCount()):
            if self.table.item(i, 1).text() == name:
                self.table.selectRow(i)
                return
        raise KeyError(name)

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - shown in a box, never a crash of the dialog
            _, message, details = describe(exc)
            self.report_error("Library", message, details)
            return None

    def _rename(self, new_name: Optional[str] = None) -> None:
        eid = self.selected_id()
        if eid is None:
            return
        if not new_name:
            new_name, ok = QInputDialog.getText(self, "Rename attribute", "New name:",
                                                text=self.library.get(eid).name)
            if not ok or not new_name.strip():
                return
        self._guard(self.library.rename, eid, new_name.strip())

    def _delete(self) -> None:
        eid = self.selected_id()
        if eid is not None:
            self._guard(self.library.delete, eid)
            self.info.setText("Moved to the trash (restore with `dclip library restore`).")

    def _export(self, path: Optional[str] = None) -> None:
        eid = self.selected_id()
        if eid is None:
            return
        if not path:
            path, _ = QFileDialog.getSaveFileName(self, "Export attribute", f"{self.library.get(eid).name}.dclip",
                                                  "DiffusionCLIP attribute (*.dclip)")
            if not path:
                return
        self._submit("export", make_export(eid, path), "Exporting…")

    def _import(self, path: Optional[str] = None) -> None:
        if not path:
            path, _ = QFileDialog.getOpenFileName(self, "Import attribute", "",
                                                  "Attributes (*.dclip *.pth *.pt);;All files (*)")
            if not path:
                return
        converting = not path.lower().endswith(".dclip")
        self._submit("import", make_import(path, self.base_id),
                     "Importing (converting the checkpoint needs the base model)…" if converting else "Importing…")

    def _submit(self, kind: str, fn, doing: str) -> bool:
        """Reading, hashing and writing weights runs on the worker: the window stays responsive."""
        if not self.controller.submit(kind, fn):
            self.report_error("Library", f"Another job is running; {kind} when it has finished.")
            return False
        self.info.setText(doing)
        return True

    def _on_finished(self, kind: str, result) -> None:
        if kind == "import":
            self.library.notify_external_change()
            self.info.setText(f"Imported '{result['name']}'.")
        elif kind == "export":
            self.info.setText(f"Exported to {result['path']}")
        elif kind == "verify":
            self.library.refresh()  # a damaged entry is listed as such from now on
            bad = [f"{n}: {why}" for n, ok, why in result if not ok]
            self.info.setText(f"Verified {len(result)} attribute(s): " + ("all ok" if not bad else "; ".join(bad)))

    def _on_failed(self, kind: str, message: str, *_) -> None:
        if kind in ("verify", "import", "export"):
            self.info.setText(message)

    def _on_busy(self, busy: bool) -> None:
        if not busy:  # a verify ended (or whatever ran did): the button may start one again
            self.verify_button.setEnabled(True)

    def _verify(self) -> None:
        if self._submit("verify", make_verify_library(), "Verifying: re-hashing every attribute's weights…"):
            self.verify_button.setEnabled(False)  # after submit: its busy_changed(True) came first
