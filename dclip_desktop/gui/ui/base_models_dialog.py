"""Models → Base models…: the zoo's bases, installed or not, with Download / Verify / Load / Add file…."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..models.bases import all_bases
from ..tasks import make_base_action, make_base_add


class BaseModelsDialog(QDialog):
    def __init__(self, controller, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Base models")
        self.resize(640, 300)
        self.controller = controller
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Base", "Id", "Resolution", "Status"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        row = QHBoxLayout()
        for text, action in (("Download", "download"), ("Verify / repair", "verify"), ("Load", "load")):
            b = QPushButton(text)
            b.clicked.connect(lambda _=False, a=action: self.run(a))
            row.addWidget(b)
        self.add_button = QPushButton("Add file…")
        self.add_button.setToolTip("Install the selected base's weights from a file you have (checked first)")
        self.add_button.clicked.connect(lambda _=False: self.add_file())
        row.addWidget(self.add_button)
        row.addStretch(1)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        row.addWidget(close)
        lay = QVBoxLayout(self)
        lay.addWidget(self.table)
        lay.addWidget(self.info)
        lay.addLayout(row)
        controller.progress.connect(self._on_progress)
        controller.finished.connect(self._on_done)
        controller.failed.connect(lambda kind, msg, *_: kind == "base" and self.info.setText(msg))
        self.refresh()

    def refresh(self) -> None:
        bases = all_bases()
        self.table.setRowCount(len(bases))
        for i, b in enumerate(bases):
            status = "bundled" if b.is_demo else ("installed" if b.installed else "not downloaded")
            for j, text in enumerate((b.title, b.id, f"{b.resolution}²", status)):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, b.id)
                self.table.setItem(i, j, item)
        if bases:
            self.table.selectRow(0)

    def selected(self) -> Optional[str]:
        rows = self.table.selectionModel().selectedRows()
        return self.table.item(rows[0].row(), 1).text() if rows else None

    def run(self, action: str) -> None:
        base_id = self.selected()
        if base_id is None:
            return
        if self.controller.submit("base", make_base_action(action, base_id)):
            self.info.setText(f"{action} {base_id}…")
        else:
            self.info.setText("Another job is running; try again when it has finished.")

    def add_file(self, path: Optional[str] = None) -> None:
        base_id = self.selected()
        if base_id is None:
            return
        if not path:
            path, _ = QFileDialog.getOpenFileName(self, f"Add weights for {base_id}", "",
                                                  "Weights (*.pt *.pth *.ckpt *.bin *.safetensors);;All files (*)")
            if not path:
                return
        if self.controller.submit("base", make_base_add(base_id, path)):
            self.info.setText(f"adding {base_id} from {path}…")
        else:
            self.info.setText("Another job is running; try again when it has finished.")

    def _on_progress(self, phase: str, step: int, total: int, eta: float) -> None:
        if self.controller.kind == "base":
            self.info.setText(f"{phase}: {step}/{total}")

    def _on_done(self, kind: str, result) -> None:
        if kind == "base":
            self.info.setText(str(result))
            self.refresh()
