"""Which failures are the user's to fix (one line, by kind) rather than bugs (traceback): decided by type."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Optional

from PIL import UnidentifiedImageError

from ..errors import BadInput, Kind, OutOfMemory, UserError
from ..untrusted import display


class JobError(BadInput):
    """A job refused its input (bad file, missing file, invalid settings)."""


# Other libraries' errors whose cause is the user's input, with the kind they are shown as. These are the
# only foreign types classified by type; everything else foreign is a bug unless an OSError below says so.
_FOREIGN = ((UnidentifiedImageError, Kind.BAD_INPUT), (MemoryError, Kind.OUT_OF_MEMORY))


def is_out_of_memory(exc: BaseException) -> bool:
    """torch reports a CUDA/MPS allocation failure as its OutOfMemoryError, and a failed CPU allocation as a
    RuntimeError from its allocator; both leave the process usable once caches are freed."""
    import torch

    if isinstance(exc, (OutOfMemory, torch.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "DefaultCPUAllocator: can't allocate memory" in str(exc)


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


@dataclass(frozen=True)
class Failure:
    kind: Kind
    message: Optional[str]  # one line for the user; None for a bug (show the traceback)


OOM_ADVICE = ("out of memory: caches were freed; try a smaller batch size, LoRA instead of full weights, "
              "fp16/bf16 precision, fewer images, or the CPU device")


def classify(exc: BaseException) -> Failure:
    """What kind of failure `exc` is and its one line, by type. The CLI and the GUI both ask here."""
    if isinstance(exc, UserError) and not isinstance(exc, OutOfMemory):
        return Failure(exc.kind, display(str(exc) or type(exc).__name__))
    if is_out_of_memory(exc):
        return Failure(Kind.OUT_OF_MEMORY, OOM_ADVICE)
    for types, kind in _FOREIGN:
        if isinstance(exc, types):
            return Failure(kind, display(str(exc) or type(exc).__name__))
    message = os_error_message(exc)
    return Failure(Kind.BUG, None) if message is None else Failure(Kind.BAD_INPUT, message)


def user_message(exc: BaseException) -> Optional[str]:
    """The one-line message for a user error, or None for a bug."""
    return classify(exc).message
