"""Crash-safe file writes and the library's inter-process lock.

A reader never sees a half-written file: data goes to a temp file in the same directory, is
fsynced, renamed over the target with os.replace, and the directory is fsynced so the rename
itself survives a power cut.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

from filelock import FileLock, Timeout

from .errors import LibraryError, folder_is_a_file

TMP_PREFIX = ".tmp-"


_UMASK: Optional[int] = None


def _umask() -> int:
    """The process umask, read once (reading it means setting it; do that before threads write)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


_umask()


def fsync_dir(path: Path) -> None:
    """Persist a directory's entries (renames, new files). A no-op where directories can't be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # Windows: directories cannot be opened; NTFS journals the rename itself
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes, *, fsync: bool = True) -> Path:
    """Write `data` to `path` in place (for files inside a not-yet-published temp directory)."""
    with open(path, "wb") as fh:
        fh.write(data)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    return path


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True, prefix: str = TMP_PREFIX) -> Path:
    """Replace `path` with `data` atomically: temp file beside it, fsync, os.replace, fsync dir.

    `prefix` names the temp file, so each owner of a folder can recognise (and sweep) its own leftovers."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            # mkstemp makes the file 0600; a saved file gets the mode any program's file gets (umask).
            if hasattr(os, "fchmod"):  # POSIX; Windows has no such modes
                os.fchmod(fh.fileno(), 0o666 & ~_umask())
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.filename is None:  # a write to the fd: name the file for the user
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    if fsync:
        fsync_dir(path.parent)
    return path


def atomic_write_text(path: Path, text: str, *, fsync: bool = True) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


class LibraryLock:
    """An inter-process lock on a file (GUI and CLI may mutate the same library at once).

    Re-entrant within a process. A lock held by a process that died is released by the OS."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._lock: Optional[FileLock] = None

    def __enter__(self) -> LibraryLock:
        try:
            if self._lock is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._lock = FileLock(str(self.path), timeout=self.timeout)
            self._lock.acquire()
        except Timeout:
            raise LibraryError(
                f"the library at {self.path.parent} is busy (another dclip window or command holds "
                f"{self.path.name} for more than {self.timeout:.0f} s); try again"
            ) from None
        except OSError as exc:
            # Without the lock nothing may change. The errno alone would blame the wrong thing (EISDIR
            # says "give a file name", EEXIST "a file is in the way" about a folder the user never named).
            raise self._unusable(exc) from None
        return self

    def _unusable(self, exc: OSError) -> LibraryError:
        for folder in (self.path.parent, *self.path.parent.parents):
            if folder.exists():
                if not folder.is_dir():
                    return folder_is_a_file(self.path.parent, folder)
                break
        if self.path.is_dir():
            return LibraryError(f"the library's lock file {self.path} is a folder: move it away")
        return LibraryError(f"cannot lock the library: {exc.filename or self.path}: {exc.strerror or exc} (dclip "
                            "must be able to write there: fix the permissions, free some space or choose another "
                            "library folder)")

    def __exit__(self, *exc) -> None:
        assert self._lock is not None
        self._lock.release()
