"""The project's own error types: each says what kind of problem the user has, where the cause is known.

A failure is either one of these (the user can fix it, and gets one line) or a bug (it keeps its
traceback). The CLI and the GUI map a kind to how they show it (`jobs/errors.classify`); nobody
guesses from the text of a message. Pure Python: every layer, `core` included, may raise these.
"""

from __future__ import annotations

from enum import Enum


class Kind(str, Enum):
    BAD_INPUT = "bad input"  # a file, a setting, a name or a text the user gave
    MISSING_WEIGHTS = "missing weights"  # a model file is not installed, or could not be fetched
    OUT_OF_MEMORY = "out of memory"
    CANCELLED = "cancelled"
    BUG = "bug"  # anything that is not one of the above: shown with its traceback


class UserError(Exception):
    """A failure the user can fix; `kind` says which."""

    kind: Kind = Kind.BAD_INPUT


class BadInput(UserError, ValueError):
    """Input that is refused: a value out of range, a damaged file, an unknown name. Also a ValueError,
    so code that validates with `except ValueError` keeps working."""


class MissingWeights(UserError):
    """A model's weights are not on disk (and may not be downloaded), or a download failed."""

    kind = Kind.MISSING_WEIGHTS


class OutOfMemory(UserError):
    kind = Kind.OUT_OF_MEMORY
