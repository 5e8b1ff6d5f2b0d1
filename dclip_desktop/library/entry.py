"""One attribute folder read into an AttributeEntry. A damaged folder is an entry with a reason, never
an exception: the library lists it next to the others and says what is wrong."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from . import manifest as mf
from . import weights as wf

DELETED_NAME = "deleted.json"
# In-process cache of weight-file hashes by (path, size, mtime): list() stays fast with many entries.
_SHA_CACHE: dict[tuple[str, int, int], str] = {}


@dataclass
class AttributeEntry:
    id: str
    name: str
    path: Path
    manifest: dict = field(repr=False)
    damaged: Optional[str] = None  # the reason, or None for a usable entry
    size_bytes: int = 0
    created: Optional[str] = None  # ISO 8601 UTC
    deleted_at: Optional[float] = None  # Unix time, for entries in the trash

    @property
    def base_id(self) -> Optional[str]:
        return self.manifest.get("base_id")

    @property
    def t0(self) -> Optional[int]:
        return self.manifest.get("t0")

    @property
    def source(self) -> Optional[str]:
        return self.manifest.get("source")

    @property
    def target(self) -> Optional[str]:
        return self.manifest.get("target")

    @property
    def kind(self) -> Optional[str]:
        return self.manifest.get("kind")

    @property
    def weights_path(self) -> Path:
        return self.path / mf.WEIGHTS_NAME

    def thumbnail(self, which: str) -> Optional[Path]:
        """Path of the 'before' or 'after' PNG, or None."""
        p = self.path / f"{which}.png"
        return p if p.is_file() else None


def dir_size(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:
            pass
    return total


def read_entry(path: Path, check_sha: bool, fresh: bool) -> AttributeEntry:
    """The entry in folder `path`, with `damaged` set when its manifest or weights are unusable.
    `check_sha` hashes the weights (from the in-process cache unless `fresh`)."""
    entry = AttributeEntry(id=path.name, name=path.name, path=path, manifest={})
    try:
        entry.size_bytes = dir_size(path)
    except OSError:
        pass
    deleted = path / DELETED_NAME
    if deleted.is_file():
        try:
            entry.deleted_at = float(json.loads(deleted.read_text())["deleted_at"])
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            try:
                entry.deleted_at = deleted.stat().st_mtime
            except OSError:
                entry.deleted_at = None
    try:
        data = mf.read(path / mf.MANIFEST_NAME)
    except mf.ManifestError as exc:
        entry.damaged = str(exc)
        return entry
    data["id"] = path.name  # the folder is the identity, even if someone copied a folder by hand
    entry.manifest, entry.name, entry.created = data, data["name"], data.get("created")
    entry.damaged = check_weights(entry, check_sha, fresh)
    return entry


def check_weights(entry: AttributeEntry, check_sha: bool, fresh: bool) -> Optional[str]:
    """Why the entry's weight file is unusable (missing, wrong size, bad header, wrong sha256), or None."""
    wpath = entry.weights_path
    try:
        st = wpath.stat()
    except FileNotFoundError:
        return "weights.safetensors is missing"
    except OSError as exc:
        return f"weights.safetensors cannot be read ({exc.strerror or exc})"
    expected = entry.manifest["weights_bytes"]
    if st.st_size < expected:
        return f"weights.safetensors is truncated ({st.st_size} of {expected} bytes)"
    if st.st_size > expected:
        return f"weights.safetensors is {st.st_size} bytes, the manifest says {expected}"
    try:
        wf.check_header(wpath)
    except (ValueError, OSError) as exc:
        return str(exc)
    if not check_sha:
        return None
    key = (str(wpath), st.st_size, st.st_mtime_ns)
    sha = None if fresh else _SHA_CACHE.get(key)
    if sha is None:
        try:
            sha = _SHA_CACHE[key] = wf.sha256_file(wpath)
        except OSError as exc:
            return f"weights.safetensors cannot be read ({exc.strerror or exc})"
    if sha != entry.manifest["weights_sha256"]:
        return "weights.safetensors does not match its sha256 in the manifest (modified or corrupted)"
    return None
