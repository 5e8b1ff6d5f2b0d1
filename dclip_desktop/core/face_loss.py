"""Face identity loss: λ_face · (1 − cos(F(x0), F(x̂0))) with facenet-pytorch's InceptionResnetV1.

The face box of each training image is found once, by MTCNN on x0, and reused to crop x̂0, so the
crop is a fixed, differentiable function of the pixels (slicing + interpolation). Unlike the reference
implementation's efficient mode, the loss is computed on the live x̂0 and its gradient reaches the UNet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FACE_SIZE = 160  # InceptionResnetV1's input size
CENTER_FRACTION = 0.8  # fallback crop: the central 80 % square when MTCNN finds no face


def center_box(height: int, width: int, fraction: float = CENTER_FRACTION) -> list[float]:
    """A centered square [x1, y1, x2, y2] whose side is `fraction` of the shorter image side."""
    side = fraction * min(height, width)
    x1, y1 = (width - side) / 2, (height - side) / 2
    return [x1, y1, x1 + side, y1 + side]


def _int_box(box: torch.Tensor, height: int, width: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, y1 = max(int(x1), 0), max(int(y1), 0)
    x2, y2 = min(int(round(x2)), width), min(int(round(y2)), height)
    return x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)


def crop_faces(x: torch.Tensor, boxes: torch.Tensor, size: int = FACE_SIZE) -> torch.Tensor:
    """Crop box i of image i and resize it to size×size; differentiable w.r.t. x. boxes: [N, 4] xyxy pixels."""
    height, width = x.shape[-2:]
    crops = []
    for img, box in zip(x, boxes):
        x1, y1, x2, y2 = _int_box(box, height, width)
        patch = img[None, :, y1:y2, x1:x2]
        crops.append(
            F.interpolate(patch, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        )
    return torch.cat(crops)


def facenet_standardize(x: torch.Tensor) -> torch.Tensor:
    """facenet's fixed_image_standardization, (v·255 − 127.5)/128 for v in [0,1], written for x in [-1,1]."""
    return x * (127.5 / 128.0)


def _margin_box(box, margin: float, size: int, height: int, width: int) -> list[float]:
    """Grow an MTCNN box by `margin` final-image pixels, as facenet's extract_face does."""
    x1, y1, x2, y2 = (float(v) for v in box)
    mx = margin * (x2 - x1) / (size - margin)
    my = margin * (y2 - y1) / (size - margin)
    return [max(x1 - mx / 2, 0.0), max(y1 - my / 2, 0.0), min(x2 + mx / 2, width), min(y2 + my / 2, height)]


class FaceIDLoss(nn.Module):
    """mean(1 − cos(F(crop(x0)), F(crop(x̂0)))) over the batch, with boxes fixed per training image.

    `embedder` must be a facenet-pytorch InceptionResnetV1(classify=False) with real weights (the zoo
    loads VGGFace2); `detector` an MTCNN, built on `device` when None (its weights ship in the wheel).
    Runs on the embedder's device; the loss is a float32 scalar on x_hat's device.
    """

    def __init__(self, embedder: nn.Module | None = None, detector=None, device: str | torch.device = "cpu"):
        super().__init__()
        if embedder is None:
            raise ValueError(
                "FaceIDLoss needs a face embedder with trained weights (InceptionResnetV1, VGGFace2); "
                "load one with dclip_desktop.zoo rather than using random weights"
            )
        self.embedder = embedder.to(device).eval().requires_grad_(False)
        self.detector = detector
        self.device = torch.device(device)
        self.boxes: torch.Tensor | None = None  # [N, 4] xyxy in source pixels
        self.detected: torch.Tensor | None = None  # [N] bool: True where MTCNN found the face
        self._sources: torch.Tensor | None = None  # [N, 512] unit embeddings of the source faces

    def train(self, mode: bool = True) -> FaceIDLoss:
        super().train(mode)
        self.embedder.eval()
        return self

    def _get_detector(self):
        if self.detector is None:
            from facenet_pytorch import MTCNN

            self.detector = MTCNN(device=self.device)
        return self.detector

    @torch.no_grad()
    def detect_boxes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One face box per image ([N, 4] xyxy) and whether it was detected ([N] bool)."""
        det = self._get_detector()
        height, width = x.shape[-2:]
        margin = float(getattr(det, "margin", 0) or 0)
        size = int(getattr(det, "image_size", FACE_SIZE) or FACE_SIZE)
        # MTCNN takes [N, H, W, 3] pixel values in 0..255.
        pixels = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).cpu()
        found, _ = det.detect(pixels)
        boxes, detected = [], []
        for candidates in found:
            if candidates is None or len(candidates) == 0:
                # No face: fall back to the central 80 % square, where aligned face datasets keep the face.
                boxes.append(center_box(height, width))
                detected.append(False)
                continue
            # MTCNN(select_largest=True), the default, lists the largest face first; pick it explicitly.
            areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in candidates]
            best = candidates[max(range(len(areas)), key=areas.__getitem__)]
            boxes.append(_margin_box(best, margin, size, height, width))
            detected.append(True)
        return torch.tensor(boxes, dtype=torch.float32), torch.tensor(detected)

    def embed(self, x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Unit face embeddings (float32) of x in [-1, 1] cropped with `boxes`; differentiable w.r.t. x."""
        p = next(self.embedder.parameters())
        crops = crop_faces(x.to(device=p.device, dtype=torch.float32), boxes)
        emb = self.embedder(facenet_standardize(crops).to(p.dtype))
        return F.normalize(emb.float(), dim=-1)

    def set_sources(self, x0: torch.Tensor, batch_size: int = 16) -> None:
        """Detect each source face once and cache its box and embedding."""
        boxes, detected = [], []
        for chunk in x0.split(batch_size):
            b, d = self.detect_boxes(chunk)
            boxes.append(b)
            detected.append(d)
        self.boxes = torch.cat(boxes)
        self.detected = torch.cat(detected)
        with torch.no_grad():
            self._sources = torch.cat(
                [self.embed(c, b) for c, b in zip(x0.split(batch_size), self.boxes.split(batch_size))]
            )
        self._source_hw = tuple(x0.shape[-2:])

    def _boxes_for(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        boxes = self.boxes[index.cpu().long()]
        sh, sw = self._source_hw
        h, w = x.shape[-2:]
        if (h, w) != (sh, sw):  # same image at another resolution: scale the boxes with it
            boxes = boxes * torch.tensor([w / sw, h / sh, w / sw, h / sh])
        return boxes

    def forward(self, x_hat: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        if self._sources is None:
            raise RuntimeError("call set_sources(x0) before computing the loss")
        emb = self.embed(x_hat, self._boxes_for(x_hat, index))
        src = self._sources[index.to(self._sources.device).long()]
        loss = 1 - (emb * src).sum(dim=-1)
        return loss.mean().to(device=x_hat.device, dtype=torch.float32)


__all__ = ["CENTER_FRACTION", "FACE_SIZE", "FaceIDLoss", "center_box", "crop_faces", "facenet_standardize"]
