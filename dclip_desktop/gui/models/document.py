"""The open document: the input image (and the faces found in it), the history of results, and
undo/redo of input changes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from .history import History


@dataclass
class Result:
    image: QImage
    label: str
    metadata: dict = field(default_factory=dict)
    kind: str = "edit"  # edit, translate, preview
    source: Optional[QImage] = None  # what it was made from (the "before" of a compare)
    # what the canvas shows under it (tasks.EditResult.metrics): {"line", "values", "unavailable"}
    metrics: Optional[dict] = None


class DocumentModel(QObject):
    input_changed = Signal()
    history_changed = Signal()
    selection_changed = Signal(int)
    undo_changed = Signal()

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.input: Optional[QImage] = None
        self.path: Optional[str] = None
        # the faces found in `input` (core.face_align.Face, left to right) when the face workflow is on for
        # it, [] when none was found; None when the workflow is off (the input is then at the base's size)
        self.faces: Optional[list] = None
        self.results: list[Result] = []
        self.selected = -1
        self.history: History[tuple[Optional[QImage], Optional[str], Optional[list]]] = History()

    # --- input ------------------------------------------------------------------------------
    def set_input(self, image: QImage, path: Optional[str] = None, undoable: bool = True,
                  faces: Optional[list] = None) -> None:
        if undoable and self.input is not None:
            self.history.push(self._state())
        self.input, self.path, self.faces = image, path, faces
        self.input_changed.emit()
        self.undo_changed.emit()

    def _state(self) -> tuple:
        return self.input, self.path, self.faces

    def can_undo(self) -> bool:
        return self.history.can_undo()

    def can_redo(self) -> bool:
        return self.history.can_redo()

    def undo(self) -> None:
        if self.history.can_undo():
            self.input, self.path, self.faces = self.history.undo(self._state())
            self.input_changed.emit()
            self.undo_changed.emit()

    def redo(self) -> None:
        if self.history.can_redo():
            self.input, self.path, self.faces = self.history.redo(self._state())
            self.input_changed.emit()
            self.undo_changed.emit()

    # --- results ----------------------------------------------------------------------------
    def add_result(self, result: Result, select: bool = True) -> int:
        if result.source is None:
            result.source = self.input
        self.results.append(result)
        self.history_changed.emit()
        if select:
            self.select(len(self.results) - 1)
        return len(self.results) - 1

    def select(self, index: int) -> None:
        if not -1 <= index < len(self.results):
            raise IndexError(index)
        self.selected = index
        self.selection_changed.emit(index)

    @property
    def current(self) -> Optional[Result]:
        return self.results[self.selected] if 0 <= self.selected < len(self.results) else None

    def use_result_as_input(self, index: Optional[int] = None) -> None:
        """"Apply": the chosen result becomes the image the next edit starts from (undoable)."""
        res = self.results[self.selected if index is None else index]
        # a face edit is the same photo with its faces where they were: they stay found
        same_photo = self.input is not None and res.image.size() == self.input.size()
        self.set_input(res.image, self.path, faces=self.faces if same_photo else None)

    def clear_results(self) -> None:
        self.results.clear()
        self.selected = -1
        self.history_changed.emit()
        self.selection_changed.emit(-1)
