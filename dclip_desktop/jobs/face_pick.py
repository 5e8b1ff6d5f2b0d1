"""The GUI's side of the face workflow, Qt-free: faces are found once when a photo is opened, the user
ticks which to edit, and the edit aligns, edits and pastes back exactly those (jobs/face_edit.py, the
same path as `dclip edit`). Also the state of the fine-tune's identity loss, which needs the same
package (facenet-pytorch)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Optional

import numpy as np
from PIL import Image

from .errors import JobError

if TYPE_CHECKING:
    from ..core.face_align import Face

# face_edit and face_align are imported where they are used: they bring torch, and the GUI thread
# imports this module for `identity_loss`.

FACENET_INSTALL = "pip install --no-deps facenet-pytorch==2.6.0"
NO_FACE_MESSAGE = "no face found; set Faces to Off to edit the whole picture"
NONE_PICKED_MESSAGE = "Tick at least one face to edit, or set Faces to Off to edit the whole picture."


def facenet_available() -> bool:
    """Whether facenet-pytorch is installed. Asked of the import system without importing it: the
    package pulls in torch, which must not load on the GUI thread."""
    try:
        return importlib.util.find_spec("facenet_pytorch") is not None
    except (ImportError, ValueError):  # a broken or half-removed install
        return False


@dataclass(frozen=True)
class IdentityLoss:
    state: str  # "on", "off" or "unavailable"
    text: str


def identity_loss(lambda_face: float) -> IdentityLoss:
    """What a fine-tune with this λ_face does about identity: a λ of 0 turns the loss off; otherwise
    it runs where facenet-pytorch is installed, and the text says how to install it where it is not."""
    if not lambda_face > 0:  # NaN too: the loss only runs for a positive λ
        return IdentityLoss("off", "identity loss: off (λ 0)")
    if not facenet_available():
        return IdentityLoss("unavailable", f"identity loss: unavailable (install facenet-pytorch: {FACENET_INSTALL})")
    return IdentityLoss("on", f"identity loss: on (λ {lambda_face:g})")


@lru_cache(maxsize=2)
def _detector(device: str):
    from ..core.face_align import face_detector

    # building MTCNN loads its three nets: once per process, not once per opened photo
    return face_detector(device)


def find_faces(photo: Image.Image, mode: str, domain: str, device: str = "cpu") -> Optional[list[Face]]:
    """The faces in `photo` (left to right) when the face workflow applies to an edit on a base of
    `domain` under `mode` (faces_wanted's rule); None when it does not. [] is a photo with no face."""
    from ..core.face_align import detect_faces
    from .face_edit import faces_wanted

    if not faces_wanted(mode, domain):
        return None
    return detect_faces(photo, _detector(device))


class PickedFaces:
    """The faces a user ticked, in the shape of a detector (MTCNN's `detect`), so that
    face_edit.edit_faces edits exactly these without detecting them again."""

    def __init__(self, faces: Sequence[Face]) -> None:
        self.faces = list(faces)

    def detect(self, photo, landmarks: bool = True):
        if not self.faces:
            return None, None, None
        return (np.array([f.box for f in self.faces], np.float64), np.array([f.probability for f in self.faces]),
                np.stack([np.asarray(f.landmarks, np.float64) for f in self.faces]))


def edit_picked(photo: Image.Image, faces: Sequence[Face], name: str, size: int, edit: Callable,
                ) -> tuple[Image.Image, int]:
    """`photo` with each of `faces` aligned at size×size, edited by `edit` and pasted back (the rest of
    the photo is the original's); returns the new photo and how many faces were edited."""
    from .face_edit import edit_faces

    if not faces:
        raise JobError(NONE_PICKED_MESSAGE)
    return edit_faces(photo, name, size, edit, PickedFaces(faces))
