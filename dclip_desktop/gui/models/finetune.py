"""State of the prompt panel (the fine-tune settings) and the live loss history."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

from PySide6.QtCore import QObject, Signal


@dataclass
class FinetuneParams:
    base_id: str = "demo-shapes"
    source: str = ""
    target: str = ""
    name: str = ""
    t0: int = 400
    s_for: int = 40
    s_gen: int = 6
    lambda_l1: float = 0.3
    lambda_face: float = 0.0
    clip_loss_form: str = "neglog"
    lr: Optional[float] = None  # None: auto
    lr_schedule: str = "constant"
    epochs: int = 1
    mode: str = "efficient"
    lora_rank: Optional[int] = 8  # None: full weights
    batch_size: int = 8
    seed: int = 0
    images_dir: Optional[str] = None  # None: sample from the base
    sample_count: int = 24

    def validate(self) -> Optional[str]:
        if not self.source.strip() or not self.target.strip():
            return "Enter the source and target text."
        if self.source.strip() == self.target.strip():
            return "Source and target are the same: there is no direction to learn."
        if not self.name.strip():
            return "Give the attribute a name."
        return None

    def to_request(self):
        """The engine's FinetuneRequest (imports the engine: call on the worker thread)."""
        from ...core.finetune import FinetuneConfig
        from ...jobs.finetune_job import FinetuneRequest
        from ...jobs.images import list_images

        cfg = FinetuneConfig(
            t0=self.t0, s_for=self.s_for, s_gen=self.s_gen, lambda_l1=self.lambda_l1, lambda_face=self.lambda_face,
            clip_loss_form=self.clip_loss_form, lr=self.lr, lr_schedule=self.lr_schedule, epochs=self.epochs,
            mode=self.mode, lora_rank=self.lora_rank, batch_size=self.batch_size, seed=self.seed,
        )
        images = list_images(self.images_dir) if self.images_dir else None
        return FinetuneRequest(self.base_id, self.source.strip(), self.target.strip(), self.name.strip(), cfg,
                               images=images, sample_count=self.sample_count)

    def as_dict(self) -> dict:
        return asdict(self)


class FinetuneModel(QObject):
    """Params plus the running job's observable state (loss rows, last epoch)."""

    changed = Signal()
    losses_changed = Signal()

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.params = FinetuneParams()
        self.losses: list[tuple[int, float]] = []  # (step, total loss)
        self.total_steps = 0

    def update(self, **kw) -> None:
        for k, v in kw.items():
            if not hasattr(self.params, k):
                raise AttributeError(k)
            setattr(self.params, k, v)
        self.changed.emit()

    def reset_losses(self) -> None:
        self.losses = []
        self.total_steps = 0
        self.losses_changed.emit()

    def add_loss(self, step: int, total: int, row: dict) -> None:
        value = row.get("total", row.get("loss"))
        if value is None and row:
            value = sum(row.values())
        if value is None:
            return
        self.losses.append((int(step), float(value)))
        self.total_steps = int(total)
        self.losses_changed.emit()
