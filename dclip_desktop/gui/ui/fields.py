"""Small form pieces the dialogs share."""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLineEdit, QPushButton, QWidget


def folder_field(parent: QWidget, edit: QLineEdit) -> QHBoxLayout:
    """`edit` with a "…" button beside it that picks a folder into it."""
    row = QHBoxLayout()
    row.addWidget(edit, 1)
    b = QPushButton("…")
    b.setFixedWidth(28)
    b.clicked.connect(lambda: (d := QFileDialog.getExistingDirectory(parent, "Folder")) and edit.setText(d))
    row.addWidget(b)
    return row
