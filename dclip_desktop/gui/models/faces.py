"""State of the face workflow in the GUI: Faces Auto / On / Off, and one tick per face found in the
document's input (all ticked when a photo opens); Apply edits the ticked ones."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QObject, Signal

from ...jobs.face_pick import NO_FACE_MESSAGE, NONE_PICKED_MESSAGE
from ..properties import Observable, Property
from .document import DocumentModel

FACE_MODE_LABELS = {"auto": "Auto", "on": "On", "off": "Off"}  # face_edit.FACE_MODES, for the combo box


class FaceRow(Observable):
    checked = Property(True, bool)

    def __init__(self, number: int, face) -> None:
        super().__init__()
        self.number, self.face = number, face  # number: 1 is the leftmost, as the canvas labels it


class FacesModel(Observable):
    """Follows `doc.faces`: rebuilt when the input's faces change, one row per face."""

    mode = Property("auto", str)  # auto: on for bases whose domain is faces, when facenet-pytorch is installed
    rows_changed = Signal()  # the faces changed (rebuild the check boxes)
    changed = Signal()  # the faces or a tick changed (redraw the boxes, refresh Apply)

    def __init__(self, doc: DocumentModel, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.doc = doc
        self.rows: list[FaceRow] = []
        self._faces: Optional[list] = None
        doc.input_changed.connect(self._follow)

    @property
    def active(self) -> bool:
        """Whether Apply goes through the face workflow for the current input."""
        return self.doc.faces is not None

    def _follow(self) -> None:
        if self.doc.faces is self._faces:
            return
        self._faces = self.doc.faces
        self.rows = [FaceRow(i + 1, f) for i, f in enumerate(self._faces or [])]
        for r in self.rows:
            r.checked_changed.connect(self.changed)
        self.rows_changed.emit()
        self.changed.emit()

    def picked(self) -> list:
        return [r.face for r in self.rows if r.checked]

    def boxes(self) -> list[tuple[tuple[float, float, float, float], bool]]:
        """(box in input pixels, ticked) per face, for the canvas."""
        return [(tuple(r.face.box), r.checked) for r in self.rows]

    def message(self) -> str:
        """Why Apply cannot run a face edit ("" when it can, or when the workflow is off)."""
        if not self.active:
            return ""
        if not self.rows:
            return NO_FACE_MESSAGE
        return "" if self.picked() else NONE_PICKED_MESSAGE
