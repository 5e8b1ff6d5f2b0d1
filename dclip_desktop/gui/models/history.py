"""Undo and redo of a model's state: the canvas input and the painting keep theirs the same way."""

from __future__ import annotations

from typing import Generic, Optional, TypeVar

State = TypeVar("State")


class History(Generic[State]):
    """States before (undo) and after (redo) the current one, at most `limit` back (None: unbounded)."""

    def __init__(self, limit: Optional[int] = None) -> None:
        self.limit = limit
        self._undo: list[State] = []
        self._redo: list[State] = []

    def push(self, before: State) -> None:
        """`before` is the state a new change replaces; a new change forgets what could be redone."""
        self._undo.append(before)
        if self.limit is not None:
            del self._undo[:-self.limit]
        self._redo.clear()

    def can_undo(self) -> bool:
        return bool(self._undo)

    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self, current: State) -> State:
        """The state to go back to (the caller checks can_undo); `current` becomes redoable."""
        self._redo.append(current)
        return self._undo.pop()

    def redo(self, current: State) -> State:
        self._undo.append(current)
        return self._redo.pop()
