"""The batch's bookkeeping: the manifest that makes a batch resumable, output names that never
overwrite, the JSON/CSV reports, and the sweep of temp files a killed run left behind.

See jobs.batch_job for the policies; this module only reads and writes the output folder."""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import re
import time
import uuid
from pathlib import Path
from typing import Optional

from PIL import Image

from ..untrusted import contained, display, loads_object, take
from .batch_request import BatchRequest, BatchSummary
from .errors import JobError
from .images import atomic_write_bytes

MANIFEST_NAME = ".dclip-batch.json"
REPORT_JSON = "batch-report.json"
REPORT_CSV = "batch-report.csv"
FORMAT = "dclip-batch-1"
_STALE_PART = re.compile(r"^\..+\.(png|json|csv)\.[A-Za-z0-9_]+\.part$")


def settings_key(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def describe_diff(old: dict, new: dict) -> str:
    diffs = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if "edit" in diffs:
        diffs.remove("edit")
        o, n = old.get("edit", {}), new.get("edit", {})
        diffs += [k for k in sorted(set(o) | set(n)) if o.get(k) != n.get(k)]
    return ", ".join(diffs) or "settings"


# --- manifest, names, reports -----------------------------------------------------------------
def write_json(path: Path, data: dict) -> None:
    atomic_write_bytes(path, json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))


STATUSES = ("pending", "done", "failed")
MAX_MANIFEST_BYTES = 256 << 20  # ~1 M files; the manifest is rewritten after every chunk


class ManifestDamaged(JobError):
    pass


def parse_manifest(data: str | bytes, out: str | os.PathLike) -> dict:
    """A batch manifest, checked field by field: anyone with write access to the output folder could
    have edited it, and its output names become paths we write to. ManifestDamaged on any problem."""
    what = f"{Path(out) / MANIFEST_NAME}: the batch manifest is damaged"
    data = loads_object(data, what, max_bytes=MAX_MANIFEST_BYTES, error=ManifestDamaged)
    if data.get("format") != FORMAT:
        raise ManifestDamaged(f"{what}: unknown format {display(repr(data.get('format')))[:60]}")
    batch_id = take(data, "batch_id", str, what, max_len=64, error=ManifestDamaged)
    if not re.fullmatch(r"[0-9a-f]{1,64}", batch_id):
        raise ManifestDamaged(f"{what}: batch_id is not a hex id")
    settings = take(data, "settings", dict, what, max_len=1 << 16, error=ManifestDamaged)
    if not all(isinstance(v, dict) for v in settings.values()):
        raise ManifestDamaged(f"{what}: settings are not objects")
    take(data, "current", str, what, default="", max_len=64, error=ManifestDamaged)
    for key in ("created", "updated"):
        take(data, key, float, what, default=0.0, error=ManifestDamaged)
    files = take(data, "files", dict, what, max_len=1 << 24, error=ManifestDamaged)
    taken: set[str] = set()
    for rel, entry in files.items():
        where = f"{what} (entry {display(rel)[:200]})"
        if not isinstance(entry, dict):
            raise ManifestDamaged(f"{where}: not an object")
        if take(entry, "status", str, where, error=ManifestDamaged) not in STATUSES:
            raise ManifestDamaged(f"{where}: unknown status")
        output = take(entry, "output", str, where, default=None, max_len=4096, error=ManifestDamaged)
        if output is not None:
            # Outputs are written (and adopted on --resume) by this name: it must stay inside OUT_DIR.
            contained(out, output, where, error=ManifestDamaged)
            if not output.casefold().endswith(".png"):
                raise ManifestDamaged(f"{where}: output {display(output)} is not a .png")
            if output.casefold() in taken:
                raise ManifestDamaged(f"{where}: output {display(output)} is claimed twice")
            taken.add(output.casefold())
        take(entry, "size", int, where, default=0, lo=0, error=ManifestDamaged)
        take(entry, "mtime_ns", int, where, default=0, error=ManifestDamaged)
        take(entry, "reason", str, where, default=None, max_len=4096, error=ManifestDamaged)
        take(entry, "settings", str, where, default=None, max_len=64, error=ManifestDamaged)
    return data


def read_manifest(output_dir: str | os.PathLike) -> Optional[dict]:
    path = Path(output_dir) / MANIFEST_NAME
    if not os.path.lexists(path):
        return None
    try:
        if not path.is_file() or path.is_symlink():
            raise ManifestDamaged(f"{path}: the batch manifest is not a regular file")
        return parse_manifest(path.read_bytes(), output_dir)
    except (OSError, ManifestDamaged) as exc:
        reason = f"{path}: the batch manifest cannot be read ({exc.strerror})" if isinstance(exc, OSError) \
            else str(exc)
        raise ManifestDamaged(f"{display(reason)}; use --force to start a new batch here (existing files are "
                              "kept, new outputs get new names)") from None


def remove_stale_parts(out: Path) -> None:
    for folder, _, files in os.walk(out):
        for name in files:
            if _STALE_PART.match(name):
                Path(folder, name).unlink(missing_ok=True)


def owned_by(path: Path, batch_id: str, rel: str, key: str) -> bool:
    """Is `path` a complete output of this batch for `rel` made with these settings?"""
    try:
        with Image.open(path) as img:
            meta = json.loads(img.text.get("dclip", "{}"))
    except Exception:
        return False
    return meta.get("batch_id") == batch_id and meta.get("source_image") == rel and meta.get("settings_key") == key


class OutputNames:
    """Output names: `<stem>.png`, else `<stem> (k).png`; never one on disk or reserved by another input."""

    def __init__(self, out: Path, files: dict) -> None:
        self.out = out
        self.taken = {e["output"].casefold(): r for r, e in files.items() if e.get("output")}

    def assign(self, rel: str, reuse: Optional[str] = None) -> str:
        if reuse is not None:
            contained(self.out, reuse, "the batch manifest", error=ManifestDamaged)  # parse_manifest checked it too
        if reuse and self.taken.get(reuse.casefold()) in (None, rel) and not os.path.lexists(self.out / reuse):
            self.taken[reuse.casefold()] = rel
            return reuse
        stem = Path(rel).with_suffix(".png")
        cand, k = stem.as_posix(), 2
        while cand.casefold() in self.taken or os.path.lexists(self.out / cand):
            cand, k = stem.with_name(f"{stem.stem} ({k}).png").as_posix(), k + 1
        self.taken[cand.casefold()] = rel
        return cand

    def release(self, rel: str) -> None:
        """`rel` failed: the names it held are free for other inputs."""
        self.taken = {k: v for k, v in self.taken.items() if v != rel}


def write_reports(out: Path, summary: BatchSummary, files: dict, order: list[str], settings: dict) -> None:
    rows = [{"file": r, "status": files[r]["status"], "output": files[r].get("output") or "",
             "reason": files[r].get("reason") or ""} for r in order]
    s = {k: getattr(summary, k) for k in ("done", "skipped", "failed", "total", "images_per_s", "seconds", "stopped")}
    write_json(out / REPORT_JSON, {"summary": s, "settings": settings, "files": rows})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["file", "status", "output", "reason"], lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(out / REPORT_CSV, buf.getvalue().encode("utf-8", "surrogateescape"))
    summary.report_json, summary.report_csv = out / REPORT_JSON, out / REPORT_CSV


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def start_manifest(req: BatchRequest, out: Path, settings: dict, key: str) -> dict:
    try:
        old = read_manifest(out)
    except JobError:
        if not req.force:
            raise
        old = None
    if old is not None and not req.resume and not req.force:
        n = sum(e.get("status") == "done" for e in old["files"].values())
        raise JobError(f"{out} holds an earlier batch ({n} files done): use --resume to continue it, or --force "
                       "to start a new batch there (earlier outputs are kept; new ones get new names)")
    if old is not None and req.resume:
        prev = old["settings"].get(old.get("current"), {})
        if prev != settings and not req.force:
            raise JobError(f"--resume with other settings than the batch in {out} (changed: "
                           f"{describe_diff(prev, settings)}); use the same settings, or add --force to go on "
                           "with the new ones (finished files are kept as they are)")
        old["settings"][key] = settings
        old["current"] = key
        return old
    return {"format": FORMAT, "batch_id": uuid.uuid4().hex, "created": time.time(), "settings": {key: settings},
            "current": key, "files": {}}
