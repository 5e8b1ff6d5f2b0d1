"""The .dclip share format: one zip holding manifest.json, weights.safetensors and the thumbnails.

Reading trusts nothing in the file: only the known member names are read, sizes are bounded, the
manifest is migrated and validated, and the weights must match the manifest's sha256.
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from pathlib import Path

from PIL import Image

from . import manifest as mf
from . import weights as wf
from .atomic import TMP_PREFIX, fsync_dir
from .errors import LibraryError

SUFFIX = ".dclip"
MAX_WEIGHTS_BYTES = 4 << 30
MAX_THUMB_BYTES = 16 << 20


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
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def _read_member(zf: zipfile.ZipFile, name: str, limit: int) -> bytes:
    info = zf.getinfo(name)
    if info.file_size > limit:
        raise LibraryError(f"'{name}' in the bundle is too large ({info.file_size} bytes)")
    with zf.open(info) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise LibraryError(f"'{name}' in the bundle is too large")
    return data


def read_bundle(path: Path) -> tuple[dict, dict[str, bytes]]:
    """(manifest, {file name: bytes}) of a .dclip file, verified; LibraryError on any problem."""
    if not zipfile.is_zipfile(path):
        raise LibraryError(f"{path.name} is not a .dclip file (not a zip archive)")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            for required in (mf.MANIFEST_NAME, mf.WEIGHTS_NAME):
                if required not in names:
                    raise LibraryError(f"{path.name} has no {required}; not a dclip attribute")
            try:
                manifest = mf.parse(_read_member(zf, mf.MANIFEST_NAME, mf.MAX_MANIFEST_BYTES))
            except mf.ManifestError as exc:
                raise LibraryError(f"{path.name}: {exc}") from None
            files = {mf.WEIGHTS_NAME: _read_member(zf, mf.WEIGHTS_NAME, MAX_WEIGHTS_BYTES)}
            for which in mf.THUMBNAILS:
                member = f"{which}.png"
                if member in names:
                    data = _read_member(zf, member, MAX_THUMB_BYTES)
                    try:
                        Image.open(io.BytesIO(data)).verify()
                    except Exception:  # a broken thumbnail is dropped, not fatal
                        continue
                    files[member] = data
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise LibraryError(f"{path.name} is a damaged archive ({exc})") from None
    blob = files[mf.WEIGHTS_NAME]
    if wf.sha256_bytes(blob) != manifest["weights_sha256"] or len(blob) != manifest["weights_bytes"]:
        raise LibraryError(f"{path.name}: the weights do not match the manifest's sha256 (corrupted file)")
    try:
        wf.decode(blob, manifest["kind"])
    except Exception as exc:
        raise LibraryError(f"{path.name}: the weights cannot be decoded ({exc})") from None
    manifest["thumbnails"] = sorted(f for f in files if f.endswith(".png"))
    return manifest, files
