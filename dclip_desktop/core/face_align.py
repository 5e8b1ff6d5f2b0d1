"""Faces from a real photo for the CelebA-HQ bases: find each face, align it to the FFHQ/CelebA-HQ
template the base was trained on, and paste the edited face back into the full-resolution photo.

The base only knows aligned, centred faces at 256²; a holiday photo edited as a whole comes out as a
wrong face. Alignment is a similarity transform (rotation, uniform scale, shift) fitted by least squares
(Umeyama) from MTCNN's 5 landmarks to the template, so the face is not sheared. Paste-back warps the
edited face through the inverse transform and blends it with a feathered mask: pixels outside the
mask are the original's, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# The 5-point FFHQ alignment template (left eye, right eye, nose, left and right mouth corner) at
# 512², as facexlib's face restoration helper states it; the CelebA-HQ/FFHQ bases use the same framing.
FFHQ_TEMPLATE_512 = np.array(
    [[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
     [201.26117, 371.41043], [313.08905, 371.15118]], dtype=np.float64)
MIN_FACE_PROBABILITY = 0.9  # MTCNN's confidence below which a detection is not treated as a face
FEATHER_FRACTION = 0.06  # the blend's soft edge, as a fraction of the aligned face's side


def template(size: int) -> np.ndarray:
    """The template's landmarks [5, 2] for an aligned face of size×size."""
    return FFHQ_TEMPLATE_512 * (size / 512.0)


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # MTCNN box in photo pixels (x1, y1, x2, y2)
    landmarks: np.ndarray  # [5, 2] photo pixels, MTCNN's order (eyes, nose, mouth corners)
    probability: float


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2×3 matrix of the similarity transform that best maps points src → dst (least squares,
    Umeyama 1991); a reflection is never chosen."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s_c, d_c = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(d_c.T @ s_c / len(src))
    d = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ d @ vt
    scale = float(np.trace(np.diag(sig) @ d) / (s_c ** 2).sum(1).mean())
    return np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert(matrix: np.ndarray) -> np.ndarray:
    a_inv = np.linalg.inv(matrix[:, :2])
    return np.hstack([a_inv, (-a_inv @ matrix[:, 2])[:, None]])


def _pil_coefficients(matrix: np.ndarray) -> tuple:
    """PIL's AFFINE data: the map from output pixels to input pixels, flattened."""
    return tuple(float(v) for v in matrix.reshape(-1))


def alignment(face: Face, size: int) -> np.ndarray:
    """photo → aligned-face coordinates for `face` at size×size."""
    return similarity_transform(face.landmarks, template(size))


def align(photo: Image.Image, face: Face, size: int) -> tuple[Image.Image, np.ndarray]:
    """The face cut out of `photo`, aligned to the template at size×size, and the photo → face matrix."""
    matrix = alignment(face, size)
    aligned = photo.convert("RGB").transform((size, size), Image.AFFINE, _pil_coefficients(invert(matrix)),
                                             resample=Image.BICUBIC, fillcolor=(0, 0, 0))
    return aligned, matrix


def face_mask(size: int, feather: float = FEATHER_FRACTION) -> Image.Image:
    """The blend mask in aligned coordinates: an ellipse over the face, soft at its edge and zero well
    inside the square, so the black fill beyond the photo's border never shows."""
    soft = max(1.0, feather * size)
    inset = 2 * soft
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).ellipse((inset, inset, size - 1 - inset, size - 1 - inset), fill=255)
    return mask.filter(ImageFilter.GaussianBlur(soft))


def paste_back(photo: Image.Image, edited: Image.Image, matrix: np.ndarray,
               feather: float = FEATHER_FRACTION) -> Image.Image:
    """`photo` with `edited` (an aligned face made by `align` with `matrix`) blended in; a new image."""
    photo = photo.convert("RGB")
    size = edited.size[0]
    corners = apply(invert(matrix), np.array([[0, 0], [size, 0], [0, size], [size, size]]))
    x1, y1 = np.floor(corners.min(0)).astype(int)
    x2, y2 = np.ceil(corners.max(0)).astype(int)
    x1, y1 = max(int(x1), 0), max(int(y1), 0)
    x2, y2 = min(int(x2), photo.width), min(int(y2), photo.height)
    if x2 <= x1 or y2 <= y1:
        return photo.copy()
    # region pixel (x, y) is photo pixel (x + x1, y + y1); map it into the aligned face
    shift = np.array([[1.0, 0.0, x1], [0.0, 1.0, y1], [0.0, 0.0, 1.0]])
    to_face = _pil_coefficients((np.vstack([matrix, [0, 0, 1]]) @ shift)[:2])
    region = (x2 - x1, y2 - y1)
    face = edited.convert("RGB").transform(region, Image.AFFINE, to_face, resample=Image.BICUBIC)
    mask = face_mask(size, feather).transform(region, Image.AFFINE, to_face, resample=Image.BILINEAR, fillcolor=0)
    out = photo.copy()
    out.paste(face, (x1, y1), mask)
    return out


def detect_faces(photo: Image.Image, detector=None, min_probability: float = MIN_FACE_PROBABILITY) -> list[Face]:
    """The faces MTCNN finds in `photo`, left to right (so "face 1" is the leftmost, as on the canvas).
    `detector`: a facenet_pytorch MTCNN (its weights ship in the wheel); None builds one on the CPU."""
    if detector is None:
        detector = face_detector()
    boxes, probs, points = detector.detect(photo.convert("RGB"), landmarks=True)
    if boxes is None:
        return []
    faces = [Face(tuple(float(v) for v in b), np.asarray(p, np.float64), float(pr))
             for b, pr, p in zip(boxes, probs, points) if pr is not None and pr >= min_probability]
    return sorted(faces, key=lambda f: f.box[0])


def face_detector(device: str = "cpu"):
    """facenet-pytorch's MTCNN keeping every face; raises ImportError when facenet-pytorch is absent."""
    from facenet_pytorch import MTCNN

    return MTCNN(keep_all=True, device=device)
