"""State of the prompt panel (the fine-tune settings) and the live loss history.

The recipe fields (t0, λ_L1, epochs, lr, loss form) follow the zoo's `recipe_for(base, source, target)`
as the user picks a base or a preset or types the text pair, except those the user set by hand.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

from PySide6.QtCore import QObject, Signal

from ...zoo.registry import RECIPE_KEYS as RECIPE_FIELDS  # pure data: cheap on the GUI thread


@dataclass
class FinetuneParams:
    # Defaults are FinetuneConfig's (a test holds them equal); they fill what a recipe leaves out.
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


def recipe(base_id: str, source: str, target: str) -> dict:
    """The recipe fields for a text pair: the zoo's recipe_for (the one place they are decided), and
    FinetuneParams' defaults for the fields it leaves out (an unknown base gets only those)."""
    from ...zoo.registry import UnknownBaseError, get_base, recipe_for

    defaults = FinetuneParams()
    out = {k: getattr(defaults, k) for k in RECIPE_FIELDS}
    try:
        spec = get_base(base_id)
    except UnknownBaseError:
        return out
    out.update(recipe_for(spec, source.strip(), target.strip()))
    return out


class FinetuneModel(QObject):
    """Params plus the running job's observable state (loss rows, last epoch)."""

    changed = Signal()
    losses_changed = Signal()

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.params = FinetuneParams()
        self.by_hand: set[str] = set()  # recipe fields the user changed: the recipe leaves them alone
        self.losses: list[tuple[int, float]] = []  # (step, total loss)
        self.total_steps = 0
        self._follow_recipe()

    # --- the recipe -------------------------------------------------------------------------
    def recipe(self) -> dict:
        """Every recipe field for the current base and text pair."""
        return recipe(self.params.base_id, self.params.source, self.params.target)

    def set_prompt(self, **kw) -> None:
        """A new base_id, source or target: the fields not set by hand take that pair's recipe."""
        for k, v in kw.items():
            if k not in ("base_id", "source", "target"):
                raise AttributeError(k)
            setattr(self.params, k, v)
        self._follow_recipe()
        self.changed.emit()

    def set_by_hand(self, field: str, value) -> None:
        """The user changed a recipe field. It keeps that value through later pairs and presets, until
        the user gives it the recipe's own value again (then it follows the recipe once more)."""
        if field not in RECIPE_FIELDS:
            raise AttributeError(field)
        setattr(self.params, field, value)
        if value == self.recipe()[field]:
            self.by_hand.discard(field)
        else:
            self.by_hand.add(field)
        self.changed.emit()

    def _follow_recipe(self) -> None:
        for k, v in self.recipe().items():
            if k not in self.by_hand:
                setattr(self.params, k, v)

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
