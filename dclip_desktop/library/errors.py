"""Errors of the attribute library: the user's to fix, reported as one line by the CLI and GUI."""

from __future__ import annotations

from ..errors import UserError


def first_line(exc: BaseException | str) -> str:
    """The first line of a third-party exception's message (zipfile, torch, safetensors write
    several, or none), for a one-line LibraryError."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class LibraryError(UserError):
    """Unknown or ambiguous name, name collision, unreadable import file, busy library, ..."""


class DamagedEntryError(LibraryError):
    """The entry exists but cannot be used: its manifest or weight file is missing or corrupt."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"attribute '{name}' is damaged: {reason} (run `dclip library verify`; "
                         f"`dclip library rm {name}` moves it to the trash)")
        self.name = name
        self.reason = reason


def folder_is_a_file(root, culprit) -> LibraryError:
    """The library folder `root`, or the folder `culprit` above it, is a regular file."""
    where = "is a file" if culprit == root else f"cannot be used: {culprit} is a file"
    return LibraryError(f"the library folder {root} {where}, not a folder; move it away or choose another "
                        "library folder")
