"""Batch-edit a folder of photos: never lose anything, never stop on one bad file, resume after a kill.

Policies (the README and `dclip batch --help` repeat them):
- Inputs: jpg/jpeg/png/webp/bmp/tif/tiff, any case, flat or recursive. Every entry with such an extension
  is listed, so a folder, FIFO, broken or looping link named `x.png` is reported as failed, not ignored.
  Symlinked folders are not followed (no cycles). Conversion and fit are `jobs.images`' policy.
- Inputs are only ever opened for reading. Outputs go to the output folder only (mirroring subfolders),
  as `<stem>.png`, written atomically. A name already taken (two inputs with one stem, or a file there
  that this batch did not write) gets `<stem> (2).png`, never an overwrite.
- Paste-back: the edited square is resized to the fitted region of the (EXIF-oriented, RGB-converted)
  original and pasted there; the output has the original's size. center-crop edits the middle square
  and keeps the rest of the photo, pad and squash edit the whole photo.
- Manifest `.dclip-batch.json` (written atomically before the first file and after each chunk): the
  settings, and per input its status, output name, reason and size+mtime. `resume` skips done files
  whose output still exists and whose input is unchanged, adopts outputs an interrupted run finished
  but had not yet recorded, and retries failed files (the user may have fixed them). Resuming with other
  settings, or starting afresh over an earlier batch, needs `force`.
- Reproducibility: the engine always runs full chunks of `batch_size` (a short last chunk is padded by
  repetition), so each output depends only on its input, the settings and the batch size — all recorded
  in the PNG — and `edit_from_metadata` reproduces it bit for bit on the same machine.
- Disk full (ENOSPC/EDQUOT) stops the batch with DiskFullError; cancel raises Cancelled between steps.
  Both keep every finished file and leave the manifest consistent; a SIGKILL leaves at most hidden
  `*.part` temp files, which the next run removes.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from PIL import Image

from ..core.cancel import Cancelled, CancelToken, check
from ..core.ddim import ddim_generate
from ..core.mixing import ModelDenoiser, attribute_mix
from .batch_manifest import (
    MANIFEST_NAME,
    REPORT_CSV,
    REPORT_JSON,
    OutputNames,
    is_disk_full,
    owned_by,
    read_manifest,
    remove_stale_parts,
    settings_key,
    start_manifest,
    write_json,
    write_reports,
)
from .edit_job import EditRequest, edit_metadata, resolve
from .errors import JobError
from .images import (
    FIT_POLICIES,
    IMAGE_EXTENSIONS,
    atomic_write_bytes,
    check_metadata,
    encode_png,
    fit_image,
    image_sha256,
    open_image,
    pil_to_tensor,
    tensor_to_pil,
)
from .progress import JobProgress
from .session import Session

OnFile = Callable[[str, str, Optional[str]], None]


class DiskFullError(JobError):
    """The output disk filled up; `summary` says what was finished (and kept)."""

    def __init__(self, message: str, summary: BatchSummary) -> None:
        super().__init__(message)
        self.summary = summary


@dataclass
class BatchRequest:
    input_dir: str | os.PathLike
    output_dir: str | os.PathLike
    edit: EditRequest
    recursive: bool = False
    fit: str = "center-crop"
    paste_back: bool = False
    resume: bool = False
    batch_size: int = 8
    seed: int = 0
    force: bool = False


@dataclass
class BatchSummary:
    done: int = 0  # edited by this run
    skipped: int = 0  # finished earlier (resume)
    failed: int = 0
    errors: list = field(default_factory=list)  # (relpath, reason)
    images_per_s: float = 0.0
    seconds: float = 0.0
    total: int = 0
    report_json: Optional[Path] = None
    report_csv: Optional[Path] = None
    manifest: Optional[Path] = None
    stopped: Optional[str] = None  # why the batch stopped early ("cancelled", "disk full: …")


# --- scanning and checks ---------------------------------------------------------------------
def scan_inputs(input_dir: Path, recursive: bool) -> list[str]:
    """Relative POSIX paths of every entry with an image extension (files or not), sorted."""
    found: list[str] = []

    def walk(folder: Path, prefix: str) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise JobError(f"{folder}: cannot list the folder ({exc.strerror or exc})") from None
        for e in entries:
            rel = prefix + e.name
            if os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(rel)
            if recursive and e.is_dir(follow_symlinks=False):
                walk(Path(e.path), rel + "/")

    walk(input_dir, "")
    return found


def _check_folders(req: BatchRequest) -> tuple[Path, Path]:
    src = Path(req.input_dir).expanduser()
    if not src.is_dir():
        raise JobError(f"{src}: the input folder does not exist or is not a folder")
    out = Path(req.output_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise JobError(f"{out}: the output path is a file, not a folder")
    rs, ro = src.resolve(), out.resolve()
    if rs == ro:
        raise JobError("the output folder is the input folder; choose another one, inputs are never modified")
    if req.recursive and rs in ro.parents:
        raise JobError("the output folder is inside the input folder; with --recursive the outputs would be "
                       "read as inputs. Choose a folder outside it")
    if req.fit not in FIT_POLICIES:
        raise JobError(f"unknown fit policy {req.fit!r}; choose one of {', '.join(FIT_POLICIES)}")
    if not isinstance(req.batch_size, int) or req.batch_size < 1:
        raise JobError(f"batch size must be a positive integer, got {req.batch_size!r}")
    return rs, ro


def _stat_problem(path: Path) -> tuple[Optional[str], Optional[os.stat_result]]:
    """(reason it cannot be an image, stat) without opening it (a FIFO would block on open)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop", None
        if path.is_symlink():
            return "broken symbolic link (its target does not exist)", None
        return f"cannot be read ({exc.strerror or exc})", None
    if stat.S_ISDIR(st.st_mode):
        return "is a folder, not an image", st
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (FIFO, socket or device)", st
    return None, st


def _reason(exc: BaseException, name: str) -> str:
    msg = str(exc)
    for prefix in (f"{name}: ",):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    return msg if isinstance(exc, JobError) else f"cannot be decoded ({type(exc).__name__}: {msg})"


@dataclass
class _Loaded:
    rel: str
    tensor: Optional[torch.Tensor] = None
    original: Optional[Image.Image] = None
    box: tuple = ()
    size: tuple = ()
    reason: Optional[str] = None


def _load_one(src: Path, rel: str, resolution: int, fit: str, keep_original: bool) -> _Loaded:
    path = src / rel
    problem, _ = _stat_problem(path)
    if problem:
        return _Loaded(rel, reason=problem)
    try:
        img = open_image(path)
        fitted, box = fit_image(img, resolution, fit)
        return _Loaded(rel, pil_to_tensor(fitted), img if keep_original else None, box, img.size)
    except Exception as exc:  # any decoder failure is this file's problem, never the batch's
        return _Loaded(rel, reason=_reason(exc, path.name))


def paste_back(original: Image.Image, edited: Image.Image, box: tuple) -> Image.Image:
    """The edit resized onto the region `box` (l, t, r, b) of `original`; parts outside are clipped."""
    left, top, right, bottom = box
    w, h = max(1, round(right - left)), max(1, round(bottom - top))
    out = original.convert("RGB").copy()
    out.paste(edited.convert("RGB").resize((w, h), Image.BICUBIC), (round(left), round(top)))
    return out


# --- the engine: fixed-shape chunks, latent cache, mix ----------------------------------------
def _edit_chunk(session: Session, edit: EditRequest, x: torch.Tensor, batch_size: int,
                progress: Optional[Callable[[float, Optional[torch.Tensor]], None]] = None,
                cancel: Optional[CancelToken] = None) -> torch.Tensor:
    """Edit `x` [n ≤ batch_size, 3, S, S] as one padded batch of exactly `batch_size` images."""
    from ..library.cache import LatentKey

    base_id, _, models, sched, t0 = resolve(session, edit)
    fast = session.settings.compile_batches  # the batch is padded to one shape, as compiling wants
    n = len(x)
    xp = torch.cat([x, x[-1:].expand(batch_size - n, *x.shape[1:])]) if n < batch_size else x
    xp = xp.to(session.device)
    keys = [LatentKey(session.base_sha(base_id), image_sha256(xi), t0, edit.s_for, session.precision) for xi in x]
    found = session.cache.get_many(keys)
    inv_steps = 0 if all(z is not None for z in found) else edit.s_for - 1
    total = inv_steps + edit.s_gen

    def sub(offset):
        return None if progress is None else (lambda s, _t, preview=None: progress((offset + s) / total, preview))

    if inv_steps:
        lat = session.invert(base_id, xp, t0, edit.s_for, batch_size=batch_size, progress=sub(0), cancel=cancel,
                             use_cache=False, compiled=fast)
        missing = [i for i, z in enumerate(found) if z is None]
        session.cache.put_many([keys[i] for i in missing], [lat[i].cpu() for i in missing])
    else:
        lat = torch.stack([z.to(session.device) for z in found + [found[-1]] * (batch_size - n)])
    unet = functools.partial(session.sampling_unet, compiled=fast)
    den = attribute_mix(ModelDenoiser(unet(session.base(base_id)), session.autocast_dtype),
                        [ModelDenoiser(unet(m), session.autocast_dtype) for m in models], sched, edit.degree)
    out = ddim_generate(den, lat, t0, edit.s_gen, progress=sub(inv_steps), cancel=cancel)
    return out[:n].clamp(-1, 1).cpu()


def settings_of(session: Session, req: BatchRequest, src: Path) -> dict:
    """What decides the outputs (batch size aside): the manifest compares it on resume."""
    meta = edit_metadata(session, req.edit)
    meta.pop("app_version", None)
    return {"input_dir": str(src), "recursive": req.recursive, "fit": req.fit, "paste_back": req.paste_back,
            "seed": req.seed, "edit": meta}


# --- the batch --------------------------------------------------------------------------------
def run_batch(session: Session, req: BatchRequest, progress: Optional[JobProgress] = None,
              cancel: Optional[CancelToken] = None, on_file: Optional[OnFile] = None) -> BatchSummary:
    """Edit every image of `req.input_dir` into `req.output_dir`; see the module notes for the guarantees."""
    src, out = _check_folders(req)
    base_id = resolve(session, req.edit)[0]  # unknown attributes are refused before anything is written
    resolution = session.spec(base_id).resolution
    settings = settings_of(session, req, src)
    key = settings_key(settings)
    rels = scan_inputs(src, req.recursive)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(out)
    manifest = start_manifest(req, out, settings, key)
    files, batch_id = manifest["files"], manifest["batch_id"]
    names = OutputNames(out, files)
    summary = BatchSummary(total=len(rels), manifest=out / MANIFEST_NAME)
    counted = 0  # files accounted for in progress (skipped, failed, or edited and handed to the writer)

    def tell(rel: str, status: str, reason: Optional[str] = None) -> None:
        if on_file is not None:
            on_file(rel, status, reason)

    def fail(rel: str, reason: str) -> None:
        nonlocal counted
        files[rel].update(status="failed", reason=reason, output=None)
        names.taken = {k: v for k, v in names.taken.items() if v != rel}
        summary.failed += 1
        summary.errors.append((rel, reason))
        counted += 1
        tell(rel, "failed", reason)

    # plan: skip what a previous run finished, queue the rest
    todo: list[str] = []
    for rel in rels:
        old = files.get(rel) if req.resume else None
        _, st = _stat_problem(src / rel)
        ident = {"size": st.st_size, "mtime_ns": st.st_mtime_ns} if st is not None else {}
        same_input = old is not None and bool(ident) and all(old.get(k) == v for k, v in ident.items())
        target = out / old["output"] if old and old.get("output") else None
        if same_input and target is not None and target.is_file() and (
            old["status"] == "done"
            or (old["status"] == "pending" and owned_by(target, batch_id, rel, old.get("settings", key)))
        ):
            old.update(status="done", reason=None)
            summary.skipped += 1
            counted += 1
            tell(rel, "skipped", None)
            continue
        reuse = old.get("output") if same_input and old else None
        files[rel] = {"status": "pending", "output": None, "reuse": reuse, "reason": None, "settings": key, **ident}
        todo.append(rel)
    if counted and progress is not None:
        progress("batch", counted, len(rels), None)
    # Chunks are padded to exactly `bs` images (reproducibility): never pad past the files there are, or
    # `--batch-size 100000` on 5 photos asks for 100,000 images' worth of memory.
    bs = min(req.batch_size, max(1, len(todo)))
    meta_base = {**edit_metadata(session, req.edit), "seed": req.seed, "fit": req.fit, "paste_back": req.paste_back,
                 "batch_size": bs, "batch_id": batch_id, "settings_key": key}

    def save_manifest() -> None:
        manifest["updated"] = time.time()
        write_json(out / MANIFEST_NAME, manifest)

    def load_chunk(chunk: list[str]) -> list[_Loaded]:
        return [_load_one(src, rel, resolution, req.fit, req.paste_back) for rel in chunk]

    def write_one(target: Path, img: Image.Image, item: _Loaded, meta: dict) -> None:
        if req.paste_back:
            img = paste_back(item.original, img, item.box)
        atomic_write_bytes(target, encode_png(img, meta))

    inflight: list[tuple[str, object]] = []
    full: list[OSError] = []

    def settle() -> None:
        """Wait for the writes in flight and record them; the manifest follows."""
        for rel, fut in inflight:
            try:
                fut.result()
            except OSError as exc:
                if is_disk_full(exc):
                    full.append(exc)
                    files[rel]["reason"] = "not written: the disk is full"
                else:
                    fail(rel, f"cannot write the output ({exc.strerror or exc})")
                continue
            files[rel].update(status="done", reason=None)
            files[rel].pop("reuse", None)
            summary.done += 1
            tell(rel, "done", None)
        inflight.clear()
        try:
            save_manifest()
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            full.append(exc)

    chunks = [todo[i:i + bs] for i in range(0, len(todo), bs)]
    loader = ThreadPoolExecutor(1, thread_name_prefix="dclip-batch-read")
    writer = ThreadPoolExecutor(1, thread_name_prefix="dclip-batch-write")
    t_start = time.perf_counter()
    try:
        settle()  # the plan itself goes to disk before any output
        nxt = loader.submit(load_chunk, chunks[0]) if chunks else None
        for k in range(len(chunks)):
            if full:
                break
            check(cancel)
            loaded = nxt.result()
            nxt = loader.submit(load_chunk, chunks[k + 1]) if k + 1 < len(chunks) else None
            good = []
            for item in loaded:
                if item.reason is not None:
                    fail(item.rel, item.reason)
                else:
                    good.append(item)
            if progress is not None:
                progress("batch", counted, len(rels), None)
            if not good:
                continue
            base_count = counted

            def inner(frac: float, preview, n=len(good), c=base_count) -> None:
                if progress is not None:
                    progress("batch", c + min(n - 1, int(frac * n)), len(rels), preview)

            edited = _edit_chunk(session, req.edit, torch.stack([g.tensor for g in good]), bs, inner, cancel)
            settle()  # chunk k-1's files, written while chunk k was computed
            if full:
                break
            planned = []
            for item, y in zip(good, edited):
                name = names.assign(item.rel, files[item.rel].pop("reuse", None))
                target = out / name
                parents = target.resolve().parents
                if (src in parents) if req.recursive else (target.resolve().parent == src):
                    fail(item.rel, "its output would land inside the input folder")
                    continue
                files[item.rel]["output"] = name
                planned.append((item, target, tensor_to_pil(y)))
            save_manifest()  # names are recorded before the files appear, so a resume can adopt them
            for item, target, img in planned:
                meta = {**meta_base, "source_image": item.rel, "source_size": list(item.size)}
                inflight.append((item.rel, writer.submit(write_one, target, img, item, meta)))
                counted += 1
            if progress is not None:
                progress("batch", counted, len(rels), edited)
        settle()
    except Cancelled:
        settle()
        summary.stopped = "cancelled"
        _finish(summary, out, files, rels, settings, t_start)
        raise
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        full.append(exc)
        settle()
    finally:
        loader.shutdown(wait=True, cancel_futures=True)
        writer.shutdown(wait=True)
    if full:
        left = sum(files[r]["status"] == "pending" for r in rels)
        summary.stopped = (f"disk full: {summary.done} files written, {left} not done; the written files are kept. "
                           f"Free space on {out} and run again with --resume")
        _finish(summary, out, files, rels, settings, t_start)
        raise DiskFullError(summary.stopped, summary)
    _finish(summary, out, files, rels, settings, t_start)
    return summary


def _finish(summary: BatchSummary, out: Path, files: dict, rels: list[str], settings: dict, t_start: float) -> None:
    summary.seconds = time.perf_counter() - t_start
    summary.images_per_s = summary.done / summary.seconds if summary.seconds > 0 and summary.done else 0.0
    try:
        write_reports(out, summary, files, rels, settings)
    except OSError as exc:
        if not is_disk_full(exc):
            raise


# --- metadata round trip ----------------------------------------------------------------------
def request_from_metadata(meta: dict) -> EditRequest:
    """The EditRequest an output's metadata describes (attributes by id), with its batch size.
    `meta` is checked again (read_metadata already did, a caller's own dict may not be)."""
    meta = check_metadata(meta)
    missing = [k for k in ("attributes", "schedule", "degree", "t0", "s_for", "s_gen") if meta.get(k) is None]
    if missing:
        raise JobError(f"the image's settings are incomplete (no {', '.join(missing)}); was it made by an edit?")
    return EditRequest(
        attributes=[(a.get("id") or a["name"], a["weight"]) for a in meta["attributes"]],
        base_id=meta.get("base_id"), schedule=[(t, list(ws)) for t, ws in meta["schedule"]],
        degree=meta["degree"], t0=meta["t0"], s_for=meta["s_for"], s_gen=meta["s_gen"],
        batch_size=meta.get("batch_size") or 1,
    )


def edit_from_metadata(session: Session, meta: dict, source: str | os.PathLike) -> Image.Image:
    """Re-run the edit an output's metadata describes on its source image (bit-for-bit on the same
    machine, precision and library)."""
    edit = request_from_metadata(meta)
    base_id, entries, *_ = resolve(session, edit)
    if meta.get("base_sha256") and session.base_sha(base_id) != meta["base_sha256"]:
        raise JobError(f"the base '{base_id}' is not the one that made this image (sha256 differs)")
    for e, a in zip(entries, meta["attributes"]):
        if a.get("weights_sha256") and e.manifest.get("weights_sha256") != a["weights_sha256"]:
            raise JobError(f"attribute '{e.name}' has changed since this image was made (sha256 differs)")
    source = Path(source)
    fit, pb = meta.get("fit", "center-crop"), bool(meta.get("paste_back"))
    item = _load_one(source.parent, source.name, session.spec(base_id).resolution, fit, pb)
    if item.reason:
        raise JobError(f"{source.name}: {item.reason}")
    img = tensor_to_pil(_edit_chunk(session, edit, item.tensor[None], max(1, edit.batch_size))[0])
    return paste_back(item.original, img, item.box) if pb else img


__all__ = ["BatchRequest", "BatchSummary", "DiskFullError", "run_batch", "scan_inputs", "paste_back",
           "read_manifest", "request_from_metadata", "edit_from_metadata", "MANIFEST_NAME", "REPORT_JSON",
           "REPORT_CSV"]
