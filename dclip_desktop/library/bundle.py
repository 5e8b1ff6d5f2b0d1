"""The .dclip share format: one zip holding manifest.json, weights.safetensors and the thumbnails.

Reading trusts nothing in the file: only the known member names are read, sizes are bounded, the
manifest is migrated and validated, and the weights must match the manifest's sha256.
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

from PIL import Image

from . import manifest as mf
from . import weights as wf
from .atomic import TMP_PREFIX, _umask, fsync_dir
from .errors import LibraryError, first_line

SUFFIX = ".dclip"
# The largest weights any base can have: ADM ImageNet-512 has 558,997,638 parameters, so a full fp16
# delta is 1.118 GB (plus a few kB of header and per-tensor scales); LoRAs are far smaller. 1.25 GiB
# leaves 20 % headroom: a bigger member is no attribute of a known base, and the cap is what a
# hostile file can make dclip hold in memory.
MAX_WEIGHTS_BYTES = 5 << 28
MAX_THUMB_BYTES = 16 << 20
# write_bundle stores weights and thumbnails and deflates the manifest. Other methods are refused
# unread: bzip2 and LZMA members inflate a whole compressed block at once (no output bound in
# zipfile), so a small bomb could fill the memory before any size check.
_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
_CHUNK = 1 << 20


def _safe_filename(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return keep or "attribute"


def write_bundle(entry, path: Path) -> Path:
    """Write `entry` to `path` (a folder → <folder>/<name>.dclip) atomically; returns the file."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / (_safe_filename(entry.name) + SUFFIX)
    elif not path.suffix:
        path = path.with_suffix(SUFFIX)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".part", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes it 0600; an export is a file to share (0666 & ~umask)
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            with zipfile.ZipFile(fh, "w") as zf:
                data = mf.read(entry.path / mf.MANIFEST_NAME)
                zf.writestr(mf.MANIFEST_NAME, mf.dumps(data), compress_type=zipfile.ZIP_DEFLATED)
                # fp16 weights and PNGs do not compress: store them.
                zf.write(entry.weights_path, mf.WEIGHTS_NAME, compress_type=zipfile.ZIP_STORED)
                for which in mf.THUMBNAILS:
                    thumb = entry.thumbnail(which)
                    if thumb is not None:
                        zf.write(thumb, f"{which}.png", compress_type=zipfile.ZIP_STORED)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror, str(path)) from None  # a full disk: say which file
        raise
    fsync_dir(path.parent)
    return path


def _read_member(zf: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """The member's bytes; never inflates more than `limit` (+ one chunk), whatever the header says."""
    info = zf.getinfo(name)
    if info.flag_bits & 0x1:
        raise LibraryError(f"'{name}' is encrypted; dclip writes no encrypted bundles")
    if info.compress_type not in _METHODS:
        raise LibraryError(f"'{name}' uses zip compression method {info.compress_type}, which dclip does not "
                           "write (only stored or deflated)")
    if info.file_size > limit:
        raise LibraryError(f"'{name}' is too large ({info.file_size} bytes, at most {limit})")
    # zipfile stops at the declared size and checks the CRC there, and deflate output per read is
    # bounded by the chunk, so a lying header cannot make this inflate past the limit either.
    parts, total = [], 0
    with zf.open(info) as fh:
        while total <= limit and (block := fh.read(_CHUNK)):
            parts.append(block)
            total += len(block)
    if total > limit:
        raise LibraryError(f"'{name}' is too large (more than {limit} bytes)")
    return b"".join(parts)


def read_bundle(path: Path) -> tuple[dict, dict[str, bytes]]:
    """(manifest, {file name: bytes}) of a .dclip file, verified; LibraryError naming the file on any
    problem. OSError opening the file itself (missing, permission denied) is left as it is: it names
    the path and is the user's to fix."""
    path = Path(path)
    with open(path, "rb") as raw:
        if not zipfile.is_zipfile(raw):
            raise LibraryError(f"{path.name} is not a .dclip file (not a zip archive)")
        try:
            manifest, files = _read_members(raw, path)
        # What zipfile raises for a damaged or unusual archive: a bad CRC or header (BadZipFile), a corrupt
        # deflate stream (zlib.error), a truncated one (EOFError), ZIP64 trouble, an undecodable name.
        except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, ValueError, NotImplementedError,
                RuntimeError) as exc:
            raise LibraryError(f"{path.name} is a damaged archive ({first_line(exc)})") from None
        except OSError as exc:
            raise LibraryError(f"{path.name} cannot be read ({exc.strerror or first_line(exc)})") from None
        except LibraryError as exc:
            raise LibraryError(f"{path.name}: {exc}") from None
    blob = files[mf.WEIGHTS_NAME]
    if wf.sha256_bytes(blob) != manifest["weights_sha256"] or len(blob) != manifest["weights_bytes"]:
        raise LibraryError(f"{path.name}: the weights do not match the manifest's sha256 (corrupted file)")
    manifest["thumbnails"] = sorted(f for f in files if f.endswith(".png"))
    return manifest, files


def _read_members(raw, path: Path) -> tuple[dict, dict[str, bytes]]:
    with zipfile.ZipFile(raw) as zf:
        names = set(zf.namelist())
        for required in (mf.MANIFEST_NAME, mf.WEIGHTS_NAME):
            if required not in names:
                raise LibraryError(f"has no {required}; not a dclip attribute")
        manifest = mf.parse(_read_member(zf, mf.MANIFEST_NAME, mf.MAX_MANIFEST_BYTES))
        files = {mf.WEIGHTS_NAME: _read_member(zf, mf.WEIGHTS_NAME, MAX_WEIGHTS_BYTES)}
        for which in mf.THUMBNAILS:
            member = f"{which}.png"
            if member in names:
                try:
                    data = _read_member(zf, member, MAX_THUMB_BYTES)
                    Image.open(io.BytesIO(data)).verify()
                except Exception:  # a broken thumbnail is dropped, not fatal
                    continue
                files[member] = data
    return manifest, files
