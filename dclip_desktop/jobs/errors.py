"""Which exceptions are the user's to fix (one-line message) rather than bugs (traceback)."""

from __future__ import annotations

from PIL import UnidentifiedImageError


class JobError(Exception):
    """A clear, user-facing failure of a job (bad input, missing file, invalid settings)."""


def user_error_types() -> tuple[type[BaseException], ...]:
    from ..core.cancel import Cancelled

    types: list[type[BaseException]] = [JobError, ValueError, FileNotFoundError, UnidentifiedImageError, Cancelled]
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
