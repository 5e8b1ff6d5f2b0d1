"""The numbers an edit is judged by (the paper's Tables 1 and 3): S_dir, the directional CLIP similarity
between the image change and the text change; MAE and SSIM against the input; ID similarity on face
bases; LPIPS where its weights are on this computer. One home for `dclip edit --metrics`, the GUI and
the batch report, so the same edit shows the same numbers everywhere.

Measured on the output as saved (8-bit), so a number read off the GUI, the CLI or a PNG edited again
agrees; on the aligned faces when the face workflow edited them, where the edit and the texts apply.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from ..core import metrics
from ..errors import MissingWeights
from .errors import JobError
from .images import pil_to_tensor, tensor_to_pil

log = logging.getLogger(__name__)
NAMES = ("s_dir", "mae", "ssim", "id", "lpips")
# torchvision's AlexNet, the backbone of LPIPS's default "alex" variant, as torch.hub caches it
LPIPS_BACKBONE = "alexnet-owt-7be5be79.pth"


@dataclass
class EditMetrics:
    mae: float
    ssim: float
    s_dir: Optional[float] = None  # mean over the mix's attributes, by their weights
    id: Optional[float] = None
    lpips: Optional[float] = None
    unavailable: dict[str, str] = field(default_factory=dict)  # metric → why it is missing

    def as_dict(self) -> dict:
        """The metrics that were measured (None ones are left out; `unavailable` says why)."""
        return {k: round(getattr(self, k), 6) for k in NAMES if getattr(self, k) is not None}

    def line(self) -> str:
        """'S_dir 0.231  MAE 0.045  SSIM 0.812': the measured ones, in the paper's order."""
        labels = {"s_dir": "S_dir", "mae": "MAE", "ssim": "SSIM", "id": "ID", "lpips": "LPIPS"}
        return "  ".join(f"{labels[k]} {v:.3f}" for k, v in self.as_dict().items())


def as_saved(x: torch.Tensor) -> torch.Tensor:
    """[N,3,H,W] in [-1, 1] rounded to 8 bits as a PNG stores it."""
    return torch.stack([pil_to_tensor(tensor_to_pil(img)) for img in x.detach().float().cpu()])


def lpips_status() -> Optional[str]:
    """None when LPIPS can run without a download, else why not and how to get it."""
    if importlib.util.find_spec("lpips") is None:
        return "the lpips package is not installed (pip install lpips)"
    hub = Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONE
    if not hub.is_file():
        return f"its AlexNet weights are not on this computer ({hub})"
    return None


def _lpips(x_in: torch.Tensor, x_out: torch.Tensor) -> float:
    import lpips  # only where lpips_status() said it can run offline

    net = lpips.LPIPS(net="alex", verbose=False)
    with torch.no_grad():
        return float(net(x_in.float(), x_out.float()).mean())


def _face_id(session, x_in: torch.Tensor, x_out: torch.Tensor) -> float:
    from ..core.face_loss import FaceIDLoss

    embedder, detector = session.face()
    return metrics.id_similarity(FaceIDLoss(embedder, detector, device=session.device), x_in, x_out)


def measure(session, edit, x_in: torch.Tensor, x_out: torch.Tensor) -> EditMetrics:
    """The metrics of `edit` (jobs.edit_job.Edit) turning x_in into x_out, both [N,3,H,W] in [-1, 1]."""
    pairs = [(e.source, e.target, w) for e, (_, w) in zip(edit.entries, edit.request.attributes)
             if e.source and e.target and w]
    return measure_texts(session, edit.base_id, pairs, x_in, x_out)


def measure_texts(session, base_id: str, pairs: list[tuple[str, str, float]], x_in: torch.Tensor,
                  x_out: torch.Tensor) -> EditMetrics:
    """The metrics of x_in → x_out for the text pairs (source, target, weight) that asked for it:
    an edit's attributes, or a fine-tune's own pair on its held-out preview."""
    if x_in.shape != x_out.shape:
        raise JobError(f"cannot compare an edit of shape {tuple(x_out.shape)} with its input {tuple(x_in.shape)}")
    x_in, x_out = as_saved(x_in), as_saved(x_out)
    out = EditMetrics(mae=metrics.mae(x_out, x_in), ssim=metrics.ssim(x_out, x_in))
    if pairs:
        clip_model, tokenizer = session.clip(session.clip_name(base_id))
        dev = session.device
        total = sum(w for _, _, w in pairs)
        out.s_dir = sum(w * metrics.s_dir(clip_model, x_in.to(dev), x_out.to(dev), src, tgt, tokenizer=tokenizer)
                        for src, tgt, w in pairs) / total
    else:
        out.unavailable["s_dir"] = "the attributes record no source and target text"
    if session.spec(base_id).domain == "face":
        if importlib.util.find_spec("facenet_pytorch") is None:
            out.unavailable["id"] = "facenet-pytorch is not installed (pip install --no-deps facenet-pytorch==2.6.0)"
        else:
            try:
                out.id = _face_id(session, x_in.to(session.device), x_out.to(session.device))
            except MissingWeights as exc:  # the face net missing offline: the other numbers still count
                out.unavailable["id"] = str(exc).splitlines()[0]
    why = lpips_status()
    if why is None:
        out.lpips = _lpips(x_in, x_out)
    else:
        out.unavailable["lpips"] = why
    return out
