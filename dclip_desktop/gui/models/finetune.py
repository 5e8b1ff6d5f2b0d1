"""State of the prompt panel (the fine-tune settings) and the live loss history.

The recipe fields (t0, λ_L1, epochs, lr, loss form) follow the zoo's `recipe_for(base, source, target)`
as the user picks a base or a preset or types the text pair, except those the user set by hand: any
change of a recipe field that the recipe did not make itself (a bound widget's, `set_by_hand`'s).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Optional

from PySide6.QtCore import QObject, Signal

from ...core.config import (  # pure Python: cheap on the GUI thread
    FinetuneConfig,
    check_prompt,
    config_from_recipe,
    validate_steps,
)
from ...errors import BadInput
from ...zoo.registry import RECIPE_KEYS as RECIPE_FIELDS  # pure data, as cheap
from ..properties import Property, observable_fields

PROMPT_FIELDS = ("base_id", "source", "target", "name", "images_dir", "sample_count", "sample_steps")
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
    sample_steps: Optional[int] = None  # DDIM steps per sampled image; None: FinetuneRequest's (SAMPLE_STEPS)

    def __post_init__(self) -> None:
        # A copy of its own: tasks.make_finetune copies the params with dataclasses.replace when it
        # submits, and the job must not see the settings the user changes while it runs.
        self.config = replace(self.config)

    def validate(self) -> Optional[str]:
        """The reason the engine would refuse these settings, as the text the GUI shows, or None."""
        try:
            check_prompt(self.source, self.target, self.name)
            if self.sample_steps is not None and not self.images_dir:
                validate_steps(self.sample_steps, "sample steps")
            self.config.validate()
        except BadInput as exc:
            return str(exc)
        return None

    def to_request(self):
        """The engine's FinetuneRequest (imports the engine: call on the worker thread)."""
        from ...jobs.finetune_job import FinetuneRequest
        from ...jobs.images import list_images

        images = list_images(self.images_dir) if self.images_dir else None
        steps = {} if self.sample_steps is None else {"sample_steps": self.sample_steps}
        return FinetuneRequest(self.base_id, self.source.strip(), self.target.strip(), self.name.strip(),
                               replace(self.config), images=images, sample_count=self.sample_count, **steps)


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


class FinetuneModel(observable_fields(FinetuneConfig, "FinetuneFields")):
    """The fine-tune settings as observable properties (every FinetuneConfig field, the prompt, the
    training images) plus the running job's loss rows. Widgets bind to the properties both ways."""

    base_id = Property("demo-shapes")
    source = Property("")
    target = Property("")
    name = Property("")
    folder = Property("")  # the training photos' folder, used when use_folder
    use_folder = Property(False)  # else: sample from the base
    sample_count = Property(24)
    # None: the engine's default (core.finetune.SAMPLE_STEPS, which imports torch: not read here)
    sample_steps = Property(None)
    by_hand = Property(frozenset())  # recipe fields the user changed: the recipe leaves them alone
    losses_changed = Signal()

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.losses: list[tuple[int, float]] = []  # (step, total loss)
        self.total_steps = 0
        self._following = False  # while the recipe fills fields: those changes are not the user's
        self._follow_recipe()

    # --- what the Fine-tune button submits ----------------------------------------------------
    @property
    def images_dir(self) -> Optional[str]:
        return self.folder if self.use_folder else None

    @images_dir.setter
    def images_dir(self, path: Optional[str]) -> None:
        if path:
            self.folder = path
        self.use_folder = bool(path)

    @property
    def config(self) -> FinetuneConfig:
        return FinetuneConfig(**{k: getattr(self, k) for k in CONFIG_FIELDS})

    @property
    def params(self) -> FinetuneParams:
        """The settings as they are now, a copy of their own: later changes do not reach a submitted job."""
        return FinetuneParams(self.base_id, self.source, self.target, self.name, self.images_dir,
                              self.sample_count, self.config, self.sample_steps)

    # --- the recipe -------------------------------------------------------------------------
    def recipe(self) -> dict:
        """Every recipe field for the current base and text pair."""
        return recipe(self.base_id, self.source, self.target)

    def set_prompt(self, **kw) -> None:
        """A new base_id, source or target: the fields not set by hand take that pair's recipe."""
        for k in kw:
            if k not in ("base_id", "source", "target"):
                raise AttributeError(k)
        for k, v in kw.items():
            setattr(self, k, v)
        self._follow_recipe()

    def set_by_hand(self, name: str, value) -> None:
        """The user changed a recipe field. It keeps that value through later pairs and presets, until
        the user gives it the recipe's own value again (then it follows the recipe once more). Setting
        the property (a bound widget does) is the same."""
        if name not in RECIPE_FIELDS:
            raise AttributeError(name)
        setattr(self, name, value)
        self._mark(name)

    def _mark(self, name: str) -> None:
        if getattr(self, name) == self.recipe()[name]:
            self.by_hand = self.by_hand - {name}
        else:
            self.by_hand = self.by_hand | {name}

    def _follow_recipe(self) -> None:
        """The settings the user set (by hand, or outside the recipe) stay; the recipe fills the rest."""
        rec = self.recipe()
        self._following = True
        try:
            for k in RECIPE_FIELDS:
                if k not in self.by_hand:
                    setattr(self, k, rec[k])
        finally:
            self._following = False

    def _property_changed(self, name: str, value) -> None:
        if name in ("base_id", "source", "target"):
            self._follow_recipe()
        elif name in RECIPE_FIELDS and not self._following:
            self._mark(name)

    def update(self, **kw) -> None:
        """Set prompt fields and FinetuneConfig fields by name (a recipe field set so counts as by hand)."""
        for k in kw:
            if k not in PROMPT_FIELDS and k not in CONFIG_FIELDS:
                raise AttributeError(k)
        for k, v in kw.items():
            setattr(self, k, v)

    # --- the running job --------------------------------------------------------------------
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
