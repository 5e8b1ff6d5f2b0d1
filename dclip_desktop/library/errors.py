"""Errors of the attribute library: the user's to fix, reported as one line by the CLI and GUI."""

from __future__ import annotations


class LibraryError(Exception):
    """Unknown or ambiguous name, name collision, unreadable import file, busy library, ..."""


class DamagedEntryError(LibraryError):
    """The entry exists but cannot be used: its manifest or weight file is missing or corrupt."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"attribute '{name}' is damaged: {reason} (run `dclip library verify`; "
                         f"`dclip library rm {name}` moves it to the trash)")
        self.name = name
        self.reason = reason
