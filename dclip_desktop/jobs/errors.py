"""Which exceptions are the user's to fix (one-line message) rather than bugs (traceback)."""

from __future__ import annotations

import errno
import os
from typing import Optional

from PIL import UnidentifiedImageError

from ..untrusted import UntrustedDataError, display


class JobError(Exception):
    """A clear, user-facing failure of a job (bad input, missing file, invalid settings)."""


def user_error_types() -> tuple[type[BaseException], ...]:
    from ..core.cancel import Cancelled

    types: list[type[BaseException]] = [JobError, ValueError, FileNotFoundError, UnidentifiedImageError, Cancelled,
                                        UntrustedDataError]
    try:  # the zoo's errors (unknown base, missing weights offline) are user errors too
        from ..zoo import download, registry

        # Network failures and checksum mismatches are the user's to fix (retry, repair), not bugs.
        types += [registry.UnknownBaseError, download.MissingWeightsError, download.DownloadError]
    except ImportError:
        pass
    try:
        from ..library.errors import LibraryError

        types.append(LibraryError)
    except ImportError:
        pass
    return tuple(types)


# What the user can do about an OSError, by errno: the disk and the folder are theirs to fix.
_OS_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space or choose a folder on another disk",
    errno.EDQUOT: "the disk quota is exceeded: free some space or choose a folder on another disk",
    errno.EROFS: "the disk is read-only: choose a folder you can write to",
    errno.EACCES: "permission denied: choose a folder you can write to, or fix its permissions",
    errno.EPERM: "operation not permitted: choose a folder you can write to, or fix its permissions",
    errno.ENOTDIR: "a file stands where a folder is needed: move it away or choose another folder",
    errno.EISDIR: "a folder stands where a file is needed: give a file name",
    errno.EEXIST: "a file of that name is in the way: move it away or choose another name",
    errno.ENAMETOOLONG: "the file name is too long: choose a shorter name",
    errno.ENOENT: "no such file or folder: check the path",
    errno.ELOOP: "too many symbolic links: check the path",
    errno.EBUSY: "the file is busy: close the program that holds it and try again",
    errno.EMFILE: "too many open files: close other programs and try again",
    errno.EIO: "the disk reported an input/output error: check the disk",
    errno.ENXIO: "not a regular file: give an image file",
}


def os_error_message(exc: BaseException) -> Optional[str]:
    """One line for an OSError the user can fix (a full, read-only or missing disk or folder), naming
    the path; None for any other exception (a bug, which keeps its traceback)."""
    if not isinstance(exc, OSError) or exc.errno not in _OS_ADVICE:
        return None
    where = exc.filename if exc.filename is not None else ""
    if exc.filename2 is not None:
        where = f"{where} → {exc.filename2}"
    where = display(os.fsdecode(where) if isinstance(where, bytes) else where)
    return f"{where + ': ' if where else ''}{_OS_ADVICE[exc.errno]}"


def user_message(exc: BaseException) -> Optional[str]:
    """The one-line message for a user error, or None for a bug. The CLI and the GUI both ask here."""
    if isinstance(exc, user_error_types()):
        return display(str(exc) or type(exc).__name__)
    return os_error_message(exc)
