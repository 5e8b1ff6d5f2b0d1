"""Job functions the GUI submits to the worker: `make_*(...)` runs on the GUI thread and captures
plain data (QImages, dicts); the returned `fn(session, ctx)` runs on the worker thread and calls
the Qt-free jobs. Results come back as QImages and plain dicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from PySide6.QtGui import QImage

from ..zoo.download import download, verify_base


@dataclass
class EditResult:
    images: list[QImage]
    metadata: list[dict]
    labels: list[str] = field(default_factory=list)
    projected: list[QImage] = field(default_factory=list)
    # per image, where measured: {"line": EditMetrics.line(), "values": as_dict(), "unavailable": {name: why}}
    metrics: list[Optional[dict]] = field(default_factory=list)


def make_open_image(path: str, base_id: str, fit: str = "center-crop", faces: str = "off"):
    """Open `path` for editing: fitted to the base's size, or, where the face workflow applies under
    `faces` (Auto / On / Off), at full size with the faces found in it (result["faces"])."""

    def fn(session, ctx):
        from ..jobs.face_pick import find_faces
        from ..jobs.images import load_image, open_image
        from .imaging import pil_to_qimage, tensor_to_qimage

        spec = session.spec(base_id)
        if faces != "off":
            photo = open_image(path)
            found = find_faces(photo, faces, spec.domain)
            if found is not None:
                return {"image": pil_to_qimage(photo), "path": path, "original_size": photo.size, "faces": found}
        loaded = load_image(path, int(spec.resolution), fit)
        return {"image": tensor_to_qimage(loaded.tensor), "path": path, "original_size": loaded.original_size,
                "faces": None}

    return fn


def _edit_request(edit: dict):
    from ..jobs.edit_job import EditRequest

    return EditRequest(**edit)


def _metrics(session, req, x_in, x_out) -> dict:
    """What the canvas shows under an edit: jobs.edit_metrics.measure, as `dclip edit --metrics` prints it."""
    from ..jobs.edit_job import build_edit
    from ..jobs.edit_metrics import measure

    m = measure(session, build_edit(session, req), x_in, x_out)
    return {"line": m.line(), "values": m.as_dict(), "unavailable": dict(m.unavailable)}


def _label(req) -> str:
    label = " + ".join(f"{n}" if len(req.attributes) == 1 else f"{n}:{w:g}" for n, w in req.attributes)
    return label + (f" γ={req.degree:g}" if req.degree != 1.0 else "")


def _edit_one(session, ctx, req, image: QImage, faces, name: str, size: int):
    """(QImage of the edit, [(x_in, x_out)] the engine saw: the picture, or each aligned face, face count)."""
    from ..jobs.edit_job import edit_tensor
    from .imaging import pil_to_qimage, qimage_to_pil, qimage_to_tensor, tensor_to_qimage

    pairs = []

    def run(x):
        y = edit_tensor(session, req, x, progress=ctx.progress, cancel=ctx.cancel)
        pairs.append((x, y))
        return y

    if faces is not None:
        from ..jobs.face_pick import edit_picked

        out, count = edit_picked(qimage_to_pil(image), faces, name, size, run)
        return pil_to_qimage(out), pairs, count
    y = run(qimage_to_tensor(image, size)[None])
    return tensor_to_qimage(y[0]), pairs, None


def make_edit(image: QImage, edit: dict, faces: Optional[list] = None, name: str = "image",
              degrees: Optional[list[float]] = None, metrics: bool = True):
    """Apply the mix `edit` (EditRequest kwargs) to `image`; with `faces` (core.face_align.Face), to
    those faces of the full-size photo: aligned at the base's size, edited and pasted back. `degrees`:
    one result per γ (a strip; the latent cache inverts once). `metrics`: measure each result on the
    worker (jobs.edit_metrics; on the first face of a face edit, as the CLI does)."""
    import dataclasses

    image = image.copy()

    def fn(session, ctx):
        from ..jobs.edit_job import edit_metadata

        base = _edit_request(edit)
        entry = session.library.get(base.attributes[0][0])
        size = int(session.spec(base.base_id or entry.base_id).resolution)
        out = EditResult([], [], [])
        for g in (degrees if degrees is not None else [base.degree]):
            req = dataclasses.replace(base, degree=g)
            meta = edit_metadata(session, req)
            img, pairs, count = _edit_one(session, ctx, req, image, faces, name, size)
            label = _label(req)
            if count is not None:
                meta = {**meta, "faces": count}
                label += f" ({count} face{'s' if count != 1 else ''})"
            out.images.append(img)
            out.metadata.append(meta)
            out.labels.append(label)
            out.metrics.append(_metrics(session, req, *pairs[0]) if metrics and pairs else None)
        return out

    return fn


def make_preview(image: QImage, edit: dict, faces: Optional[list] = None, name: str = "image"):
    """A live-γ preview (gui.live_degree): the edit at `edit["degree"]` from the cached latent, with
    S_gen cut by live_degree.preview_steps on large bases, unmeasured. {"degree", "image"}."""
    import dataclasses

    image = image.copy()

    def fn(session, ctx):
        from .live_degree import preview_steps

        req = _edit_request(edit)
        entry = session.library.get(req.attributes[0][0])
        size = int(session.spec(req.base_id or entry.base_id).resolution)
        req = dataclasses.replace(req, s_gen=preview_steps(size, req.s_gen))
        img, _, _ = _edit_one(session, ctx, req, image, faces, name, size)
        return {"degree": req.degree, "image": img}

    return fn


def make_edit_again(image: QImage, meta: dict, name: str = "image", made_by: str = "output.png"):
    """File → Edit again with these settings: the edit an output's settings `meta` describe, redone on
    `image` (the document's, named `name`) by jobs.batch_job.edit_from_metadata, which refuses a missing
or changed attribute or base. `made_by`: the output's file name, for the result's label."""
    image = image.copy()

    def fn(session, ctx):
        import tempfile
        from pathlib import Path

        from ..jobs.batch_job import edit_from_metadata
        from ..jobs.images import save_png
        from .imaging import pil_to_qimage, qimage_to_pil

        # edit_from_metadata reads its source from a file: the image as the document holds it now
        with tempfile.TemporaryDirectory(prefix="dclip-again-") as tmp:
            source = Path(tmp) / (Path(name).stem + ".png")
            save_png(qimage_to_pil(image), source)
            out = edit_from_metadata(session, meta, source)
        return EditResult([pil_to_qimage(out)], [{**meta, "source_image": Path(name).name}], [f"as {made_by}"])

    return fn


def make_translate(image: QImage, edit: dict, seeds: list[int], rounds: int, project_t0: Optional[int] = None,
                   project_steps: int = 10):
    """Stroke-conditioned / unseen-domain generation: one candidate per seed."""
    image = image.copy()

    def fn(session, ctx):
        from ..jobs.progress import translate_phases
        from ..jobs.translate_job import TranslateRequest, translate_metadata, translate_tensor
        from .imaging import qimage_to_tensor, tensor_to_qimage

        req = TranslateRequest(_edit_request(edit), seeds=list(seeds), rounds=rounds, project_t0=project_t0,
                               project_steps=project_steps)
        entry = session.library.get(req.edit.attributes[0][0])
        size = int(session.spec(req.edit.base_id or entry.base_id).resolution)
        x = qimage_to_tensor(image, size)[None]
        ctx.track(translate_phases(req))  # one status-bar figure over projecting, inverting, generating
        projected, edited = translate_tensor(session, req, x, progress=ctx.progress, cancel=ctx.cancel)
        metas = [translate_metadata(session, req, s) for s in seeds]
        return EditResult([tensor_to_qimage(t) for t in edited], metas, [f"seed {s}" for s in seeds],
                          [tensor_to_qimage(t) for t in projected])

    return fn


def make_finetune(params):
    """Fine-tune with `params` (models.finetune.FinetuneParams); returns the new entry's name/id."""
    from dataclasses import replace

    params = replace(params)

    def fn(session, ctx):
        from ..jobs.finetune_job import run_finetune
        from ..jobs.progress import finetune_phases

        req = params.to_request()
        ctx.track(finetune_phases(req))
        entry = run_finetune(session, req, progress=ctx.progress, on_step=ctx.on_step, on_epoch=ctx.on_epoch,
                             on_images=ctx.on_images, cancel=ctx.cancel)
        return {"id": entry.id, "name": entry.name, "base_id": entry.base_id}

    return fn


def make_import(path: str, base_id: Optional[str] = None, name: Optional[str] = None):
    """Import a .dclip bundle or an official .pth (which needs the base model) into the library."""

    def fn(session, ctx):
        kw = {"name": name}
        if path.lower().endswith((".pth", ".pt", ".ckpt")) and base_id:
            kw.update(base_id=base_id, base_model=session.base(base_id))
        entry = session.library.import_file(path, **kw)
        session.forget_attributes()
        return {"id": entry.id, "name": entry.name}

    return fn


def make_export(name_or_id: str, path: str):
    """Library → Export: write the attribute as a .dclip bundle (its weights are read and zipped)."""

    def fn(session, ctx):
        return {"path": str(session.library.export(name_or_id, path))}

    return fn


def make_batch(batch: dict, edit: dict):
    """Run the batch engine; per-file status travels as ctx.event('file', (relpath, status, reason))."""

    def fn(session, ctx):
        from ..jobs.batch_job import BatchRequest, run_batch

        req = BatchRequest(edit=_edit_request(edit), **batch)

        def on_file(relpath, status, reason=None):
            ctx.event("file", (str(relpath), str(status), "" if reason is None else str(reason)))

        summary = run_batch(session, req, progress=ctx.progress, cancel=ctx.cancel, on_file=on_file)
        return {"done": summary.done, "skipped": summary.skipped, "failed": summary.failed, "errors": summary.errors,
                "images_per_s": summary.images_per_s}

    return fn


def make_base_action(action: str, base_id: str):
    """Models → download / verify (and repair) / load a zoo base, in the session's offline mode."""
    if action not in ("download", "verify", "load"):
        raise ValueError(f"unknown base action {action!r}")

    def fn(session, ctx):
        def progress(step: int, total: int) -> None:
            ctx.progress(action, step, total)

        offline = session.settings.offline
        if action == "load":
            session.base(base_id, progress=progress)  # offline comes from the session's settings
            return f"{base_id}: loaded on {session.device}"
        if action == "download":
            folder = download(base_id, progress=progress, cancel=ctx.cancel, offline=offline)
            return f"{base_id}: download finished ({folder})"
        summary = verify_base(base_id, progress=progress, cancel=ctx.cancel, offline=offline)
        return f"{base_id}: verify finished ({summary})"

    return fn


def make_base_add(base_id: str, path: str):
    """Models → Base models → Add file…: check a weights file the user has and install it (`dclip models add`)."""

    def fn(session, ctx):
        from ..zoo.add_file import add_base_file

        added = add_base_file(base_id, path, cancel=ctx.cancel)
        return f"{base_id}: added {added.path.name} ({added.layout}, sha256 {added.sha256[:12]}…)"

    return fn


def make_verify_library():
    """Models → Library → Verify: re-hash every attribute's weights (slow for many or big ones, hence a job)."""

    def fn(session, ctx):
        return [(e.name, ok, reason) for e, ok, reason in session.library.verify()]

    return fn
