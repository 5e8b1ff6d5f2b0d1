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
- Faces (`faces`, as `dclip edit --faces`): each photo's faces are found and aligned on the reading
  thread (one MTCNN per run), the faces of a chunk's photos share the engine's batches, and each is
  pasted back into its photo, which keeps its size (fit and paste-back do not apply). A photo with no
  face is a failed file. The output records `faces: N`.
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

import dataclasses
import hashlib
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import torch
from PIL import Image

from ..core.cancel import Cancelled, CancelToken, check
from ..core.ddim import ddim_generate
from ..core.face_align import face_detector
from ..untrusted import display
from .batch_inputs import Loaded, check_folders, load_one, paste_back, scan_inputs, stat_problem
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
from .batch_request import BatchRequest, BatchSummary, DiskFullError
from .edit_job import Edit, build_edit
from .errors import JobError
from .face_edit import faces_wanted, paste_faces
from .images import atomic_write_bytes, encode_png, tensor_to_pil
from .metadata import request_from_metadata
from .progress import JobProgress
from .session import Session

OnFile = Callable[[str, str, Optional[str]], None]


# --- the engine: fixed-shape chunks, latent cache, mix ----------------------------------------
def edit_chunk(session: Session, edit: Edit, x: torch.Tensor, batch_size: int,
               progress: Optional[Callable[[float, Optional[torch.Tensor]], None]] = None,
               cancel: Optional[CancelToken] = None, seeds: Optional[list[int]] = None) -> torch.Tensor:
    """Edit `x` [n ≤ batch_size, 3, S, S] as one padded batch of exactly `batch_size` images. With η > 0
    picture i draws its noise from seeds[i] (the request's seed + i by default), whatever its batch."""
    fast = session.settings.compile_batches  # the batch is padded to one shape, as compiling wants
    req, n = edit.request, len(x)
    xp = torch.cat([x, x[-1:].expand(batch_size - n, *x.shape[1:])]) if n < batch_size else x
    found = session.cached_latents(edit.base_id, x, edit.t0, req.s_for)
    found += found[-1:] * (batch_size - n)  # the padding repeats the last image
    inv_steps = 0 if all(z is not None for z in found) else req.s_for - 1
    total = inv_steps + req.s_gen

    def sub(offset):
        return None if progress is None else (lambda s, _t, preview=None: progress((offset + s) / total, preview))

    lat = session.invert(edit.base_id, xp, edit.t0, req.s_for, batch_size=batch_size, known=found, whole=True,
                         progress=sub(0), cancel=cancel, compiled=fast)
    gens = None
    if req.stochastic:
        seeds = list(seeds) if seeds is not None else [req.seed + i for i in range(n)]
        gens = [torch.Generator().manual_seed(s) for s in seeds + seeds[-1:] * (batch_size - n)]
    out = ddim_generate(edit.denoiser(session, compiled=fast), lat, edit.t0, req.s_gen, eta=req.generation_eta,
                        generator=gens, progress=sub(inv_steps), cancel=cancel)
    return out[:n].clamp(-1, 1).cpu()


def edit_pictures(session: Session, edit: Edit, x: torch.Tensor, batch_size: int,
                  progress: Optional[Callable[[float, Optional[torch.Tensor]], None]] = None,
                  cancel: Optional[CancelToken] = None, seeds: Optional[list[int]] = None) -> torch.Tensor:
    """Edit any number of pictures (a chunk's faces may outnumber its files) as `edit_chunk`s of
    exactly `batch_size`, in order; `progress` gets the fraction of all of them. `seeds`: one per
    picture (edit_chunk)."""
    starts = range(0, len(x), batch_size)
    seeds = list(seeds) if seeds is not None else [edit.request.seed + i for i in range(len(x))]
    out = []
    for j, i in enumerate(starts):
        sub = None if progress is None else (lambda f, p=None, j=j: progress((j + f) / len(starts), p))
        out.append(edit_chunk(session, edit, x[i:i + batch_size], batch_size, sub, cancel, seeds[i:i + batch_size]))
    return torch.cat(out)


def file_seed(seed: int, rel: str) -> int:
    # surrogateescape: a file name need not be valid UTF-8 (os.fsencode's bytes)
    digest = hashlib.sha256(f"{seed}\0{rel}".encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") >> 2  # below 2^62, so + face index stays a valid seed


def settings_of(session: Session, req: BatchRequest, src: Path, edit: Optional[Edit] = None,
                faces: Optional[bool] = None) -> dict:
    """What decides the outputs (batch size aside): the manifest compares it on resume. `faces`: whether
    the face workflow runs (faces_wanted of req.faces when None)."""
    edit = edit or build_edit(session, req.edit)
    if faces is None:
        faces = faces_wanted(req.faces, session.spec(edit.base_id).domain)
    meta = edit.metadata(session)
    meta.pop("app_version", None)
    settings = {"input_dir": str(src), "recursive": req.recursive, "fit": req.fit, "paste_back": req.paste_back,
                "seed": req.seed, "edit": meta}
    if faces:  # absent otherwise, so a batch begun before the face workflow existed still resumes
        settings["faces"] = True
    return settings


# --- the batch --------------------------------------------------------------------------------
def run_batch(session: Session, req: BatchRequest, progress: Optional[JobProgress] = None,
              cancel: Optional[CancelToken] = None, on_file: Optional[OnFile] = None) -> BatchSummary:
    """Edit every image of `req.input_dir` into `req.output_dir`; see the module notes for the guarantees."""
    return BatchRun(session, req, progress, cancel, on_file).run()


class BatchRun:
    """One run of a batch: the plan from the manifest, then chunks read ahead on one thread, edited here,
    and written behind on another, with the manifest kept consistent after every chunk."""

    def __init__(self, session: Session, req: BatchRequest, progress: Optional[JobProgress],
                 cancel: Optional[CancelToken], on_file: Optional[OnFile]) -> None:
        self.session, self.req, self.progress, self.cancel, self.on_file = session, req, progress, cancel, on_file
        self.src, self.out = check_folders(req)
        self.edit = build_edit(session, req.edit)  # unknown attributes are refused before anything is written
        spec = session.spec(self.edit.base_id)
        self.resolution = spec.resolution
        self.faces = faces_wanted(req.faces, spec.domain)  # 'on' without facenet-pytorch stops here
        # one MTCNN for the run (building it loads three nets), used only by the reading thread
        self.detector = face_detector() if self.faces else None
        self.settings = settings_of(session, req, self.src, self.edit, self.faces)
        self.key = settings_key(self.settings)
        self.rels = scan_inputs(self.src, req.recursive)
        self.out.mkdir(parents=True, exist_ok=True)
        remove_stale_parts(self.out)
        self.manifest = start_manifest(req, self.out, self.settings, self.key)
        self.files, self.batch_id = self.manifest["files"], self.manifest["batch_id"]
        self.names = OutputNames(self.out, self.files)
        self.summary = BatchSummary(total=len(self.rels), manifest=self.out / MANIFEST_NAME)
        self.counted = 0  # files accounted for in progress (skipped, failed, or edited and handed to the writer)
        self.inflight: list[tuple[str, Future]] = []
        self.full: list[OSError] = []
        self.todo = self._plan()
        # Chunks are padded to exactly `bs` images (reproducibility): never pad past the files there are, or
        # `--batch-size 100000` on 5 photos asks for 100,000 images' worth of memory.
        self.bs = min(req.batch_size, max(1, len(self.todo)))
        self.meta_base = {**self.edit.metadata(session), "seed": req.seed, "fit": req.fit,
                          "paste_back": req.paste_back, "batch_size": self.bs, "batch_id": self.batch_id,
                          "settings_key": self.key}

    # --- bookkeeping --------------------------------------------------------------------------
    def _tell(self, rel: str, status: str, reason: Optional[str] = None) -> None:
        if self.on_file is not None:
            self.on_file(rel, status, reason)

    def _report(self, preview=None) -> None:
        if self.progress is not None:
            self.progress("batch", self.counted, len(self.rels), preview)

    def _fail(self, rel: str, reason: str) -> None:
        self.files[rel].update(status="failed", reason=reason, output=None)
        self.names.release(rel)
        self.summary.failed += 1
        self.summary.errors.append((rel, reason))
        self.counted += 1
        self._tell(rel, "failed", reason)

    def _finished_earlier(self, rel: str, old: Optional[dict], same_input: bool) -> bool:
        target = self.out / old["output"] if old and old.get("output") else None
        return same_input and target is not None and target.is_file() and (
            old["status"] == "done"
            or (old["status"] == "pending" and owned_by(target, self.batch_id, rel, old.get("settings", self.key)))
        )

    def _plan(self) -> list[str]:
        """Skip what a previous run finished, queue the rest."""
        todo: list[str] = []
        for rel in self.rels:
            old = self.files.get(rel) if self.req.resume else None
            _, st = stat_problem(self.src / rel)
            ident = {"size": st.st_size, "mtime_ns": st.st_mtime_ns} if st is not None else {}
            same_input = old is not None and bool(ident) and all(old.get(k) == v for k, v in ident.items())
            if self._finished_earlier(rel, old, same_input):
                old.update(status="done", reason=None)
                self.summary.skipped += 1
                self.counted += 1
                self._tell(rel, "skipped", None)
                continue
            reuse = old.get("output") if same_input and old else None
            self.files[rel] = {"status": "pending", "output": None, "reuse": reuse, "reason": None,
                               "settings": self.key, **ident}
            todo.append(rel)
        if self.counted:
            self._report()
        return todo

    def _save_manifest(self) -> None:
        self.manifest["updated"] = time.time()
        write_json(self.out / MANIFEST_NAME, self.manifest)

    def _settle(self) -> None:
        """Wait for the writes in flight and record them; the manifest follows."""
        for rel, fut in self.inflight:
            try:
                fut.result()
            except OSError as exc:
                if is_disk_full(exc):
                    self.full.append(exc)
                    self.files[rel]["reason"] = "not written: the disk is full"
                else:
                    self._fail(rel, f"cannot write the output ({exc.strerror or exc})")
                continue
            self.files[rel].update(status="done", reason=None)
            self.files[rel].pop("reuse", None)
            self.summary.done += 1
            self._tell(rel, "done", None)
        self.inflight.clear()
        try:
            self._save_manifest()
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            self.full.append(exc)

    # --- reading, editing, writing ------------------------------------------------------------
    def _load_chunk(self, chunk: list[str]) -> list[Loaded]:
        return [load_one(self.src, rel, self.resolution, self.req.fit, self.req.paste_back, self.detector)
                for rel in chunk]

    def _write_one(self, target: Path, edited: torch.Tensor, item: Loaded, meta: dict) -> None:
        if item.matrices is not None:
            img = paste_faces(item.original, edited, item.matrices)
        elif self.req.paste_back:
            img = paste_back(item.original, tensor_to_pil(edited[0]), item.box)
        else:
            img = tensor_to_pil(edited[0])
        atomic_write_bytes(target, encode_png(img, meta))

    def _lands_in_input(self, target: Path) -> bool:
        resolved = target.resolve()
        return self.src in resolved.parents if self.req.recursive else resolved.parent == self.src

    def _seed(self, rel: str) -> int:
        """With η > 0, the seed of file `rel`'s noise: from the batch's seed and the file's name, so
        it does not depend on the order or the chunk the file runs in."""
        return file_seed(self.req.seed, rel)

    def _edit(self, good: list[Loaded]) -> list[torch.Tensor]:
        """Each file's pictures edited: [1, 3, S, S] for a whole picture, [N, 3, S, S] for N faces."""
        base_count, n = self.counted, len(good)

        def inner(frac: float, preview) -> None:
            if self.progress is not None:
                self.progress("batch", base_count + min(n - 1, int(frac * n)), len(self.rels), preview)

        pictures = [g.pictures() for g in good]
        # a file's pictures (its faces) draw their noise from its own seed + k: its output is the same in any chunk
        seeds = [self._seed(g.rel) + k for g, p in zip(good, pictures) for k in range(len(p))]
        edited = edit_pictures(self.session, self.edit, torch.cat(pictures), self.bs, inner, self.cancel, seeds)
        return list(edited.split([len(p) for p in pictures]))

    def _queue_writes(self, writer: ThreadPoolExecutor, good: list[Loaded], edited: list[torch.Tensor]) -> None:
        planned = []
        for item, y in zip(good, edited):
            name = self.names.assign(item.rel, self.files[item.rel].pop("reuse", None))
            target = self.out / name
            if self._lands_in_input(target):
                self._fail(item.rel, "its output would land inside the input folder")
                continue
            self.files[item.rel]["output"] = name
            planned.append((item, target, y))
        self._save_manifest()  # names are recorded before the files appear, so a resume can adopt them
        for item, target, y in planned:
            meta = {**self.meta_base, "source_image": item.rel, "source_size": list(item.size)}
            if self.edit.request.stochastic:
                meta["seed"] = self._seed(item.rel)
            if item.matrices is not None:
                meta["faces"] = len(item.matrices)
            self.inflight.append((item.rel, writer.submit(self._write_one, target, y, item, meta)))
            self.counted += 1

    def _chunks(self, loader: ThreadPoolExecutor, writer: ThreadPoolExecutor) -> None:
        chunks = [self.todo[i:i + self.bs] for i in range(0, len(self.todo), self.bs)]
        self._settle()  # the plan itself goes to disk before any output
        nxt = loader.submit(self._load_chunk, chunks[0]) if chunks else None
        for k in range(len(chunks)):
            if self.full:
                break
            check(self.cancel)
            loaded = nxt.result()
            nxt = loader.submit(self._load_chunk, chunks[k + 1]) if k + 1 < len(chunks) else None
            good = []
            for item in loaded:
                if item.reason is not None:
                    self._fail(item.rel, item.reason)
                else:
                    good.append(item)
            self._report()
            if not good:
                continue
            edited = self._edit(good)
            self._settle()  # chunk k-1's files, written while chunk k was computed
            if self.full:
                break
            self._queue_writes(writer, good, edited)
            self._report(torch.cat(edited))
        self._settle()

    def run(self) -> BatchSummary:
        loader = ThreadPoolExecutor(1, thread_name_prefix="dclip-batch-read")
        writer = ThreadPoolExecutor(1, thread_name_prefix="dclip-batch-write")
        t_start = time.perf_counter()
        try:
            self._chunks(loader, writer)
        except Cancelled:
            self._settle()
            self.summary.stopped = "cancelled"
            self._finish(t_start)
            raise
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            self.full.append(exc)
            self._settle()
        finally:
            loader.shutdown(wait=True, cancel_futures=True)
            writer.shutdown(wait=True)
        if self.full:
            left = sum(self.files[r]["status"] == "pending" for r in self.rels)
            self.summary.stopped = (f"disk full: {self.summary.done} files written, {left} not done; the written "
                                    f"files are kept. Free space on {self.out} and run again with --resume")
            self._finish(t_start)
            raise DiskFullError(self.summary.stopped, self.summary)
        self._finish(t_start)
        return self.summary

    def _finish(self, t_start: float) -> None:
        summary = self.summary
        summary.seconds = time.perf_counter() - t_start
        summary.images_per_s = summary.done / summary.seconds if summary.seconds > 0 and summary.done else 0.0
        try:
            write_reports(self.out, summary, self.files, self.rels, self.settings)
        except OSError as exc:
            if not is_disk_full(exc):
                raise


# --- metadata round trip ----------------------------------------------------------------------
def edit_from_metadata(session: Session, meta: dict, source: str | os.PathLike, detector=None) -> Image.Image:
    """Re-run the edit an output's metadata describes on its source image (bit-for-bit on the same
    machine, precision and library). `detector`: the MTCNN for a face output (None builds one)."""
    req = request_from_metadata(meta)
    refs = []
    for (ref, weight), a in zip(req.attributes, meta["attributes"]):
        # by id first; an attribute made again under the same name has another id, and the sha check
        # below then says it changed rather than that it is gone
        entry = session.library.find(ref) or (session.library.find(a["name"]) if a.get("name") else None)
        if entry is None:
            raise JobError(f"this image was made with the attribute '{display(a.get('name') or ref)}' "
                           f"({display(a.get('id') or '?')}), which is not in the library: restore it "
                           "(dclip library restore NAME) or import it")
        refs.append((entry.id, weight))
    edit = build_edit(session, dataclasses.replace(req, attributes=refs))
    base_id, entries = edit.base_id, edit.entries
    if meta.get("base_sha256") and session.base_sha(base_id) != meta["base_sha256"]:
        raise JobError(f"the base '{base_id}' is not the one that made this image (sha256 differs)")
    for e, a in zip(entries, meta["attributes"]):
        if a.get("weights_sha256") and e.manifest.get("weights_sha256") != a["weights_sha256"]:
            raise JobError(f"attribute '{e.name}' has changed since this image was made (sha256 differs)")
    source = Path(source)
    spec, bs = session.spec(base_id), max(1, edit.request.batch_size)
    if meta.get("faces") is not None:  # a face output: its photo's faces, found and aligned again
        faces_wanted("on", spec.domain)  # without facenet-pytorch: the error says what to install
        item = load_one(source.parent, source.name, spec.resolution, "center-crop", True,
                        detector or face_detector())
        if item.reason:
            raise JobError(f"{source.name}: {item.reason}")
        return paste_faces(item.original, edit_pictures(session, edit, item.tensor, bs), item.matrices)
    fit, pb = meta.get("fit", "center-crop"), bool(meta.get("paste_back"))
    item = load_one(source.parent, source.name, spec.resolution, fit, pb)
    if item.reason:
        raise JobError(f"{source.name}: {item.reason}")
    img = tensor_to_pil(edit_chunk(session, edit, item.tensor[None], bs)[0])
    return paste_back(item.original, img, item.box) if pb else img


__all__ = ["BatchRequest", "BatchSummary", "BatchRun", "DiskFullError", "run_batch", "scan_inputs", "paste_back",
           "read_manifest", "edit_from_metadata", "MANIFEST_NAME", "REPORT_JSON",
           "REPORT_CSV"]
