"""The latent cache: DDIM-inverted latents x_t0, recycled across attributes (paper §3.1).

A latent depends on the base weights, the image, t0, S_for and the precision the UNet ran in, so
all five are the key; a changed base file (new sha256) simply misses. Each latent is one small
safetensors file under <root>/<2 hex>/<sha256 of the key>.safetensors. The cache holds at most
`cap_bytes`; the least recently used files go first (a hit refreshes the file's mtime). A corrupt
or half-written file is a miss and is deleted: the cache never breaks a job, and a cache write that
fails (a full or read-only disk) is logged once and the job goes on without it.

The cache may be pointed at any folder, even one full of the user's files, so it only ever touches
files it wrote: `<2 hex>/<64 hex>.safetensors` regular files (never through a symlink) whose
safetensors header carries our key fields, and its own `.dclip-latent-*.part` leftovers in those folders.

The same files also hold the training images a fine-tune samples from the base when given no photos
(DDIM from pure noise, 40 steps each by default: most of such a fine-tune's time). A sample is stored
like a latent, under a LatentKey from `sample_key`: `image_sha256` is the sha256 of b"ddim-sample\0",
the noise's shape and its float32 bytes (domain-separated, so it never equals a real image's hash),
`t0` is the step sampling starts from (T−1 = 999), `s_for` the number of sampling steps, and the
tensor is the clamped sample x̂0. Its file layout and header fields are a latent's, so `_ours`,
eviction and `clear` treat both alike. Keying on the noise itself (not on a seed and an index) makes
a torch whose generator draws differently a miss rather than a wrong hit.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import stat
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .atomic import atomic_write_bytes
from .paths import latent_cache_dir

KEY_VERSION = "1"
SUFFIX = ".safetensors"
DEFAULT_CAP = 2 * 1024**3
_STALE_TEMP_S = 3600
_SUBDIR = re.compile(r"^[0-9a-f]{2}$")
_FILE = re.compile(r"^[0-9a-f]{64}\.safetensors$")
TEMP_PREFIX = ".dclip-latent-"  # our own temp names, so a sweep never matches a user's ".tmp-*" file
_TEMP = re.compile(r"^" + re.escape(TEMP_PREFIX) + r"[a-z0-9_]{8}\.part$")  # mkstemp's 8 random characters
_log = logging.getLogger(__name__)


def _regular(path: Path) -> Optional[os.stat_result]:
    """lstat of a regular file (not a link, folder or device), else None."""
    try:
        st = path.lstat()
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def _header_fields(path: Path) -> Optional[dict]:
    """The `__metadata__` of a safetensors file, reading only its header; None if it is not one."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) != 8:
                return None
            (n,) = struct.unpack("<Q", head)
            if n > 1 << 16:
                return None
            meta = json.loads(fh.read(n)).get("__metadata__")
    except (OSError, ValueError, AttributeError):
        return None
    return meta if isinstance(meta, dict) else None


def _ours(path: Path) -> bool:
    meta = _header_fields(path)
    return meta is not None and meta.get("key_version") is not None and set(meta) == set(LatentKey.__annotations__) | {
        "key_version"}


@dataclass(frozen=True)
class LatentKey:
    base_sha256: str
    image_sha256: str
    t0: int
    s_for: int
    precision: str

    def fields(self) -> dict[str, str]:
        return {"key_version": KEY_VERSION, "base_sha256": str(self.base_sha256),
                "image_sha256": str(self.image_sha256), "t0": str(int(self.t0)), "s_for": str(int(self.s_for)),
                "precision": str(self.precision)}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.fields(), sort_keys=True).encode()).hexdigest()


SAMPLE_DOMAIN = b"ddim-sample\0"


def sample_key(base_sha256: str, noise: torch.Tensor, t_start: int, steps: int, precision: str) -> LatentKey:
    """The key of the DDIM sample a base draws from `noise` (one image's x_T) in `steps` steps from
    `t_start`: see the module docstring."""
    h = hashlib.sha256(SAMPLE_DOMAIN)
    h.update(json.dumps(list(noise.shape)).encode() + b"\0")
    h.update(noise.detach().float().cpu().contiguous().numpy().tobytes())
    return LatentKey(base_sha256, h.hexdigest(), int(t_start), int(steps), precision)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    puts: int = 0
    evictions: int = 0
    corrupt: int = 0
    write_errors: int = 0


class LatentCache:
    def __init__(self, root: Optional[Path] = None, cap_bytes: int = DEFAULT_CAP) -> None:
        self.root = latent_cache_dir(root)
        self.cap_bytes = int(cap_bytes)
        self.stats = CacheStats()
        self._size: Optional[int] = None  # running estimate; rescanned before evicting
        self._clock = 0
        self._mutex = threading.Lock()
        self.write_error: Optional[str] = None  # why the cache stopped writing (full or read-only disk)

    def __repr__(self) -> str:
        return f"LatentCache({str(self.root)!r}, cap_bytes={self.cap_bytes})"

    def path_for(self, key: LatentKey) -> Path:
        d = key.digest()
        return self.root / d[:2] / (d + SUFFIX)

    def _touch(self, path: Path) -> None:
        self._clock = max(time.time_ns(), self._clock + 1)
        try:
            os.utime(path, ns=(self._clock, self._clock))
        except OSError:
            pass

    def _discard(self, path: Path) -> None:
        if _regular(path) is None:  # never a link (it would be the link target's folder that we clean)
            return
        try:
            path.unlink()
        except OSError:
            pass

    def get(self, key: LatentKey) -> Optional[torch.Tensor]:
        path = self.path_for(key)
        try:
            if _regular(path) is None or path.parent.is_symlink():
                raise FileNotFoundError(path)
            data = path.read_bytes()
        except OSError:
            with self._mutex:
                self.stats.misses += 1
            return None
        try:
            (n,) = struct.unpack("<Q", data[:8])
            meta = json.loads(data[8 : 8 + n]).get("__metadata__") or {}
            if meta != key.fields():
                raise ValueError("key mismatch")
            tensor = st_load(data)["latent"]
        except Exception:  # truncated, garbage, or not ours: a miss, and drop the file
            with self._mutex:
                self.stats.corrupt += 1
                self.stats.misses += 1
            self._discard(path)
            return None
        with self._mutex:
            self.stats.hits += 1
            self._touch(path)
        return tensor

    def put(self, key: LatentKey, tensor: torch.Tensor) -> None:
        self._put(key, tensor)
        self._maybe_evict()

    def _put(self, key: LatentKey, tensor: torch.Tensor) -> None:
        if self.write_error is not None:
            return
        data = st_save({"latent": tensor.detach().cpu().contiguous()}, metadata=key.fields())
        path = self.path_for(key)
        st = _regular(path)
        old = st.st_size if st is not None else 0
        try:
            if path.parent.is_symlink():
                raise NotADirectoryError(errno.ENOTDIR, "a link where the cache keeps its files", str(path.parent))
            # No fsync: a cache file lost or torn by a power cut is just a miss next time.
            atomic_write_bytes(path, data, fsync=False, prefix=TEMP_PREFIX)
        except OSError as exc:
            # A cache is an optimisation: a full, read-only or odd disk must not fail the edit.
            with self._mutex:
                self.stats.write_errors += 1
                self.write_error = f"{exc.filename or self.root}: {exc.strerror or exc}"
            _log.warning("the latent cache at %s is not written (%s); edits go on without it",
                         self.root, self.write_error)
            return
        with self._mutex:
            self._touch(path)
            self.stats.puts += 1
            if self._size is not None:
                self._size += len(data) - old

    def get_many(self, keys: Sequence[LatentKey]) -> list[Optional[torch.Tensor]]:
        return [self.get(k) for k in keys]

    def put_many(self, keys: Sequence[LatentKey], tensors: Sequence[torch.Tensor]) -> None:
        if len(keys) != len(tensors):
            raise ValueError(f"{len(keys)} keys but {len(tensors)} tensors")
        for key, tensor in zip(keys, tensors):
            self._put(key, tensor)
        self._maybe_evict()

    def _files(self) -> list[tuple[int, int, Path]]:
        """(mtime_ns, size, path) of every file this cache wrote; its stale temp files are removed."""
        out = []
        now = time.time()
        try:
            subs = [p for p in self.root.iterdir() if _SUBDIR.match(p.name) and not p.is_symlink() and p.is_dir()]
        except OSError:
            return out
        for sub in subs:
            try:
                entries = list(sub.iterdir())
            except OSError:
                continue
            for p in entries:
                st = _regular(p)
                if st is None:
                    continue
                if _TEMP.match(p.name):
                    if now - st.st_mtime > _STALE_TEMP_S:
                        self._discard(p)
                elif _FILE.match(p.name) and p.name.startswith(sub.name) and _ours(p):
                    out.append((st.st_mtime_ns, st.st_size, p))
        return out

    def size_bytes(self) -> int:
        return sum(size for _, size, _ in self._files())

    def _maybe_evict(self) -> None:
        with self._mutex:
            if self._size is None or self._size > self.cap_bytes:
                self._evict_locked(self.cap_bytes)

    def evict(self, target_bytes: Optional[int] = None) -> int:
        """Delete least recently used files until the cache holds ≤ target (default: the cap)."""
        with self._mutex:
            return self._evict_locked(self.cap_bytes if target_bytes is None else target_bytes)

    def _evict_locked(self, target: int) -> int:
        files = sorted(self._files())
        total = sum(size for _, size, _ in files)
        removed = 0
        for _, size, path in files:
            if total <= target:
                break
            self._discard(path)
            total -= size
            removed += 1
        self.stats.evictions += removed
        self._size = total
        return removed

    def clear(self) -> int:
        return self.evict(0)
