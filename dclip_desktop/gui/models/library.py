"""Observable view of the attribute library (the store itself is dclip_desktop.library.store).

Listing, rename, delete and restore are quick file operations done here (folders are renamed, no
weights are read). Whatever reads or writes weights runs on the worker (gui/tasks.py, started by
ui/library_dialog.py): verify re-hashes every weights file, an import checks and copies them (and a
.pth needs the base model), an export zips them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from PySide6.QtCore import QObject, Signal


@dataclass
class EntryInfo:
    id: str
    name: str
    base_id: str
    source: str
    target: str
    t0: int
    kind: str
    size_bytes: int
    created: str
    damaged: Optional[str]
    path: str

    @property
    def direction(self) -> str:
        return f"{self.source} → {self.target}" if self.source or self.target else ""

    def thumbnail(self, which: str) -> Optional[str]:
        p = Path(self.path) / f"{which}.png"
        return str(p) if p.is_file() else None


def _info(e) -> EntryInfo:
    return EntryInfo(
        id=e.id, name=e.name, base_id=e.base_id or "?", source=e.source or "", target=e.target or "",
        t0=int(e.t0 or 0), kind=e.kind or "", size_bytes=int(e.size_bytes or 0), created=e.created or "",
        damaged=e.damaged, path=str(e.path),
    )


class LibraryModel(QObject):
    changed = Signal()  # the entries changed (list again)
    modified = Signal()  # the library on disk was changed by us (materialised models are stale)

    def __init__(self, root: Optional[str] = None, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.root = root
        self.entries: list[EntryInfo] = []
        self._lib = None

    @property
    def library(self):
        if self._lib is None:
            from ...library.store import Library

            self._lib = Library(Path(self.root) if self.root else None)
        return self._lib

    def set_root(self, root: Optional[str]) -> None:
        self.root = root
        self._lib = None
        self.refresh()

    def refresh(self) -> None:
        self.entries = [_info(e) for e in self.library.list()]
        self.changed.emit()

    def for_base(self, base_id: Optional[str]) -> list[EntryInfo]:
        return [e for e in self.entries if e.damaged is None and (base_id is None or e.base_id == base_id)]

    def get(self, name_or_id: str) -> EntryInfo:
        for e in self.entries:
            if name_or_id in (e.id, e.name):
                return e
        raise KeyError(name_or_id)

    def _mutated(self) -> None:
        self.modified.emit()
        self.refresh()

    def rename(self, name_or_id: str, new_name: str) -> None:
        self.library.rename(name_or_id, new_name)
        self._mutated()

    def delete(self, name_or_id: str) -> None:
        self.library.delete(name_or_id)
        self._mutated()

    def restore(self, name_or_id: str) -> None:
        self.library.restore(name_or_id)
        self._mutated()

    def notify_external_change(self) -> None:
        """Another part of the app (a fine-tune, a worker import) wrote to the library."""
        self._mutated()
