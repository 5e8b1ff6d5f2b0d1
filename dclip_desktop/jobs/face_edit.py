"""The face workflow of `dclip edit` and `dclip batch` on the CelebA-HQ bases: every face in a photo is
aligned to the base's template at its resolution, the faces are edited together, and each is pasted
back into the full-resolution photo (core/face_align.py says how). The batch aligns on its reading
thread and pastes on its writing one, so it calls the two steps apart."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from ..core import face_align
from .errors import JobError
from .images import pil_to_tensor, tensor_to_pil

log = logging.getLogger(__name__)
FACE_MODES = ("auto", "on", "off")  # auto: on for bases whose domain is faces


def faces_wanted(mode: str, domain: str) -> bool:
    """Whether an edit on a base of `domain` goes through the face workflow; 'on' without
    facenet-pytorch is an error that says what to install."""
    if mode not in FACE_MODES:
        raise JobError(f"unknown --faces {mode!r}; choose one of {', '.join(FACE_MODES)}")
    if mode == "off" or (mode == "auto" and domain != "face"):
        return False
    try:
        import facenet_pytorch  # noqa: F401 - only whether it is there
    except ImportError:
        hint = "pip install --no-deps facenet-pytorch==2.6.0"
        if mode == "on":
            raise JobError(f"--faces on needs facenet-pytorch: {hint}") from None
        log.warning("faces are not aligned (facenet-pytorch is not installed): the whole picture is edited; %s",
                    hint)
        return False
    return True


def align_faces(photo: Image.Image, name: str, size: int, detector=None) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Every face of `photo` aligned at size×size ([N,3,size,size] in [-1, 1], left to right) and its
    photo → face matrix; a photo with no face is a JobError that says what to do."""
    faces = face_align.detect_faces(photo, detector)
    if not faces:
        raise JobError(f"{name}: no face found; use --faces off to edit the whole picture")
    aligned = [face_align.align(photo, face, size) for face in faces]
    return torch.stack([pil_to_tensor(img) for img, _ in aligned]), [m for _, m in aligned]


def paste_faces(photo: Image.Image, edited: torch.Tensor, matrices: list[np.ndarray]) -> Image.Image:
    """`photo` with each edited face (align_faces' order) pasted back; a new image at the photo's size."""
    out = photo
    for face, matrix in zip(edited, matrices):
        out = face_align.paste_back(out, tensor_to_pil(face), matrix)
    return out


def edit_faces(photo: Image.Image, name: str, size: int, edit: Callable[[torch.Tensor], torch.Tensor],
               detector=None) -> tuple[Image.Image, int]:
    """`photo` with each of its faces replaced by `edit` of the aligned face ([N,3,size,size] in
    [-1, 1] → the same); returns the new photo and how many faces were edited."""
    x, matrices = align_faces(photo, name, size, detector)
    return paste_faces(photo, edit(x), matrices), len(matrices)
