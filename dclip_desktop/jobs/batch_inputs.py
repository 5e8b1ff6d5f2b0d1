"""The batch's inputs: which entries of the input folder are images, which of them can be read (fitted, or
their faces aligned), and the paste-back of an edit onto its original. Nothing here writes."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from PIL import Image

from .batch_request import BatchRequest
from .errors import JobError
from .face_edit import align_faces
from .images import FIT_POLICIES, IMAGE_EXTENSIONS, fit_image, open_image, pil_to_tensor


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


def check_folders(req: BatchRequest) -> tuple[Path, Path]:
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


def stat_problem(path: Path) -> tuple[Optional[str], Optional[os.stat_result]]:
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
class Loaded:
    rel: str
    tensor: Optional[torch.Tensor] = None  # the fitted picture [3,S,S], or its aligned faces [N,3,S,S]
    original: Optional[Image.Image] = None
    box: tuple = ()
    size: tuple = ()
    reason: Optional[str] = None
    matrices: Optional[list] = None  # face workflow: each face's photo → aligned-face matrix

    def pictures(self) -> torch.Tensor:
        """What the engine edits for this file: [1 or N faces, 3, S, S]."""
        return self.tensor if self.matrices is not None else self.tensor[None]


def load_one(src: Path, rel: str, resolution: int, fit: str, keep_original: bool, detector=None) -> Loaded:
    """`rel` opened and fitted to resolution², or with `detector` (an MTCNN) its faces found and aligned
    (the photo is then kept, to paste them back); any problem is this file's `reason`."""
    path = src / rel
    problem, _ = stat_problem(path)
    if problem:
        return Loaded(rel, reason=problem)
    try:
        img = open_image(path)
        if detector is not None:
            faces, matrices = align_faces(img, path.name, resolution, detector)
            return Loaded(rel, faces, img, size=img.size, matrices=matrices)
        fitted, box = fit_image(img, resolution, fit)
        return Loaded(rel, pil_to_tensor(fitted), img if keep_original else None, box, img.size)
    except Exception as exc:  # any decoder failure is this file's problem, never the batch's
        return Loaded(rel, reason=_reason(exc, path.name))


def paste_back(original: Image.Image, edited: Image.Image, box: tuple) -> Image.Image:
    """The edit resized onto the region `box` (l, t, r, b) of `original`; parts outside are clipped."""
    left, top, right, bottom = box
    w, h = max(1, round(right - left)), max(1, round(bottom - top))
    out = original.convert("RGB").copy()
    out.paste(edited.convert("RGB").resize((w, h), Image.BICUBIC), (round(left), round(top)))
    return out
