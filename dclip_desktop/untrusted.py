"""What comes from a file a stranger could have written: JSON, paths inside folders, text to print.

Attributes travel as `.dclip` and `.pth` files, batch manifests sit on shared disks, settings and
PNG metadata are JSON anyone can edit. Every reader of such data goes through the rules here,
so each is written once:
- `loads_object`: JSON that must be an object, bounded in size and nesting, with no NaN/Infinity
  (`loads_value` for the rare JSON of another shape). `take` then reads one field with its type and range.
- `contained`: a relative path named by a file, resolved (symlinks too) and kept inside its folder.
- `display` / `check_text`: control and bidi characters are escaped when printed and refused in new names.
- `open_regular`: a file to read is opened only if it is a regular file (a FIFO must not hang a reader).

Errors are the caller's kind (`error=`), so a library manifest fails as a LibraryError and a batch
manifest as a JobError; the default is UntrustedDataError. Nothing else escapes.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import unicodedata
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Optional

from .errors import BadInput

MAX_DEPTH = 32  # deeper than any JSON we write (4 levels); Python's parser recurses and dies at ~1000
MAX_TEXT = 1 << 20
MISSING: Any = object()

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(r"[\[\]{}]")
# Bidi embeddings/overrides/isolates and marks: they reorder what a terminal shows (CVE-2021-42574).
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


class UntrustedDataError(BadInput):
    """Data from a file failed validation; the message names the file and the problem."""


def _depth(text: str) -> int:
    depth = deepest = 0
    for m in _BRACKETS.finditer(_STRINGS.sub('""', text)):
        depth += 1 if m.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def loads_value(data: str | bytes, what: str, *, max_bytes: int = MAX_TEXT, max_depth: int = MAX_DEPTH,
                error: type[Exception] = UntrustedDataError) -> Any:
    """Parse `data` as JSON of any shape (a schedule is a list), bounded in size and nesting, with no
    NaN/Infinity; `error(f"{what}: ...")` on anything else. Most callers want `loads_object`."""
    if len(data) > max_bytes:
        raise error(f"{what}: implausibly large ({len(data)} bytes, at most {max_bytes})")
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise error(f"{what}: not UTF-8 text") from None
    if _depth(data) > max_depth:
        raise error(f"{what}: nested more than {max_depth} levels deep")
    try:
        return json.loads(data, parse_constant=_no_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        raise error(f"{what}: not valid JSON ({exc})") from None


def loads_object(data: str | bytes, what: str, *, max_bytes: int = MAX_TEXT, max_depth: int = MAX_DEPTH,
                 error: type[Exception] = UntrustedDataError) -> dict:
    """Parse `data` as a JSON object; `error(f"{what}: ...")` on anything else."""
    value = loads_value(data, what, max_bytes=max_bytes, max_depth=max_depth, error=error)
    if not isinstance(value, dict):
        raise error(f"{what}: holds a JSON {type(value).__name__}, not an object")
    return value


def take(obj: dict, key: str, kind: type | tuple, what: str, *, default: Any = MISSING,
         lo: Optional[float] = None, hi: Optional[float] = None, max_len: int = 10_000,
         error: type[Exception] = UntrustedDataError) -> Any:
    """obj[key] checked to be `kind` (int excludes bool; float accepts int) and within [lo, hi]."""
    if key not in obj or obj[key] is None:
        if default is MISSING:
            raise error(f"{what}: '{key}' is missing")
        return default
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and int not in kinds:
        kinds = (*kinds, int)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise error(f"{what}: '{key}' should be {names}, not {type(value).__name__}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if (isinstance(value, float) and not math.isfinite(value)) or (
                float in kinds and isinstance(value, int) and abs(value) > 1e308):
            raise error(f"{what}: '{key}' is not a finite number")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise error(f"{what}: '{key}' = {value} is outside {lo}..{hi}")
    if isinstance(value, (str, list, dict)) and len(value) > max_len:
        raise error(f"{what}: '{key}' is too long ({len(value)})")
    return value


def contained(root: str | os.PathLike, rel: Any, what: str, *,
              error: type[Exception] = UntrustedDataError) -> Path:
    """`root / rel` for a relative path `rel` read from a file, refused unless it stays inside
    `root` after resolving `..` and symlinks (absolute paths, drive letters, NUL and backslashes too)."""
    if not isinstance(rel, str) or not rel or "\0" in rel or "\\" in rel:
        raise error(f"{what}: {display(repr(rel))} is not a plain relative file name")
    if PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).drive or ".." in PurePosixPath(rel).parts:
        raise error(f"{what}: {display(rel)} points outside {root}")
    base = Path(root)
    path = base / rel
    try:
        inside = path.resolve().is_relative_to(base.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        inside = False
    if not inside:
        raise error(f"{what}: {display(rel)} points outside {root} (through a link)")
    return path


def open_regular(path: str | os.PathLike, what: str, *, error: type[Exception] = UntrustedDataError):
    """`path` opened for binary reading if it is a regular file, else `error`. A FIFO named like a
    settings file or an image would block a plain open() forever, so the open does not wait
    (O_NONBLOCK) and the kind is checked on the opened file, not on the name (no race). OSError from
    the open itself (missing file, permissions) is the caller's to word."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a FIFO, socket or device)"
            raise error(f"{what}: is {kind}")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _unsafe(ch: str) -> bool:
    return ch in _BIDI or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp")


def display(text: Any) -> str:
    """`text` safe to print: control, bidi and undecodable characters shown as escapes."""
    text = str(text)
    if not any(_unsafe(c) for c in text):
        return text
    return "".join(c.encode("unicode_escape", "backslashreplace").decode("ascii") if _unsafe(c) else c
                   for c in text)


def check_text(text: str, what: str, *, error: type[Exception] = UntrustedDataError) -> str:
    """Refuse control and bidi characters in a name or text the user is about to store."""
    bad = sorted({c for c in text if _unsafe(c)})
    if bad:
        shown = " ".join(c.encode("unicode_escape", "backslashreplace").decode("ascii") for c in bad)
        raise error(f"{what} holds control or bidi characters ({shown}): use plain text")
    return text
