"""The attribute manifest (manifest.json): schema, validation and migration of older versions.

`MIGRATIONS[v]` turns a version-v dict into a version-(v+1) dict; `migrate` chains them up to
SCHEMA_VERSION, so a library written by any older dclip still loads. A manifest from a newer dclip
is refused with a clear reason rather than half-understood.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..untrusted import loads_object, open_regular
from .errors import LibraryError

SCHEMA_VERSION = 1
# How weights.safetensors holds the weights (library/weights.py): LoRA factors, a dense fp16 delta, or
# a per-layer low-rank delta (core/low_rank.py; what full fine-tunes and .pth imports store by default).
KINDS = ("lora", "full_delta", "low_rank")
MANIFEST_NAME = "manifest.json"
WEIGHTS_NAME = "weights.safetensors"
THUMBNAILS = ("before", "after")
MAX_MANIFEST_BYTES = 1 << 20

# What save_attribute takes in `meta`; anything else the caller adds is kept as is.
META_FIELDS = (
    "base_id", "base_sha256", "source", "target", "t0", "s_for", "s_gen", "lambdas", "lr", "lr_schedule",
    "epochs", "mode", "lora_rank", "seed",
)
# Written by the library, never taken from `meta`.
LIBRARY_FIELDS = ("schema_version", "id", "name", "kind", "created", "app_version", "weights_sha256",
                  "weights_bytes", "thumbnails")

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(LibraryError):
    """A manifest that cannot be read, migrated or validated; the message is the reason."""


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _from_v0(old: dict) -> dict:
    """v0 was the pre-release format: the reference code's argument names, flat loss weights,
    'sha256' for the weight hash and a Unix time for 'created'."""
    renames = {
        "base": "base_id", "base_sha": "base_sha256", "src_txt": "source", "trg_txt": "target", "t_0": "t0",
        "n_inv_step": "s_for", "n_train_step": "s_gen", "n_epochs": "epochs", "rank": "lora_rank",
        "sha256": "weights_sha256", "size": "weights_bytes",
    }
    new: dict[str, Any] = {}
    lambdas = {}
    for key, value in old.items():
        if key in ("version", "schema_version"):
            continue
        if key in ("clip_loss_w", "l1_loss_w", "id_loss_w"):
            lambdas[{"clip_loss_w": "clip", "l1_loss_w": "l1", "id_loss_w": "face"}[key]] = value
            continue
        new[renames.get(key, key)] = value
    if lambdas:
        new["lambdas"] = lambdas
    created = new.get("created")
    if isinstance(created, (int, float)) and not isinstance(created, bool):
        try:
            stamp = datetime.fromtimestamp(created, timezone.utc)
        except (OverflowError, OSError, ValueError):  # 1e20, -1e20: no date a v0 dclip could have written
            raise ManifestError(f"'created' {created!r} is not a plausible Unix time") from None
        new["created"] = stamp.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    new.setdefault("kind", "lora" if new.get("lora_rank") else "full_delta")
    new.setdefault("app_version", "0.0")
    new["schema_version"] = 1
    return new


MIGRATIONS: dict[int, Callable[[dict], dict]] = {0: _from_v0}


def schema_version_of(data: dict) -> int:
    version = data.get("schema_version", data.get("version", 0))
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ManifestError(f"schema_version {version!r} is not a version number")
    return version


def migrate(data: dict) -> dict:
    """Upgrade a manifest dict of any older schema to SCHEMA_VERSION (returns a new dict)."""
    data = copy.deepcopy(data)
    version = schema_version_of(data)
    if version > SCHEMA_VERSION:
        raise ManifestError(
            f"written by a newer dclip (manifest schema {version}, this version reads up to {SCHEMA_VERSION}); "
            "update dclip"
        )
    while version < SCHEMA_VERSION:
        data = MIGRATIONS[version](data)
        new_version = schema_version_of(data)
        if new_version != version + 1:  # a broken migration table is a bug, not a damaged entry
            raise RuntimeError(f"migration from schema {version} produced schema {new_version}")
        version = new_version
    return data


def validate(data: dict) -> dict:
    """Check a current-schema manifest; raises ManifestError naming the first problem."""

    def need(key: str, types: type | tuple, optional: bool = False) -> None:
        value = data.get(key)
        if value is None:
            if optional:
                return
            raise ManifestError(f"manifest has no '{key}'")
        allowed = types if isinstance(types, tuple) else (types,)
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise ManifestError(f"manifest field '{key}' has the wrong type ({type(value).__name__})")

    need("schema_version", int)
    need("id", str)
    need("name", str)
    need("base_id", str)
    need("kind", str)
    need("weights_sha256", str)
    need("weights_bytes", int)
    need("created", str, optional=True)
    need("source", str, optional=True)
    need("target", str, optional=True)
    need("t0", int, optional=True)
    need("s_for", int, optional=True)
    need("s_gen", int, optional=True)
    need("lambdas", dict, optional=True)
    need("thumbnails", list, optional=True)
    need("storage", dict, optional=True)  # how a full delta's storage was chosen (low_rank.Choice.record)
    if not data["name"].strip():
        raise ManifestError("manifest has an empty name")
    if data["weights_bytes"] < 0:
        raise ManifestError(f"manifest weights_bytes {data['weights_bytes']} is negative")
    if data["kind"] not in KINDS:
        raise ManifestError(f"unknown weight kind '{data['kind']}' (expected one of {', '.join(KINDS)})")
    if not _SHA_RE.match(data["weights_sha256"]):
        raise ManifestError("manifest weights_sha256 is not a sha256 hex digest")
    t0 = data.get("t0")
    if t0 is not None and not 0 < t0 < 1000:
        raise ManifestError(f"manifest t0 {t0} is outside 1..999")
    return data


def parse(text: str | bytes, what: str = MANIFEST_NAME) -> dict:
    """Parse, migrate and validate manifest text. Any input at all fails only as ManifestError, its
    message starting with `what` (the file): a manifest comes from a shared .dclip or a folder anyone
    can edit, and one bad manifest must not stop the library from listing the others."""
    if not isinstance(text, (str, bytes, bytearray)):
        raise ManifestError(f"{what}: not text ({type(text).__name__})")
    data = loads_object(text, what, max_bytes=MAX_MANIFEST_BYTES, error=ManifestError)
    try:
        dumps(data).encode("utf-8")  # a lone surrogate ("\ud800") parses but could never be written back
    except UnicodeEncodeError:
        raise ManifestError(f"{what}: holds text that is not valid Unicode") from None
    try:
        return validate(migrate(data))
    except ManifestError as exc:
        raise ManifestError(f"{what}: {exc}") from None


def read(path: Path) -> dict:
    """The manifest at `path`, migrated and validated (ManifestError naming `path` if missing or bad)."""
    try:
        # open_regular: a FIFO named manifest.json would block `library list` forever.
        with open_regular(path, str(path), error=ManifestError) as fh:
            text = fh.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise ManifestError(f"{path} is missing") from None
    except OSError as exc:
        raise ManifestError(f"{path} cannot be read ({exc.strerror or exc})") from None
    return parse(text, str(path))


def dumps(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def build(entry_id: str, name: str, kind: str, meta: dict, weights_sha256: str, weights_bytes: int,
          thumbnails: list[str]) -> dict:
    """A fresh current-schema manifest for save_attribute."""
    from .. import __version__

    if kind not in KINDS:
        raise LibraryError(f"weight kind must be one of {KINDS}, got {kind!r}")
    if not isinstance(meta.get("base_id"), str) or not meta["base_id"]:
        raise LibraryError("attribute metadata needs a base_id")
    data: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "id": entry_id, "name": name, "kind": kind}
    for key in META_FIELDS:
        data[key] = meta.get(key)
    for key, value in meta.items():
        if key not in data and key not in LIBRARY_FIELDS:
            data[key] = value
    data.update(created=utc_now_iso(), app_version=__version__, weights_sha256=weights_sha256,
                weights_bytes=weights_bytes, thumbnails=thumbnails)
    try:
        dumps(data)
    except (TypeError, ValueError) as exc:
        raise LibraryError(f"attribute metadata is not JSON-serialisable: {exc}") from None
    return validate(data)
