"""The attribute library: fine-tuned attributes on disk, safe against crashes and concurrent use.

Layout under the root (see paths.library_dir):

    .lock                        inter-process lock taken by every mutation
    attributes/<id>/             one entry: manifest.json, weights.safetensors, before.png, after.png
    attributes/.tmp-<id>/        an entry being written; published by one os.replace of the folder
    trash/<id>/                  deleted entries (plus deleted.json) until the trash is emptied

Readers take no lock: every change is a rename, so they see an entry completely or not at all.
A damaged entry is listed with its reason and never hides the others.
"""

from __future__ import annotations

import copy
import io
import json
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from . import manifest as mf
from . import weights as wf
from .atomic import TMP_PREFIX, LibraryLock, atomic_write_text, fsync_dir, write_bytes
from .errors import DamagedEntryError, LibraryError
from .paths import library_dir

DELETED_NAME = "deleted.json"
_ID_RE = re.compile(r"^[0-9a-f]{8,32}$")
_MAX_NAME = 120
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


@dataclass
class GcReport:
    removed: list[Path] = field(default_factory=list)
    freed_bytes: int = 0

    def __str__(self) -> str:
        return f"removed {len(self.removed)} item(s), freed {self.freed_bytes / 1e6:.1f} MB"


def _dir_size(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:
            pass
    return total


def check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise LibraryError("an attribute name must not be empty")
    name = name.strip()
    if len(name) > _MAX_NAME:
        raise LibraryError(f"an attribute name must be at most {_MAX_NAME} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise LibraryError("an attribute name must not contain control characters")
    return name


def _resolve(entries: list[AttributeEntry], key: str) -> Optional[AttributeEntry]:
    """Exact name (case-insensitive), then exact id, then a unique id prefix of ≥ 4 characters."""
    folded = key.strip().casefold()
    by_name = [e for e in entries if e.name.casefold() == folded]
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        ids = ", ".join(e.id for e in by_name)
        raise LibraryError(f"'{key}' names several attributes ({ids}); use an id")
    by_id = [e for e in entries if e.id == key.strip().lower()]
    if by_id:
        return by_id[0]
    if len(folded) >= 4:
        by_prefix = [e for e in entries if e.id.startswith(folded)]
        if len(by_prefix) == 1:
            return by_prefix[0]
        if len(by_prefix) > 1:
            raise LibraryError(f"id prefix '{key}' is ambiguous ({', '.join(e.id for e in by_prefix)})")
    return None


class Library:
    def __init__(self, root: Optional[Path] = None, lock_timeout: float = 30.0) -> None:
        self.root = library_dir(root)
        self.attributes_dir = self.root / "attributes"
        self.trash_dir = self.root / "trash"
        self._lock = LibraryLock(self.root / ".lock", timeout=lock_timeout)

    def __repr__(self) -> str:
        return f"Library({str(self.root)!r})"

    def lock(self) -> LibraryLock:
        """The library's inter-process lock (re-entrant), for callers batching several changes."""
        return self._lock

    # --- reading ------------------------------------------------------------------------------
    def _load_entry(self, path: Path, check_sha: bool = True, fresh: bool = False) -> AttributeEntry:
        entry = AttributeEntry(id=path.name, name=path.name, path=path, manifest={})
        try:
            entry.size_bytes = _dir_size(path)
        except OSError:
            pass
        deleted = path / DELETED_NAME
        if deleted.is_file():
            try:
                entry.deleted_at = float(json.loads(deleted.read_text())["deleted_at"])
            except (OSError, ValueError, KeyError, TypeError):
                entry.deleted_at = deleted.stat().st_mtime
        try:
            data = mf.read(path / mf.MANIFEST_NAME)
        except mf.ManifestError as exc:
            entry.damaged = str(exc)
            return entry
        data["id"] = path.name  # the folder is the identity, even if someone copied a folder by hand
        entry.manifest, entry.name, entry.created = data, data["name"], data.get("created")
        entry.damaged = self._check_weights(entry, check_sha, fresh)
        return entry

    @staticmethod
    def _check_weights(entry: AttributeEntry, check_sha: bool, fresh: bool) -> Optional[str]:
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

    def _scan(self, folder: Path, check_sha: bool = True, fresh: bool = False) -> list[AttributeEntry]:
        try:
            dirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        except FileNotFoundError:
            return []
        entries = [self._load_entry(p, check_sha, fresh) for p in dirs]
        entries.sort(key=lambda e: (e.name.casefold(), e.id))
        return entries

    def list(self, base_id: Optional[str] = None) -> list[AttributeEntry]:
        """All entries, damaged ones included (with .damaged set); filtered by base when given.
        Entries whose manifest is unreadable have no known base and are always listed."""
        entries = self._scan(self.attributes_dir)
        if base_id is not None:
            entries = [e for e in entries if e.base_id in (base_id, None)]
        return entries

    def trash(self) -> list[AttributeEntry]:
        """Deleted entries that can still be restored, newest deletion first."""
        entries = self._scan(self.trash_dir, check_sha=False)
        entries.sort(key=lambda e: -(e.deleted_at or 0))
        return entries

    def find(self, name_or_id: str) -> Optional[AttributeEntry]:
        """The entry (possibly damaged) by name or id, or None."""
        entry = _resolve(self._scan(self.attributes_dir, check_sha=False), name_or_id)
        return None if entry is None else self._load_entry(entry.path)

    def get(self, name_or_id: str) -> AttributeEntry:
        entry = self.find(name_or_id)
        if entry is None:
            raise LibraryError(f"no attribute named '{name_or_id}' in the library (see `dclip library list`)")
        if entry.damaged:
            raise DamagedEntryError(entry.name, entry.damaged)
        return entry

    def _entry(self, entry_or_name) -> AttributeEntry:
        return entry_or_name if isinstance(entry_or_name, AttributeEntry) else self.get(entry_or_name)

    def load_weights(self, entry) -> tuple[str, dict[str, torch.Tensor]]:
        """(kind, weights), the bytes checked against the manifest's sha256 as they are read."""
        entry = self._entry(entry)
        try:
            data = entry.weights_path.read_bytes()
        except OSError as exc:
            raise DamagedEntryError(entry.name, f"weights.safetensors cannot be read ({exc.strerror or exc})") from None
        if wf.sha256_bytes(data) != entry.manifest.get("weights_sha256"):
            raise DamagedEntryError(entry.name, "weights.safetensors does not match its sha256 in the manifest")
        try:
            return entry.kind, wf.decode(data, entry.kind)
        except Exception as exc:  # safetensors raises its own error types
            raise DamagedEntryError(entry.name, f"weights.safetensors cannot be decoded ({exc})") from None

    def materialize(self, entry, base_model: nn.Module) -> nn.Module:
        """A copy of `base_model` with the attribute's delta merged in (the base is untouched)."""
        from ..core.lora import apply_delta, factors_to_delta

        entry = self._entry(entry)
        kind, weights = self.load_weights(entry)
        model = copy.deepcopy(base_model)
        try:
            if kind == "lora":
                delta = factors_to_delta(weights, model.state_dict())
            else:
                delta = weights
            apply_delta(model, delta)
        except (KeyError, ValueError, RuntimeError) as exc:  # unknown name, wrong shape
            msg = str(exc.args[0] if exc.args else exc).splitlines()[0]
            raise LibraryError(
                f"attribute '{entry.name}' does not fit this base model (made for '{entry.base_id}'): {msg}"
            ) from None
        return model

    # --- writing ------------------------------------------------------------------------------
    def _check_free(self, name: str, ignore_id: Optional[str] = None) -> None:
        folded = name.casefold()
        for e in self._scan(self.attributes_dir, check_sha=False):
            if e.name.casefold() == folded and e.id != ignore_id:
                raise LibraryError(f"an attribute named '{e.name}' already exists ({e.id}); pick another name")

    def _new_id(self) -> str:
        while True:
            entry_id = uuid.uuid4().hex[:12]
            if not (self.attributes_dir / entry_id).exists() and not (self.trash_dir / entry_id).exists():
                return entry_id

    def _publish(self, entry_id: str, files: dict[str, bytes], manifest: dict) -> AttributeEntry:
        """Write an entry into .tmp-<id>/ and rename it into place: all or nothing. Lock held."""
        self.attributes_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.attributes_dir / f"{TMP_PREFIX}{entry_id}"
        final = self.attributes_dir / entry_id
        if final.exists():
            raise LibraryError(f"an entry with id {entry_id} already exists")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        try:
            for fname, data in files.items():
                write_bytes(tmp / fname, data)
            write_bytes(tmp / mf.MANIFEST_NAME, mf.dumps(manifest).encode("utf-8"))
            fsync_dir(tmp)
            tmp.replace(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(self.attributes_dir)
        return self._load_entry(final)

    def save_attribute(self, name: str, weights: dict[str, torch.Tensor], kind: str, meta: dict,
                       thumbnails: Optional[dict] = None) -> AttributeEntry:
        """Store a new attribute; LibraryError if the name is taken (case-insensitive)."""
        name = check_name(name)
        blob = wf.encode(weights, kind)
        files = {mf.WEIGHTS_NAME: blob}
        for which, img in (thumbnails or {}).items():
            if which not in mf.THUMBNAILS or img is None:
                continue
            buf = io.BytesIO()
            img.convert("RGB").save(buf, format="PNG")
            files[f"{which}.png"] = buf.getvalue()
        with self._lock:
            self._check_free(name)
            entry_id = self._new_id()
            thumbs = sorted(f for f in files if f.endswith(".png"))
            manifest = mf.build(entry_id, name, kind, meta, wf.sha256_bytes(blob), len(blob), thumbs)
            return self._publish(entry_id, files, manifest)

    def rename(self, name_or_id: str, new_name: str) -> AttributeEntry:
        new_name = check_name(new_name)
        with self._lock:
            entry = self._find_live(name_or_id)
            if entry.damaged and not entry.manifest:
                raise DamagedEntryError(entry.name, entry.damaged)
            self._check_free(new_name, ignore_id=entry.id)
            data = mf.read(entry.path / mf.MANIFEST_NAME)
            data["name"] = new_name
            atomic_write_text(entry.path / mf.MANIFEST_NAME, mf.dumps(data))
            return self._load_entry(entry.path)

    def _find_live(self, name_or_id: str) -> AttributeEntry:
        entry = _resolve(self._scan(self.attributes_dir, check_sha=False), name_or_id)
        if entry is None:
            raise LibraryError(f"no attribute named '{name_or_id}' in the library (see `dclip library list`)")
        return entry

    def delete(self, name_or_id: str) -> AttributeEntry:
        """Move an entry (damaged ones too) to the trash; `restore` brings it back."""
        with self._lock:
            entry = self._find_live(name_or_id)
            self.trash_dir.mkdir(parents=True, exist_ok=True)
            dest = self.trash_dir / entry.id
            if dest.exists():  # an older deletion of a copied folder: keep both
                dest = self.trash_dir / f"{entry.id}-{uuid.uuid4().hex[:6]}"
            entry.path.replace(dest)
            fsync_dir(self.attributes_dir)
            atomic_write_text(dest / DELETED_NAME, json.dumps({"deleted_at": time.time()}))
            return self._load_entry(dest, check_sha=False)

    def restore(self, name_or_id: str, new_name: Optional[str] = None) -> AttributeEntry:
        with self._lock:
            entry = _resolve(self.trash(), name_or_id)
            if entry is None:
                raise LibraryError(f"no attribute named '{name_or_id}' in the trash")
            name = check_name(new_name) if new_name else entry.name
            self._check_free(name)
            entry_id = entry.id if _ID_RE.match(entry.id) and not (self.attributes_dir / entry.id).exists() \
                else self._new_id()
            if new_name:
                data = mf.read(entry.path / mf.MANIFEST_NAME)
                data["name"] = name
                atomic_write_text(entry.path / mf.MANIFEST_NAME, mf.dumps(data))
            (entry.path / DELETED_NAME).unlink(missing_ok=True)
            self.attributes_dir.mkdir(parents=True, exist_ok=True)
            final = self.attributes_dir / entry_id
            entry.path.replace(final)
            fsync_dir(self.attributes_dir)
            return self._load_entry(final)

    def empty_trash(self, older_than_days: Optional[float] = None) -> GcReport:
        report = GcReport()
        with self._lock:
            cutoff = None if older_than_days is None else time.time() - older_than_days * 86400
            for entry in self.trash():
                if cutoff is not None and (entry.deleted_at or 0) > cutoff:
                    continue
                report.freed_bytes += entry.size_bytes
                shutil.rmtree(entry.path, ignore_errors=True)
                report.removed.append(entry.path)
        return report

    def verify(self) -> list[tuple[AttributeEntry, bool, str]]:
        """Re-hash every weight file (no cached hashes): [(entry, ok, reason)]."""
        return [(e, e.damaged is None, e.damaged or "ok") for e in self._scan(self.attributes_dir, fresh=True)]

    def gc(self, trash_older_than_days: Optional[float] = None) -> GcReport:
        """Remove what interrupted writes left behind (.tmp-* folders and files), empty entry
        folders, and optionally trash older than the given number of days."""
        report = GcReport()
        with self._lock:
            for folder in (self.root, self.attributes_dir, self.trash_dir):
                if not folder.is_dir():
                    continue
                for p in folder.iterdir():
                    if p.name.startswith(TMP_PREFIX):
                        size = _dir_size(p) if p.is_dir() else p.stat().st_size
                        shutil.rmtree(p) if p.is_dir() else p.unlink()
                    elif folder is not self.root and p.is_dir() and not any(p.iterdir()):
                        size = 0
                        p.rmdir()
                    else:
                        continue
                    report.removed.append(p)
                    report.freed_bytes += size
            for entry_dir in self._scan(self.attributes_dir, check_sha=False):
                for p in entry_dir.path.glob(f"{TMP_PREFIX}*"):
                    report.freed_bytes += p.stat().st_size
                    p.unlink()
                    report.removed.append(p)
            if trash_older_than_days is not None:
                emptied = self.empty_trash(trash_older_than_days)
                report.removed += emptied.removed
                report.freed_bytes += emptied.freed_bytes
        return report

    # --- sharing ------------------------------------------------------------------------------
    def export(self, name_or_id: str, path) -> Path:
        from .bundle import write_bundle

        entry = self.get(name_or_id)
        return write_bundle(entry, Path(path))

    def import_file(self, path, name: Optional[str] = None, base_id: Optional[str] = None,
                    base_model: Optional[nn.Module] = None) -> AttributeEntry:
        """Import a .dclip bundle or an official DiffusionCLIP .pth checkpoint."""
        path = Path(path)
        if not path.is_file():
            raise LibraryError(f"{path} does not exist or is not a file")
        if path.suffix.lower() in (".pth", ".pt", ".ckpt"):
            from .pth_import import import_official_pth

            return import_official_pth(path, self, base_id=base_id, base_model=base_model, name=name)
        from .bundle import read_bundle

        manifest, files = read_bundle(path)
        name = check_name(name or manifest["name"])
        manifest["name"] = name
        manifest.setdefault("imported", {"from": path.name, "at": mf.utc_now_iso()})
        with self._lock:
            self._check_free(name)
            entry_id = manifest["id"]
            if not _ID_RE.match(entry_id) or (self.attributes_dir / entry_id).exists() or (
                    self.trash_dir / entry_id).exists():
                entry_id = self._new_id()
            manifest["id"] = entry_id
            return self._publish(entry_id, files, manifest)
