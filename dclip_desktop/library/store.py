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

from ..untrusted import contained
from . import manifest as mf
from . import weights as wf
from .atomic import TMP_PREFIX, LibraryLock, atomic_write_text, fsync_dir, write_bytes
from .entry import DELETED_NAME, AttributeEntry, dir_size, read_entry
from .errors import DamagedEntryError, LibraryError, folder_is_a_file
from .names import check_name, resolve
from .paths import library_dir
from .sharing import base_installed, check_import, read_for_import

# What other modules import from here; the pieces live in entry, names and sharing.
__all__ = ["AttributeEntry", "GcReport", "Library", "base_installed", "check_name", "size_text"]

_ID_RE = re.compile(r"[0-9a-f]{8,32}")  # fullmatch only: "$" would let a trailing newline through


@dataclass
class GcReport:
    removed: list[Path] = field(default_factory=list)
    freed_bytes: int = 0

    def __str__(self) -> str:
        if not self.removed:
            return "nothing to remove, 0 bytes freed"
        return f"removed {len(self.removed)} item(s), freed {size_text(self.freed_bytes)}"


def size_text(n: int) -> str:
    """A file size as the library prints it: MB from 0.1 MB up, kB below, bytes under 1 kB."""
    if n >= 1e5:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.0f} kB" if n >= 1e3 else f"{n} bytes"


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
    def _load_entry(self, path: Path, check_sha: bool = True, fresh: bool = False) -> Optional[AttributeEntry]:
        """The entry in folder `path`, damaged or not; None when the folder is gone (a concurrent
        `rm` or restore moved it: the entry is not damaged, it is elsewhere)."""
        entry = read_entry(path, check_sha, fresh)
        if entry.damaged and not path.is_dir():
            return None
        return entry

    def _scan(self, folder: Path, check_sha: bool = True, fresh: bool = False) -> list[AttributeEntry]:
        try:
            dirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        except FileNotFoundError:
            return []
        except NotADirectoryError as exc:
            raise self._not_a_folder(folder, exc) from None
        entries = [e for e in (self._load_entry(p, check_sha, fresh) for p in dirs) if e is not None]
        entries.sort(key=lambda e: (e.name.casefold(), e.id))
        return entries

    def _not_a_folder(self, folder: Path, exc: OSError) -> Exception:
        """The library folder, or a folder above it, is a regular file: say which."""
        for p in (folder, *folder.parents):
            if p.exists():
                if not p.is_dir():
                    return folder_is_a_file(self.root, p)
                break
        return exc

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
        entry = resolve(self._scan(self.attributes_dir, check_sha=False), name_or_id)
        return None if entry is None else self._load_entry(entry.path)

    def get(self, name_or_id: str) -> AttributeEntry:
        entry = self.find(name_or_id)
        if entry is None:
            raise _no_such(name_or_id)
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
            if not entry.path.is_dir():  # deleted since it was looked up
                raise _no_such(entry.name) from None
            raise DamagedEntryError(entry.name, f"weights.safetensors cannot be read ({exc.strerror or exc})") from None
        if wf.sha256_bytes(data) != entry.manifest.get("weights_sha256"):
            raise DamagedEntryError(entry.name, "weights.safetensors does not match its sha256 in the manifest")
        try:
            return entry.kind, wf.decode(data, entry.kind)
        except LibraryError as exc:
            raise DamagedEntryError(entry.name, f"weights.safetensors cannot be used: {exc}") from None

    def materialize(self, entry, base_model: nn.Module) -> nn.Module:
        """A copy of `base_model` with the attribute's delta merged in (the base is untouched)."""
        from ..core.lora import apply_delta, factors_to_delta

        entry = self._entry(entry)
        kind, weights = self.load_weights(entry)
        try:
            # Also what an import could not check when the base was not installed (see import_file).
            wf.check_fit(kind, weights, dict(base_model.named_parameters()))
        except LibraryError as exc:
            raise LibraryError(
                f"attribute '{entry.name}' does not fit this base model (made for '{entry.base_id}'): {exc}"
            ) from None
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
        """Refuse a name taken by another entry, or equal to the id of one (live or in the trash):
        ids win in lookup, so such a name could never be looked up, and it would look like the other."""
        folded = name.casefold()
        for e in self._scan(self.attributes_dir, check_sha=False):
            if e.id == ignore_id:
                continue
            if e.name.casefold() == folded:
                raise LibraryError(f"an attribute named '{e.name}' already exists ({e.id}); pick another name")
            if e.id == folded:
                raise LibraryError(f"'{name}' is the id of the attribute '{e.name}'; pick another name")
        if folded in self._trash_ids():
            raise LibraryError(f"'{name}' is the id of an attribute in the trash; pick another name")

    def _trash_ids(self) -> set[str]:
        try:
            return {p.name for p in self.trash_dir.iterdir()}
        except (FileNotFoundError, NotADirectoryError):
            return set()

    def _id_is_free(self, entry_id, leaving: Optional[Path] = None) -> bool:
        """`entry_id` can name a new folder: a plain id, no folder of that name (but `leaving`, the one
        being restored), and no entry *named* so (an imported or restored id must not take over an
        existing name either)."""
        if not isinstance(entry_id, str) or not _ID_RE.fullmatch(entry_id):
            return False
        if (self.attributes_dir / entry_id).exists():
            return False
        if (self.trash_dir / entry_id).exists() and self.trash_dir / entry_id != leaving:
            return False
        return all(e.name.casefold() != entry_id for e in self._scan(self.attributes_dir, check_sha=False))

    def _new_id(self) -> str:
        while True:
            entry_id = uuid.uuid4().hex[:12]
            if self._id_is_free(entry_id):
                return entry_id

    def _publish(self, entry_id: str, files: dict[str, bytes], manifest: dict) -> AttributeEntry:
        """Write an entry into .tmp-<id>/ and rename it into place: all or nothing. Lock held."""
        self.attributes_dir.mkdir(parents=True, exist_ok=True)
        # The id and the file names may come from a shared file: they stay inside the library.
        tmp = contained(self.attributes_dir, f"{TMP_PREFIX}{entry_id}", "attribute id", error=LibraryError)
        final = contained(self.attributes_dir, entry_id, "attribute id", error=LibraryError)
        if final.exists():
            raise LibraryError(f"an entry with id {entry_id} already exists")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        target = tmp
        try:
            for fname, data in files.items():
                target = contained(tmp, fname, "attribute file", error=LibraryError)
                write_bytes(target, data)
            target = tmp / mf.MANIFEST_NAME
            write_bytes(target, mf.dumps(manifest).encode("utf-8"))
            fsync_dir(tmp)
            tmp.replace(final)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
                raise OSError(exc.errno, exc.strerror, str(target)) from None  # a full disk: say where
            raise
        fsync_dir(self.attributes_dir)
        entry = self._load_entry(final)
        if entry is None:
            raise _no_such(manifest["name"])
        return entry

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
        entry = resolve(self._scan(self.attributes_dir, check_sha=False), name_or_id)
        if entry is None:
            raise _no_such(name_or_id)
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
            entry = resolve(self.trash(), name_or_id)
            if entry is None:
                raise LibraryError(f"no attribute named '{name_or_id}' in the trash")
            name = check_name(new_name) if new_name else entry.name
            self._check_free(name)
            entry_id = entry.id if self._id_is_free(entry.id, leaving=entry.path) else self._new_id()
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
                        size = dir_size(p) if p.is_dir() else p.stat().st_size
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
                    base_model: Optional[nn.Module] = None, dense: bool = False) -> AttributeEntry:
        """Import a .dclip bundle or an official DiffusionCLIP .pth checkpoint (stored low-rank unless
        `dense`; a bundle keeps the storage it was shared with).

        The weights are checked before anything is written: finite values and at least one tensor
        always; names, shapes and a plausible size of the change against the base model (`base_model`,
        else the installed base of that id). When the base is not installed those checks happen at
        first use instead (`materialize`), and `base_installed` tells the caller."""
        path = Path(path)
        if not path.is_file():
            raise LibraryError(f"{path} does not exist or is not a file")
        if path.suffix.lower() in (".pth", ".pt", ".ckpt"):
            from .pth_import import import_official_pth

            return import_official_pth(path, self, base_id=base_id, base_model=base_model, name=name,
                                       dense=dense)
        manifest, files = read_for_import(path, name)
        check_import(path, manifest["kind"], files[mf.WEIGHTS_NAME], manifest["base_id"], base_model)
        with self._lock:
            try:
                self._check_free(manifest["name"])
            except LibraryError as exc:
                if name:
                    raise
                raise LibraryError(f"{path.name}: {exc} (import with --name NEW_NAME)") from None
            entry_id = manifest["id"]
            if not self._id_is_free(entry_id):
                entry_id = self._new_id()
            manifest["id"] = entry_id
            return self._publish(entry_id, files, manifest)

    def check_import(self, path: Path, kind: str, weights, base_id: str,
                     base_model: Optional[nn.Module] = None) -> None:
        """See sharing.check_import (the .pth import calls it through the library it imports into)."""
        check_import(path, kind, weights, base_id, base_model)


def _no_such(name_or_id: str) -> LibraryError:
    return LibraryError(f"no attribute named '{name_or_id}' in the library (see `dclip library list`)")
