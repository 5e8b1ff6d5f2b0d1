"""State of the prompt panel (the fine-tune settings) and the live loss history.

The recipe fields (t0, λ_L1, epochs, lr, loss form) follow the zoo's `recipe_for(base, source, target)`
as the user picks a base or a preset or types the text pair, except those the user set by hand.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Optional

from PySide6.QtCore import QObject, Signal

from ...core.config import FinetuneConfig, check_prompt, config_from_recipe  # pure Python: cheap on the GUI thread
from ...errors import BadInput
from ...zoo.registry import RECIPE_KEYS as RECIPE_FIELDS  # pure data, as cheap

PROMPT_FIELDS = ("base_id", "source", "target", "name", "images_dir", "sample_count")
CONFIG_FIELDS = tuple(f.name for f in fields(FinetuneConfig))


@dataclass
class FinetuneParams:
    """What the Fine-tune button submits: the prompt and its training images, and the engine's own
    FinetuneConfig (its defaults fill what a recipe leaves out)."""

    base_id: str = "demo-shapes"
    source: str = ""
    target: str = ""
    name: str = ""
    images_dir: Optional[str] = None  # None: sample from the base
    sample_count: int = 24
    config: FinetuneConfig = field(default_factory=FinetuneConfig)

    def __post_init__(self) -> None:
        # A copy of its own: tasks.make_finetune copies the params with dataclasses.replace when it
        # submits, and the job must not see the settings the user changes while it runs.
        self.config = replace(self.config)

    def validate(self) -> Optional[str]:
        """The reason the engine would refuse these settings, as the text the GUI shows, or None."""
        try:
            check_prompt(self.source, self.target, self.name)
            self.config.validate()
        except BadInput as exc:
            return str(exc)
        return None

    def to_request(self):
        """The engine's FinetuneRequest (imports the engine: call on the worker thread)."""
        from ...jobs.finetune_job import FinetuneRequest
        from ...jobs.images import list_images

        images = list_images(self.images_dir) if self.images_dir else None
        return FinetuneRequest(self.base_id, self.source.strip(), self.target.strip(), self.name.strip(),
                               replace(self.config), images=images, sample_count=self.sample_count)


def recipe(base_id: str, source: str, target: str) -> dict:
    """The recipe fields for a text pair: the zoo's recipe_for (the one place they are decided), and
    FinetuneConfig's defaults for the fields it leaves out (an unknown base gets only those)."""
    cfg = config_from_recipe(_tuning(base_id, source, target))
    return {k: getattr(cfg, k) for k in RECIPE_FIELDS}


def _tuning(base_id: str, source: str, target: str) -> dict:
    """recipe_for's overrides for the pair; none for an unknown base."""
    from ...zoo.registry import UnknownBaseError, get_base, recipe_for

    try:
        spec = get_base(base_id)
    except UnknownBaseError:
        return {}
    return recipe_for(spec, source.strip(), target.strip())


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

    def set_by_hand(self, name: str, value) -> None:
        """The user changed a recipe field. It keeps that value through later pairs and presets, until
        the user gives it the recipe's own value again (then it follows the recipe once more)."""
        if name not in RECIPE_FIELDS:
            raise AttributeError(name)
        setattr(self.params.config, name, value)
        if value == self.recipe()[name]:
            self.by_hand.discard(name)
        else:
            self.by_hand.add(name)
        self.changed.emit()

    def _follow_recipe(self) -> None:
        """The settings the user set (by hand, or outside the recipe) stay; the recipe fills the rest."""
        p = self.params
        kept = {k: v for k, v in asdict(p.config).items() if k not in RECIPE_FIELDS or k in self.by_hand}
        p.config = config_from_recipe(_tuning(p.base_id, p.source, p.target), kept)

    def update(self, **kw) -> None:
        """Set prompt fields and FinetuneConfig fields by name (the panel's `collect`)."""
        for k, v in kw.items():
            if k in PROMPT_FIELDS:
                setattr(self.params, k, v)
            elif k in CONFIG_FIELDS:
                setattr(self.params.config, k, v)
            else:
                raise AttributeError(k)
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
